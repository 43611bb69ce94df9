//! NovaCron REST API (`/api/v1`): request and response types, the axum server over a
//! [`NodeService`], bearer-token auth, the OpenAPI document, Prometheus metrics, and the typed
//! [`client::Client`] the CLI uses.
//!
//! ```text
//!  HTTP ─► extractors (Caller, ApiJson) ─► handler ─► NodeService ─► Result ─► ApiError / JSON
//! ```

pub mod client;
pub mod dwcp_flags;
pub mod error;
pub mod extract;
pub mod latency;
pub mod metrics;
pub mod migration;
pub mod routes;
pub mod server;
pub mod service;
pub mod types;

pub use error::ApiError;
pub use server::{AppState, app, openapi};
pub use service::{
    BoxFuture, Caller, MigrationMetrics, NodeMetrics, NodeService, ProcessMetrics, ServiceError,
};
