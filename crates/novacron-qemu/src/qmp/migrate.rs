//! Typed helpers for QEMU's live migration commands, and waiting for a migration to reach a
//! state.
//!
//! QEMU never opens a network connection here: each side gets a connected socket passed with
//! [`QmpClient::send_fd`] and migrates over `fd:NAME`.
//!
//! ```text
//! destination (started with -incoming defer, run state inmigrate)
//!   migrate-set-capabilities [events]      getfd NAME (+ socket)     migrate-incoming fd:NAME
//! source (running)
//!   migrate-set-capabilities [events]      getfd NAME (+ socket)     migrate fd:NAME
//!
//! status (both sides, MIGRATION events with the `events` capability):
//!   none ─> setup ─> active ─┬─> (pre-switchover ─> device ─>) completed
//!                            ├─> postcopy-active ─> completed
//!                            ├─> cancelling ─> cancelled
//!                            └─> failed
//! ```
//!
//! After `completed` the source is stopped (`postmigrate`) and the destination runs (unless it
//! was told otherwise). After `failed` or `cancelled` the source runs on.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;
use tokio::time::{Instant, MissedTickBehavior};

use super::{QmpClient, QmpError, QmpEvent};

/// The capability that makes QEMU emit a `MIGRATION` event at each status change.
pub const CAPABILITY_EVENTS: &str = "events";

/// How often [`wait_migration`] asks `query-migrate` when no event arrives. Events make the
/// wait prompt; the poll covers a lost event (a lagging subscriber) or the `events`
/// capability being off.
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// The status of a migration (QAPI `MigrationStatus`), on either side.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MigrationStatus {
    /// No migration has run.
    None,
    /// Setting up the channel.
    Setup,
    /// Cancelling at the user's request.
    Cancelling,
    /// Cancelled; the source runs on.
    Cancelled,
    /// Sending (source) or receiving (destination) RAM while the guest runs on the source.
    Active,
    /// Post-copy: the guest runs on the destination, which pulls the pages it still lacks.
    PostcopyActive,
    /// Post-copy paused after a network failure.
    PostcopyPaused,
    /// Setting up the recovery of a paused post-copy.
    PostcopyRecoverSetup,
    /// Recovering a paused post-copy.
    PostcopyRecover,
    /// Done: the destination has the whole state.
    Completed,
    /// Failed; the source runs on (for pre-copy).
    Failed,
    /// COLO fault-tolerance mode.
    Colo,
    /// Paused before switch-over, waiting for `migrate-continue` (`pause-before-switchover`).
    PreSwitchover,
    /// Sending the device state after the vCPUs stopped.
    Device,
    /// Waiting for a guest to unplug devices (VFIO failover).
    WaitUnplug,
    /// A status this driver does not know (from a newer QEMU).
    Other(String),
}

impl MigrationStatus {
    /// Reads QEMU's spelling; unknown names become [`MigrationStatus::Other`].
    #[must_use]
    pub fn from_qmp(name: &str) -> Self {
        match name {
            "none" => Self::None,
            "setup" => Self::Setup,
            "cancelling" => Self::Cancelling,
            "cancelled" => Self::Cancelled,
            "active" => Self::Active,
            "postcopy-active" => Self::PostcopyActive,
            "postcopy-paused" => Self::PostcopyPaused,
            "postcopy-recover-setup" => Self::PostcopyRecoverSetup,
            "postcopy-recover" => Self::PostcopyRecover,
            "completed" => Self::Completed,
            "failed" => Self::Failed,
            "colo" => Self::Colo,
            "pre-switchover" => Self::PreSwitchover,
            "device" => Self::Device,
            "wait-unplug" => Self::WaitUnplug,
            other => Self::Other(other.to_owned()),
        }
    }

    /// QEMU's spelling.
    #[must_use]
    pub fn as_str(&self) -> &str {
        match self {
            Self::None => "none",
            Self::Setup => "setup",
            Self::Cancelling => "cancelling",
            Self::Cancelled => "cancelled",
            Self::Active => "active",
            Self::PostcopyActive => "postcopy-active",
            Self::PostcopyPaused => "postcopy-paused",
            Self::PostcopyRecoverSetup => "postcopy-recover-setup",
            Self::PostcopyRecover => "postcopy-recover",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Colo => "colo",
            Self::PreSwitchover => "pre-switchover",
            Self::Device => "device",
            Self::WaitUnplug => "wait-unplug",
            Self::Other(name) => name,
        }
    }

    /// Whether the migration has ended: `completed`, `failed` or `cancelled`. No further
    /// status follows until a new migration starts.
    #[must_use]
    pub fn is_finished(&self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Cancelled)
    }
}

impl fmt::Display for MigrationStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for MigrationStatus {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        Ok(Self::from_qmp(&name))
    }
}

/// RAM statistics of a migration (`query-migrate`'s `ram`, QAPI `MigrationStats`). Counters
/// QEMU leaves out read as 0.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "kebab-case", default)]
pub struct RamStats {
    /// Bytes sent (source) or received (destination) so far.
    pub transferred: u64,
    /// Bytes still to send (the dirty pages at the last sync).
    pub remaining: u64,
    /// Guest RAM in bytes.
    pub total: u64,
    /// Pages sent as zero pages (a marker, no content).
    pub duplicate: u64,
    /// Pages sent in full.
    pub normal: u64,
    /// Bytes of the pages sent in full.
    pub normal_bytes: u64,
    /// Pages the guest dirtied per second, measured at the last sync.
    pub dirty_pages_rate: u64,
    /// Throughput of the last period, in megabits per second.
    pub mbps: f64,
    /// Passes over the dirty bitmap so far (the first full pass counts).
    pub dirty_sync_count: u64,
    /// Page size in bytes.
    pub page_size: u64,
    /// Bytes sent over multifd channels.
    pub multifd_bytes: u64,
    /// Pages sent per second in the last period.
    pub pages_per_second: u64,
    /// Bytes sent during pre-copy.
    pub precopy_bytes: u64,
    /// Bytes sent while the vCPUs were stopped.
    pub downtime_bytes: u64,
    /// Bytes sent during post-copy.
    pub postcopy_bytes: u64,
}

/// The reply to `query-migrate` (QAPI `MigrationInfo`), trimmed to what NovaCron uses.
#[derive(Debug, Clone, PartialEq)]
pub struct MigrationInfo {
    /// The status; [`MigrationStatus::None`] when no migration has run (QEMU then replies `{}`).
    pub status: MigrationStatus,
    /// RAM statistics; `None` before the migration starts sending, and on a destination.
    pub ram: Option<RamStats>,
    /// Time since the migration started (still running) or that it took (finished); `None`
    /// when QEMU does not say (no migration, destination side).
    pub total_time: Option<Duration>,
    /// Time the set-up took; `None` while setting up and on a destination.
    pub setup_time: Option<Duration>,
    /// How long the guest was stopped for the switch-over; `None` until `completed`.
    pub downtime: Option<Duration>,
    /// QEMU's estimate of the downtime were it to switch over now; `None` outside `active`.
    pub expected_downtime: Option<Duration>,
    /// Percentage by which auto-converge throttles the vCPUs; `None` when not throttling.
    pub cpu_throttle_percentage: Option<u64>,
    /// Why the migration failed; `None` unless `failed`.
    pub error_desc: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct RawMigrationInfo {
    status: Option<MigrationStatus>,
    ram: Option<RamStats>,
    total_time: Option<i64>,
    setup_time: Option<i64>,
    downtime: Option<i64>,
    expected_downtime: Option<i64>,
    cpu_throttle_percentage: Option<u64>,
    error_desc: Option<String>,
}

/// Milliseconds from QEMU (an `int`, never negative in practice) as a duration.
fn millis(value: Option<i64>) -> Option<Duration> {
    value
        .and_then(|ms| u64::try_from(ms).ok())
        .map(Duration::from_millis)
}

impl MigrationInfo {
    /// Decodes a `query-migrate` reply.
    ///
    /// # Errors
    /// A reply that is not an object, or whose known fields have the wrong type.
    pub fn from_qmp(value: Value) -> Result<Self, serde_json::Error> {
        let raw: RawMigrationInfo = serde_json::from_value(value)?;
        Ok(Self {
            status: raw.status.unwrap_or(MigrationStatus::None),
            ram: raw.ram,
            total_time: millis(raw.total_time),
            setup_time: millis(raw.setup_time),
            downtime: millis(raw.downtime),
            expected_downtime: millis(raw.expected_downtime),
            cpu_throttle_percentage: raw.cpu_throttle_percentage,
            error_desc: raw.error_desc,
        })
    }
}

/// Migration parameters to set (`migrate-set-parameters`); `None` leaves one as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct MigrationParameters {
    /// Longest the guest may be stopped for the switch-over, in milliseconds (QEMU's default:
    /// 300). QEMU switches over once it expects to send the rest within this time.
    #[serde(rename = "downtime-limit", skip_serializing_if = "Option::is_none")]
    pub downtime_limit_ms: Option<u64>,
    /// Bandwidth cap of pre-copy, in bytes per second (QEMU's default: 128 MiB/s; 0 = none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_bandwidth: Option<u64>,
    /// Bandwidth QEMU may assume for the switch-over decision, in bytes per second; 0 lets
    /// QEMU measure it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub avail_switchover_bandwidth: Option<u64>,
    /// Bandwidth cap of post-copy, in bytes per second (0 = none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_postcopy_bandwidth: Option<u64>,
    /// Number of multifd channels (needs the `multifd` capability).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub multifd_channels: Option<u8>,
    /// Multifd compression: `none`, `zlib`, `zstd`, `qpl`, `uadk`, `qatzip`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub multifd_compression: Option<String>,
    /// zstd level of multifd compression, 0 to 20.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub multifd_zstd_level: Option<u8>,
    /// First throttle of auto-converge, in percent of vCPU time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_throttle_initial: Option<u8>,
    /// Throttle added at each step of auto-converge, in percent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_throttle_increment: Option<u8>,
    /// Dirty-page rate limit per vCPU of the `dirty-limit` capability, in MB/s.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vcpu_dirty_limit: Option<u64>,
}

/// Why [`wait_migration`] gave up.
#[derive(Debug, thiserror::Error)]
pub enum WaitMigrationError {
    /// `query-migrate` failed (QEMU gone, for one).
    #[error("could not query the migration")]
    Query(#[source] QmpError),
    /// The deadline passed first.
    #[error("migration still {last} at the deadline")]
    Timeout {
        /// The last status seen.
        last: MigrationStatus,
    },
}

impl QmpClient {
    /// `migrate-set-capabilities`: turns each named capability (`events`, `multifd`,
    /// `postcopy-ram`, `auto-converge`...) on or off. Both sides must agree on the ones that
    /// change the stream (`multifd`, `postcopy-ram`); set them before the migration starts.
    ///
    /// # Errors
    /// As for [`QmpClient::execute`]: QEMU refuses an unknown capability, and any change
    /// while a migration runs.
    pub async fn migrate_set_capabilities(
        &self,
        capabilities: &[(&str, bool)],
    ) -> Result<(), QmpError> {
        let list: Vec<Value> = capabilities
            .iter()
            .map(|(name, state)| json!({ "capability": name, "state": state }))
            .collect();
        self.execute("migrate-set-capabilities", json!({ "capabilities": list }))
            .await
            .map(drop)
    }

    /// `migrate-set-parameters` with the fields of `parameters` that are set.
    ///
    /// # Errors
    /// As for [`QmpClient::execute`]: QEMU refuses a value out of range.
    pub async fn migrate_set_parameters(
        &self,
        parameters: &MigrationParameters,
    ) -> Result<(), QmpError> {
        let arguments = serde_json::to_value(parameters).map_err(QmpError::Encode)?;
        self.execute("migrate-set-parameters", arguments)
            .await
            .map(drop)
    }

    /// `migrate` to `fd:NAME`: starts an outgoing migration over the socket passed earlier
    /// with [`QmpClient::send_fd`] under `fd_name`. Returns once QEMU has started it; follow it
    /// with [`QmpClient::query_migrate`] or [`wait_migration`]. QEMU closes the descriptor
    /// when the migration ends.
    ///
    /// # Errors
    /// As for [`QmpClient::execute`]: no descriptor of that name, a migration already
    /// running, a VM that cannot migrate (a migration blocker).
    pub async fn migrate_to_fd(&self, fd_name: &str) -> Result<(), QmpError> {
        self.execute("migrate", json!({ "uri": format!("fd:{fd_name}") }))
            .await
            .map(drop)
    }

    /// `migrate-incoming` from `fd:NAME`: a QEMU started with `-incoming defer` starts
    /// receiving over the socket passed with [`QmpClient::send_fd`] under `fd_name`.
    ///
    /// # Errors
    /// As for [`QmpClient::execute`]: QEMU not started with `-incoming defer`, or already
    /// receiving.
    pub async fn migrate_incoming_fd(&self, fd_name: &str) -> Result<(), QmpError> {
        self.execute(
            "migrate-incoming",
            json!({ "uri": format!("fd:{fd_name}") }),
        )
        .await
        .map(drop)
    }

    /// `query-migrate`: the status and statistics of the current or last migration.
    ///
    /// # Errors
    /// As for [`QmpClient::execute`], and [`QmpError::UnexpectedReturn`] for a reply of
    /// another shape.
    pub async fn query_migrate(&self) -> Result<MigrationInfo, QmpError> {
        let reply = self.execute("query-migrate", Value::Null).await?;
        MigrationInfo::from_qmp(reply).map_err(|source| QmpError::UnexpectedReturn {
            command: "query-migrate",
            source,
        })
    }

    /// `migrate-start-postcopy`: the guest stops here and runs on the destination, which
    /// pulls the pages it still lacks. Needs the `postcopy-ram` capability on both sides.
    ///
    /// # Errors
    /// As for [`QmpClient::execute`]: no migration running, or post-copy not enabled.
    pub async fn migrate_start_postcopy(&self) -> Result<(), QmpError> {
        self.execute("migrate-start-postcopy", Value::Null)
            .await
            .map(drop)
    }

    /// `migrate-continue` from `pre-switchover`: with the `pause-before-switchover`
    /// capability on, QEMU stops the guest at the end of the pre-copy (or on the switch to
    /// post-copy), its disks still in use, and waits for this before it sends the devices.
    ///
    /// # Errors
    /// As for [`QmpClient::execute`]: QEMU refuses it outside that state.
    pub async fn migrate_continue(&self) -> Result<(), QmpError> {
        self.execute("migrate-continue", json!({ "state": "pre-switchover" }))
            .await
            .map(drop)
    }

    /// `migrate_cancel`: cancels the outgoing migration. It ends in `cancelled` (or, if it
    /// was too late, `completed`); without a migration running it does nothing.
    ///
    /// # Errors
    /// As for [`QmpClient::execute`].
    pub async fn migrate_cancel(&self) -> Result<(), QmpError> {
        self.execute("migrate_cancel", Value::Null).await.map(drop)
    }
}

/// A change in a migration that QEMU reports as it happens (with the `events` capability).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MigrationEvent {
    /// A memory pass began (`MIGRATION_PASS`), with its number.
    Pass(u64),
    /// The status changed (`MIGRATION`).
    Status(MigrationStatus),
}

/// Resolves with the next [`MigrationEvent`]; never, once the connection closed. Other events
/// are skipped. Cancel-safe: an event not yet read stays for the next call.
pub async fn next_migration_event(
    events: &mut tokio::sync::broadcast::Receiver<QmpEvent>,
) -> MigrationEvent {
    loop {
        match events.recv().await {
            Ok(event) if event.name == "MIGRATION_PASS" => {
                return MigrationEvent::Pass(
                    event
                        .data
                        .get("pass")
                        .and_then(Value::as_u64)
                        .unwrap_or_default(),
                );
            }
            Ok(event) if event.name == "MIGRATION" => {
                if let Some(status) = event.data.get("status").and_then(Value::as_str) {
                    return MigrationEvent::Status(MigrationStatus::from_qmp(status));
                }
            }
            Ok(_) | Err(RecvError::Lagged(_)) => {}
            Err(RecvError::Closed) => {
                return std::future::pending().await;
            }
        }
    }
}

/// Waits until the migration of `client`'s QEMU has finished (`completed`, `failed` or
/// `cancelled`; see [`MigrationStatus::is_finished`]) and returns its final statistics.
///
/// # Errors
/// [`WaitMigrationError::Timeout`] at `deadline`, [`WaitMigrationError::Query`] when QEMU
/// stops answering.
pub async fn wait_migration(
    client: &QmpClient,
    deadline: Instant,
) -> Result<MigrationInfo, WaitMigrationError> {
    wait_migration_for(client, deadline, MigrationStatus::is_finished).await
}

/// Waits until the migration status satisfies `reached`, as reported by a `MIGRATION` event
/// (with the `events` capability on) or by `query-migrate` every [`POLL_INTERVAL`], and
/// returns `query-migrate`'s reply at that point (whose status may be later still).
///
/// # Errors
/// As for [`wait_migration`].
pub async fn wait_migration_for(
    client: &QmpClient,
    deadline: Instant,
    reached: impl Fn(&MigrationStatus) -> bool,
) -> Result<MigrationInfo, WaitMigrationError> {
    // Subscribed before the first query, so no event between the two is missed.
    let mut events = client.events();
    let mut events_open = true;
    let mut poll = tokio::time::interval(POLL_INTERVAL);
    poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last = MigrationStatus::None;
    loop {
        let mut seen = false;
        tokio::select! {
            () = tokio::time::sleep_until(deadline) => {
                return Err(WaitMigrationError::Timeout { last });
            }
            _ = poll.tick() => {}
            event = events.recv(), if events_open => match event {
                Ok(event) => match migration_event_status(&event) {
                    Some(status) => seen = reached(&status),
                    None => continue,
                },
                // Missed events: the query below catches up.
                Err(RecvError::Lagged(_)) => {}
                // The connection closed: the query below reports it.
                Err(RecvError::Closed) => events_open = false,
            },
        }
        let info = client
            .query_migrate()
            .await
            .map_err(WaitMigrationError::Query)?;
        if seen || reached(&info.status) {
            return Ok(info);
        }
        last = info.status;
    }
}

/// The status a `MIGRATION` event announces; `None` for other events.
fn migration_event_status(event: &QmpEvent) -> Option<MigrationStatus> {
    if event.name != "MIGRATION" {
        return None;
    }
    let status = event.data.get("status")?.as_str()?;
    Some(MigrationStatus::from_qmp(status))
}

#[cfg(test)]
#[path = "migrate_test.rs"]
mod tests;
