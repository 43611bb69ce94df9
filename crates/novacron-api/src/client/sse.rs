//! Reading `GET /api/v1/events`: a server-sent events decoder with a bounded line length, and
//! the stream of [`Event`]s built on it.
//!
//! ```text
//!  bytes ─► SseDecoder (lines: event:/data:/id:/comments, blank line ends a message)
//!        ─► SseMessage ─► "lagged" → Err(Lagged), otherwise JSON → Ok(Event)
//! ```

use super::error::from_reqwest;
use super::{ClientError, DecodeError};
use futures_util::stream::{self, BoxStream, Stream, StreamExt as _};
use novacron_model::Event;
use std::collections::VecDeque;
use std::time::Duration;

/// Longest line (and longest `data` of one message) the decoder accepts, in bytes.
pub const MAX_SSE_LINE: usize = 1 << 20;

/// One message of the stream: its event name (`message` when none was given) and its data
/// lines joined with `\n`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SseMessage {
    /// The `event:` field.
    pub event: String,
    /// The `data:` fields.
    pub data: String,
}

/// Splits a byte stream into [`SseMessage`]s. Lines end with `\n`, `\r\n` or `\r`; `id:`,
/// `retry:`, unknown fields and `:` comments (keep-alives) are skipped.
#[derive(Debug)]
pub struct SseDecoder {
    line: Vec<u8>,
    after_cr: bool,
    event: String,
    data: String,
    has_data: bool,
    max_line: usize,
}

impl SseDecoder {
    /// A decoder refusing lines longer than `max_line` bytes.
    #[must_use]
    pub fn new(max_line: usize) -> Self {
        Self {
            line: Vec::new(),
            after_cr: false,
            event: String::new(),
            data: String::new(),
            has_data: false,
            max_line,
        }
    }

    /// Reads `bytes`, appending each message it completes to `out`.
    ///
    /// # Errors
    /// [`DecodeError::LineTooLong`] when a line or a message's data passes the limit,
    /// [`DecodeError::NotUtf8`] for a line that is not UTF-8. The decoder is unusable after.
    pub fn feed(&mut self, bytes: &[u8], out: &mut Vec<SseMessage>) -> Result<(), DecodeError> {
        for &b in bytes {
            match b {
                b'\n' if self.after_cr => self.after_cr = false,
                b'\n' | b'\r' => {
                    self.after_cr = b == b'\r';
                    self.end_line(out)?;
                }
                _ => {
                    self.after_cr = false;
                    if self.line.len() >= self.max_line {
                        return Err(DecodeError::LineTooLong {
                            limit: self.max_line,
                        });
                    }
                    self.line.push(b);
                }
            }
        }
        Ok(())
    }

    fn end_line(&mut self, out: &mut Vec<SseMessage>) -> Result<(), DecodeError> {
        let raw = std::mem::take(&mut self.line);
        let line = std::str::from_utf8(&raw)?;
        if line.is_empty() {
            let event = std::mem::take(&mut self.event);
            if std::mem::take(&mut self.has_data) {
                out.push(SseMessage {
                    event: if event.is_empty() {
                        "message".to_owned()
                    } else {
                        event
                    },
                    data: std::mem::take(&mut self.data),
                });
            }
            return Ok(());
        }
        if line.starts_with(':') {
            return Ok(());
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "event" => value.clone_into(&mut self.event),
            "data" => {
                if self.data.len() + value.len() + 1 > self.max_line {
                    return Err(DecodeError::LineTooLong {
                        limit: self.max_line,
                    });
                }
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            // `id` and `retry` matter only for reconnecting, which the caller decides on.
            _ => {}
        }
        Ok(())
    }
}

/// What one message means: an [`Event`], or how many events the server dropped for us.
fn to_item(msg: SseMessage, request: &str) -> Result<Event, ClientError> {
    if msg.event == "lagged" {
        return match msg.data.trim().parse() {
            Ok(missed) => Err(ClientError::Lagged { missed }),
            Err(_) => Err(ClientError::Decode {
                request: request.to_owned(),
                source: DecodeError::BadCount { data: msg.data },
            }),
        };
    }
    serde_json::from_str(&msg.data).map_err(|e| ClientError::Decode {
        request: request.to_owned(),
        source: DecodeError::Json(e),
    })
}

struct State<S> {
    body: S,
    decoder: SseDecoder,
    ready: VecDeque<Result<Event, ClientError>>,
    ended: bool,
    idle: Duration,
    request: String,
    addr: String,
}

/// The events of an SSE `body`. Each item is an event, [`ClientError::Lagged`] or a
/// [`ClientError::Decode`] of one message, after which the stream goes on; a transport error,
/// [`ClientError::Timeout`] (nothing, not even a keep-alive, within `idle`) or a line over
/// [`MAX_SSE_LINE`] is the last item. The stream ends when the server closes it. `request`
/// (`GET /api/v1/events`) and `addr` (the server) go into errors.
pub fn event_stream<S, B>(
    body: S,
    idle: Duration,
    request: String,
    addr: String,
) -> BoxStream<'static, Result<Event, ClientError>>
where
    S: Stream<Item = Result<B, reqwest::Error>> + Send + Unpin + 'static,
    B: AsRef<[u8]> + Send + 'static,
{
    let state = State {
        body,
        decoder: SseDecoder::new(MAX_SSE_LINE),
        ready: VecDeque::new(),
        ended: false,
        idle,
        request,
        addr,
    };
    stream::unfold(state, |mut st| async move {
        loop {
            if let Some(item) = st.ready.pop_front() {
                return Some((item, st));
            }
            if st.ended {
                return None;
            }
            match tokio::time::timeout(st.idle, st.body.next()).await {
                Err(_) => {
                    st.ended = true;
                    st.ready
                        .push_back(Err(ClientError::Timeout { after: st.idle }));
                }
                Ok(None) => st.ended = true,
                Ok(Some(Err(e))) => {
                    st.ended = true;
                    st.ready.push_back(Err(from_reqwest(&st.addr, e)));
                }
                Ok(Some(Ok(chunk))) => {
                    let mut msgs = Vec::new();
                    let fed = st.decoder.feed(chunk.as_ref(), &mut msgs);
                    for m in msgs {
                        st.ready.push_back(to_item(m, &st.request));
                    }
                    if let Err(source) = fed {
                        st.ended = true;
                        st.ready.push_back(Err(ClientError::Decode {
                            request: st.request.clone(),
                            source,
                        }));
                    }
                }
            }
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use novacron_model::{EventKind, Name, Timestamp, VmId};

    fn decode(chunks: &[&[u8]]) -> Vec<SseMessage> {
        let mut d = SseDecoder::new(64);
        let mut out = Vec::new();
        for c in chunks {
            d.feed(c, &mut out).unwrap();
        }
        out
    }

    fn msg(event: &str, data: &str) -> SseMessage {
        SseMessage {
            event: event.to_owned(),
            data: data.to_owned(),
        }
    }

    #[test]
    fn messages_end_at_a_blank_line_and_keep_their_event_name() {
        let out = decode(&[b"event: vm_created\nid: 3\ndata: {\"a\":1}\n\n"]);
        assert_eq!(out, vec![msg("vm_created", "{\"a\":1}")]);
    }

    #[test]
    fn lines_split_across_chunks_and_any_line_ending_are_read() {
        let out = decode(&[b"da", b"ta: x\r", b"\n\r\n", b"data:y\rdata: z\r\r"]);
        assert_eq!(out, vec![msg("message", "x"), msg("message", "y\nz")]);
    }

    #[test]
    fn comments_and_messages_without_data_yield_nothing() {
        let out = decode(&[b":keep-alive\n\n", b"event: x\n\n", b"retry: 10\n\n"]);
        assert_eq!(out, vec![]);
        // The event name of a message without data does not leak into the next one.
        let out = decode(&[b"event: x\n\ndata: 1\n\n"]);
        assert_eq!(out, vec![msg("message", "1")]);
    }

    #[test]
    fn an_unfinished_message_is_not_emitted() {
        assert_eq!(decode(&[b"data: 1\n"]), vec![]);
    }

    #[test]
    fn long_lines_and_long_data_are_refused() {
        let mut d = SseDecoder::new(16);
        let mut out = Vec::new();
        let e = d.feed(&[b'a'; 17], &mut out).unwrap_err();
        assert!(matches!(e, DecodeError::LineTooLong { limit: 16 }), "{e:?}");
        let mut d = SseDecoder::new(16);
        let e = d
            .feed(b"data: 0123456789\ndata: 0123456789\n", &mut out)
            .unwrap_err();
        assert!(matches!(e, DecodeError::LineTooLong { .. }), "{e:?}");
        let mut d = SseDecoder::new(16);
        let e = d.feed(b"data: \xff\n", &mut out).unwrap_err();
        assert!(matches!(e, DecodeError::NotUtf8(_)), "{e:?}");
    }

    fn created(seq: u64) -> Event {
        Event {
            seq,
            time: Timestamp(1_795_000_000_000),
            tenant: Some(Name::new("t").unwrap()),
            kind: EventKind::VmCreated {
                vm: VmId::random(),
                name: Name::new("web").unwrap(),
            },
        }
    }

    async fn collect(chunks: Vec<Vec<u8>>) -> Vec<Result<Event, ClientError>> {
        let body = stream::iter(chunks.into_iter().map(Ok::<_, reqwest::Error>));
        event_stream(body, Duration::from_secs(5), "GET /e".into(), "h".into())
            .collect()
            .await
    }

    #[tokio::test]
    async fn the_stream_yields_events_lag_notices_and_bad_messages() {
        let (a, b) = (created(1), created(2));
        let text = format!(
            ": ping\n\nevent: vm_created\ndata: {}\n\nevent: lagged\ndata: 7\n\ndata: {{\"seq\":\n\n\
             event: vm_created\ndata: {}\n\n",
            serde_json::to_string(&a).unwrap(),
            serde_json::to_string(&b).unwrap()
        );
        let bytes = text.into_bytes();
        let (x, y) = bytes.split_at(37);
        let items = collect(vec![x.to_vec(), y.to_vec()]).await;
        assert_eq!(items.len(), 4, "{items:?}");
        let mut it = items.into_iter();
        assert_eq!(it.next().unwrap().unwrap(), a);
        assert!(matches!(
            it.next().unwrap(),
            Err(ClientError::Lagged { missed: 7 })
        ));
        assert!(matches!(
            it.next().unwrap(),
            Err(ClientError::Decode {
                source: DecodeError::Json(_),
                ..
            })
        ));
        assert_eq!(it.next().unwrap().unwrap(), b);
    }

    #[tokio::test]
    async fn an_oversized_line_ends_the_stream() {
        let good = format!("data: {}\n\n", serde_json::to_string(&created(1)).unwrap());
        let huge = vec![b'x'; MAX_SSE_LINE + 1];
        let items = collect(vec![good.into_bytes(), huge, b"\n\n".to_vec()]).await;
        assert_eq!(items.len(), 2, "{items:?}");
        assert!(items[0].is_ok());
        assert!(matches!(
            items[1],
            Err(ClientError::Decode {
                source: DecodeError::LineTooLong { .. },
                ..
            })
        ));
    }

    #[tokio::test]
    async fn a_silent_server_times_the_stream_out() {
        let body = stream::pending::<Result<Vec<u8>, reqwest::Error>>();
        let idle = Duration::from_millis(20);
        let items: Vec<_> = event_stream(body, idle, "GET /e".into(), "h".into())
            .collect()
            .await;
        assert_eq!(items.len(), 1);
        assert!(matches!(items[0], Err(ClientError::Timeout { .. })));
    }
}
