//! Extractors: [`ApiJson`] turns any body problem into an [`ApiError`] naming the field, and
//! [`Caller`] resolves the bearer token.

use crate::error::ApiError;
use crate::server::AppState;
use crate::service::Caller;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::request::Parts;
use novacron_model::Role;
use serde::de::DeserializeOwned;

/// Largest request body the API reads, in bytes.
pub const MAX_BODY: usize = 64 * 1024;

/// A JSON body, checked: content type, size, syntax, types, unknown fields. Its rejection is
/// an [`ApiError`], so a bad body gets the same JSON answer as any other error. An empty body
/// reads as `T::default()` where `T` has one (see [`ApiJsonOrDefault`]).
#[derive(Debug, Clone)]
pub struct ApiJson<T>(pub T);

/// Like [`ApiJson`], but an empty body (no content type needed) is `T::default()`.
#[derive(Debug, Clone)]
pub struct ApiJsonOrDefault<T>(pub T);

fn is_json(req: &Request) -> bool {
    req.headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
}

async fn body_bytes<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state).await.map_err(|e| match e {
        BytesRejection::FailedToBufferBody(_) => ApiError::TooLarge { limit: MAX_BODY },
        other => ApiError::BadJson {
            field: None,
            message: format!("could not read the body: {other}"),
        },
    })
}

/// Deserializes `bytes`, naming the field at fault. The body must be exactly one JSON value
/// (whitespace around it aside), as for `serde_json::from_slice`.
///
/// # Errors
/// [`ApiError::BadJson`] with the path of the first field that does not fit.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let field = (path != ".").then_some(path);
        let message = match (&field, inner.classify()) {
            (_, serde_json::error::Category::Syntax | serde_json::error::Category::Eof) => {
                format!("malformed JSON: {inner}")
            }
            (Some(f), _) => format!("{f}: {inner}"),
            (None, _) => inner.to_string(),
        };
        ApiError::BadJson { field, message }
    })?;
    // N.B. Deserializing stops after the value; without this check `{..}junk`, or two bodies
    // back to back, would be read as the first value alone.
    de.end().map_err(|e| ApiError::BadJson {
        field: None,
        message: format!("malformed JSON: {e}"),
    })?;
    Ok(value)
}

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(&req) {
            return Err(ApiError::NotJson);
        }
        let bytes = body_bytes(req, state).await?;
        parse_json(&bytes).map(Self)
    }
}

impl<S, T> FromRequest<S> for ApiJsonOrDefault<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Default,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let json = is_json(&req);
        let bytes = body_bytes(req, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self(T::default()));
        }
        if !json {
            return Err(ApiError::NotJson);
        }
        parse_json(&bytes).map(Self)
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .ok_or(ApiError::Unauthorized(
                "missing bearer token (Authorization: Bearer ...)",
            ))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(ApiError::Unauthorized(
                "malformed Authorization header: expected 'Bearer TOKEN'",
            ))?;
        state
            .svc
            .authenticate(token)
            .ok_or(ApiError::Unauthorized("unknown or revoked token"))
    }
}

impl Caller {
    /// Checks the caller's role includes `need`.
    ///
    /// # Errors
    /// [`ApiError::Forbidden`] otherwise.
    pub fn require(&self, need: Role) -> Result<(), ApiError> {
        if self.role.allows(need) {
            Ok(())
        } else {
            Err(ApiError::Forbidden {
                have: self.role,
                need,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use novacron_model::VmSpec;

    #[test]
    fn wrong_types_name_the_field() {
        let e = parse_json::<VmSpec>(br#"{"name":"a","vcpus":"two","memory":"1G","image":"i"}"#)
            .unwrap_err();
        let ApiError::BadJson { field, message } = e else {
            panic!("{e:?}")
        };
        assert_eq!(field.as_deref(), Some("vcpus"));
        assert!(
            message.starts_with("vcpus: invalid type: string \"two\""),
            "{message}"
        );
    }

    #[test]
    fn malformed_json_is_reported_as_such() {
        let e = parse_json::<VmSpec>(br#"{"name":"a","#).unwrap_err();
        assert!(e.to_string().starts_with("malformed JSON"), "{e}");
    }

    #[test]
    fn bytes_after_the_body_are_malformed_json() {
        let spec = br#"{"name":"a","vcpus":1,"memory":"1G","image":"i"}"#;
        assert!(parse_json::<VmSpec>(spec).is_ok());
        assert!(parse_json::<VmSpec>(&[b" \n", &spec[..], b" \r\n"].concat()).is_ok());
        for tail in [&b"x"[..], b"\0", b"{}", spec] {
            let body = [&spec[..], tail].concat();
            let e = parse_json::<VmSpec>(&body).unwrap_err();
            let ApiError::BadJson { field, message } = &e else {
                panic!("{e:?}")
            };
            assert_eq!(field, &None);
            assert!(message.starts_with("malformed JSON: trailing"), "{message}");
        }
    }

    #[test]
    fn unknown_fields_and_bad_values_are_named() {
        let e =
            parse_json::<VmSpec>(br#"{"name":"a","vcpus":1,"memory":"1G","image":"i","gpu":true}"#)
                .unwrap_err();
        assert!(e.to_string().contains("unknown field `gpu`"), "{e}");
        let e = parse_json::<VmSpec>(br#"{"name":"a","vcpus":1,"memory":"lots","image":"i"}"#)
            .unwrap_err();
        let ApiError::BadJson { field, .. } = &e else {
            panic!("{e:?}")
        };
        assert_eq!(field.as_deref(), Some("memory"));
        let e = parse_json::<VmSpec>(br#"{"name":"A B","vcpus":1,"memory":"1G","image":"i"}"#)
            .unwrap_err();
        assert!(e.to_string().starts_with("name: "), "{e}");
    }
}
