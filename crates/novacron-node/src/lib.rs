//! The node service: VMs of one node, driven through the store and QEMU.
//!
//! [`Node`] implements [`novacron_api::NodeService`]. Every change of a VM goes through the
//! store as a compare-and-set on its state, so two requests cannot both act on one VM, and an
//! event is published for each change.
//!
//! ```text
//!   stopped|failed ─start─► starting ─QEMU up─► running ◄─pause/resume─► paused
//!   running|paused ─stop──► stopping ─QEMU exit─► stopped
//!   starting|running|paused ─QEMU exit (not asked)─► failed (reason: exit status, log tail)
//! ```
//!
//! - [`layout`]: where things live under the data directory.
//! - [`events`], [`ops`]: the event sequence and operations.
//! - `vms`, `lifecycle`, `recover`, `images`, `admin`: the service, by concern.
//! - `migrate`: live migration to and from peer nodes over DWCP.
//! - `dwcp_flags`: the DWCP feature flags of migration streams, changed at run time.

mod admin;
mod dwcp_flags;
pub mod events;
mod host;
mod images;
pub mod layout;
mod lifecycle;
mod migrate;
mod node;
pub mod ops;
mod recover;
mod service;
mod vms;

pub use admin::{ADMIN_TENANT, new_token_secret, token_hash};
pub use dwcp_flags::{DwcpFlagsError, log_dwcp_flags, read_dwcp_flags};
pub use migrate::{ClusterConfig, ClusterError};
pub use node::{Node, NodeConfig, NodeError};
