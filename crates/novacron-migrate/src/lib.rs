//! Decisions of a live migration, apart from the I/O that feeds them: when to give up, which
//! downtime limit to hand QEMU, and the progress figures (rates, ETA) shown to operators.
//!
//! The node daemon samples QEMU (`query-migrate`) and the DWCP session every few hundred
//! milliseconds and passes each [`Sample`] to [`Convergence::observe`], which answers with a
//! [`Verdict`]:
//!
//! ```text
//!  query-migrate ─┐                        ┌─► Continue { downtime limit } ─► migrate-set-parameters
//!  DWCP progress ─┴─► Sample ─► observe ───┤
//!                                          ├─► StartPostcopy(reason)       ─► migrate-start-postcopy
//!                                          └─► Cancel(reason)              ─► migrate_cancel
//! ```
//!
//! With post-copy allowed ([`Policy::postcopy`]), the guest moves once the first pass has
//! copied all of its memory and what it dirtied since would not fit in the downtime, or
//! when the copy cannot converge: the destination then runs it and pulls the pages it lacks.

use novacron_model::{MigrationPhase, MigrationProgress};
use std::collections::VecDeque;
use std::time::Duration;

mod downtime;
pub use downtime::{CommitTimes, guest_downtime};

/// What the operator allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Longest the guest may be stopped at switch-over.
    pub max_downtime: Duration,
    /// Give up when not done after this long.
    pub budget: Duration,
    /// Give up when QEMU throttles the guest to this percent and the rest still does not
    /// shrink for [`Policy::stall`].
    pub max_throttle_percent: u64,
    /// How long the bytes left may stop shrinking before a migration is called stuck.
    pub stall: Duration,
    /// Whether the guest may switch to post-copy (the operator opted in).
    pub postcopy: bool,
    /// Time the switch-over spends beyond QEMU's own downtime and the DWCP backlog's
    /// crossing: the round trips of the commit to the destination (and of the disks'
    /// mirrors' last writes). Kept out of what QEMU and the window may use.
    pub reserve: Duration,
    /// The round trip to the destination on an idle link (zero while unknown): post-copy
    /// stops the guest for about [`POSTCOPY_FAULT_TRIPS`] of them.
    pub round_trip: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            max_downtime: Duration::from_millis(300),
            budget: Duration::from_secs(600),
            max_throttle_percent: 99,
            stall: Duration::from_secs(30),
            postcopy: false,
            reserve: Duration::ZERO,
            round_trip: Duration::ZERO,
        }
    }
}

/// One look at a migration in progress.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sample {
    /// Since the migration began.
    pub elapsed: Duration,
    /// Memory pass QEMU is in (its dirty-sync count).
    pub pass: u64,
    /// Bytes QEMU sent so far.
    pub transferred: u64,
    /// Bytes QEMU still has to send (dirty memory at its last sync).
    pub remaining: u64,
    /// Guest memory size.
    pub memory_total: u64,
    /// Pages the guest dirties per second, and the page size.
    pub dirty_pages_rate: u64,
    /// Page size in bytes (4096 when QEMU does not say).
    pub page_size: u64,
    /// Percent of vCPU time auto-converge takes away.
    pub throttle_percent: u64,
    /// Bytes of QEMU's stream read by DWCP.
    pub stream_bytes: u64,
    /// Bytes the DWCP receiver acknowledged, or reported holding out of order.
    pub acked_bytes: u64,
    /// DWCP's delivery rate, bytes per second (0 while unknown).
    pub wire_rate: u64,
    /// Bytes DWCP put on the wire for the stream so far (after data reduction).
    pub wire_bytes: u64,
    /// Of `wire_bytes`, those the DWCP receiver acknowledged or reported holding.
    pub wire_acked: u64,
    /// How fast `wire_acked` grew lately, bytes per second (0 while unknown): the link's rate
    /// for this stream.
    pub link_rate: u64,
    /// Bytes of the stream DWCP sent as references to content the destination held.
    pub ref_bytes: u64,
}

impl Sample {
    /// Bytes per second the guest dirties.
    #[must_use]
    pub fn dirty_rate(&self) -> u64 {
        let page = if self.page_size == 0 {
            4096
        } else {
            self.page_size
        };
        self.dirty_pages_rate.saturating_mul(page)
    }

    /// Bytes read from QEMU but not yet delivered: they must cross the link at switch-over
    /// too, after QEMU thinks it has sent them.
    #[must_use]
    pub fn backlog(&self) -> u64 {
        self.stream_bytes.saturating_sub(self.acked_bytes)
    }

    /// Milliseconds the backlog needs to cross once the guest stopped: the longer of its
    /// stream bytes at the stream's rate (the window is counted in stream bytes, and what QEMU
    /// writes last waits for room in it) and its wire bytes (framed, not yet acknowledged) at
    /// the link's rate for them (a backlog of new pages is slower on the wire than the
    /// stream's rate, measured over zero pages and references, says). `None` when nothing
    /// says how fast the backlog crosses.
    #[must_use]
    pub fn backlog_ms(&self) -> Option<u64> {
        let backlog = self.backlog();
        if backlog == 0 {
            return Some(0);
        }
        let stream = backlog.saturating_mul(1000).checked_div(self.wire_rate)?;
        let wire = self
            .wire_bytes
            .saturating_sub(self.wire_acked)
            .saturating_mul(1000)
            .checked_div(self.link_rate)
            .unwrap_or(0);
        Some(stream.max(wire))
    }
}

/// What to do after a sample.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Go on, with this downtime limit for QEMU (milliseconds) and, once the link rate is
    /// known, this switch-over bandwidth (bytes per second).
    Continue {
        /// `downtime-limit` to set.
        downtime_limit_ms: u64,
        /// `avail-switchover-bandwidth` to set, when known.
        switchover_bandwidth: Option<u64>,
        /// Bytes DWCP may hold in flight from now on, once the switch-over is near; `None`
        /// keeps the full window.
        window: Option<u64>,
        /// Payload bytes DWCP may hold on the wire (frames neither acknowledged nor reported
        /// held), while the window is narrowed and what is left would cross in about a second:
        /// what the link carries in three quarters of the downtime; `None`: no bound. The
        /// window counts stream bytes, which a reference or a zero page makes cheap, and at
        /// the stop the wire bytes are what the guest waits for.
        wire_window: Option<u64>,
    },
    /// Switch to post-copy now, for this reason (only when [`Policy::postcopy`] allows it,
    /// and once).
    StartPostcopy(String),
    /// Cancel the migration, for this reason.
    Cancel(String),
}

/// Tracks one migration's samples and decides.
#[derive(Clone, Debug)]
pub struct Convergence {
    policy: Policy,
    /// Fewest bytes left seen so far, and when.
    best_remaining: Option<(u64, Duration)>,
    /// Fastest delivery seen, bytes per second.
    best_rate: u64,
    /// The narrowed window, once the switch-over came near.
    window: Option<u64>,
    /// Fastest delivery seen since the window narrowed, bytes per second.
    narrowing_rate: u64,
    /// Fastest rate of the link for the stream's wire bytes seen, bytes per second: of the
    /// averages over [`LINK_AVERAGING`] of the samples' rates (see `Self::link_rate`).
    best_link_rate: u64,
    /// The samples' link rates within the last [`LINK_AVERAGING`], and when.
    link_rates: VecDeque<(Duration, u64)>,
    /// The stream bytes and wire bytes acknowledged when the window narrowed.
    narrowed_at: Option<(u64, u64)>,
    /// Whether post-copy was started.
    postcopy_started: bool,
    /// When post-copy was first due; it then waits for the backlog to drain, at most
    /// [`POSTCOPY_DRAIN`].
    postcopy_armed: Option<Duration>,
}

/// Span over which the samples' link rates are averaged before the fastest is taken: one
/// sample's rate (a quarter second) jumps when a frame that held back many others is
/// acknowledged, and over a 12.5 MB/s link showed up to 18.8 MB/s, which sized the narrowed
/// window and QEMU's last pages for a link half again as fast as it is.
pub const LINK_AVERAGING: Duration = Duration::from_secs(1);

/// Longest post-copy waits for DWCP's backlog to drain once it is due (on a stalled link it
/// never would).
pub const POSTCOPY_DRAIN: Duration = Duration::from_secs(3);

/// QEMU's switch-over bandwidth while a migration that may move to post-copy has not decided
/// (see `Convergence::holds_qemu`; from the start, before the first sample): one byte per
/// millisecond. QEMU ends the pre-copy when
/// what is left is under this times its downtime limit: at least one byte, so only with
/// nothing left. Not less: with a threshold of 0 bytes QEMU ends it at the end of any pass,
/// before it counts what the guest dirtied meanwhile.
pub const HOLD_BANDWIDTH: u64 = 1000;

/// Round trips to the source a guest moved by post-copy waits for before it runs on the
/// destination: QEMU there loads the devices' state first, and that touches pages still on
/// the source, each fetched over a round trip (over `intercontinental` the guest ran 1.7 s,
/// eleven round trips, after the commit). See `Convergence::postcopy_now`.
pub const POSTCOPY_FAULT_TRIPS: u32 = 10;

/// A wait for post-copy's faults (see [`POSTCOPY_FAULT_TRIPS`]) no longer than this is short
/// whatever the downtime asked: a link within a site, whose round trip is a few
/// milliseconds, where a pre-copy switch-over also spends that much on its fixed costs.
pub const POSTCOPY_SHORT_WAIT: Duration = Duration::from_millis(50);

/// A backlog that crosses within this many milliseconds counts as drained for post-copy,
/// whatever the downtime: with a budget of a few milliseconds the backlog never drains below
/// it while QEMU sends, and a guest left in pre-copy for [`POSTCOPY_DRAIN`] may stop rewriting
/// for a moment (a busy host), which ends the pre-copy with nothing left.
pub const POSTCOPY_SMALL_BACKLOG_MS: u64 = 50;

/// Least window a migration stream is narrowed to: one DWCP chunk.
pub const MIN_WINDOW: u64 = 512 << 10;
/// Least wire bytes a narrowed migration stream may hold ([`Verdict::Continue::wire_window`]):
/// one chunk of new pages under zstd ([`MIN_WINDOW`] over [`LAST_PAGES_REDUCTION`]). Not the
/// whole chunk: over a 20 Mbit/s link 512 KiB of frames take a quarter second to cross.
pub const MIN_WIRE_WINDOW: u64 = MIN_WINDOW / LAST_PAGES_REDUCTION;
/// Most a migration stream holds in flight until the switch-over comes near. Stream bytes:
/// with zero pages elided, references and compression a megabyte of stream is a few hundred
/// kilobytes on the wire, and a long lossy link needs a few bandwidth-delay products in
/// flight (100 Mbit/s over 150 ms is 1.9 MB) to stay busy while lost segments are sent again.
pub const MAX_WINDOW: u64 = 32 << 20;
/// Most a migration stream holds once narrowed near the switch-over. The narrowed window
/// follows the stream's rate, and a stream of pages the destination already holds goes many
/// times faster than the link: what the guest dirties last is new content, so the backlog is
/// bounded apart from that rate.
pub const MAX_NARROWED_WINDOW: u64 = 8 << 20;

/// Stream bytes, or wire bytes, acknowledged since the window narrowed after which their
/// ratio is taken as measured (see `Convergence::reduction`).
const RATIO_STREAM: u64 = 4_000_000;
/// See [`RATIO_STREAM`].
const RATIO_WIRE: u64 = 1_000_000;

/// Most stream bytes per wire byte QEMU may count on for its last pages (see
/// `Convergence::switchover_bandwidth`): about what zstd makes of a guest's pages.
pub const LAST_PAGES_REDUCTION: u64 = 3;

/// The share of `downtime` (or of what scales with it) that DWCP's backlog may take to cross
/// once the guest stopped: three quarters; the rest is for QEMU's last pages and devices.
const fn backlog_share(downtime: u64) -> u64 {
    downtime.saturating_mul(3) / 4
}

const MB: f64 = 1_000_000.0;

fn mb(bytes: u64) -> String {
    #[allow(
        clippy::cast_precision_loss,
        reason = "display only: precision above 2^53 bytes does not matter"
    )]
    let v = bytes as f64 / MB;
    format!("{v:.0}")
}

impl Convergence {
    /// Starts tracking under `policy`.
    #[must_use]
    pub const fn new(policy: Policy) -> Self {
        Self {
            policy,
            best_remaining: None,
            best_rate: 0,
            window: None,
            narrowing_rate: 0,
            best_link_rate: 0,
            link_rates: VecDeque::new(),
            narrowed_at: None,
            postcopy_started: false,
            postcopy_armed: None,
        }
    }

    /// The policy in force.
    #[must_use]
    pub const fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Decides after `s`.
    pub fn observe(&mut self, s: &Sample) -> Verdict {
        let why = || {
            let left = format!(
                "{} MB still to send after {} passes",
                mb(s.remaining),
                s.pass
            );
            if s.wire_rate == 0 && s.dirty_rate() == 0 {
                // Neither side moves: a rate comparison would read "0 > 0".
                return format!("the stream made no progress lately ({left})");
            }
            format!(
                "dirty rate {} MB/s > link {} MB/s ({left})",
                mb(s.dirty_rate()),
                mb(s.wire_rate),
            )
        };
        if s.elapsed > self.policy.budget {
            return Verdict::Cancel(format!(
                "not done within the time budget of {} s: {}",
                self.policy.budget.as_secs(),
                why()
            ));
        }
        // A pass that started after the first full copy and left less than before is progress.
        let improved = match self.best_remaining {
            None => true,
            Some((best, _)) => s.pass > 1 && s.remaining < best,
        };
        if improved && s.pass >= 1 {
            self.best_remaining = Some((s.remaining, s.elapsed));
        }
        if let Some((_, at)) = self.best_remaining {
            let stalled = s.elapsed.saturating_sub(at) > self.policy.stall;
            let throttled = s.throttle_percent >= self.policy.max_throttle_percent;
            if stalled && throttled && s.pass > 2 && s.dirty_rate() > s.wire_rate {
                if let Some(v) = self.postcopy(|| format!("cannot converge: {}", why())) {
                    return v;
                }
                return Verdict::Cancel(format!("cannot converge: {}", why()));
            }
        }
        self.best_rate = self.best_rate.max(s.wire_rate);
        let link = self.link_rate(s);
        self.best_link_rate = self.best_link_rate.max(link);
        let downtime_ms = self.budget_ms();
        // After the first pass, what is left crosses in the downtime or the guest moves now:
        // more passes would only send again what it keeps dirtying.
        let fits = s.remaining.saturating_add(s.backlog())
            <= self.best_rate.saturating_mul(downtime_ms) / 1000;
        if s.pass >= 2 && !fits && self.postcopy_now() {
            // The guest's devices cross after what DWCP already holds: first the window
            // narrows to the downtime's worth, and the switch waits until the backlog is
            // within it and crosses in three quarters of the downtime (the rest is for the
            // devices), [`POSTCOPY_DRAIN`] at most. A full bulk window of new pages takes
            // seconds on a long link.
            let bytes = self.narrowed_window(s, downtime_ms);
            self.window = Some(bytes);
            let armed = *self.postcopy_armed.get_or_insert(s.elapsed);
            // A window at its floor holds more than the downtime's worth: while QEMU sends,
            // the backlog stays about that window, so waiting for less gains nothing. Nor for
            // more than [`POSTCOPY_SMALL_BACKLOG_MS`].
            let backlog_ms = s.backlog_ms();
            let drained = backlog_ms.is_some_and(|ms| ms <= POSTCOPY_SMALL_BACKLOG_MS)
                || s.backlog() <= bytes
                    && (bytes <= MIN_WINDOW
                        || backlog_ms.is_some_and(|ms| ms <= backlog_share(downtime_ms)));
            if drained || s.elapsed.saturating_sub(armed) >= POSTCOPY_DRAIN {
                let reason = || {
                    format!(
                        "first pass done, {} MB dirty again (link {} MB/s)",
                        mb(s.remaining),
                        mb(s.wire_rate)
                    )
                };
                if let Some(v) = self.postcopy(reason) {
                    return v;
                }
            }
        }
        let near = s.pass >= 2 && self.best_rate > 0 && s.remaining <= self.best_rate;
        if self.window.is_some() || near {
            // Within about a second of the switch-over: from now on DWCP holds no more than
            // the downtime's worth of the link (the downtime limit QEMU gets is shortened by
            // the time that backlog takes, see `downtime_limit_ms`). Not less: on a long link
            // a smaller window would hold the stream below the link rate, and QEMU, seeing
            // less bandwidth, would need more passes. It follows the fastest delivery seen
            // since it narrowed (see `narrowing_rate`), within what the link carries in the
            // downtime (see `narrowed_window`).
            self.window = Some(self.narrowed_window(s, downtime_ms));
        }
        let switchover_bandwidth = if self.holds_qemu(s.pass >= 2 && fits) {
            Some(HOLD_BANDWIDTH)
        } else {
            self.switchover_bandwidth(s)
        };
        Verdict::Continue {
            downtime_limit_ms: self.downtime_limit_ms(s),
            switchover_bandwidth,
            window: self.window,
            wire_window: self.wire_window(s, downtime_ms),
        }
    }

    /// Wire bytes the link carries in the backlog's share of `downtime_ms` (see
    /// [`backlog_share`]) at the fastest link rate seen.
    const fn wire_budget(&self, downtime_ms: u64) -> u64 {
        backlog_share(self.best_link_rate.saturating_mul(downtime_ms)) / 1000
    }

    /// The narrowed window's bound on wire bytes ([`Verdict::Continue::wire_window`]): the
    /// [`Self::wire_budget`], at least [`MIN_WIRE_WINDOW`] and at most the narrowed window's
    /// ceiling. Only while what is left would cross in about a second as new pages (the
    /// link's rate times [`LAST_PAGES_REDUCTION`]), or post-copy waits to start: the window
    /// narrows when what is left is a second of the stream's fastest rate, which references
    /// make many times the link's, and a bound of the downtime's worth of the link holds a
    /// lossy link below the guest's dirty rate (a migration back over `edge` stayed at about
    /// 2 MB/s and was cancelled). None while the link's rate is unknown.
    fn wire_window(&self, s: &Sample, downtime_ms: u64) -> Option<u64> {
        let new_pages_second = self.best_link_rate.saturating_mul(LAST_PAGES_REDUCTION);
        let near = s.remaining <= new_pages_second || self.postcopy_armed.is_some();
        (self.window.is_some() && near && self.best_link_rate > 0).then(|| {
            self.wire_budget(downtime_ms)
                .clamp(MIN_WIRE_WINDOW, MAX_NARROWED_WINDOW)
        })
    }

    /// Whether QEMU is held from ending the pre-copy by itself ([`HOLD_BANDWIDTH`]): while
    /// post-copy may start now (see [`Self::postcopy_now`]), until it started or a pass after
    /// the first left what fits in the downtime (`fits_after_first`). QEMU decides between two
    /// samples, on a threshold it updates every 100 ms: counting on the stream's rate it would
    /// end the pre-copy with pages dirtied since the first pass that do not fit, and stop the
    /// guest for many times the limit, where post-copy moves it at once.
    fn holds_qemu(&self, fits_after_first: bool) -> bool {
        self.postcopy_now() && !fits_after_first
    }

    /// Whether post-copy may start as soon as a pass after the first leaves more than fits in
    /// the downtime: allowed, not started, and either armed already or the link short enough
    /// that [`POSTCOPY_FAULT_TRIPS`] round trips fit in the downtime (or in
    /// [`POSTCOPY_SHORT_WAIT`]). Over a longer link the pre-copy goes on, as it would without
    /// post-copy, and post-copy is the way out of a copy that stalls (see [`Self::observe`]):
    /// there the guest moved by post-copy runs only once the devices' state loaded, and
    /// loading it touches pages still on the source (the guest ran 1.4 s after the commit over
    /// `edge` and 1.7 s over `intercontinental`, where the same migrations in pre-copy stopped
    /// it for 130 and 240 ms). Not on the guest's dirty rate against the stream's: measured
    /// over `edge` at 7.5 MB/s against a stream going from 10 to 38 MB/s, it called for
    /// post-copy where the pre-copy of the same VM converged.
    fn postcopy_now(&self) -> bool {
        if !self.policy.postcopy || self.postcopy_started {
            return false;
        }
        let short = self.policy.round_trip.saturating_mul(POSTCOPY_FAULT_TRIPS)
            <= self.policy.max_downtime.max(POSTCOPY_SHORT_WAIT);
        self.postcopy_armed.is_some() || short
    }

    /// The window near the switch-over: the downtime's worth of the stream at its rate (see
    /// [`Self::narrowing_rate`]), but no more stream bytes than the link carries as wire bytes
    /// in three quarters of the downtime (the rest is for QEMU's last pages and devices), at
    /// the fastest link rate seen and the stream bytes per wire byte since the narrowing (see
    /// [`Self::reduction`]). Compression and references make a megabyte of stream anything
    /// from a few kilobytes to a megabyte on the wire, and the backlog's wire bytes are what
    /// the stopped guest waits for.
    fn narrowed_window(&mut self, s: &Sample, downtime_ms: u64) -> u64 {
        self.narrowed_at
            .get_or_insert((s.acked_bytes, s.wire_acked));
        let by_stream = self.narrowing_rate(s).saturating_mul(downtime_ms) / 1000;
        let wire_budget = self.wire_budget(downtime_ms);
        let (stream, wire) = self.reduction(s);
        let by_wire = if self.best_link_rate == 0 {
            u64::MAX
        } else {
            u64::try_from(u128::from(wire_budget) * stream / wire).unwrap_or(u64::MAX)
        };
        by_stream
            .min(by_wire)
            .clamp(MIN_WINDOW, MAX_NARROWED_WINDOW)
    }

    /// Stream bytes per wire byte since the window narrowed, as a fraction: measured once
    /// [`RATIO_STREAM`] of stream or [`RATIO_WIRE`] of wire bytes crossed, until then
    /// [`LAST_PAGES_REDUCTION`] (a guest's new pages under zstd).
    fn reduction(&self, s: &Sample) -> (u128, u128) {
        let (acked0, wire0) = self.narrowed_at.unwrap_or((s.acked_bytes, s.wire_acked));
        let stream = s.acked_bytes.saturating_sub(acked0);
        let wire = s.wire_acked.saturating_sub(wire0);
        if wire > 0 && (stream >= RATIO_STREAM || wire >= RATIO_WIRE) {
            (u128::from(stream), u128::from(wire))
        } else {
            (u128::from(LAST_PAGES_REDUCTION), 1)
        }
    }

    /// The bandwidth QEMU may count on for its last pages (`avail-switchover-bandwidth`): the
    /// stream's rate, but once the window narrowed no more than the fastest link rate seen
    /// times the stream bytes per wire byte since (see [`Self::reduction`]), at most
    /// [`LAST_PAGES_REDUCTION`]. The stream's rate counts zero pages and references; the pages
    /// dirtied last are new content, and QEMU, counting on that rate, would stop the guest
    /// with many megabytes of them still to send.
    fn switchover_bandwidth(&self, s: &Sample) -> Option<u64> {
        if s.wire_rate == 0 {
            return None;
        }
        if self.narrowed_at.is_none() || self.best_link_rate == 0 {
            return Some(s.wire_rate);
        }
        let (stream, wire) = self.reduction(s);
        let link = u128::from(self.best_link_rate);
        let bound = link * stream.min(wire * u128::from(LAST_PAGES_REDUCTION)) / wire;
        Some(s.wire_rate.min(u64::try_from(bound).unwrap_or(u64::MAX)))
    }

    /// The stream rate the narrowed window is sized by: the fastest seen since the narrowing
    /// began, starting from the rate then. Not the fastest of the whole migration: the first
    /// pass, zero pages and pages the destination holds, goes many times faster than the
    /// pages dirtied last, which are what the window then holds.
    fn narrowing_rate(&mut self, s: &Sample) -> u64 {
        let now = if s.wire_rate > 0 {
            s.wire_rate
        } else {
            self.best_rate
        };
        self.narrowing_rate = self.narrowing_rate.max(now);
        self.narrowing_rate
    }

    /// The link's rate for the stream's wire bytes now: the mean of the samples' rates within
    /// the last [`LINK_AVERAGING`] (0 while none is known).
    fn link_rate(&mut self, s: &Sample) -> u64 {
        if s.link_rate > 0 {
            self.link_rates.push_back((s.elapsed, s.link_rate));
        }
        while self
            .link_rates
            .front()
            .is_some_and(|(at, _)| s.elapsed.saturating_sub(*at) > LINK_AVERAGING)
        {
            self.link_rates.pop_front();
        }
        let n = u64::try_from(self.link_rates.len()).unwrap_or(u64::MAX);
        let sum = self
            .link_rates
            .iter()
            .fold(0u64, |sum, (_, rate)| sum.saturating_add(*rate));
        sum.checked_div(n).unwrap_or(0)
    }

    /// Post-copy, if allowed and not yet started.
    fn postcopy(&mut self, reason: impl FnOnce() -> String) -> Option<Verdict> {
        if !self.policy.postcopy || self.postcopy_started {
            return None;
        }
        self.postcopy_started = true;
        Some(Verdict::StartPostcopy(reason()))
    }

    /// Milliseconds of the downtime QEMU and the backlog may use: the operator's less the
    /// reserve, but never below half of it.
    fn budget_ms(&self) -> u64 {
        let max = u64::try_from(self.policy.max_downtime.as_millis()).unwrap_or(u64::MAX);
        let reserve = u64::try_from(self.policy.reserve.as_millis()).unwrap_or(u64::MAX);
        max.saturating_sub(reserve).max(max / 2)
    }

    /// QEMU's downtime limit: the budget ([`Policy::max_downtime`] less [`Policy::reserve`]),
    /// less the time the DWCP backlog needs to cross the link once the guest is stopped
    /// ([`Sample::backlog_ms`]), but never below a quarter of it. Until the window has
    /// narrowed and the backlog come down to it (a quarter more at most), or while nothing
    /// says how fast the backlog crosses, 1 ms: QEMU, which does not see the backlog, would
    /// otherwise stop the guest with all of it still to cross, however long that takes (on a
    /// stalled link, for ever).
    fn downtime_limit_ms(&self, s: &Sample) -> u64 {
        let backlog = s.backlog();
        let narrowed = self
            .window
            .is_some_and(|w| backlog <= w.saturating_add(w / 4));
        if !narrowed || (backlog > 0 && s.wire_rate == 0) {
            return 1;
        }
        let max = self.budget_ms();
        let backlog_ms = s.backlog_ms().unwrap_or(0);
        max.saturating_sub(backlog_ms).max(max / 4).max(1)
    }
}

/// The progress figures of a sample, for the API, events and the CLI.
#[must_use]
pub fn progress(target: &str, phase: MigrationPhase, s: &Sample) -> MigrationProgress {
    // Bytes still to send, over the rate at which the rest shrinks (link rate less the rate
    // at which the guest dirties it again); no estimate while that is not positive.
    let net = s.wire_rate.saturating_sub(s.dirty_rate() / 2);
    let eta_secs = (net > 0 && phase == MigrationPhase::Memory)
        .then(|| (s.remaining.saturating_add(s.backlog())).div_ceil(net));
    MigrationProgress {
        target: target.to_owned(),
        phase: Some(phase),
        pass: s.pass,
        bytes_sent: s.transferred,
        bytes_remaining: s.remaining,
        memory_total: s.memory_total,
        stream_bytes: s.stream_bytes,
        wire_bytes: s.wire_bytes,
        ref_bytes: s.ref_bytes,
        dirty_rate: s.dirty_rate(),
        wire_rate: s.wire_rate,
        eta_secs,
        elapsed_ms: u64::try_from(s.elapsed.as_millis()).unwrap_or(u64::MAX),
        downtime_ms: None,
        throttle_percent: s.throttle_percent,
        // The disks' mirrors are sampled apart from QEMU's migration.
        disk_copied: 0,
        disk_total: 0,
        image_copied: 0,
        image_total: 0,
        postcopy: false,
    }
}

#[cfg(test)]
mod tests;
