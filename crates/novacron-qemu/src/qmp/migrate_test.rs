//! Tests of the migration helpers: decoding real `query-migrate` replies, the status names,
//! the requests sent, and waiting on events and polls against a scripted fake QEMU.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use super::*;
use crate::qmp::QmpOptions;
use crate::qmp::testing::connected;

/// `query-migrate` on the source at the end of the migration in `tests/qemu/t06_migrate.rs`
/// (QEMU 10.0.2, TCG, 128 MiB guest), as QEMU sent it.
const COMPLETED_SOURCE: &str = r#"{"downtime":58,"ram":{"dirty-pages-rate":0,"dirty-sync-count":3,"dirty-sync-missed-zero-copy":0,"downtime-bytes":21180864,"duplicate":11525,"mbps":1273.8131039426523,"multifd-bytes":0,"normal":21585,"normal-bytes":88412160,"page-size":4096,"pages-per-second":56910,"postcopy-bytes":0,"postcopy-requests":0,"precopy-bytes":67507832,"remaining":0,"total":134750208,"transferred":88848464},"setup-time":1,"status":"completed","total-time":559}"#;

/// The same migration on the destination: only the status.
const COMPLETED_DESTINATION: &str = r#"{"status":"completed"}"#;

/// The source one second into a migration capped at 1 MiB/s (the cancel test there).
const ACTIVE_SOURCE: &str = r#"{"expected-downtime":300,"ram":{"dirty-pages-rate":0,"dirty-sync-count":1,"dirty-sync-missed-zero-copy":0,"downtime-bytes":0,"duplicate":4055,"mbps":10.50768,"multifd-bytes":0,"normal":361,"normal-bytes":1478656,"page-size":4096,"pages-per-second":320,"postcopy-bytes":0,"postcopy-requests":0,"precopy-bytes":1518134,"remaining":116662272,"total":134750208,"transferred":1518436},"setup-time":1,"status":"active","total-time":1009}"#;

fn parse(text: &str) -> MigrationInfo {
    MigrationInfo::from_qmp(serde_json::from_str(text).unwrap()).unwrap()
}

#[test]
fn completed_source_reply_of_qemu_10_decodes_with_downtime_and_ram_stats() {
    let info = parse(COMPLETED_SOURCE);
    assert_eq!(info.status, MigrationStatus::Completed);
    assert_eq!(info.downtime, Some(Duration::from_millis(58)));
    assert_eq!(info.total_time, Some(Duration::from_millis(559)));
    assert_eq!(info.setup_time, Some(Duration::from_millis(1)));
    assert_eq!(info.expected_downtime, None);
    assert_eq!(info.error_desc, None);
    let ram = info.ram.unwrap();
    assert_eq!(ram.transferred, 88_848_464);
    assert_eq!(ram.remaining, 0);
    assert_eq!(ram.total, 134_750_208);
    assert_eq!(ram.duplicate, 11_525);
    assert_eq!(ram.normal, 21_585);
    assert_eq!(ram.normal_bytes, 88_412_160);
    assert_eq!(ram.dirty_pages_rate, 0);
    assert_eq!(ram.dirty_sync_count, 3);
    assert_eq!(ram.page_size, 4096);
    assert_eq!(ram.pages_per_second, 56_910);
    assert_eq!(ram.precopy_bytes, 67_507_832);
    assert_eq!(ram.downtime_bytes, 21_180_864);
    assert!(
        (ram.mbps - 1_273.813_103_942_652_3).abs() < 1e-9,
        "{}",
        ram.mbps
    );
}

#[test]
fn completed_destination_reply_has_only_the_status() {
    let info = parse(COMPLETED_DESTINATION);
    assert_eq!(info.status, MigrationStatus::Completed);
    assert_eq!(info.ram, None);
    assert_eq!(info.total_time, None);
    assert_eq!(info.downtime, None);
}

#[test]
fn active_reply_has_expected_downtime_and_remaining_bytes() {
    let info = parse(ACTIVE_SOURCE);
    assert_eq!(info.status, MigrationStatus::Active);
    assert_eq!(info.expected_downtime, Some(Duration::from_millis(300)));
    assert_eq!(info.downtime, None);
    assert_eq!(info.total_time, Some(Duration::from_millis(1009)));
    let ram = info.ram.unwrap();
    assert_eq!(ram.remaining, 116_662_272);
    assert_eq!(ram.transferred, 1_518_436);
    assert_eq!(ram.dirty_sync_count, 1);
}

#[test]
fn every_known_status_reads_back_as_qemu_spells_it() {
    for name in [
        "none",
        "setup",
        "cancelling",
        "cancelled",
        "active",
        "postcopy-active",
        "postcopy-paused",
        "postcopy-recover-setup",
        "postcopy-recover",
        "completed",
        "failed",
        "colo",
        "pre-switchover",
        "device",
        "wait-unplug",
    ] {
        let status = MigrationStatus::from_qmp(name);
        assert!(!matches!(status, MigrationStatus::Other(_)), "{name}");
        assert_eq!(status.as_str(), name);
        assert_eq!(status.to_string(), name);
    }
}

#[test]
fn unknown_status_is_kept_by_name() {
    let status = MigrationStatus::from_qmp("postcopy-teleport");
    assert_eq!(
        status,
        MigrationStatus::Other("postcopy-teleport".to_owned())
    );
    assert_eq!(status.as_str(), "postcopy-teleport");
    assert!(!status.is_finished());
}

#[test]
fn only_completed_failed_and_cancelled_are_finished() {
    let finished: Vec<&str> = [
        "none",
        "setup",
        "cancelling",
        "cancelled",
        "active",
        "postcopy-active",
        "completed",
        "failed",
        "pre-switchover",
        "device",
    ]
    .into_iter()
    .filter(|name| MigrationStatus::from_qmp(name).is_finished())
    .collect();
    assert_eq!(finished, ["cancelled", "completed", "failed"]);
}

#[test]
fn reply_without_a_migration_is_status_none() {
    let info = MigrationInfo::from_qmp(json!({})).unwrap();
    assert_eq!(info.status, MigrationStatus::None);
    assert_eq!(info.ram, None);
    assert_eq!(info.downtime, None);
    assert_eq!(info.error_desc, None);
}

#[test]
fn failed_reply_carries_the_error() {
    let info = MigrationInfo::from_qmp(
        json!({"status": "failed", "error-desc": "Unable to write to socket: Broken pipe"}),
    )
    .unwrap();
    assert_eq!(info.status, MigrationStatus::Failed);
    assert_eq!(
        info.error_desc.as_deref(),
        Some("Unable to write to socket: Broken pipe")
    );
}

#[test]
fn reply_of_the_wrong_shape_is_an_error() {
    assert!(MigrationInfo::from_qmp(json!([])).is_err());
    assert!(MigrationInfo::from_qmp(json!({"status": 3})).is_err());
    assert!(MigrationInfo::from_qmp(json!({"ram": {"transferred": "many"}})).is_err());
}

#[test]
fn negative_times_read_as_unknown() {
    let info =
        MigrationInfo::from_qmp(json!({"status": "active", "expected-downtime": -1})).unwrap();
    assert_eq!(info.expected_downtime, None);
}

#[test]
fn parameters_send_only_the_fields_set_in_qemu_spelling() {
    let params = MigrationParameters {
        downtime_limit_ms: Some(300),
        max_bandwidth: Some(1 << 20),
        multifd_channels: Some(4),
        multifd_compression: Some("zstd".to_owned()),
        ..MigrationParameters::default()
    };
    assert_eq!(
        serde_json::to_value(&params).unwrap(),
        json!({
            "downtime-limit": 300,
            "max-bandwidth": 1_048_576,
            "multifd-channels": 4,
            "multifd-compression": "zstd",
        })
    );
    assert_eq!(
        serde_json::to_value(MigrationParameters::default()).unwrap(),
        json!({})
    );
}

#[tokio::test]
async fn commands_use_qemu_names_and_fd_uris() {
    let (client, mut fake) = connected(QmpOptions::default()).await;
    let serve = async {
        let mut requests = Vec::new();
        for _ in 0..5 {
            let request = fake.recv().await.unwrap();
            fake.reply(&request["id"], json!({})).await;
            requests.push(request);
        }
        requests
    };
    let calls = async {
        client
            .migrate_set_capabilities(&[("events", true), ("multifd", false)])
            .await
            .unwrap();
        client
            .migrate_set_parameters(&MigrationParameters {
                downtime_limit_ms: Some(250),
                ..MigrationParameters::default()
            })
            .await
            .unwrap();
        client.migrate_incoming_fd("mig-in").await.unwrap();
        client.migrate_to_fd("mig-out").await.unwrap();
        client.migrate_cancel().await.unwrap();
    };
    let (requests, ()) = tokio::join!(serve, calls);
    let stripped: Vec<Value> = requests
        .into_iter()
        .map(|mut r| {
            r.as_object_mut().unwrap().remove("id");
            r
        })
        .collect();
    assert_eq!(
        stripped,
        [
            json!({"execute": "migrate-set-capabilities", "arguments": {"capabilities": [
                {"capability": "events", "state": true},
                {"capability": "multifd", "state": false},
            ]}}),
            json!({"execute": "migrate-set-parameters", "arguments": {"downtime-limit": 250}}),
            json!({"execute": "migrate-incoming", "arguments": {"uri": "fd:mig-in"}}),
            json!({"execute": "migrate", "arguments": {"uri": "fd:mig-out"}}),
            json!({"execute": "migrate_cancel"}),
        ]
    );
}

#[tokio::test]
async fn wait_returns_when_the_event_announces_the_end() {
    let (client, mut fake) = connected(QmpOptions::default()).await;
    let serve = async {
        // The first poll: still active.
        let id = fake.expect("query-migrate").await;
        fake.reply(&id, json!({"status": "active"})).await;
        fake.send_event("MIGRATION", json!({"status": "completed"}))
            .await;
        let id = fake.expect("query-migrate").await;
        fake.reply(&id, json!({"status": "completed", "downtime": 42}))
            .await;
    };
    let started = Instant::now();
    let deadline = started + Duration::from_secs(30);
    let (info, ()) = tokio::join!(wait_migration(&client, deadline), serve);
    let info = info.unwrap();
    assert_eq!(info.status, MigrationStatus::Completed);
    assert_eq!(info.downtime, Some(Duration::from_millis(42)));
    // The event, not the next poll, ended the wait.
    assert!(started.elapsed() < POLL_INTERVAL, "{:?}", started.elapsed());
}

#[tokio::test]
async fn wait_polls_without_events() {
    let (client, mut fake) = connected(QmpOptions::default()).await;
    let serve = async {
        for status in ["setup", "active", "cancelled"] {
            let id = fake.expect("query-migrate").await;
            fake.reply(&id, json!({ "status": status })).await;
        }
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let (info, ()) = tokio::join!(wait_migration(&client, deadline), serve);
    assert_eq!(info.unwrap().status, MigrationStatus::Cancelled);
}

#[tokio::test]
async fn wait_gives_up_at_the_deadline_with_the_last_status() {
    let (client, mut fake) = connected(QmpOptions::default()).await;
    let serve = async {
        while let Some(request) = fake.recv().await {
            fake.reply(&request["id"], json!({"status": "active"}))
                .await;
        }
    };
    let deadline = Instant::now() + POLL_INTERVAL * 3;
    let wait = async {
        let result = wait_migration(&client, deadline).await;
        drop(client);
        result
    };
    let (result, ()) = tokio::join!(wait, serve);
    match result {
        Err(WaitMigrationError::Timeout { last }) => assert_eq!(last, MigrationStatus::Active),
        other => panic!("expected a timeout, got {other:?}"),
    }
}

#[tokio::test]
async fn migration_events_are_read_and_others_skipped() {
    let (client, mut fake) = connected(QmpOptions::default()).await;
    let mut events = client.events();
    fake.send_event("STOP", json!({})).await;
    fake.send_event("MIGRATION_PASS", json!({"pass": 2})).await;
    fake.send_event("MIGRATION", json!({"status": "device"}))
        .await;
    let wait = Duration::from_secs(10);
    let first = tokio::time::timeout(wait, next_migration_event(&mut events)).await;
    assert_eq!(first.unwrap(), MigrationEvent::Pass(2));
    let second = tokio::time::timeout(wait, next_migration_event(&mut events)).await;
    assert_eq!(
        second.unwrap(),
        MigrationEvent::Status(MigrationStatus::Device)
    );
    // None further: it waits.
    let none =
        tokio::time::timeout(Duration::from_millis(50), next_migration_event(&mut events)).await;
    assert!(none.is_err());
}
