//! Tests of the block helpers against a scripted fake QEMU.

use std::time::Duration;

use serde_json::json;

use super::block::{BlockJobInfo, JobEnd, JobWaitError, job_end, next_job_ready, wait_job_end};
use super::testing::connected;
use super::{QmpEvent, QmpOptions};

fn event(name: &str, data: serde_json::Value) -> QmpEvent {
    QmpEvent {
        name: name.to_owned(),
        data,
        timestamp: None,
    }
}

#[tokio::test]
async fn mirror_helpers_send_qemus_arguments() {
    let (client, mut fake) = connected(QmpOptions::default()).await;
    let calls = async {
        client
            .nbd_server_start(std::path::Path::new("/run/vm/nbd.sock"))
            .await
            .unwrap();
        client.nbd_export_add("disk0", "disk0", true).await.unwrap();
        client
            .blockdev_add_nbd_fd("nc-nbd-disk0", "nc-nbd-disk0", "disk0")
            .await
            .unwrap();
        client
            .blockdev_mirror_top("job0", "disk0", "nc-nbd-disk0", 1 << 20)
            .await
            .unwrap();
        client.block_job_cancel("job0", false).await.unwrap();
        client.blockdev_del("nc-nbd-disk0").await.unwrap();
        client.nbd_server_stop().await.unwrap();
    };
    let serve = async {
        let expected = [
            (
                "nbd-server-start",
                json!({"addr": {"type": "unix", "data": {"path": "/run/vm/nbd.sock"}}}),
            ),
            (
                "block-export-add",
                json!({"type": "nbd", "id": "disk0", "node-name": "disk0", "name": "disk0",
                       "writable": true}),
            ),
            (
                "blockdev-add",
                json!({"driver": "nbd", "node-name": "nc-nbd-disk0", "export": "disk0",
                       "server": {"type": "fd", "str": "nc-nbd-disk0"}}),
            ),
            (
                "blockdev-mirror",
                json!({"job-id": "job0", "device": "disk0", "target": "nc-nbd-disk0",
                       "sync": "top", "buf-size": 1 << 20}),
            ),
            (
                "block-job-cancel",
                json!({"device": "job0", "force": false}),
            ),
            ("blockdev-del", json!({"node-name": "nc-nbd-disk0"})),
        ];
        for (command, arguments) in expected {
            let request = fake.recv().await.unwrap();
            assert_eq!(request["execute"], command);
            assert_eq!(request["arguments"], arguments, "{command}");
            fake.reply(&request["id"], json!({})).await;
        }
        let id = fake.expect("nbd-server-stop").await;
        fake.reply(&id, json!({})).await;
    };
    tokio::join!(calls, serve);
}

#[tokio::test]
async fn query_block_jobs_reads_progress_and_readiness() {
    let (client, mut fake) = connected(QmpOptions::default()).await;
    let serve = async {
        let id = fake.expect("query-block-jobs").await;
        fake.reply(
            &id,
            json!([{"auto-finalize": true, "io-status": "ok", "device": "job0",
                    "auto-dismiss": true, "busy": false, "len": 4_194_304,
                    "offset": 1_048_576, "status": "running", "paused": false, "speed": 0,
                    "ready": false, "type": "mirror"}]),
        )
        .await;
    };
    let (jobs, ()) = tokio::join!(client.query_block_jobs(), serve);
    assert_eq!(
        jobs.unwrap(),
        vec![BlockJobInfo {
            device: "job0".to_owned(),
            kind: "mirror".to_owned(),
            len: 4_194_304,
            offset: 1_048_576,
            ready: false,
            status: "running".to_owned(),
        }]
    );
}

#[test]
fn job_ends_are_read_from_their_events() {
    let done = event(
        "BLOCK_JOB_COMPLETED",
        json!({"device": "job0", "type": "mirror"}),
    );
    assert_eq!(job_end(&done, "job0"), Some(JobEnd::Completed));
    assert_eq!(job_end(&done, "job1"), None, "another job's event");
    let failed = event(
        "BLOCK_JOB_COMPLETED",
        json!({"device": "job0", "error": "Input/output error"}),
    );
    assert_eq!(
        job_end(&failed, "job0"),
        Some(JobEnd::Failed("Input/output error".to_owned()))
    );
    let cancelled = event("BLOCK_JOB_CANCELLED", json!({"device": "job0"}));
    assert_eq!(job_end(&cancelled, "job0"), Some(JobEnd::Cancelled));
    let ready = event("BLOCK_JOB_READY", json!({"device": "job0"}));
    assert_eq!(job_end(&ready, "job0"), None);
}

#[tokio::test]
async fn waiting_for_a_job_skips_other_events_and_times_out() {
    let (client, mut fake) = connected(QmpOptions::default()).await;
    let mut events = client.events();
    fake.send_event("BLOCK_JOB_READY", json!({"device": "job0"}))
        .await;
    fake.send_event("BLOCK_JOB_COMPLETED", json!({"device": "job0"}))
        .await;
    let end = wait_job_end(&mut events, "job0", Duration::from_secs(10)).await;
    assert_eq!(end.unwrap(), JobEnd::Completed);
    let none = wait_job_end(&mut events, "job0", Duration::from_millis(50)).await;
    assert!(
        matches!(none, Err(JobWaitError::Timeout { .. })),
        "{none:?}"
    );
}

#[tokio::test]
async fn the_next_ready_event_skips_other_events_and_waits_for_one() {
    let (client, mut fake) = connected(QmpOptions::default()).await;
    let mut events = client.events();
    fake.send_event("BLOCK_JOB_PENDING", json!({"id": "job0"}))
        .await;
    fake.send_event("BLOCK_JOB_READY", json!({"device": "job0"}))
        .await;
    let ready = tokio::time::timeout(Duration::from_secs(10), next_job_ready(&mut events)).await;
    assert!(ready.is_ok(), "no ready event");
    // Nothing more: it waits.
    let none = tokio::time::timeout(Duration::from_millis(50), next_job_ready(&mut events)).await;
    assert!(none.is_err(), "a ready event came from nowhere");
}
