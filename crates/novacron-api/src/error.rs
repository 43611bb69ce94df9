//! [`ApiError`]: every failure of a request, with its status and JSON body. One exhaustive
//! `match` picks the status.

use crate::service::ServiceError;
use crate::types::ErrorBody;
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// A failed request.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// The body is not JSON, or not the JSON expected.
    #[error("{message}")]
    BadJson {
        /// The field at fault, when known (`spec.vcpus`).
        field: Option<String>,
        /// What is wrong.
        message: String,
    },
    /// The body is larger than the API accepts.
    #[error("request body is larger than {limit} bytes")]
    TooLarge {
        /// Limit in bytes.
        limit: usize,
    },
    /// The body is not declared `application/json`.
    #[error("expected a JSON body with content-type application/json")]
    NotJson,
    /// A path or query parameter is malformed.
    #[error("{message}")]
    BadParam {
        /// What is wrong.
        message: String,
    },
    /// No bearer token, or an unknown one.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// The token's role does not allow the action.
    #[error("role {have} may not do this (needs {need})")]
    Forbidden {
        /// The caller's role.
        have: novacron_model::Role,
        /// The least role that may.
        need: novacron_model::Role,
    },
    /// A call between nodes from a caller that is not one: no TLS client certificate of the
    /// cluster CA.
    #[error(
        "this call is for nodes of the cluster: connect over TLS with a node certificate of the cluster CA"
    )]
    NodeOnly,
    /// The node refused or failed.
    #[error(transparent)]
    Service(#[from] ServiceError),
}

impl ApiError {
    /// HTTP status, stable code and field of this error.
    #[must_use]
    pub fn parts(&self) -> (StatusCode, &'static str, Option<String>) {
        match self {
            Self::BadJson { field, .. } => (StatusCode::BAD_REQUEST, "invalid_json", field.clone()),
            Self::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "too_large", None),
            Self::NotJson => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "not_json", None),
            Self::BadParam { .. } => (StatusCode::BAD_REQUEST, "invalid_parameter", None),
            Self::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized", None),
            Self::Forbidden { .. } => (StatusCode::FORBIDDEN, "forbidden", None),
            Self::NodeOnly => (StatusCode::FORBIDDEN, "node_only", None),
            Self::Service(e) => match e {
                ServiceError::NotFound { .. } => (StatusCode::NOT_FOUND, "not_found", None),
                ServiceError::AlreadyExists { .. } => {
                    (StatusCode::CONFLICT, "already_exists", None)
                }
                ServiceError::Invalid { field, .. } => (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_field",
                    Some(field.clone()),
                ),
                ServiceError::Conflict(_) => (StatusCode::CONFLICT, "conflict", None),
                ServiceError::QuotaExceeded(_) => (StatusCode::CONFLICT, "quota_exceeded", None),
                ServiceError::Unavailable(_) => {
                    (StatusCode::SERVICE_UNAVAILABLE, "unavailable", None)
                }
                ServiceError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal", None),
            },
        }
    }

    /// The JSON body of this error.
    #[must_use]
    pub fn body(&self) -> ErrorBody {
        let (_, code, field) = self.parts();
        ErrorBody {
            error: code.to_owned(),
            message: self.to_string(),
            field,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, _, _) = self.parts();
        if status.is_server_error() {
            tracing::warn!(error = %self, "request failed");
        }
        (status, Json(self.body())).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use novacron_model::Role;

    #[test]
    fn each_error_maps_to_its_status_and_code() {
        let cases: Vec<(ApiError, u16, &str)> = vec![
            (
                ApiError::BadJson {
                    field: None,
                    message: "x".into(),
                },
                400,
                "invalid_json",
            ),
            (ApiError::TooLarge { limit: 1 }, 413, "too_large"),
            (ApiError::NotJson, 415, "not_json"),
            (
                ApiError::BadParam {
                    message: "x".into(),
                },
                400,
                "invalid_parameter",
            ),
            (ApiError::Unauthorized("x"), 401, "unauthorized"),
            (
                ApiError::Forbidden {
                    have: Role::Viewer,
                    need: Role::Operator,
                },
                403,
                "forbidden",
            ),
            (
                ServiceError::NotFound {
                    kind: "vm",
                    key: "a".into(),
                }
                .into(),
                404,
                "not_found",
            ),
            (
                ServiceError::AlreadyExists {
                    kind: "vm",
                    key: "a".into(),
                }
                .into(),
                409,
                "already_exists",
            ),
            (
                ServiceError::Invalid {
                    field: "vcpus".into(),
                    message: "x".into(),
                }
                .into(),
                422,
                "invalid_field",
            ),
            (ServiceError::Conflict("x".into()).into(), 409, "conflict"),
            (
                ServiceError::QuotaExceeded("x".into()).into(),
                409,
                "quota_exceeded",
            ),
            (
                ServiceError::Unavailable("x".into()).into(),
                503,
                "unavailable",
            ),
            (ServiceError::Internal("x".into()).into(), 500, "internal"),
        ];
        for (err, status, code) in cases {
            let (s, c, _) = err.parts();
            assert_eq!((s.as_u16(), c), (status, code), "{err:?}");
        }
    }

    #[test]
    fn invalid_field_errors_name_the_field() {
        let e: ApiError = ServiceError::Invalid {
            field: "memory".into(),
            message: "too small".into(),
        }
        .into();
        let body = e.body();
        assert_eq!(body.field.as_deref(), Some("memory"));
        assert_eq!(body.message, "memory: too small");
    }
}
