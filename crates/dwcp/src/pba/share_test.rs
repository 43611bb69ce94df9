//! Tests for the weighted fair share: exact splits, caps and their leftovers, the node cap,
//! and properties against the definition of water-filling.

use proptest::prelude::*;

use super::*;

fn w(weight: u32) -> SessionDemand {
    SessionDemand::new(weight)
}

#[test]
fn equal_weights_split_evenly() {
    assert_eq!(fair_share(90, None, &[w(1), w(1), w(1)]), vec![30, 30, 30]);
}

#[test]
fn shares_follow_weights() {
    assert_eq!(fair_share(100, None, &[w(1), w(3)]), vec![25, 75]);
    assert_eq!(
        fair_share(1_000, None, &[w(2), w(3), w(5)]),
        vec![200, 300, 500]
    );
}

#[test]
fn a_capped_session_leaves_the_rest_to_the_others() {
    // The example of the module documentation.
    assert_eq!(
        fair_share(100, None, &[w(1), w(1).capped(10), w(2)]),
        vec![30, 10, 60]
    );
}

#[test]
fn caps_cascade() {
    // Pass 1: 25 each, session 0 capped at 5 → 95 for three. Pass 2: 31 each; session 1
    // capped at 30 → 65 for two: 32 each, with 1 left by rounding.
    assert_eq!(
        fair_share(100, None, &[w(1).capped(5), w(1).capped(30), w(1), w(1)]),
        vec![5, 30, 32, 32]
    );
}

#[test]
fn caps_above_the_share_change_nothing() {
    assert_eq!(
        fair_share(100, None, &[w(1).capped(80), w(1)]),
        vec![50, 50]
    );
}

#[test]
fn every_session_capped_leaves_the_link_partly_unused() {
    assert_eq!(
        fair_share(100, None, &[w(1).capped(10), w(5).capped(20)]),
        vec![10, 20]
    );
}

#[test]
fn the_node_cap_lowers_the_capacity() {
    assert_eq!(fair_share(1_000, Some(100), &[w(1), w(1)]), vec![50, 50]);
    assert_eq!(fair_share(100, Some(1_000), &[w(1), w(1)]), vec![50, 50]);
}

#[test]
fn zero_weight_gets_nothing_and_no_sessions_get_nothing() {
    assert_eq!(fair_share(100, None, &[w(0), w(1)]), vec![0, 100]);
    assert_eq!(fair_share(100, None, &[w(0)]), vec![0]);
    assert_eq!(fair_share(100, None, &[]), Vec::<u64>::new());
}

#[test]
fn no_overflow_at_the_extremes() {
    let shares = fair_share(u64::MAX, None, &[w(u32::MAX), w(u32::MAX), w(1)]);
    assert!(shares.iter().map(|&s| u128::from(s)).sum::<u128>() <= u128::from(u64::MAX));
    assert_eq!(shares.first(), shares.get(1));
}

proptest! {
    #[test]
    fn shares_are_water_filling(
        link in 0u64..10_000_000_000,
        node_cap in proptest::option::of(0u64..10_000_000_000),
        sessions in proptest::collection::vec(
            (1u32..100, proptest::option::of(0u64..5_000_000_000)),
            0..12,
        ),
    ) {
        let demands: Vec<SessionDemand> = sessions
            .iter()
            .map(|&(weight, cap)| SessionDemand { weight, cap })
            .collect();
        let shares = fair_share(link, node_cap, &demands);
        let capacity = node_cap.map_or(link, |c| c.min(link));
        prop_assert_eq!(shares.len(), demands.len());
        let sum: u128 = shares.iter().map(|&s| u128::from(s)).sum();
        prop_assert!(sum <= u128::from(capacity), "sum {} > capacity {}", sum, capacity);
        for (s, d) in shares.iter().zip(&demands) {
            if let Some(cap) = d.cap {
                prop_assert!(*s <= cap);
            }
        }
        // Sessions below their cap ("unsaturated") share by weight, within rounding, and
        // none of them gets less per weight than a saturated session.
        let unsaturated: Vec<(u64, u32)> = shares
            .iter()
            .zip(&demands)
            .filter(|(s, d)| d.cap.is_none_or(|c| **s < c))
            .map(|(s, d)| (*s, d.weight))
            .collect();
        for &(si, wi) in &unsaturated {
            for &(sj, wj) in &unsaturated {
                let lhs = u128::from(si) * u128::from(wj);
                let rhs = u128::from(sj) * u128::from(wi);
                prop_assert!(lhs.abs_diff(rhs) <= u128::from(wi.max(wj)),
                    "{}/{} vs {}/{}", si, wi, sj, wj);
            }
            for (s, d) in shares.iter().zip(&demands) {
                if d.cap.is_some_and(|c| *s >= c) {
                    // Saturated: its rate per weight is at most the water level (+ rounding).
                    prop_assert!(
                        u128::from(*s) * u128::from(wi)
                            <= u128::from(si) * u128::from(d.weight) + u128::from(wi.max(d.weight)),
                        "capped {}/{} above level {}/{}", s, d.weight, si, wi
                    );
                }
            }
        }
        // Work conserving: unless every session is saturated, the capacity is used up to
        // one byte per second per session of rounding.
        if !unsaturated.is_empty() {
            prop_assert!(sum + demands.len() as u128 >= u128::from(capacity));
        }
    }
}
