//! DWCP, the Distributed WAN Communication Protocol: moves one byte stream from a sender to a
//! receiver over several TCP connections (AMST), with per-frame checksums, an end-to-end BLAKE3
//! check, mutual TLS, and resume after dropped connections.
//!
//! The crate knows nothing about virtual machines: it moves streams between two endpoints.
//!
//! - [`wire`]: frame format and control messages.
//! - [`bufpool`]: frame-sized buffers reused instead of allocated per frame.
//! - [`pki`]: cluster CA and node certificates; [`tls`]: rustls configurations from them.
//! - [`mode`]: datacenter / hybrid / internet detection with hysteresis, and each mode's
//!   defaults ([`mode::ModeDetector`], [`mode::ModeDefaults`]).
//! - [`flags`]: per-node feature flags with percentage rollout and a kill switch
//!   ([`flags::FlagSet`], [`flags::Flags`]).
//! - [`hde`]: hierarchical delta encoding of page and chunk streams: zero elision, content
//!   references, deltas against a page's previous version, lz4/zstd; content stores
//!   ([`hde::PageEncoder`], [`hde::ChunkEncoder`], [`hde::DiskStore`]). Not yet carried by AMST.
//! - [`pba`]: predictive bandwidth allocation: link estimator and prediction, compression and
//!   stream-count choice, weighted fair share of a link ([`pba::LinkEstimator`],
//!   [`pba::CompressionChooser`], [`pba::fair_share`]).

pub mod amst;
pub mod bufpool;
pub mod flags;
pub mod hde;
pub mod mode;
pub mod pba;
pub mod pki;
pub mod tls;
pub mod transport;
pub mod wire;
