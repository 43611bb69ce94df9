//! Tests for feature flags: rollout shares over many node ids, stability, the kill switch,
//! run-time changes through [`FlagSet`], and document errors that name their field.

use super::*;

fn node(i: u32) -> String {
    format!("node-{i:05}")
}

fn share_enabled(flags: &Flags, component: Component, nodes: u32) -> f64 {
    let on = (0..nodes)
        .filter(|&i| flags.is_enabled(component, &node(i)))
        .count();
    on as f64 * 100.0 / f64::from(nodes)
}

#[test]
fn rollout_percentages_hold_over_ten_thousand_nodes() {
    for percent in [1_u8, 10, 30, 50, 90] {
        for component in Component::ALL {
            let flags =
                Flags::default().with_rule(component, FlagRule::new(true, percent).unwrap());
            let share = share_enabled(&flags, component, 10_000);
            assert!(
                (share - f64::from(percent)).abs() <= 2.0,
                "{component} at {percent} %: {share} %"
            );
        }
    }
}

#[test]
fn zero_and_hundred_percent_are_exact() {
    let none = Flags::default().with_rule(Component::Hde, FlagRule::new(true, 0).unwrap());
    assert!((share_enabled(&none, Component::Hde, 2_000) - 0.0).abs() < f64::EPSILON);
    let all = Flags::default();
    assert!((share_enabled(&all, Component::Hde, 2_000) - 100.0).abs() < f64::EPSILON);
}

#[test]
fn the_same_node_gets_the_same_answer_and_raising_the_percentage_only_adds_nodes() {
    let at = |p: u8| Flags::default().with_rule(Component::Pba, FlagRule::new(true, p).unwrap());
    for i in 0..1_000 {
        let id = node(i);
        let mut was_on = false;
        for p in 0..=100 {
            let on = at(p).is_enabled(Component::Pba, &id);
            assert_eq!(on, at(p).is_enabled(Component::Pba, &id), "stable");
            assert!(!was_on || on, "{id} left the rollout when it grew to {p} %");
            was_on = on;
        }
    }
}

#[test]
fn the_bucket_is_pinned_so_restarts_and_releases_agree() {
    // Fixed values: a change to the hash, its context or its input layout would silently
    // move nodes in or out of every rollout.
    let buckets: Vec<u64> = ["node-a", "node-b", "3f0c1d7e-2a4b-4c7d-9e1f-0a1b2c3d4e5f"]
        .iter()
        .map(|id| rollout_bucket(Component::Hde, id))
        .collect();
    assert_eq!(buckets, vec![29, 28, 14]);
}

#[test]
fn flags_have_independent_buckets() {
    let flags = Flags::default()
        .with_rule(Component::Hde, FlagRule::new(true, 50).unwrap())
        .with_rule(Component::Pba, FlagRule::new(true, 50).unwrap());
    let both = (0..10_000)
        .filter(|&i| {
            let f = flags.for_node(&node(i));
            f.hde && f.pba
        })
        .count();
    // Independent halves overlap on about a quarter of the nodes, not a half.
    assert!((2_300..=2_700).contains(&both), "{both}");
}

#[test]
fn disabled_overrides_the_percentage() {
    let flags =
        Flags::default().with_rule(Component::Multistream, FlagRule::new(false, 100).unwrap());
    assert!(!flags.is_enabled(Component::Multistream, "node-a"));
    assert!(flags.is_enabled(Component::Hde, "node-a"));
}

#[test]
fn kill_switch_turns_every_component_off_and_back() {
    let set = FlagSet::new(Flags::default());
    let before = set.snapshot();
    assert_eq!(
        before.for_node("node-a"),
        NodeFeatures {
            hde: true,
            pba: true,
            multistream: true,
            dedup_store: true
        }
    );
    set.set_kill_switch(true);
    let killed = set.snapshot();
    for i in 0..100 {
        for c in Component::ALL {
            assert!(!killed.is_enabled(c, &node(i)));
        }
    }
    // A session that took its snapshot before keeps it.
    assert!(before.is_enabled(Component::Hde, "node-a"));
    set.set_kill_switch(false);
    assert_eq!(*set.snapshot(), Flags::default(), "rules are kept");
}

#[test]
fn update_is_seen_by_every_clone_for_the_next_snapshot() {
    let set = FlagSet::default();
    let other = set.clone();
    let old = other.snapshot();
    set.update(Flags::ALL_OFF);
    assert_eq!(*other.snapshot(), Flags::ALL_OFF);
    assert_eq!(*old, Flags::default());
}

#[test]
fn parses_a_full_document() {
    let flags = Flags::from_json(
        r#"{
            "kill_switch": false,
            "hde": { "enabled": true, "rollout_percent": 30 },
            "pba": { "enabled": true, "rollout_percent": 100 },
            "multistream": { "enabled": true },
            "dedup_store": { "enabled": false }
        }"#,
    )
    .unwrap();
    assert_eq!(flags.rule(Component::Hde), FlagRule::new(true, 30).unwrap());
    assert_eq!(flags.rule(Component::Pba), FlagRule::ON);
    assert_eq!(flags.rule(Component::Multistream), FlagRule::ON);
    assert_eq!(
        flags.rule(Component::DedupStore),
        FlagRule::new(false, 100).unwrap()
    );
    assert!(!flags.kill_switch());
}

#[test]
fn absent_keys_are_fully_on_and_the_document_round_trips() {
    assert_eq!(Flags::from_json("{}").unwrap(), Flags::default());
    let flags = Flags::default()
        .with_kill_switch(true)
        .with_rule(Component::DedupStore, FlagRule::new(true, 7).unwrap());
    assert_eq!(Flags::from_json(&flags.to_json()).unwrap(), flags);
}

fn error(text: &str) -> String {
    Flags::from_json(text).unwrap_err().to_string()
}

#[test]
fn errors_name_the_field() {
    assert_eq!(
        error(r#"{"hde": {"rollout_percent": 101}}"#),
        "field `hde.rollout_percent` is 101, above 100"
    );
    assert_eq!(
        error(r#"{"pba": {"rollout_percent": 300}}"#),
        "field `pba.rollout_percent` is 300, above 100"
    );
    assert_eq!(
        error(r#"{"pba": {"rollout_percent": -1}}"#),
        "field `pba.rollout_percent` must be an integer from 0 to 100"
    );
    assert_eq!(
        error(r#"{"pba": {"rollout_percent": 12.5}}"#),
        "field `pba.rollout_percent` must be an integer from 0 to 100"
    );
    assert_eq!(
        error(r#"{"compression": {"enabled": true}}"#),
        "unknown field `compression` in flags (expected one of: kill_switch, hde, pba, \
         multistream, dedup_store)"
    );
    assert_eq!(
        error(r#"{"hde": {"enable": true}}"#),
        "unknown field `hde.enable` in flags (expected one of: enabled, rollout_percent)"
    );
    assert_eq!(
        error(r#"{"kill_switch": "yes"}"#),
        "field `kill_switch` must be true or false"
    );
    assert_eq!(
        error(r#"{"multistream": {"enabled": 1}}"#),
        "field `multistream.enabled` must be true or false"
    );
    assert_eq!(error(r#"{"hde": true}"#), "field `hde` must be an object");
    assert_eq!(error("[]"), "flags document must be a JSON object");
    assert!(matches!(Flags::from_json("{"), Err(FlagsError::Syntax(_))));
}

#[test]
fn rule_constructor_refuses_more_than_a_hundred_percent() {
    assert!(matches!(
        FlagRule::new(true, 101),
        Err(FlagsError::RolloutPercent { value: 101, .. })
    ));
    assert_eq!(FlagRule::new(true, 100).unwrap(), FlagRule::ON);
}
