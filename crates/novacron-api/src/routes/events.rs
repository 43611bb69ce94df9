//! `/api/v1/events`: a server-sent events stream of the changes the caller may see.

use crate::error::ApiError;
use crate::server::AppState;
use crate::service::Caller;
use crate::types::ErrorBody;
use axum::extract::State;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::Stream;
use novacron_model::{Event, Role};
use std::convert::Infallible;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

/// Events of the caller's tenant and node-wide ones, from now on, one JSON [`Event`] per SSE
/// `data:` line (SSE event name = the event's `type`). A client too slow to keep up gets a
/// `lagged` event saying how many it missed.
#[utoipa::path(get, path = "/events", tag = "events",
    responses((status = 200, body = Event, content_type = "text/event-stream"),
        (status = 401, body = ErrorBody)))]
pub async fn events(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    caller.require(Role::Viewer)?;
    let tenant = caller.tenant;
    let stream = BroadcastStream::new(state.svc.subscribe()).filter_map(move |item| match item {
        Ok(ev) => {
            let visible = ev.tenant.as_ref().is_none_or(|t| *t == tenant);
            visible.then(|| Ok(to_sse(&ev)))
        }
        Err(BroadcastStreamRecvError::Lagged(n)) => {
            Some(Ok(SseEvent::default().event("lagged").data(n.to_string())))
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

fn to_sse(ev: &Event) -> SseEvent {
    let json = serde_json::to_string(ev).unwrap_or_default();
    let name = serde_json::to_value(&ev.kind)
        .ok()
        .and_then(|v| v.get("type").and_then(|t| t.as_str()).map(str::to_owned))
        .unwrap_or_else(|| "event".to_owned());
    SseEvent::default()
        .event(name)
        .id(ev.seq.to_string())
        .data(json)
}
