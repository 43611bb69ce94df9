//! [`Write`]: one record to store or remove, as planned by [`State::plan`](super::State::plan).

use novacron_model::{Image, Name, Operation, OperationId, Tenant, TokenId, TokenRecord, Vm, VmId};

/// Stores a record under its key (`Some`) or removes the key (`None`). A command plans zero or
/// more writes; a store persists them together, then [`State::commit`](super::State::commit)s
/// them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Write {
    /// A tenant, keyed by name.
    Tenant(Name, Option<Tenant>),
    /// A token, keyed by id.
    Token(TokenId, Option<TokenRecord>),
    /// An image, keyed by name.
    Image(Name, Option<Image>),
    /// A VM, keyed by id.
    Vm(VmId, Option<Vm>),
    /// An operation, keyed by id.
    Operation(OperationId, Option<Operation>),
}
