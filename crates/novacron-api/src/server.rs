//! The router: every route of `/api/v1`, its OpenAPI document built from the same list, the
//! metrics layer, `/healthz` and `/metrics`.

use crate::extract::MAX_BODY;
use crate::metrics::ApiMetrics;
use crate::routes::{events, images, migrate, node, operations, tenants, vms};
use crate::service::NodeService;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use std::sync::Arc;
use utoipa::OpenApi;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// What every handler gets: the node service and the API's own metrics.
#[derive(Clone)]
pub struct AppState {
    /// The node behind the API.
    pub svc: Arc<dyn NodeService>,
    /// Request counters and latency histograms.
    pub metrics: Arc<ApiMetrics>,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "NovaCron API",
        description = "Virtual machines, images, operations and events of one NovaCron node. \
                       Every call but /healthz and /metrics needs `Authorization: Bearer TOKEN`."
    ),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// The `/api/v1` routes with their OpenAPI document, before state is attached.
#[must_use]
pub fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(node::node_info))
        .routes(routes!(node::get_dwcp_flags, node::put_dwcp_flags))
        .routes(routes!(vms::list_vms, vms::create_vm))
        .routes(routes!(vms::get_vm, vms::delete_vm))
        .routes(routes!(vms::start_vm))
        .routes(routes!(vms::stop_vm))
        .routes(routes!(vms::pause_vm))
        .routes(routes!(vms::resume_vm))
        .routes(routes!(vms::restart_vm))
        .routes(routes!(vms::console))
        .routes(routes!(migrate::migrate_vm))
        .routes(routes!(migrate::cancel_operation))
        .routes(routes!(migrate::peer_image_offer))
        .routes(routes!(migrate::peer_image_commit))
        .routes(routes!(migrate::peer_prepare))
        .routes(routes!(migrate::peer_commit))
        .routes(routes!(migrate::peer_abort))
        .routes(routes!(images::list_images, images::import_image))
        .routes(routes!(images::get_image, images::delete_image))
        .routes(routes!(operations::get_operation))
        .routes(routes!(operations::wait_operation))
        .routes(routes!(events::events))
        .routes(routes!(tenants::list_tenants, tenants::put_tenant))
        .routes(routes!(tenants::create_token))
}

/// The OpenAPI 3 document of the API, as served at `/api/v1/openapi.json`.
#[must_use]
pub fn openapi() -> utoipa::openapi::OpenApi {
    let (_, doc) = OpenApiRouter::<AppState>::new()
        .nest("/api/v1", api_routes())
        .split_for_parts();
    doc
}

/// The whole HTTP application of a node over `svc`.
pub fn app(svc: Arc<dyn NodeService>) -> Router {
    let metrics = Arc::new(ApiMetrics::new());
    let state = AppState { svc, metrics };
    let (api, doc) = OpenApiRouter::new()
        .nest("/api/v1", api_routes())
        .split_for_parts();
    let doc = Arc::new(doc);
    api.route(
        "/api/v1/openapi.json",
        axum::routing::get(move || {
            let doc = Arc::clone(&doc);
            async move { axum::Json(doc.as_ref().clone()) }
        }),
    )
    .route("/healthz", axum::routing::get(node::healthz))
    .route("/metrics", axum::routing::get(node::metrics))
    .fallback(node::not_found)
    .layer(crate::metrics::TrackLayer::new(&state.metrics))
    .layer(DefaultBodyLimit::max(MAX_BODY))
    .with_state(state)
}
