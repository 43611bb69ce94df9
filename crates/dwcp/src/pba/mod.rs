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
//!
//! Nothing here reads a clock, a socket or a file: time and measurements are inputs.

pub mod estimator;

pub use estimator::{EstimatorConfig, LinkEstimate, LinkEstimator, RttEstimate};
