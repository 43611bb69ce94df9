//! Events: the changes a client can follow live (`GET /api/v1/events`).

use crate::{MigrationProgress, Name, OperationId, OperationStatus, Timestamp, VmId, VmState};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One change on the node, numbered in order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Event {
    /// Position in the node's event sequence, from 1.
    pub seq: u64,
    /// When it happened.
    pub time: Timestamp,
    /// Tenant it concerns; `None` for node-wide events (images), which every tenant sees.
    pub tenant: Option<Name>,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// What happened.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    /// A VM was created.
    VmCreated {
        /// The VM.
        vm: VmId,
        /// Its name.
        name: Name,
    },
    /// A VM changed state.
    VmState {
        /// The VM.
        vm: VmId,
        /// Its name.
        name: Name,
        /// State before.
        from: VmState,
        /// State now.
        to: VmState,
        /// Why, when that needs saying.
        reason: Option<String>,
    },
    /// A VM was deleted.
    VmDeleted {
        /// The VM.
        vm: VmId,
        /// Its name.
        name: Name,
    },
    /// An operation ended.
    OperationDone {
        /// The operation.
        operation: OperationId,
        /// How it ended.
        status: OperationStatus,
        /// Why it failed, when it did.
        error: Option<String>,
    },
    /// An image was imported.
    ImageImported {
        /// Its name.
        name: Name,
    },
    /// A live migration moved on.
    MigrationProgress {
        /// The migration's operation.
        operation: OperationId,
        /// The VM.
        vm: VmId,
        /// Where it is.
        progress: MigrationProgress,
    },
}
