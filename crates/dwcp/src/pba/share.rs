//! Sharing one link among concurrent sessions by priority: weighted max-min fair share
//! (water-filling) with optional per-session caps and a per-node cap.
//!
//! The capacity is the link's bandwidth, lowered to the node cap when there is one. Every
//! session gets `capacity × weight / total weight`; a session whose cap is below that gets
//! its cap, and what it leaves is shared again among the others by weight, until no
//! remaining session's cap is below its share:
//!
//! ```text
//!  capacity 100, weights 1:1:2, caps -, 10, -
//!  pass 1: shares 25, 25, 50      session 2 capped at 10 → 90 left for weights 1:2
//!  pass 2: shares 30, -, 60       no cap below its share: done → 30, 10, 60
//! ```
//!
//! Rates are whole bytes per second, rounded down, so the shares never add up to more than
//! the capacity; at most one byte per second per session is left unassigned by rounding.
//! A session of weight 0 gets nothing while others want the link.

/// One session's claim on the link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionDemand {
    /// Priority weight: shares are proportional to it.
    pub weight: u32,
    /// Most bytes per second this session may use; `None` when uncapped.
    pub cap: Option<u64>,
}

impl SessionDemand {
    /// An uncapped session of `weight`.
    #[must_use]
    pub fn new(weight: u32) -> Self {
        Self { weight, cap: None }
    }

    /// This session capped at `cap` bytes per second.
    #[must_use]
    pub fn capped(self, cap: u64) -> Self {
        Self {
            cap: Some(cap),
            ..self
        }
    }
}

/// Rates in bytes per second for `sessions`, in their order, on a link of `link` bytes per
/// second with an optional `node_cap` (bytes per second) on the node's total.
#[must_use]
pub fn fair_share(link: u64, node_cap: Option<u64>, sessions: &[SessionDemand]) -> Vec<u64> {
    let mut remaining = node_cap.map_or(link, |cap| cap.min(link));
    let mut rates: Vec<Option<u64>> = vec![None; sessions.len()];
    loop {
        let total_weight: u128 = sessions
            .iter()
            .zip(&rates)
            .filter(|(_, r)| r.is_none())
            .map(|(s, _)| u128::from(s.weight))
            .sum();
        let share = move |weight: u32| -> u64 {
            if total_weight == 0 {
                return 0;
            }
            let exact = u128::from(remaining) * u128::from(weight) / total_weight;
            // `weight <= total_weight`, so `exact <= remaining` fits.
            u64::try_from(exact).unwrap_or(remaining)
        };
        let mut fixed_any = false;
        for (s, rate) in sessions.iter().zip(rates.iter_mut()) {
            if rate.is_some() {
                continue;
            }
            if let Some(cap) = s.cap.filter(|&cap| cap <= share(s.weight)) {
                *rate = Some(cap);
                remaining = remaining.saturating_sub(cap);
                fixed_any = true;
                // The shares above used the old total; recompute them before fixing more.
                break;
            }
        }
        if !fixed_any {
            return sessions
                .iter()
                .zip(rates)
                .map(|(s, rate)| rate.unwrap_or_else(|| share(s.weight)))
                .collect();
        }
    }
}

#[cfg(test)]
#[path = "share_test.rs"]
mod share_test;
