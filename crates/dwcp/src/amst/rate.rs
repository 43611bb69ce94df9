//! Small helpers of the sending side: goodput over the last second, and one-line errors.

use std::collections::VecDeque;
use std::time::Instant;

/// Formats an error and its sources on one line.
#[must_use]
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        out.push_str(": ");
        out.push_str(&e.to_string());
        cur = e.source();
    }
    out
}

/// Goodput over the last second from acknowledged-offset samples taken every tick (100 ms).
pub(crate) struct RateMeter {
    samples: VecDeque<(Instant, u64)>,
    peak: f64,
}

impl RateMeter {
    pub(crate) fn new(start: u64) -> Self {
        Self {
            samples: VecDeque::from([(Instant::now(), start)]),
            peak: 0.0,
        }
    }

    pub(crate) fn sample(&mut self, acked: u64) {
        self.samples.push_back((Instant::now(), acked));
        while self.samples.len() > 11 {
            self.samples.pop_front();
        }
        if self.samples.len() == 11 {
            self.peak = self.peak.max(self.rate());
        }
    }

    /// The highest one-second rate seen so far: the link's demonstrated capacity, which a
    /// stall does not lower.
    pub(crate) fn peak(&self) -> f64 {
        self.peak
    }

    pub(crate) fn rate(&self) -> f64 {
        match (self.samples.front(), self.samples.back()) {
            (Some((t0, a0)), Some((t1, a1))) if t1 > t0 => {
                a1.saturating_sub(*a0) as f64 / (*t1 - *t0).as_secs_f64()
            }
            _ => 0.0,
        }
    }
}
