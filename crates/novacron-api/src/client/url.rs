//! The API's base URL and the request URLs built on it. Every path segment a caller gives (a VM
//! name or id, an image name) is percent-encoded as one segment, so it can never add a segment,
//! a query or a fragment.

use super::ClientError;
use reqwest::Url;

/// The base URL of an API server: `http://HOST:PORT` or `https://HOST:PORT`, optionally with a
/// path prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BaseUrl {
    url: Url,
}

/// Why a path segment is refused: these would change the path instead of naming a resource.
const DOT_SEGMENT: &str = "a path segment may not be empty, `.` or `..`";

impl BaseUrl {
    /// Reads `http[s]://HOST:PORT[/PREFIX]`; a bare `HOST:PORT` means `http://HOST:PORT`.
    ///
    /// # Errors
    /// [`ClientError::InvalidUrl`] for anything else: another scheme, no host, a query, a
    /// fragment, or credentials in the URL.
    pub fn parse(s: &str) -> Result<Self, ClientError> {
        let invalid = |reason| ClientError::InvalidUrl {
            url: s.to_owned(),
            reason,
        };
        let text = s.trim();
        let full = if text.contains("://") {
            text.to_owned()
        } else {
            format!("http://{text}")
        };
        let url =
            Url::parse(&full).map_err(|_| invalid("not a URL (expected http://HOST:PORT)"))?;
        match url.scheme() {
            "http" | "https" => {}
            _ => return Err(invalid("the scheme must be http or https")),
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(invalid("no host"));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(invalid("a base URL has no query or fragment"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(invalid("credentials do not belong in the URL; use a token"));
        }
        Ok(Self { url })
    }

    /// The base URL without a trailing `/`, for messages.
    #[must_use]
    pub fn as_str(&self) -> &str {
        self.url.as_str().trim_end_matches('/')
    }

    /// The URL of `segments` under the base, each percent-encoded as one segment.
    ///
    /// # Errors
    /// [`ClientError::InvalidUrl`] when a segment is empty, `.` or `..`.
    pub fn endpoint(&self, segments: &[&str]) -> Result<Url, ClientError> {
        if let Some(bad) = segments
            .iter()
            .find(|s| s.is_empty() || **s == "." || **s == "..")
        {
            return Err(ClientError::InvalidUrl {
                url: (*bad).to_owned(),
                reason: DOT_SEGMENT,
            });
        }
        let mut url = self.url.clone();
        url.path_segments_mut()
            .map_err(|()| ClientError::InvalidUrl {
                url: self.url.to_string(),
                reason: "the URL cannot have a path",
            })?
            .pop_if_empty()
            .extend(segments);
        Ok(url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(s: &str) -> BaseUrl {
        BaseUrl::parse(s).unwrap()
    }

    #[test]
    fn endpoints_join_the_base_and_segments() {
        let b = base("http://127.0.0.1:8640");
        assert_eq!(b.as_str(), "http://127.0.0.1:8640");
        let u = b.endpoint(&["api", "v1", "vms", "web-1", "start"]).unwrap();
        assert_eq!(u.as_str(), "http://127.0.0.1:8640/api/v1/vms/web-1/start");
        let u = base("http://h:1/").endpoint(&["healthz"]).unwrap();
        assert_eq!(u.as_str(), "http://h:1/healthz");
    }

    #[test]
    fn a_base_path_prefix_is_kept() {
        let b = base("http://h:1/novacron/");
        let u = b.endpoint(&["api", "v1", "node"]).unwrap();
        assert_eq!(u.as_str(), "http://h:1/novacron/api/v1/node");
        let b = base("http://h:1/novacron");
        let u = b.endpoint(&["api", "v1", "node"]).unwrap();
        assert_eq!(u.as_str(), "http://h:1/novacron/api/v1/node");
    }

    #[test]
    fn user_segments_are_percent_encoded_as_one_segment() {
        let b = base("http://h:1");
        let u = b.endpoint(&["api", "v1", "vms", "a/b?c#d e%"]).unwrap();
        assert_eq!(u.as_str(), "http://h:1/api/v1/vms/a%2Fb%3Fc%23d%20e%25");
        assert_eq!(u.path_segments().unwrap().count(), 4);
        assert_eq!(u.query(), None);
        let u = b.endpoint(&["api", "v1", "images", "é"]).unwrap();
        assert_eq!(u.path(), "/api/v1/images/%C3%A9");
    }

    #[test]
    fn dot_and_empty_segments_are_refused() {
        let b = base("http://h:1");
        for bad in ["", ".", ".."] {
            let e = b.endpoint(&["api", "v1", "vms", bad]).unwrap_err();
            assert!(
                matches!(e, ClientError::InvalidUrl { reason, .. } if reason == DOT_SEGMENT),
                "{bad:?}"
            );
        }
        assert!(b.endpoint(&["api", "v1", "vms", "..a"]).is_ok());
    }

    #[test]
    fn a_bare_host_and_port_means_http() {
        assert_eq!(base("127.0.0.1:8640").as_str(), "http://127.0.0.1:8640");
        assert_eq!(base("localhost:8640").as_str(), "http://localhost:8640");
        assert_eq!(base(" [::1]:8640 ").as_str(), "http://[::1]:8640");
    }

    #[test]
    fn https_is_accepted() {
        let u = base("https://h:1").endpoint(&["healthz"]).unwrap();
        assert_eq!(u.as_str(), "https://h:1/healthz");
    }

    #[test]
    fn other_schemes_and_odd_urls_are_refused() {
        for (bad, why) in [
            ("ftp://h:1", "scheme"),
            ("http://", "URL"),
            ("http://h:1/?x=1", "query"),
            ("http://h:1/#top", "fragment"),
            ("http://u:p@h:1", "credentials"),
            ("not a url", "URL"),
        ] {
            let e = BaseUrl::parse(bad).unwrap_err();
            assert!(e.to_string().contains(why), "{bad}: {e}");
        }
    }
}
