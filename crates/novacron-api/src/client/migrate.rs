//! Live migration calls: the operator's (`migrate`, `cancel`) and those between nodes.

use super::{Client, ClientError, NO_BODY, label};
use crate::migration::{
    COMMIT_METRIC, GUEST_RUNNING_METRIC, PeerCommitted, PeerImageAnswer, PeerImageOffer,
    PeerPrepareRequest, PeerPrepareResponse, SERVER_TIMING, VmMigrateRequest, server_timing_metric,
};
use crate::types::OperationResponse;
use novacron_model::{Image, Operation, OperationId};
use reqwest::Method;

impl Client {
    /// `POST /api/v1/vms/{vm}/migrate`: starts moving a running VM to a peer node.
    ///
    /// # Errors
    /// [`ClientError::Api`] 404, 409 when the VM is not running, 422 for an unknown target;
    /// any other [`ClientError`].
    pub async fn migrate_vm(
        &self,
        vm: &str,
        req: &VmMigrateRequest,
    ) -> Result<Operation, ClientError> {
        let answer: OperationResponse = self
            .json(Method::POST, &["vms", vm, "migrate"], Some(req))
            .await?;
        Ok(answer.operation)
    }

    /// `POST /api/v1/operations/{id}/cancel`.
    ///
    /// # Errors
    /// [`ClientError::Api`] 404, or 409 for an operation that cannot be cancelled; any other
    /// [`ClientError`].
    pub async fn cancel_operation(&self, id: OperationId) -> Result<Operation, ClientError> {
        let id = id.to_string();
        self.json(Method::POST, &["operations", &id, "cancel"], NO_BODY)
            .await
    }

    /// `POST /api/v1/peer/migrations/{id}/image` (node to node).
    ///
    /// # Errors
    /// [`ClientError::Api`] 403 without a node certificate, 409 when the destination holds a
    /// different image of that name; any other [`ClientError`].
    pub async fn peer_image_offer(
        &self,
        migration: OperationId,
        offer: &PeerImageOffer,
    ) -> Result<PeerImageAnswer, ClientError> {
        let id = migration.to_string();
        self.json(
            Method::POST,
            &["peer", "migrations", &id, "image"],
            Some(offer),
        )
        .await
    }

    /// `POST /api/v1/peer/migrations/{id}/image/commit` (node to node).
    ///
    /// # Errors
    /// [`ClientError::Api`] 404 when no image is being received for the migration, 409 when
    /// what arrived is not the image offered; any other [`ClientError`].
    pub async fn peer_image_commit(&self, migration: OperationId) -> Result<Image, ClientError> {
        let id = migration.to_string();
        self.json(
            Method::POST,
            &["peer", "migrations", &id, "image", "commit"],
            NO_BODY,
        )
        .await
    }

    /// `POST /api/v1/peer/migrations` (node to node).
    ///
    /// # Errors
    /// [`ClientError::Api`] 403 without a node certificate, 409 or 422 when the destination
    /// refuses; any other [`ClientError`].
    pub async fn peer_prepare(
        &self,
        req: &PeerPrepareRequest,
    ) -> Result<PeerPrepareResponse, ClientError> {
        self.json(Method::POST, &["peer", "migrations"], Some(req))
            .await
    }

    /// `POST /api/v1/peer/migrations/{id}/commit` (node to node).
    ///
    /// # Errors
    /// [`ClientError::Api`] 404 for an unknown migration, 409 when the destination cannot
    /// run the guest; any other [`ClientError`].
    pub async fn peer_commit(&self, migration: OperationId) -> Result<PeerCommitted, ClientError> {
        let id = migration.to_string();
        let url = self.api_url(&["peer", "migrations", &id, "commit"])?;
        let label = label(&Method::POST, &url);
        let rb = self.request(Method::POST, url);
        let (headers, body) = self.exchange_with_headers(rb, &label, self.timeout).await?;
        let vm = serde_json::from_slice(&body).map_err(|e| ClientError::Decode {
            request: label,
            source: e.into(),
        })?;
        let timing = |metric: &str| {
            headers
                .get_all(SERVER_TIMING)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .find_map(|v| server_timing_metric(v, metric))
        };
        Ok(PeerCommitted {
            vm,
            running_after: timing(GUEST_RUNNING_METRIC),
            answered_after: timing(COMMIT_METRIC),
        })
    }

    /// `DELETE /api/v1/peer/migrations/{id}` (node to node; idempotent).
    ///
    /// # Errors
    /// [`ClientError::Api`] 409 when the migration was committed (the guest runs there); any
    /// other [`ClientError`].
    pub async fn peer_abort(&self, migration: OperationId) -> Result<(), ClientError> {
        let id = migration.to_string();
        let url = self.api_url(&["peer", "migrations", &id])?;
        let label = label(&Method::DELETE, &url);
        let rb = self.request(Method::DELETE, url);
        self.exchange(rb, &label, self.timeout).await.map(drop)
    }
}
