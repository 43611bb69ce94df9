//! The guest's downtime as the source can tell it: from its stop on the source to its start on
//! the destination, with no clock shared between the two nodes.

use std::time::Duration;

/// What the destination said of a commit: how long after its arrival the guest ran, and how
/// long after it the answer left (the guest's record written in between).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CommitTimes {
    /// From the commit's arrival to the guest running.
    pub running_after: Option<Duration>,
    /// From the commit's arrival to the answer leaving.
    pub answered_after: Option<Duration>,
}

/// The guest stopped on the source at 0; the commit went out at `sent` and its answer came
/// back at `answered`; the destination says when, after the commit arrived, the guest ran and
/// the answer left (`times`). The guest then ran one one-way delay, and the time the answer
/// took to leave after the guest ran, before `answered`.
///
/// That delay is taken as half the commit's transit (its round trip less the destination's
/// time), as NTP does, but no more than half `idle_rtt`, the round trip measured before the
/// migration: at the switch-over the link towards the destination is full of the stream's
/// last bytes and the commit waits behind them, while the answer comes back on a quiet one.
/// Without the destination's figure, or with one the round trip cannot hold, the answer's
/// arrival: never less than the guest was down.
#[must_use]
pub fn guest_downtime(
    sent: Duration,
    answered: Duration,
    times: CommitTimes,
    idle_rtt: Option<Duration>,
) -> Duration {
    let Some(running) = times.running_after else {
        return answered;
    };
    // Only an answer time at or after the guest's start makes sense.
    let handled = times
        .answered_after
        .filter(|a| *a >= running)
        .unwrap_or(running);
    let transit = answered
        .checked_sub(sent)
        .and_then(|round_trip| round_trip.checked_sub(handled));
    let Some(transit) = transit else {
        return answered;
    };
    let back = idle_rtt.map_or(transit / 2, |rtt| (transit / 2).min(rtt / 2));
    answered
        .saturating_sub(back)
        .saturating_sub(handled.saturating_sub(running))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    fn ran(v: u64) -> CommitTimes {
        CommitTimes {
            running_after: Some(ms(v)),
            answered_after: None,
        }
    }

    #[test]
    fn half_the_commits_transit_comes_off_the_answers_arrival() {
        // Sent 4 ms after the stop, answered at 308 ms, the guest ran 154 ms after the commit
        // arrived: 150 ms of transit, 75 each way, so it ran at 4 + 75 + 154 = 233 ms.
        assert_eq!(guest_downtime(ms(4), ms(308), ran(154), None), ms(233));
        assert_eq!(
            guest_downtime(ms(4), ms(308), ran(154), Some(ms(150))),
            ms(233)
        );
        // A destination that ran the guest at once: half the round trip after the send.
        assert_eq!(guest_downtime(ms(0), ms(100), ran(0), None), ms(50));
    }

    #[test]
    fn a_commit_held_up_on_the_way_out_is_not_halved_into_the_answer() {
        // 248 ms of transit on a link of 80 ms: the answer took 40 of them, the commit the
        // rest behind the stream's last bytes; the guest ran at 252 - 40 = 212 ms.
        assert_eq!(
            guest_downtime(ms(0), ms(252), ran(4), Some(ms(80))),
            ms(212)
        );
    }

    #[test]
    fn the_time_the_destination_took_after_the_guest_ran_is_not_transit() {
        // Answered at 739 ms; the guest ran 156 ms after the commit arrived, the answer left
        // 586 ms after it (its record written in between): 153 ms of transit on a 150 ms link,
        // so the guest ran at 739 - 75 - 430 = 234 ms.
        let times = CommitTimes {
            running_after: Some(ms(156)),
            answered_after: Some(ms(586)),
        };
        assert_eq!(
            guest_downtime(ms(0), ms(739), times, Some(ms(150))),
            ms(234)
        );
        // An answer said to leave before the guest ran is not believed.
        let times = CommitTimes {
            running_after: Some(ms(154)),
            answered_after: Some(ms(100)),
        };
        assert_eq!(guest_downtime(ms(4), ms(308), times, None), ms(233));
    }

    #[test]
    fn without_a_sensible_figure_the_answers_arrival_is_the_downtime() {
        assert_eq!(
            guest_downtime(ms(4), ms(308), CommitTimes::default(), Some(ms(150))),
            ms(308)
        );
        // Longer than the whole round trip: not believed.
        assert_eq!(guest_downtime(ms(4), ms(308), ran(400), None), ms(308));
        // An answer before the send cannot be; nothing is taken off.
        assert_eq!(guest_downtime(ms(10), ms(5), ran(1), None), ms(5));
    }
}
