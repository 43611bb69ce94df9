//! Typed helpers over [`QmpClient::execute`] for the commands the node daemon needs.

use std::fmt;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::{QmpClient, QmpError};

/// QEMU's run state (`query-status`'s `status`, QAPI `RunState`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RunState {
    /// Stopped by a debugger.
    Debug,
    /// Waiting for an incoming migration.
    Inmigrate,
    /// Stopped after an internal error.
    InternalError,
    /// Stopped after a disk I/O error.
    IoError,
    /// Paused by `stop`.
    Paused,
    /// Stopped after finishing an outgoing migration.
    Postmigrate,
    /// Started with `-S` and not yet continued.
    Prelaunch,
    /// Stopping to finish an outgoing migration.
    FinishMigrate,
    /// Loading a snapshot.
    RestoreVm,
    /// Running.
    Running,
    /// Saving a snapshot.
    SaveVm,
    /// The guest shut down and QEMU was told not to exit (`-no-shutdown`).
    Shutdown,
    /// The guest is suspended (ACPI S3).
    Suspended,
    /// Stopped by the watchdog.
    Watchdog,
    /// The guest panicked.
    GuestPanicked,
    /// COLO fault-tolerance state.
    Colo,
    /// A state this driver does not know (from a newer QEMU).
    Other(String),
}

impl RunState {
    /// Reads QEMU's spelling; unknown names become [`RunState::Other`].
    #[must_use]
    pub fn from_qmp(name: &str) -> Self {
        match name {
            "debug" => Self::Debug,
            "inmigrate" => Self::Inmigrate,
            "internal-error" => Self::InternalError,
            "io-error" => Self::IoError,
            "paused" => Self::Paused,
            "postmigrate" => Self::Postmigrate,
            "prelaunch" => Self::Prelaunch,
            "finish-migrate" => Self::FinishMigrate,
            "restore-vm" => Self::RestoreVm,
            "running" => Self::Running,
            "save-vm" => Self::SaveVm,
            "shutdown" => Self::Shutdown,
            "suspended" => Self::Suspended,
            "watchdog" => Self::Watchdog,
            "guest-panicked" => Self::GuestPanicked,
            "colo" => Self::Colo,
            other => Self::Other(other.to_owned()),
        }
    }

    /// QEMU's spelling.
    #[must_use]
    pub fn as_str(&self) -> &str {
        match self {
            Self::Debug => "debug",
            Self::Inmigrate => "inmigrate",
            Self::InternalError => "internal-error",
            Self::IoError => "io-error",
            Self::Paused => "paused",
            Self::Postmigrate => "postmigrate",
            Self::Prelaunch => "prelaunch",
            Self::FinishMigrate => "finish-migrate",
            Self::RestoreVm => "restore-vm",
            Self::Running => "running",
            Self::SaveVm => "save-vm",
            Self::Shutdown => "shutdown",
            Self::Suspended => "suspended",
            Self::Watchdog => "watchdog",
            Self::GuestPanicked => "guest-panicked",
            Self::Colo => "colo",
            Self::Other(name) => name,
        }
    }
}

impl fmt::Display for RunState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The reply to `query-status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusInfo {
    /// Whether the vCPUs are running.
    pub running: bool,
    /// The run state.
    pub status: RunState,
}

/// One vCPU, from `query-cpus-fast`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct CpuInfo {
    /// Index of the vCPU.
    pub cpu_index: u32,
    /// QOM path of the vCPU object.
    pub qom_path: String,
    /// Host thread id (TID) running the vCPU; under TCG without MTTCG, all vCPUs share one.
    pub thread_id: u32,
    /// Target architecture (`x86_64`).
    pub target: String,
}

#[derive(Deserialize)]
struct RawStatus {
    running: bool,
    status: String,
}

fn decode<T: DeserializeOwned>(command: &'static str, value: Value) -> Result<T, QmpError> {
    serde_json::from_value(value).map_err(|source| QmpError::UnexpectedReturn { command, source })
}

impl QmpClient {
    /// `query-status`: whether the guest runs, and QEMU's run state.
    ///
    /// # Errors
    /// As for [`QmpClient::execute`], and [`QmpError::UnexpectedReturn`] for a reply of
    /// another shape.
    pub async fn query_status(&self) -> Result<StatusInfo, QmpError> {
        let raw: RawStatus = decode(
            "query-status",
            self.execute("query-status", Value::Null).await?,
        )?;
        Ok(StatusInfo {
            running: raw.running,
            status: RunState::from_qmp(&raw.status),
        })
    }

    /// `query-cpus-fast`: the vCPUs and their host threads.
    ///
    /// # Errors
    /// As for [`QmpClient::query_status`].
    pub async fn query_cpus_fast(&self) -> Result<Vec<CpuInfo>, QmpError> {
        decode(
            "query-cpus-fast",
            self.execute("query-cpus-fast", Value::Null).await?,
        )
    }

    /// `cont`: resumes the vCPUs.
    ///
    /// # Errors
    /// As for [`QmpClient::execute`].
    pub async fn cont(&self) -> Result<(), QmpError> {
        self.execute("cont", Value::Null).await.map(drop)
    }

    /// `stop`: pauses the vCPUs.
    ///
    /// # Errors
    /// As for [`QmpClient::execute`].
    pub async fn stop(&self) -> Result<(), QmpError> {
        self.execute("stop", Value::Null).await.map(drop)
    }

    /// `system_powerdown`: presses the ACPI power button. The guest decides whether to shut
    /// down; one without ACPI support ignores it.
    ///
    /// # Errors
    /// As for [`QmpClient::execute`].
    pub async fn system_powerdown(&self) -> Result<(), QmpError> {
        self.execute("system_powerdown", Value::Null)
            .await
            .map(drop)
    }

    /// `system_reset`: resets the machine, like the reset button.
    ///
    /// # Errors
    /// As for [`QmpClient::execute`].
    pub async fn system_reset(&self) -> Result<(), QmpError> {
        self.execute("system_reset", Value::Null).await.map(drop)
    }

    /// `quit`: QEMU exits at once, without asking the guest. QEMU may close the socket
    /// before its reply arrives, so a disconnection counts as success.
    ///
    /// # Errors
    /// As for [`QmpClient::execute`], except [`QmpError::Disconnected`].
    pub async fn quit(&self) -> Result<(), QmpError> {
        match self.execute("quit", Value::Null).await {
            Ok(_) | Err(QmpError::Disconnected(_)) => Ok(()),
            Err(err) => Err(err),
        }
    }

    /// `closefd`: makes QEMU close a descriptor passed with [`QmpClient::send_fd`].
    ///
    /// # Errors
    /// As for [`QmpClient::execute`].
    pub async fn close_fd(&self, name: &str) -> Result<(), QmpError> {
        self.execute("closefd", json!({ "fdname": name }))
            .await
            .map(drop)
    }
}
