//! The node's DWCP feature flags: `GET` and `PUT /api/v1/node/dwcp-flags` (admin).

use super::{Client, ClientError, NO_BODY};
use crate::dwcp_flags::{DwcpFlags, DwcpFlagsResponse};
use reqwest::Method;

impl Client {
    /// `GET /api/v1/node/dwcp-flags`: the flags in force and what they turn on for the node.
    ///
    /// # Errors
    /// [`ClientError::Api`] 403 for a role below admin, 503 when the node takes no part in
    /// migrations; any other [`ClientError`].
    pub async fn dwcp_flags(&self) -> Result<DwcpFlagsResponse, ClientError> {
        self.json(Method::GET, &["node", "dwcp-flags"], NO_BODY)
            .await
    }

    /// `PUT /api/v1/node/dwcp-flags`: replaces the flags (and the node's flags file).
    ///
    /// # Errors
    /// [`ClientError::Api`] 400 for a document the node refuses, 403 for a role below admin,
    /// 503 when the node takes no part in migrations or could not write its flags file (the
    /// flags are then unchanged); any other [`ClientError`].
    pub async fn put_dwcp_flags(
        &self,
        flags: &DwcpFlags,
    ) -> Result<DwcpFlagsResponse, ClientError> {
        self.json(Method::PUT, &["node", "dwcp-flags"], Some(flags))
            .await
    }
}
