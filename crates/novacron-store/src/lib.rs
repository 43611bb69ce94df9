//! NovaCron state store: tenants, tokens, images, VMs and operations, changed only through a
//! deterministic state machine.
//!
//! - [`Command`]: every change, as serializable data (a replicated log can carry it).
//! - [`State`]: all records in memory; [`State::plan`] validates a command and returns its
//!   [`Write`]s without side effects, [`State::commit`] applies them.
//! - [`Store`]: the trait the rest of NovaCron uses: `apply` a command, read records.
//! - [`RedbStore`]: the single-node store, a redb file mirrored in memory. A replicated store
//!   (openraft) will implement the same trait over the same [`State`].
//! - [`StoreError`]: refusals (not found, quota exceeded, conflict...) and storage failures.
//! - `testing` (feature `testing`): the conformance suite every [`Store`] passes, and an
//!   in-memory store for other crates' unit tests.
//!
//! ```no_run
//! use novacron_model::{Name, Quota, Tenant, Timestamp};
//! use novacron_store::{Command, RedbStore, Store, StoreError};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = RedbStore::open("/var/lib/novacron/state.redb")?;
//! let acme = Name::new("acme")?;
//! store.apply(Command::PutTenant(Tenant {
//!     name: acme.clone(),
//!     quota: Quota::default(),
//!     created_at: Timestamp::now(),
//! }))?;
//! match store.apply(Command::DeleteTenant(acme)) {
//!     Ok(()) => {}
//!     Err(e @ StoreError::InUse { .. }) => eprintln!("{e}"),
//!     Err(e) => return Err(e.into()),
//! }
//! # Ok(())
//! # }
//! ```

mod cell;
mod command;
mod error;
mod redb_store;
mod state;
mod store;

#[cfg(any(test, feature = "testing"))]
pub mod testing;

#[cfg(test)]
mod model_test;

pub use command::Command;
pub use error::StoreError;
pub use redb_store::{RedbStore, SCHEMA_VERSION};
pub use state::{State, Write};
pub use store::Store;
