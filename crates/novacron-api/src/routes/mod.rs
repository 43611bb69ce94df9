//! Handlers, one file per resource. Each extracts, calls one [`crate::NodeService`] method and
//! maps the answer; none holds logic of its own.

pub mod events;
pub mod images;
pub mod migrate;
pub mod node;
pub mod operations;
pub mod tenants;
pub mod vms;
