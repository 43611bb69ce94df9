//! [`Store`]: the one interface to cluster state, whatever keeps it.

use crate::{Command, StoreError};
use novacron_model::{Image, Name, Operation, OperationId, Tenant, TokenRecord, Usage, Vm, VmId};

/// Cluster state: applies [`Command`]s atomically and answers reads from memory.
///
/// Every implementation passes the conformance suite in the crate's `testing` module (feature
/// `testing`). Calls are synchronous: `apply` waits for the change to be durable (call it from
/// `spawn_blocking` in async code); reads never touch the disk and return at once.
///
/// A read returns what the last successful `apply` left, never a change that is not yet
/// durable.
pub trait Store: Send + Sync + 'static {
    /// Validates `command` against the current state and, if it is accepted, makes its changes
    /// durable and visible. Concurrent calls are serialized, so checks such as quotas hold
    /// whatever the interleaving.
    ///
    /// # Errors
    /// A refusal ([`StoreError::is_refusal`]) when the command does not fit the state, as each
    /// [`Command`] variant documents; a storage error when the change could not be made
    /// durable. Either way nothing changed.
    fn apply(&self, command: Command) -> Result<(), StoreError>;

    /// The VM with this id.
    fn vm(&self, id: VmId) -> Option<Vm>;

    /// The tenant's VM with this name.
    fn vm_by_name(&self, tenant: &Name, name: &Name) -> Option<Vm>;

    /// The VMs of `tenant` (of every tenant when `None`), ordered by name then id.
    fn vms(&self, tenant: Option<&Name>) -> Vec<Vm>;

    /// The image with this name.
    fn image(&self, name: &Name) -> Option<Image>;

    /// Every image, ordered by name.
    fn images(&self) -> Vec<Image>;

    /// The tenant with this name.
    fn tenant(&self, name: &Name) -> Option<Tenant>;

    /// Every tenant, ordered by name.
    fn tenants(&self) -> Vec<Tenant>;

    /// What `tenant` holds, counting all its VMs whatever their state, as its quota does
    /// (zero for an unknown tenant).
    fn usage(&self, tenant: &Name) -> Usage;

    /// The token whose secret has this (hex BLAKE3) hash.
    fn token_by_hash(&self, hash: &str) -> Option<TokenRecord>;

    /// The tokens of `tenant`, oldest first.
    fn tokens(&self, tenant: &Name) -> Vec<TokenRecord>;

    /// The operation with this id.
    fn operation(&self, id: OperationId) -> Option<Operation>;

    /// The newest `limit` operations of `tenant`, newest first (by creation time).
    fn operations(&self, tenant: &Name, limit: usize) -> Vec<Operation>;
}
