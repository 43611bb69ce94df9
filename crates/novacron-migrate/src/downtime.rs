//! The guest's downtime as the source can tell it: from its stop on the source to its start on
//! the destination, with no clock shared between the two nodes.

use std::time::Duration;

/// The guest stopped on the source at 0; the commit went out at `sent` and its answer came
/// back at `answered`; the destination says it ran the guest `running_after` the commit
/// arrived. Taking the commit's two one-way delays as equal (as NTP does), the guest ran at
/// `sent + (answered - sent - running_after) / 2 + running_after`, half a round trip before
/// the answer came back. Without the destination's figure, or with one the round trip
/// cannot hold, the answer's arrival: never less than the guest was down.
#[must_use]
pub fn guest_downtime(
    sent: Duration,
    answered: Duration,
    running_after: Option<Duration>,
) -> Duration {
    let Some(round_trip) = answered.checked_sub(sent) else {
        return answered;
    };
    match running_after.and_then(|r| round_trip.checked_sub(r).map(|transit| (r, transit))) {
        Some((running_after, transit)) => sent + running_after + transit / 2,
        None => answered,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn half_the_commits_transit_comes_off_the_answers_arrival() {
        // Sent 4 ms after the stop, answered at 308 ms, the guest ran 154 ms after the commit
        // arrived: 150 ms of transit, 75 each way, so it ran at 4 + 75 + 154 = 233 ms.
        assert_eq!(guest_downtime(ms(4), ms(308), Some(ms(154))), ms(233));
        // A destination that ran the guest at once: half the round trip after the send.
        assert_eq!(guest_downtime(ms(0), ms(100), Some(ms(0))), ms(50));
    }

    #[test]
    fn without_a_sensible_figure_the_answers_arrival_is_the_downtime() {
        assert_eq!(guest_downtime(ms(4), ms(308), None), ms(308));
        // Longer than the whole round trip: not believed.
        assert_eq!(guest_downtime(ms(4), ms(308), Some(ms(400))), ms(308));
        // An answer before the send cannot be; nothing is taken off.
        assert_eq!(guest_downtime(ms(10), ms(5), Some(ms(1))), ms(5));
    }
}
