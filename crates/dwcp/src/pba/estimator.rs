//! Online estimates of a link from the transport's own events: delivered bandwidth from
//! acknowledgements, RTT from samples, loss from retransmitted bytes, and a short-horizon
//! bandwidth prediction. Pure: every input carries its own time, nothing reads a clock.
//!
//! - **Bandwidth**: acknowledged bytes are summed over a sample interval of at least
//!   [`EstimatorConfig::sample_interval`]; each closed interval gives one rate sample (bytes per
//!   second) that feeds an EWMA (the level, [`LinkEstimator::bandwidth`]) and Holt's linear
//!   smoothing (level + trend per second, [`LinkEstimator::predict`]). Intervals have irregular
//!   lengths, so Holt's trend is kept per second and scaled by each interval's length.
//! - **RTT**: smoothed as in RFC 6298 (gain 1/8), and a windowed minimum as BBR keeps it: the
//!   minimum is replaced by a larger sample once it is older than [`EstimatorConfig::min_rtt_window`].
//! - **Loss**: retransmitted bytes over sent bytes, both halved whenever sent bytes pass
//!   [`EstimatorConfig::loss_memory_bytes`], so old losses fade.
//!
//! The caller feeds acknowledgements only while data is in flight: an idle sender would
//! otherwise read as a slow link. [`LinkEstimator::restart_interval`] drops the partial
//! interval after an idle period.

use std::time::{Duration, Instant};

/// Tuning of a [`LinkEstimator`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EstimatorConfig {
    /// Shortest interval over which acknowledged bytes make one rate sample.
    pub sample_interval: Duration,
    /// Weight of a new rate sample in the EWMA level (0–1).
    pub ewma_gain: f64,
    /// Holt's level gain (0–1).
    pub holt_level_gain: f64,
    /// Holt's trend gain (0–1).
    pub holt_trend_gain: f64,
    /// Weight of a new RTT sample in the smoothed RTT (0–1).
    pub rtt_gain: f64,
    /// How long a minimum RTT holds before a larger sample may replace it.
    pub min_rtt_window: Duration,
    /// Sent bytes after which both loss counters are halved.
    pub loss_memory_bytes: u64,
}

impl Default for EstimatorConfig {
    fn default() -> Self {
        Self {
            sample_interval: Duration::from_millis(100),
            ewma_gain: 0.25,
            holt_level_gain: 0.5,
            holt_trend_gain: 0.2,
            rtt_gain: 0.125,
            min_rtt_window: Duration::from_secs(10),
            loss_memory_bytes: 64 << 20,
        }
    }
}

/// RTT estimates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RttEstimate {
    /// Smoothed RTT.
    pub smoothed: Duration,
    /// Smallest RTT in the last window: the path's propagation delay.
    pub min: Duration,
    /// The last sample.
    pub latest: Duration,
}

/// Everything the estimator knows, at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkEstimate {
    /// Smoothed delivered bandwidth in bytes per second; `None` before the first interval.
    pub bandwidth: Option<f64>,
    /// RTT; `None` before the first sample.
    pub rtt: Option<RttEstimate>,
    /// Retransmitted over sent bytes (0–1).
    pub loss_rate: f64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Holt {
    /// Bytes per second.
    level: f64,
    /// Change of the level, bytes per second per second.
    trend: f64,
}

/// Online estimator of one link (or one session's share of it).
#[derive(Debug, Clone, PartialEq)]
pub struct LinkEstimator {
    config: EstimatorConfig,
    /// Start of the open interval; `None` until the first acknowledgement.
    interval_start: Option<Instant>,
    interval_bytes: u64,
    ewma: Option<f64>,
    holt: Option<Holt>,
    rtt: Option<RttEstimate>,
    /// When the current minimum RTT was measured.
    min_rtt_at: Option<Instant>,
    sent: u64,
    retransmitted: u64,
}

impl Default for LinkEstimator {
    fn default() -> Self {
        Self::new(EstimatorConfig::default())
    }
}

impl LinkEstimator {
    /// An estimator that knows nothing yet. Gains outside `0..=1` are clamped.
    #[must_use]
    pub fn new(config: EstimatorConfig) -> Self {
        let gain = |g: f64| {
            if g.is_finite() {
                g.clamp(0.0, 1.0)
            } else {
                1.0
            }
        };
        Self {
            config: EstimatorConfig {
                ewma_gain: gain(config.ewma_gain),
                holt_level_gain: gain(config.holt_level_gain),
                holt_trend_gain: gain(config.holt_trend_gain),
                rtt_gain: gain(config.rtt_gain),
                loss_memory_bytes: config.loss_memory_bytes.max(1),
                ..config
            },
            interval_start: None,
            interval_bytes: 0,
            ewma: None,
            holt: None,
            rtt: None,
            min_rtt_at: None,
            sent: 0,
            retransmitted: 0,
        }
    }

    /// Records that `acked_bytes` were acknowledged at `at`. The first call only marks the
    /// start of measurement (its bytes were delivered over an unknown time). Returns the
    /// rate sample (bytes per second) when this acknowledgement closed an interval.
    pub fn on_ack(&mut self, at: Instant, acked_bytes: u64) -> Option<f64> {
        let Some(start) = self.interval_start else {
            self.interval_start = Some(at);
            return None;
        };
        self.interval_bytes = self.interval_bytes.saturating_add(acked_bytes);
        let elapsed = at.saturating_duration_since(start);
        if elapsed < self.config.sample_interval || elapsed.is_zero() {
            return None;
        }
        let secs = elapsed.as_secs_f64();
        let rate = self.interval_bytes as f64 / secs;
        self.interval_start = Some(at);
        self.interval_bytes = 0;
        self.on_rate(rate, secs);
        Some(rate)
    }

    /// Forgets the open interval, e.g. after the sender was idle; the next acknowledgement
    /// starts a new one.
    pub fn restart_interval(&mut self) {
        self.interval_start = None;
        self.interval_bytes = 0;
    }

    fn on_rate(&mut self, rate: f64, secs: f64) {
        let c = self.config;
        self.ewma = Some(match self.ewma {
            None => rate,
            Some(level) => level + c.ewma_gain * (rate - level),
        });
        self.holt = Some(match self.holt {
            None => Holt {
                level: rate,
                trend: 0.0,
            },
            Some(h) => {
                let forecast = h.level + h.trend * secs;
                let level = c.holt_level_gain * rate + (1.0 - c.holt_level_gain) * forecast;
                let slope = (level - h.level) / secs;
                Holt {
                    level,
                    trend: c.holt_trend_gain * slope + (1.0 - c.holt_trend_gain) * h.trend,
                }
            }
        });
    }

    /// Records an RTT sample measured at `at`.
    pub fn on_rtt(&mut self, at: Instant, rtt: Duration) {
        let Some(prev) = self.rtt else {
            self.rtt = Some(RttEstimate {
                smoothed: rtt,
                min: rtt,
                latest: rtt,
            });
            self.min_rtt_at = Some(at);
            return;
        };
        let smoothed = prev.smoothed.as_secs_f64()
            + self.config.rtt_gain * (rtt.as_secs_f64() - prev.smoothed.as_secs_f64());
        let stale = self
            .min_rtt_at
            .is_none_or(|t| at.saturating_duration_since(t) > self.config.min_rtt_window);
        let min = if rtt <= prev.min || stale {
            self.min_rtt_at = Some(at);
            rtt
        } else {
            prev.min
        };
        self.rtt = Some(RttEstimate {
            smoothed: Duration::try_from_secs_f64(smoothed).unwrap_or(rtt),
            min,
            latest: rtt,
        });
    }

    /// Records `bytes` put on the wire, of which `retransmitted` were sent before.
    pub fn on_sent(&mut self, bytes: u64, retransmitted: u64) {
        self.sent = self.sent.saturating_add(bytes);
        self.retransmitted = self.retransmitted.saturating_add(retransmitted.min(bytes));
        while self.sent > self.config.loss_memory_bytes {
            self.sent /= 2;
            self.retransmitted /= 2;
        }
    }

    /// Smoothed delivered bandwidth in bytes per second; `None` before the first interval.
    #[must_use]
    pub fn bandwidth(&self) -> Option<f64> {
        self.ewma
    }

    /// Predicted bandwidth `horizon` from the last interval, in bytes per second (Holt:
    /// level + trend × horizon, never below zero). Meant for a few seconds: a trend
    /// extrapolated far goes wrong.
    #[must_use]
    pub fn predict(&self, horizon: Duration) -> Option<f64> {
        self.holt
            .map(|h| (h.level + h.trend * horizon.as_secs_f64()).max(0.0))
    }

    /// Trend of the bandwidth in bytes per second per second; `None` before the first interval.
    #[must_use]
    pub fn trend(&self) -> Option<f64> {
        self.holt.map(|h| h.trend)
    }

    /// RTT estimates; `None` before the first sample.
    #[must_use]
    pub fn rtt(&self) -> Option<RttEstimate> {
        self.rtt
    }

    /// Retransmitted over sent bytes, recent bytes weighing more (0–1; 0 before anything is sent).
    #[must_use]
    pub fn loss_rate(&self) -> f64 {
        if self.sent == 0 {
            return 0.0;
        }
        let ratio = self.retransmitted as f64 / self.sent as f64;
        ratio.clamp(0.0, 1.0)
    }

    /// All estimates at once.
    #[must_use]
    pub fn estimate(&self) -> LinkEstimate {
        LinkEstimate {
            bandwidth: self.bandwidth(),
            rtt: self.rtt(),
            loss_rate: self.loss_rate(),
        }
    }
}

#[cfg(test)]
#[path = "estimator_test.rs"]
mod estimator_test;
