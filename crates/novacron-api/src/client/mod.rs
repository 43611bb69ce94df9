//! Typed async client of `/api/v1`: one method per route, over `reqwest`.
//!
//! ```text
//!  Client::new(base, token) ─► method ─► URL (segments percent-encoded) + bearer token
//!      ─► send, read the body (bounded), all under a deadline
//!      ─► 2xx: decode the route's type │ other: ClientError::Api from the JSON ErrorBody
//! ```
//!
//! Every request has a deadline: [`DEFAULT_REQUEST_TIMEOUT`] (see [`Client::with_timeout`]),
//! and for the long poll of [`Client::wait_operation`] the wait plus [`WAIT_MARGIN`]. The event
//! stream of [`Client::events`] has no end, so it is bounded by silence instead
//! ([`EVENT_IDLE_TIMEOUT`]; the server sends keep-alives more often).
//!
//! `http://` and `https://` bases: [`BaseUrl`] is the one place that accepts a scheme, and
//! [`Client::with_tls`] says whom an `https://` server must be certified by ([`tls`]).

mod dwcp_flags;
mod error;
mod migrate;
mod sse;
pub mod tls;
mod url;

#[cfg(test)]
mod loopback_test;

pub use error::{ClientError, DecodeError, MAX_ERROR_TEXT, api_error, from_reqwest};
pub use sse::{MAX_SSE_LINE, SseDecoder, SseMessage, event_stream};
pub use tls::{TlsClientOptions, TlsConfigError};
pub use url::BaseUrl;

use crate::routes::operations::MAX_WAIT_SECS;
use crate::types::{
    ImageImportRequest, MAX_PAGE, NodeInfo, OperationResponse, TenantPutRequest, TenantResponse,
    TokenCreateRequest, TokenCreateResponse, VmAction, VmListResponse,
};
use futures_util::stream::BoxStream;
use novacron_model::{Event, Image, Operation, OperationId, Vm, VmSpec};
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderValue};
use reqwest::{Method, RequestBuilder, Url};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::time::Duration;

/// Longest wait for a TCP connection to the server.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default deadline of a request, from sending it to the end of the answer.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Time added to a long poll's wait for its request deadline.
pub const WAIT_MARGIN: Duration = Duration::from_secs(15);
/// Longest silence on the event stream before it is given up (the server sends a keep-alive
/// every 15 s).
pub const EVENT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest answer body the client reads, in bytes.
pub const MAX_ANSWER: usize = 32 << 20;
/// Largest part of an error answer the client reads, in bytes.
const MAX_ERROR_ANSWER: usize = 64 << 10;

/// The events of `GET /api/v1/events`; see [`event_stream`] for what its items mean.
pub type EventStream = BoxStream<'static, Result<Event, ClientError>>;

/// No request body.
const NO_BODY: Option<&()> = None;

/// A connection to one API server with one bearer token. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::Client,
    base: BaseUrl,
    auth: HeaderValue,
    timeout: Duration,
}

impl Client {
    /// A client of the API at `base_url` (`http://HOST:PORT`, or bare `HOST:PORT`) that
    /// presents `token`. Nothing is sent until a method is called. An `https://` base needs
    /// [`Client::with_tls`]: this client trusts no server certificate.
    ///
    /// # Errors
    /// [`ClientError::InvalidUrl`] for a base URL [`BaseUrl::parse`] refuses,
    /// [`ClientError::InvalidToken`] for a token that cannot go in a header.
    pub fn new(base_url: &str, token: &str) -> Result<Self, ClientError> {
        Self::build(base_url, token, None)
    }

    /// A client of the API at `base_url` (`https://HOST:PORT` or `http://HOST:PORT`) that
    /// trusts servers certified by `tls.ca_pem` alone and presents `token`, and the client
    /// certificate of `tls` when there is one.
    ///
    /// # Errors
    /// As [`Client::new`], and [`ClientError::Tls`] when `tls` cannot make a configuration.
    pub fn with_tls(
        base_url: &str,
        token: &str,
        tls: &TlsClientOptions,
    ) -> Result<Self, ClientError> {
        Self::build(base_url, token, Some(tls))
    }

    fn build(
        base_url: &str,
        token: &str,
        tls: Option<&TlsClientOptions>,
    ) -> Result<Self, ClientError> {
        let base = BaseUrl::parse(base_url)?;
        let mut auth = HeaderValue::from_str(&format!("Bearer {}", token.trim()))
            .map_err(|_| ClientError::InvalidToken)?;
        auth.set_sensitive(true);
        let builder = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            // The API is reached directly; a proxy from the environment is not for it.
            .no_proxy()
            .user_agent(concat!("novacron/", env!("CARGO_PKG_VERSION")));
        let http = tls::configure(builder, tls)?
            .build()
            .map_err(|e| from_reqwest(base.as_str(), e))?;
        Ok(Self {
            http,
            base,
            auth,
            timeout: DEFAULT_REQUEST_TIMEOUT,
        })
    }

    /// The same client with another deadline for each request (long polls add their wait).
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The base URL, without a trailing `/`.
    #[must_use]
    pub fn base_url(&self) -> &str {
        self.base.as_str()
    }

    /// `GET /healthz` (no token needed): `Ok` while the daemon answers.
    ///
    /// # Errors
    /// Any [`ClientError`].
    pub async fn health(&self) -> Result<(), ClientError> {
        let url = self.base.endpoint(&["healthz"])?;
        let label = label(&Method::GET, &url);
        let rb = self.http.get(url);
        self.exchange(rb, &label, self.timeout).await.map(drop)
    }

    /// `GET /api/v1/node`: facts about the node and the caller's VM counts.
    ///
    /// # Errors
    /// Any [`ClientError`].
    pub async fn node_info(&self) -> Result<NodeInfo, ClientError> {
        self.json(Method::GET, &["node"], NO_BODY).await
    }

    /// All the caller's VMs, sorted by name: `GET /api/v1/vms`, page after page.
    ///
    /// # Errors
    /// Any [`ClientError`].
    pub async fn list_vms(&self) -> Result<Vec<Vm>, ClientError> {
        let mut all = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self.list_vms_page(after.as_deref(), MAX_PAGE).await?;
            all.extend(page.items);
            match page.next {
                // A server that repeats a cursor would loop forever; stop instead.
                Some(next) if after.as_deref() != Some(next.as_str()) => after = Some(next),
                _ => return Ok(all),
            }
        }
    }

    /// One page of `GET /api/v1/vms`: at most `limit` VMs after the one named `after`.
    ///
    /// # Errors
    /// Any [`ClientError`].
    pub async fn list_vms_page(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<VmListResponse, ClientError> {
        let mut url = self.api_url(&["vms"])?;
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("limit", &limit.to_string());
            if let Some(a) = after {
                q.append_pair("after", a);
            }
        }
        self.json_at(Method::GET, url, NO_BODY).await
    }

    /// `POST /api/v1/vms`: creates a VM (stopped).
    ///
    /// # Errors
    /// [`ClientError::Api`] 409 when the name is taken or the quota is full, 422 for a field
    /// out of range (named in `field`); any other [`ClientError`].
    pub async fn create_vm(&self, spec: &VmSpec) -> Result<Vm, ClientError> {
        self.json(Method::POST, &["vms"], Some(spec)).await
    }

    /// `GET /api/v1/vms/{vm}`: one VM by id or name.
    ///
    /// # Errors
    /// [`ClientError::Api`] 404 when there is no such VM; any other [`ClientError`].
    pub async fn get_vm(&self, vm: &str) -> Result<Vm, ClientError> {
        self.json(Method::GET, &["vms", vm], NO_BODY).await
    }

    /// `DELETE /api/v1/vms/{vm}[?force=true]`: deletes a VM and its disks; a running VM only
    /// with `force`.
    ///
    /// # Errors
    /// [`ClientError::Api`] 404, or 409 for a running VM without `force`; any other
    /// [`ClientError`].
    pub async fn delete_vm(&self, vm: &str, force: bool) -> Result<Operation, ClientError> {
        let mut url = self.api_url(&["vms", vm])?;
        if force {
            url.query_pairs_mut().append_pair("force", "true");
        }
        let answer: OperationResponse = self.json_at(Method::DELETE, url, NO_BODY).await?;
        Ok(answer.operation)
    }

    /// `POST /api/v1/vms/{vm}/{start|stop|pause|resume|restart}` (stop with its JSON body).
    ///
    /// # Errors
    /// [`ClientError::Api`] 404, or 409 when the VM's state does not allow the action; any
    /// other [`ClientError`].
    pub async fn vm_action(&self, vm: &str, action: &VmAction) -> Result<Operation, ClientError> {
        let (verb, body) = match action {
            VmAction::Start => ("start", None),
            VmAction::Stop(req) => ("stop", Some(req)),
            VmAction::Pause => ("pause", None),
            VmAction::Resume => ("resume", None),
            VmAction::Restart => ("restart", None),
        };
        let answer: OperationResponse = self.json(Method::POST, &["vms", vm, verb], body).await?;
        Ok(answer.operation)
    }

    /// `GET /api/v1/vms/{vm}/console[?lines=N]`: the last lines of the serial console (the
    /// server's default, 100, when `lines` is `None`).
    ///
    /// # Errors
    /// [`ClientError::Api`] 404, or 400 for more lines than the server gives; any other
    /// [`ClientError`].
    pub async fn console(&self, vm: &str, lines: Option<usize>) -> Result<String, ClientError> {
        let mut url = self.api_url(&["vms", vm, "console"])?;
        if let Some(n) = lines {
            url.query_pairs_mut().append_pair("lines", &n.to_string());
        }
        let label = label(&Method::GET, &url);
        let rb = self.request(Method::GET, url);
        let body = self.exchange(rb, &label, self.timeout).await?;
        std::str::from_utf8(&body)
            .map(str::to_owned)
            .map_err(|e| ClientError::Decode {
                request: label,
                source: e.into(),
            })
    }

    /// `GET /api/v1/images`: images on the node.
    ///
    /// # Errors
    /// Any [`ClientError`].
    pub async fn list_images(&self) -> Result<Vec<Image>, ClientError> {
        self.json(Method::GET, &["images"], NO_BODY).await
    }

    /// `GET /api/v1/images/{name}`.
    ///
    /// # Errors
    /// [`ClientError::Api`] 404; any other [`ClientError`].
    pub async fn get_image(&self, name: &str) -> Result<Image, ClientError> {
        self.json(Method::GET, &["images", name], NO_BODY).await
    }

    /// `POST /api/v1/images`: starts copying an image from files on the node (admin).
    ///
    /// # Errors
    /// [`ClientError::Api`] 403, 409 when the name is taken, 422 for a bad path; any other
    /// [`ClientError`].
    pub async fn import_image(&self, req: &ImageImportRequest) -> Result<Operation, ClientError> {
        let answer: OperationResponse = self.json(Method::POST, &["images"], Some(req)).await?;
        Ok(answer.operation)
    }

    /// `DELETE /api/v1/images/{name}`: deletes an image no VM uses (admin).
    ///
    /// # Errors
    /// [`ClientError::Api`] 404, or 409 while a VM uses it; any other [`ClientError`].
    pub async fn delete_image(&self, name: &str) -> Result<(), ClientError> {
        let url = self.api_url(&["images", name])?;
        let label = label(&Method::DELETE, &url);
        let rb = self.request(Method::DELETE, url);
        self.exchange(rb, &label, self.timeout).await.map(drop)
    }

    /// `GET /api/v1/operations/{id}`.
    ///
    /// # Errors
    /// [`ClientError::Api`] 404; any other [`ClientError`].
    pub async fn operation(&self, id: OperationId) -> Result<Operation, ClientError> {
        let id = id.to_string();
        self.json(Method::GET, &["operations", &id], NO_BODY).await
    }

    /// `GET /api/v1/operations/{id}/wait?timeout_secs=N`: the operation once it has ended, or
    /// as it is after `timeout` (rounded up to whole seconds, at most [`MAX_WAIT_SECS`]).
    ///
    /// # Errors
    /// [`ClientError::Api`] 404; [`ClientError::Timeout`] when the server does not answer
    /// within the wait plus [`WAIT_MARGIN`]; any other [`ClientError`].
    pub async fn wait_operation(
        &self,
        id: OperationId,
        timeout: Duration,
    ) -> Result<Operation, ClientError> {
        let secs = wait_secs(timeout);
        let id = id.to_string();
        let mut url = self.api_url(&["operations", &id, "wait"])?;
        url.query_pairs_mut()
            .append_pair("timeout_secs", &secs.to_string());
        let deadline = Duration::from_secs(secs) + WAIT_MARGIN;
        self.json_within(Method::GET, url, NO_BODY, deadline).await
    }

    /// `GET /api/v1/events`: events of the caller's tenant and node-wide ones, from now on.
    ///
    /// # Errors
    /// Any [`ClientError`] while the stream is being opened; later failures are items of the
    /// stream (see [`event_stream`]).
    pub async fn events(&self) -> Result<EventStream, ClientError> {
        let url = self.api_url(&["events"])?;
        let label = label(&Method::GET, &url);
        let rb = self
            .request(Method::GET, url)
            .header(ACCEPT, "text/event-stream");
        let after = self.timeout;
        let resp = tokio::time::timeout(after, rb.send())
            .await
            .map_err(|_| ClientError::Timeout { after })?
            .map_err(|e| from_reqwest(self.base.as_str(), e))?;
        let status = resp.status();
        if !status.is_success() {
            let body = tokio::time::timeout(after, read_error_body(resp))
                .await
                .map_err(|_| ClientError::Timeout { after })?;
            return Err(api_error(status.as_u16(), &body));
        }
        Ok(event_stream(
            Box::pin(resp.bytes_stream()),
            EVENT_IDLE_TIMEOUT,
            label,
            self.base.as_str().to_owned(),
        ))
    }

    /// `GET /api/v1/tenants`: all tenants with their quota and use (admin).
    ///
    /// # Errors
    /// [`ClientError::Api`] 403; any other [`ClientError`].
    pub async fn list_tenants(&self) -> Result<Vec<TenantResponse>, ClientError> {
        self.json(Method::GET, &["tenants"], NO_BODY).await
    }

    /// `POST /api/v1/tenants`: creates a tenant or sets its quota (admin).
    ///
    /// # Errors
    /// [`ClientError::Api`] 403 or 422; any other [`ClientError`].
    pub async fn put_tenant(&self, req: &TenantPutRequest) -> Result<TenantResponse, ClientError> {
        self.json(Method::POST, &["tenants"], Some(req)).await
    }

    /// `POST /api/v1/tokens`: issues a token (admin). The secret is in this answer only.
    ///
    /// # Errors
    /// [`ClientError::Api`] 403, 404 for an unknown tenant, 422 for a long label; any other
    /// [`ClientError`].
    pub async fn create_token(
        &self,
        req: &TokenCreateRequest,
    ) -> Result<TokenCreateResponse, ClientError> {
        self.json(Method::POST, &["tokens"], Some(req)).await
    }

    /// The URL of `/api/v1/{segments}`.
    fn api_url(&self, segments: &[&str]) -> Result<Url, ClientError> {
        let mut all = Vec::with_capacity(segments.len() + 2);
        all.extend_from_slice(&["api", "v1"]);
        all.extend_from_slice(segments);
        self.base.endpoint(&all)
    }

    fn request(&self, method: Method, url: Url) -> RequestBuilder {
        self.http
            .request(method, url)
            .header(AUTHORIZATION, self.auth.clone())
    }

    async fn json<T, B>(
        &self,
        method: Method,
        segments: &[&str],
        body: Option<&B>,
    ) -> Result<T, ClientError>
    where
        T: DeserializeOwned,
        B: Serialize + ?Sized,
    {
        let url = self.api_url(segments)?;
        self.json_at(method, url, body).await
    }

    async fn json_at<T, B>(
        &self,
        method: Method,
        url: Url,
        body: Option<&B>,
    ) -> Result<T, ClientError>
    where
        T: DeserializeOwned,
        B: Serialize + ?Sized,
    {
        self.json_within(method, url, body, self.timeout).await
    }

    async fn json_within<T, B>(
        &self,
        method: Method,
        url: Url,
        body: Option<&B>,
        deadline: Duration,
    ) -> Result<T, ClientError>
    where
        T: DeserializeOwned,
        B: Serialize + ?Sized,
    {
        let label = label(&method, &url);
        let mut rb = self.request(method, url);
        if let Some(body) = body {
            rb = rb.json(body);
        }
        let bytes = self.exchange(rb, &label, deadline).await?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode {
            request: label,
            source: e.into(),
        })
    }

    /// Sends `rb` and reads the answer, all within `deadline`: the body of a 2xx answer, or
    /// the [`ClientError::Api`] of any other.
    async fn exchange(
        &self,
        rb: RequestBuilder,
        label: &str,
        deadline: Duration,
    ) -> Result<Vec<u8>, ClientError> {
        self.exchange_with_headers(rb, label, deadline)
            .await
            .map(|(_, body)| body)
    }

    /// [`Self::exchange`], keeping the answer's headers too.
    async fn exchange_with_headers(
        &self,
        rb: RequestBuilder,
        label: &str,
        deadline: Duration,
    ) -> Result<(reqwest::header::HeaderMap, Vec<u8>), ClientError> {
        let addr = self.base.as_str();
        let run = async {
            let mut resp = rb.send().await.map_err(|e| from_reqwest(addr, e))?;
            let status = resp.status();
            if !status.is_success() {
                let body = read_error_body(resp).await;
                return Err(api_error(status.as_u16(), &body));
            }
            let headers = resp.headers().clone();
            let mut body = Vec::new();
            while let Some(chunk) = resp.chunk().await.map_err(|e| from_reqwest(addr, e))? {
                if body.len() + chunk.len() > MAX_ANSWER {
                    return Err(ClientError::Decode {
                        request: label.to_owned(),
                        source: DecodeError::TooLarge { limit: MAX_ANSWER },
                    });
                }
                body.extend_from_slice(&chunk);
            }
            Ok((headers, body))
        };
        tokio::time::timeout(deadline, run)
            .await
            .map_err(|_| ClientError::Timeout { after: deadline })?
    }
}

/// The start of an error answer's body: the error is about the status, so a body that breaks
/// off or runs long still gives what it has.
async fn read_error_body(mut resp: reqwest::Response) -> Vec<u8> {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = resp.chunk().await {
        let room = MAX_ERROR_ANSWER.saturating_sub(body.len());
        body.extend_from_slice(chunk.get(..room.min(chunk.len())).unwrap_or_default());
        if body.len() >= MAX_ERROR_ANSWER {
            break;
        }
    }
    body
}

/// `GET /api/v1/vms`: method and path, for errors.
fn label(method: &Method, url: &Url) -> String {
    format!("{method} {}", url.path())
}

/// Whole seconds of a long poll: `timeout` rounded up, at most [`MAX_WAIT_SECS`].
fn wait_secs(timeout: Duration) -> u64 {
    let secs = timeout
        .as_secs()
        .saturating_add(u64::from(timeout.subsec_nanos() > 0));
    secs.min(MAX_WAIT_SECS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_poll_waits_round_up_and_stay_within_the_server_limit() {
        assert_eq!(wait_secs(Duration::ZERO), 0);
        assert_eq!(wait_secs(Duration::from_millis(1)), 1);
        assert_eq!(wait_secs(Duration::from_secs(30)), 30);
        assert_eq!(wait_secs(Duration::from_millis(30_500)), 31);
        assert_eq!(wait_secs(Duration::from_secs(3600)), MAX_WAIT_SECS);
    }

    #[test]
    fn tokens_that_cannot_be_a_header_are_refused() {
        let e = Client::new("http://127.0.0.1:1", "a\nb").unwrap_err();
        assert!(matches!(e, ClientError::InvalidToken), "{e:?}");
        let e = Client::new("ftp://127.0.0.1:1", "t").unwrap_err();
        assert!(matches!(e, ClientError::InvalidUrl { .. }), "{e:?}");
        let c = Client::new("127.0.0.1:1", " t\n").unwrap();
        assert_eq!(c.base_url(), "http://127.0.0.1:1");
        assert!(!format!("{c:?}").contains("Bearer t"));
    }

    #[tokio::test]
    async fn an_unreachable_server_is_a_connect_error() {
        // Bind then drop a listener so the port is (almost certainly) closed.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let c = Client::new(&format!("http://127.0.0.1:{port}"), "t").unwrap();
        let e = c.list_vms().await.unwrap_err();
        assert!(matches!(e, ClientError::Connect { .. }), "{e:?}");
        assert!(
            e.to_string()
                .contains("could not connect to http://127.0.0.1:")
        );
    }
}
