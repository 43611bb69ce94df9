//! NovaCron domain types and identifiers, shared by every crate.
//!
//! Plain data with serde: no I/O. The store persists these records, the API serves them, the
//! CLI prints them.
//!
//! - [`ids`]: typed identifiers ([`VmId`], [`OperationId`], [`TokenId`]) and validated names
//!   ([`Name`]).
//! - [`size`]: [`ByteSize`], which reads `512M`, `2G` or a plain byte count.
//! - [`time`]: [`Timestamp`], milliseconds since the Unix epoch, shown as RFC 3339.
//! - [`vm`], [`image`], [`tenant`], [`operation`], [`event`]: the records.
//! - [`migration`]: phases and progress of a live migration.

pub mod event;
pub mod ids;
pub mod image;
pub mod migration;
pub mod operation;
pub mod size;
pub mod tenant;
pub mod time;
pub mod vm;

pub use event::{Event, EventKind};
pub use ids::{Name, NameError, OperationId, TokenId, VmId};
pub use image::Image;
pub use migration::{MigrationPhase, MigrationProgress};
pub use operation::{Operation, OperationKind, OperationStatus};
pub use size::{ByteSize, ByteSizeError};
pub use tenant::{Quota, Role, Tenant, TokenRecord, Usage};
pub use time::Timestamp;
pub use vm::{DiskInfo, SpecError, Vm, VmRuntime, VmSpec, VmState};
