//! Block commands for moving a disk with its running guest: QEMU's NBD server and exports on
//! the receiving side, an NBD client node and a mirror job on the sending side.
//!
//! ```text
//!  source QEMU                                         destination QEMU (-incoming)
//!  disk0 ─► blockdev-mirror (sync top) ─► nbd node ══ socket ══► NBD export of disk0
//!           ready: copies every write as it happens   nbd-server-start + block-export-add
//!  switch-over: block-job-cancel (a ready mirror ends in sync), blockdev-del, nbd-server-stop
//! ```

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;

use super::{QmpClient, QmpError};

/// One block job, as `query-block-jobs` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct BlockJobInfo {
    /// The job's id (`job-id` when it was started).
    pub device: String,
    /// Job type (`mirror`, `commit`...).
    #[serde(rename = "type")]
    pub kind: String,
    /// Bytes the job expects to handle; it grows while the guest writes.
    pub len: u64,
    /// Bytes handled so far.
    pub offset: u64,
    /// A mirror is ready once source and target hold the same data; from then on it copies
    /// each write as it happens, and cancelling it leaves the target in sync.
    pub ready: bool,
    /// Job status (`running`, `ready`, `concluded`...).
    pub status: String,
}

/// How a block job ended (`BLOCK_JOB_COMPLETED` or `BLOCK_JOB_CANCELLED`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobEnd {
    /// It completed; for a ready mirror that was cancelled, the target holds what the source
    /// does.
    Completed,
    /// It was cancelled before it was ready: the target is incomplete.
    Cancelled,
    /// It failed.
    Failed(String),
}

/// Why waiting for a job's end gave up.
#[derive(Debug, thiserror::Error)]
pub enum JobWaitError {
    /// No end event within the time allowed.
    #[error("block job {job} did not end within {} ms", .waited.as_millis())]
    Timeout {
        /// The job.
        job: String,
        /// How long it was waited for.
        waited: Duration,
    },
    /// The QMP connection closed first.
    #[error("the QMP connection closed while waiting for block job {job}")]
    Closed {
        /// The job.
        job: String,
    },
}

impl QmpClient {
    /// `nbd-server-start` on the Unix socket `path`: QEMU's NBD server, for exports added
    /// with [`QmpClient::nbd_export_add`].
    ///
    /// # Errors
    /// As for [`QmpClient::execute`]: a server already running, a path QEMU cannot bind.
    pub async fn nbd_server_start(&self, path: &Path) -> Result<(), QmpError> {
        let path = path
            .to_str()
            .ok_or_else(|| QmpError::NonUtf8Path(path.to_owned()))?;
        self.execute(
            "nbd-server-start",
            json!({ "addr": { "type": "unix", "data": { "path": path } } }),
        )
        .await
        .map(drop)
    }

    /// `block-export-add` of block node `node` as NBD export `name` (also the export's id),
    /// writable when `writable`. A node still inactive for an incoming migration is activated.
    ///
    /// # Errors
    /// As for [`QmpClient::execute`]: no such node, no NBD server, a name in use.
    pub async fn nbd_export_add(
        &self,
        node: &str,
        name: &str,
        writable: bool,
    ) -> Result<(), QmpError> {
        self.execute(
            "block-export-add",
            json!({ "type": "nbd", "id": name, "node-name": node, "name": name,
                    "writable": writable }),
        )
        .await
        .map(drop)
    }

    /// `nbd-server-stop`: closes the NBD server and every NBD export, with their clients.
    ///
    /// # Errors
    /// As for [`QmpClient::execute`]: no server running.
    pub async fn nbd_server_stop(&self) -> Result<(), QmpError> {
        self.execute("nbd-server-stop", Value::Null).await.map(drop)
    }

    /// `blockdev-add` of an NBD client node `node` for export `export`, over the connected
    /// socket passed earlier with [`QmpClient::send_fd`] under `fd_name`. QEMU negotiates with
    /// the server before it answers.
    ///
    /// # Errors
    /// As for [`QmpClient::execute`]: no descriptor of that name, a failed negotiation.
    pub async fn blockdev_add_nbd_fd(
        &self,
        node: &str,
        fd_name: &str,
        export: &str,
    ) -> Result<(), QmpError> {
        self.execute(
            "blockdev-add",
            json!({ "driver": "nbd", "node-name": node, "export": export,
                    "server": { "type": "fd", "str": fd_name } }),
        )
        .await
        .map(drop)
    }

    /// `blockdev-del` of node `node`.
    ///
    /// # Errors
    /// As for [`QmpClient::execute`]: no such node, or one still in use.
    pub async fn blockdev_del(&self, node: &str) -> Result<(), QmpError> {
        self.execute("blockdev-del", json!({ "node-name": node }))
            .await
            .map(drop)
    }

    /// `blockdev-mirror` job `job` of `device`'s top layer (what its backing image lacks) to
    /// node `target`, copying `buf_size` bytes at most at once.
    ///
    /// # Errors
    /// As for [`QmpClient::execute`]: no such node, a job id in use.
    pub async fn blockdev_mirror_top(
        &self,
        job: &str,
        device: &str,
        target: &str,
        buf_size: u64,
    ) -> Result<(), QmpError> {
        self.execute(
            "blockdev-mirror",
            json!({ "job-id": job, "device": device, "target": target, "sync": "top",
                    "buf-size": buf_size }),
        )
        .await
        .map(drop)
    }

    /// `query-block-jobs`.
    ///
    /// # Errors
    /// As for [`QmpClient::execute`], and [`QmpError::UnexpectedReturn`] for a reply of
    /// another shape.
    pub async fn query_block_jobs(&self) -> Result<Vec<BlockJobInfo>, QmpError> {
        let reply = self.execute("query-block-jobs", Value::Null).await?;
        serde_json::from_value(reply).map_err(|source| QmpError::UnexpectedReturn {
            command: "query-block-jobs",
            source,
        })
    }

    /// `block-job-cancel` of job `job`. A ready mirror then completes with the target in
    /// sync (`force: false`); any other job stops where it is.
    ///
    /// # Errors
    /// As for [`QmpClient::execute`]: no such job.
    pub async fn block_job_cancel(&self, job: &str, force: bool) -> Result<(), QmpError> {
        self.execute("block-job-cancel", json!({ "device": job, "force": force }))
            .await
            .map(drop)
    }
}

/// Resolves with QEMU's next `BLOCK_JOB_READY` event (a mirror caught up with its disk and
/// from now on copies each write as it happens); never, once the connection closed. Other
/// events are skipped. Cancel-safe: an event not yet read stays for the next call.
pub async fn next_job_ready(events: &mut tokio::sync::broadcast::Receiver<super::QmpEvent>) {
    loop {
        match events.recv().await {
            Ok(e) if e.name == "BLOCK_JOB_READY" => return,
            Ok(_) | Err(RecvError::Lagged(_)) => {}
            Err(RecvError::Closed) => std::future::pending::<()>().await,
        }
    }
}

/// Waits at most `wait` for job `job`'s end event. Subscribe with [`QmpClient::events`]
/// before the command that ends the job, and pass the receiver here, so that no event is
/// missed.
///
/// # Errors
/// [`JobWaitError`] when no end arrives in time or the connection closes.
pub async fn wait_job_end(
    events: &mut tokio::sync::broadcast::Receiver<super::QmpEvent>,
    job: &str,
    wait: Duration,
) -> Result<JobEnd, JobWaitError> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let event = match tokio::time::timeout_at(deadline, events.recv()).await {
            Err(_) => {
                return Err(JobWaitError::Timeout {
                    job: job.to_owned(),
                    waited: wait,
                });
            }
            Ok(Err(RecvError::Lagged(_))) => continue,
            Ok(Err(RecvError::Closed)) => {
                return Err(JobWaitError::Closed {
                    job: job.to_owned(),
                });
            }
            Ok(Ok(event)) => event,
        };
        if let Some(end) = job_end(&event, job) {
            return Ok(end);
        }
    }
}

/// The end of job `job` that `event` reports, if it reports one.
#[must_use]
pub fn job_end(event: &super::QmpEvent, job: &str) -> Option<JobEnd> {
    if event.data.get("device").and_then(Value::as_str) != Some(job) {
        return None;
    }
    match event.name.as_str() {
        "BLOCK_JOB_COMPLETED" => Some(match event.data.get("error").and_then(Value::as_str) {
            Some(e) => JobEnd::Failed(e.to_owned()),
            None => JobEnd::Completed,
        }),
        "BLOCK_JOB_CANCELLED" => Some(JobEnd::Cancelled),
        _ => None,
    }
}
