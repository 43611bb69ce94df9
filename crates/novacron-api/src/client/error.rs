//! [`ClientError`]: what a call of the [`crate::client::Client`] can fail with, and the decoding
//! of the API's JSON error answers.

use crate::types::ErrorBody;
use std::time::Duration;

/// Longest error text kept from an answer that is not the API's JSON error body, in
/// characters.
pub const MAX_ERROR_TEXT: usize = 512;

/// A failed call.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server could not be reached: refused, no route, name not resolved, connect timeout.
    #[error("could not connect to {addr}")]
    Connect {
        /// The base URL of the API.
        addr: String,
        /// What the connection attempt failed with.
        #[source]
        source: reqwest::Error,
    },
    /// The connection failed after it was made (closed early, reset, malformed HTTP).
    #[error("the exchange with {addr} failed")]
    Transport {
        /// The base URL of the API.
        addr: String,
        /// What the request failed with.
        #[source]
        source: reqwest::Error,
    },
    /// The server answered with an error status.
    #[error("{message} ({status} {error})")]
    Api {
        /// HTTP status.
        status: u16,
        /// Stable machine-readable code (`not_found`, `conflict`, ...); when the answer was not
        /// the API's JSON error body, the status reason in snake case (`bad_gateway`).
        error: String,
        /// What went wrong, for people; the answer's text when it was not the JSON body.
        message: String,
        /// The request field at fault, when the server named one.
        field: Option<String>,
    },
    /// The answer could not be read as what the route returns.
    #[error("could not read the answer to {request}")]
    Decode {
        /// Method and path of the request (`GET /api/v1/vms`).
        request: String,
        /// What is wrong with the answer.
        #[source]
        source: DecodeError,
    },
    /// No answer (or, for the event stream, no data) within the deadline.
    #[error("no answer from the server within {} s", .after.as_secs_f64())]
    Timeout {
        /// How long the client waited.
        after: Duration,
    },
    /// The base URL, or a path segment given to a call, cannot make a request URL.
    #[error("invalid URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL or segment at fault.
        url: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// The TLS options cannot make a configuration (bad PEM, a key that does not fit).
    #[error("invalid TLS options")]
    Tls(#[from] super::TlsConfigError),
    /// The token cannot be sent in an HTTP header (control characters, non-ASCII).
    #[error("the API token holds characters that cannot be sent in an HTTP header")]
    InvalidToken,
    /// The event stream dropped events this client was too slow to take; the stream goes on.
    #[error("the event stream skipped {missed} events the client was too slow to take")]
    Lagged {
        /// How many events were lost.
        missed: u64,
    },
}

/// Why an answer could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The JSON does not fit the expected type.
    #[error("unexpected JSON")]
    Json(#[from] serde_json::Error),
    /// Text that is not UTF-8.
    #[error("the text is not UTF-8")]
    NotUtf8(#[from] std::str::Utf8Error),
    /// The body is larger than the client reads.
    #[error("the answer is larger than {limit} bytes")]
    TooLarge {
        /// Limit in bytes.
        limit: usize,
    },
    /// A line of the event stream is longer than the client reads.
    #[error("an event-stream line is longer than {limit} bytes")]
    LineTooLong {
        /// Limit in bytes.
        limit: usize,
    },
    /// A `lagged` event whose data is not a count.
    #[error("a lagged event carries {data:?}, not a count")]
    BadCount {
        /// The data received.
        data: String,
    },
}

impl ClientError {
    /// The HTTP status of an [`ClientError::Api`] answer.
    #[must_use]
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api { status, .. } => Some(*status),
            Self::Connect { .. }
            | Self::Transport { .. }
            | Self::Decode { .. }
            | Self::Timeout { .. }
            | Self::InvalidUrl { .. }
            | Self::Tls(_)
            | Self::InvalidToken
            | Self::Lagged { .. } => None,
        }
    }

    /// The server answered 404.
    #[must_use]
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }
}

/// A transport failure of a request to `addr`: [`ClientError::Connect`] when no connection was
/// made, [`ClientError::Transport`] otherwise.
#[must_use]
pub fn from_reqwest(addr: &str, e: reqwest::Error) -> ClientError {
    // The URL is already in the message through `addr` and the request label.
    let source = e.without_url();
    if source.is_connect() {
        ClientError::Connect {
            addr: addr.to_owned(),
            source,
        }
    } else {
        ClientError::Transport {
            addr: addr.to_owned(),
            source,
        }
    }
}

/// The error a non-2xx answer carries: the API's [`ErrorBody`] when the body is that JSON,
/// otherwise the body's text (cut to [`MAX_ERROR_TEXT`] characters) under the status reason.
#[must_use]
pub fn api_error(status: u16, body: &[u8]) -> ClientError {
    if let Ok(b) = serde_json::from_slice::<ErrorBody>(body) {
        return ClientError::Api {
            status,
            error: b.error,
            message: b.message,
            field: b.field,
        };
    }
    let reason = reqwest::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason());
    let error = reason.map_or_else(
        || format!("http_{status}"),
        |r| r.to_ascii_lowercase().replace([' ', '-'], "_"),
    );
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    let message = if text.is_empty() {
        reason.map_or_else(|| format!("HTTP status {status}"), str::to_owned)
    } else if text.chars().count() > MAX_ERROR_TEXT {
        let cut: String = text.chars().take(MAX_ERROR_TEXT).collect();
        format!("{cut}...")
    } else {
        text.to_owned()
    };
    ClientError::Api {
        status,
        error,
        message,
        field: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(e: ClientError) -> (u16, String, String, Option<String>) {
        match e {
            ClientError::Api {
                status,
                error,
                message,
                field,
            } => (status, error, message, field),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn json_error_bodies_are_decoded_with_their_field() {
        let body = br#"{"error":"invalid_field","message":"memory: too small","field":"memory"}"#;
        let (status, error, message, field) = parts(api_error(422, body));
        assert_eq!(status, 422);
        assert_eq!(error, "invalid_field");
        assert_eq!(message, "memory: too small");
        assert_eq!(field.as_deref(), Some("memory"));
    }

    #[test]
    fn json_error_bodies_without_a_field_decode() {
        let body = br#"{"error":"not_found","message":"vm \"a\" not found"}"#;
        let e = api_error(404, body);
        assert!(e.is_not_found());
        assert_eq!(e.to_string(), r#"vm "a" not found (404 not_found)"#);
    }

    #[test]
    fn other_bodies_fall_back_to_their_text_under_the_status_reason() {
        let (_, error, message, field) = parts(api_error(502, b"upstream down\n"));
        assert_eq!(error, "bad_gateway");
        assert_eq!(message, "upstream down");
        assert_eq!(field, None);
        let (_, error, message, _) = parts(api_error(503, b""));
        assert_eq!(error, "service_unavailable");
        assert_eq!(message, "Service Unavailable");
        let (_, error, message, _) = parts(api_error(599, b"{\"x\":1}"));
        assert_eq!(error, "http_599");
        assert_eq!(message, "{\"x\":1}");
    }

    #[test]
    fn long_error_texts_are_cut() {
        let body = "x".repeat(MAX_ERROR_TEXT * 3);
        let (_, _, message, _) = parts(api_error(500, body.as_bytes()));
        assert_eq!(message.chars().count(), MAX_ERROR_TEXT + 3);
        assert!(message.ends_with("..."));
    }
}
