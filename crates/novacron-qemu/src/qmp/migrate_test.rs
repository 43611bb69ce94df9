//! Tests of the migration helpers: decoding real `query-migrate` replies, the status names,
//! the requests sent, and waiting on events and polls against a scripted fake QEMU.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use super::*;
use crate::qmp::QmpOptions;
use crate::qmp::testing::connected;

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
        fake.send(
            &json!({"event": "MIGRATION", "data": {"status": "completed"},
            "timestamp": {"seconds": 1, "microseconds": 0}}),
        )
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
