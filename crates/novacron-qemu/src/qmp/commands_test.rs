//! Tests of the typed QMP helpers against a scripted fake QEMU.

use serde_json::json;

use super::testing::connected;
use super::{CpuInfo, QmpError, QmpOptions, RunState};

#[tokio::test]
async fn query_status_reads_running_and_state() {
    let (client, mut fake) = connected(QmpOptions::default()).await;
    let serve = async {
        let id = fake.expect("query-status").await;
        fake.reply(
            &id,
            json!({"running": false, "singlestep": false, "status": "paused"}),
        )
        .await;
    };
    let (status, ()) = tokio::join!(client.query_status(), serve);
    let status = status.unwrap();
    assert!(!status.running);
    assert_eq!(status.status, RunState::Paused);
}

#[tokio::test]
async fn query_status_of_an_unexpected_shape_is_an_unexpected_return() {
    let (client, mut fake) = connected(QmpOptions::default()).await;
    let serve = async {
        let id = fake.expect("query-status").await;
        fake.reply(&id, json!({"running": "yes"})).await;
    };
    let (status, ()) = tokio::join!(client.query_status(), serve);
    assert!(
        matches!(
            status,
            Err(QmpError::UnexpectedReturn {
                command: "query-status",
                ..
            })
        ),
        "{status:?}"
    );
}

#[tokio::test]
async fn query_cpus_fast_lists_vcpus_and_threads() {
    let (client, mut fake) = connected(QmpOptions::default()).await;
    let serve = async {
        let id = fake.expect("query-cpus-fast").await;
        fake.reply(
            &id,
            json!([
                {"thread-id": 101, "props": {"core-id": 0, "thread-id": 0, "node-id": 0, "socket-id": 0},
                 "qom-path": "/machine/unattached/device[0]", "cpu-index": 0, "target": "x86_64"},
                {"thread-id": 102, "props": {"core-id": 0, "thread-id": 0, "socket-id": 1},
                 "qom-path": "/machine/unattached/device[1]", "cpu-index": 1, "target": "x86_64"}
            ]),
        )
        .await;
    };
    let (cpus, ()) = tokio::join!(client.query_cpus_fast(), serve);
    let cpus = cpus.unwrap();
    assert_eq!(cpus.len(), 2);
    assert_eq!(
        cpus[1],
        CpuInfo {
            cpu_index: 1,
            qom_path: "/machine/unattached/device[1]".to_owned(),
            thread_id: 102,
            target: "x86_64".to_owned(),
        }
    );
}

#[tokio::test]
async fn lifecycle_helpers_send_their_commands() {
    let (client, mut fake) = connected(QmpOptions::default()).await;
    let calls = async {
        client.cont().await.unwrap();
        client.stop().await.unwrap();
        client.system_powerdown().await.unwrap();
        client.system_reset().await.unwrap();
        client.close_fd("mig").await.unwrap();
    };
    let serve = async {
        for command in ["cont", "stop", "system_powerdown", "system_reset"] {
            let id = fake.expect(command).await;
            fake.reply(&id, json!({})).await;
        }
        let request = fake.recv().await.unwrap();
        assert_eq!(request["execute"], "closefd");
        assert_eq!(request["arguments"], json!({"fdname": "mig"}));
        fake.reply(&request["id"], json!({})).await;
    };
    tokio::join!(calls, serve);
}

#[test]
fn run_states_round_trip_through_qemu_names() {
    for name in [
        "debug",
        "inmigrate",
        "internal-error",
        "io-error",
        "paused",
        "postmigrate",
        "prelaunch",
        "finish-migrate",
        "restore-vm",
        "running",
        "save-vm",
        "shutdown",
        "suspended",
        "watchdog",
        "guest-panicked",
        "colo",
    ] {
        let state = RunState::from_qmp(name);
        assert!(!matches!(state, RunState::Other(_)), "{name}");
        assert_eq!(state.to_string(), name);
    }
    assert_eq!(
        RunState::from_qmp("warp-speed"),
        RunState::Other("warp-speed".to_owned())
    );
    assert_eq!(RunState::from_qmp("warp-speed").as_str(), "warp-speed");
}
