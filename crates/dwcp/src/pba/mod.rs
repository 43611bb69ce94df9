//! PBA, Predictive Bandwidth Allocation: the pure decisions that set how fast and how hard a
//! DWCP session sends, fed by measurements the transport makes.
//!
//! ```text
//!  acks, RTT samples,   ┌──────────────┐ predicted bandwidth ┌──────────────────┐ codec, level
//!  sent/retransmitted ─▶│ LinkEstimator│────────────────────▶│ CompressionChooser│────────────▶ HDE
//!                       └──────────────┘  RTT, loss          │ suggest_streams  │ stream count ▶ AMST
//!                                                            └──────────────────┘
//!  sessions (weight, cap), link, node cap ─▶ fair_share ─▶ per-session rate limit ─▶ AMST pacing
//! ```
//!
//! - [`estimator`]: [`LinkEstimator`], online bandwidth (EWMA + Holt prediction), RTT and loss.
//! - [`choose`]: [`CompressionChooser`] picks the codec that maximises original bytes delivered
//!   per second, with hysteresis; [`suggest_streams`] sizes the connection count.
//! - [`auto`]: [`ReductionController`], the per-session loop that feeds the estimator and the
//!   chooser from a sender's counters and picks the codec about once a second.
//! - [`share`]: [`fair_share`] splits a link among sessions by weight, honouring caps.
//!
//! Nothing here reads a clock, a socket or a file: time and measurements are inputs.

pub mod auto;
pub mod choose;
pub mod estimator;
pub mod share;

pub use auto::{AutoConfig, ReductionController, SenderSample, initial_codec};
pub use choose::{
    Codec, CodecProfile, CodecTable, CompressionChooser, StreamParams, best_codec, suggest_streams,
};
pub use estimator::{EstimatorConfig, LinkEstimate, LinkEstimator, RttEstimate};
pub use share::{SessionDemand, fair_share};
