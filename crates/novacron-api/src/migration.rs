//! Live migration in the API: the request a client sends, and the calls one node makes on
//! another. A node proves who it is with its certificate from the cluster CA, not a token.

use crate::error::ApiError;
use crate::server::AppState;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use novacron_model::{Image, OperationId, Vm};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Longest time budget a migration may be given, in seconds.
pub const MAX_MIGRATION_SECS: u64 = 24 * 3600;
/// Longest switch-over a migration may be allowed, in milliseconds.
pub const MAX_DOWNTIME_MS: u64 = 60_000;

/// `POST /api/v1/vms/{vm}/migrate`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VmMigrateRequest {
    /// Name of the peer node to move the VM to.
    pub target: String,
    /// Longest the guest may be stopped at switch-over, in milliseconds (default 300).
    #[serde(default)]
    pub max_downtime_ms: Option<u64>,
    /// Give up (and leave the VM running here) when not done after this many seconds
    /// (default 600).
    #[serde(default)]
    pub timeout_secs: Option<u64>,
    /// Allow post-copy: once the first pass has copied all memory, and what the guest dirtied
    /// since would not cross within the downtime (or the copy cannot converge), the guest
    /// runs on the destination, which pulls the pages it still lacks. It finishes under any
    /// dirty rate, but if the link is lost during post-copy neither node holds the whole
    /// guest: it stays paused on both. Default false.
    #[serde(default)]
    pub postcopy: bool,
}

/// What a source node asks of the destination before the stream starts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PeerPrepareRequest {
    /// The source's migration operation; it names the migration on both nodes.
    pub migration: OperationId,
    /// The VM as the source holds it.
    pub vm: Vm,
    /// The source's time budget in seconds: a migration not committed within it (plus a
    /// margin) is dropped by the destination.
    pub timeout_secs: u64,
    /// Port of the source's DWCP receiver (on the host the destination knows the source's
    /// API at): the destination sends the answers of its disk exports there, as sessions
    /// named by [`disk_reply_stream`]. Needed for a VM with disks.
    #[serde(default)]
    pub dwcp_port: Option<u16>,
    /// The source may switch to post-copy: the destination enables it in its QEMU and sends
    /// its QEMU's page requests back as the session [`memory_reply_stream`] names.
    #[serde(default)]
    pub postcopy: bool,
}

/// A file of an image, as the source offers it to a destination that may lack the image.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ImageFile {
    /// The base disk.
    Disk,
    /// The kernel for direct boot.
    Kernel,
    /// The initial ramdisk for direct boot.
    Initrd,
}

impl ImageFile {
    /// The lowercase name.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Disk => "disk",
            Self::Kernel => "kernel",
            Self::Initrd => "initrd",
        }
    }
}

/// One file of an offered image and its length in bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PeerImageFile {
    /// Which file.
    pub file: ImageFile,
    /// Its length: the destination takes no more than this.
    pub size: u64,
}

/// `POST /api/v1/peer/migrations/{id}/image`: the image of the migrating VM, offered before
/// the prepare, so that a destination lacking it can receive it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PeerImageOffer {
    /// The source's record of the image; its `digest` is set.
    pub image: Image,
    /// The image's files with their lengths.
    pub files: Vec<PeerImageFile>,
    /// The source's time budget in seconds: a reception not committed within it (plus a
    /// margin) is dropped.
    pub timeout_secs: u64,
}

/// Where one file of an image goes: the DWCP session to send it as.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PeerImageStream {
    /// Which file.
    pub file: ImageFile,
    /// DWCP session name.
    pub stream: String,
}

/// The destination's answer to a [`PeerImageOffer`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum PeerImageAnswer {
    /// The destination holds the same image (same digest): nothing to send.
    Present,
    /// Another migration is bringing an image of that name here: ask again later.
    Busy,
    /// Send each file as its session to the destination's DWCP receiver, then commit.
    Send {
        /// Port of the destination's DWCP receiver.
        dwcp_port: u16,
        /// One session per offered file.
        streams: Vec<PeerImageStream>,
    },
}

/// DWCP session name of one file of the image sent ahead of migration `migration`.
#[must_use]
pub fn image_stream(migration: OperationId, file: ImageFile) -> String {
    format!("migrate-{migration}-image-{}", file.as_str())
}

/// DWCP session name of the destination QEMU's messages back to the source (the page
/// requests of post-copy), in migration `migration`.
#[must_use]
pub fn memory_reply_stream(migration: OperationId) -> String {
    format!("migrate-{migration}-memory-reply")
}

/// DWCP session name of the answers of the destination's NBD export of disk `index`, back
/// to the source, in migration `migration`.
#[must_use]
pub fn disk_reply_stream(migration: OperationId, index: usize) -> String {
    format!("migrate-{migration}-disk{index}-reply")
}

/// The destination's end of one disk's mirror: QEMU's NBD export of the disk, reached through
/// DWCP in both directions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PeerDiskExport {
    /// DWCP session name of the source's NBD requests (the mirror's writes).
    pub stream: String,
    /// NBD export name to ask for.
    pub export: String,
}

/// Where the source sends the streams of a prepared migration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PeerPrepareResponse {
    /// Port of the destination's DWCP receiver (on the host the source reached its API at).
    pub dwcp_port: u16,
    /// DWCP session name of QEMU's migration stream.
    pub memory_stream: String,
    /// The export of each disk, in the VM's disk order.
    pub disks: Vec<PeerDiskExport>,
}

/// The destination's answer to a commit: the VM, now running there, how long after the
/// commit arrived the guest ran, and how long after it the answer left. The times travel in
/// a `Server-Timing` header ([`GUEST_RUNNING_METRIC`], [`COMMIT_METRIC`]) beside the VM's
/// JSON, so the source can tell the guest's downtime from the commit's round trip.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerCommitted {
    /// The VM as the destination now records it.
    pub vm: Vm,
    /// From the commit's arrival to the guest running; `None` from a destination that does
    /// not say.
    pub running_after: Option<std::time::Duration>,
    /// From the commit's arrival to its answer (the guest running, then recorded); `None`
    /// from a destination that does not say.
    pub answered_after: Option<std::time::Duration>,
}

/// The header a commit's answer says when the guest ran in (W3C Server Timing).
pub const SERVER_TIMING: &str = "server-timing";

/// The `Server-Timing` metric of a commit's answer for the guest's start:
/// `guest-running;dur=MILLISECONDS` after the commit's arrival.
pub const GUEST_RUNNING_METRIC: &str = "guest-running";

/// The `Server-Timing` metric of a commit's answer for the whole commit:
/// `commit;dur=MILLISECONDS` from its arrival to the answer.
pub const COMMIT_METRIC: &str = "commit";

/// Longest time a commit's answer may claim (longer is ignored): the destination gives up
/// on a commit well before.
const MAX_COMMIT_TIME: std::time::Duration = std::time::Duration::from_secs(600);

/// The `Server-Timing` value of a commit's answer: the guest ran `running` after the commit
/// arrived, the answer left `answered` after it.
#[must_use]
pub fn server_timing(running: std::time::Duration, answered: std::time::Duration) -> String {
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
    format!(
        "{GUEST_RUNNING_METRIC};dur={:.1}, {COMMIT_METRIC};dur={:.1}",
        ms(running),
        ms(answered)
    )
}

/// The time `metric` gives in a `Server-Timing` value, if it is there and sensible (finite,
/// non-negative, under ten minutes).
#[must_use]
pub fn server_timing_metric(server_timing: &str, metric: &str) -> Option<std::time::Duration> {
    server_timing.split(',').find_map(|entry| {
        let mut parts = entry.split(';').map(str::trim);
        if parts.next()? != metric {
            return None;
        }
        let ms: f64 = parts.find_map(|p| p.strip_prefix("dur="))?.parse().ok()?;
        let after = std::time::Duration::try_from_secs_f64(ms / 1000.0).ok()?;
        (after <= MAX_COMMIT_TIME).then_some(after)
    })
}

/// The node at the other end of a connection, as its TLS client certificate, verified
/// against the cluster CA, names it. The server adds an `Option<PeerNode>` to each request
/// of a TLS connection; a handler that takes a `PeerNode` answers 403 to any other caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerNode(pub String);

impl FromRequestParts<AppState> for PeerNode {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Option<Self>>()
            .cloned()
            .flatten()
            .ok_or(ApiError::NodeOnly)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_commit_times_go_through_server_timing() {
        let v = server_timing(Duration::from_millis(155), Duration::from_millis(170));
        assert_eq!(v, "guest-running;dur=155.0, commit;dur=170.0");
        assert_eq!(
            server_timing_metric(&v, GUEST_RUNNING_METRIC),
            Some(Duration::from_millis(155))
        );
        assert_eq!(
            server_timing_metric(&v, COMMIT_METRIC),
            Some(Duration::from_millis(170))
        );
        // Among other metrics, with spaces and other parameters.
        assert_eq!(
            server_timing_metric(
                "db;dur=3, guest-running;desc=\"x\";dur=12.5",
                GUEST_RUNNING_METRIC
            ),
            Some(Duration::from_micros(12_500))
        );
    }

    #[test]
    fn a_missing_or_senseless_time_is_none() {
        for v in [
            "",
            "db;dur=3",
            "guest-running",
            "guest-running;dur=",
            "guest-running;dur=abc",
            "guest-running;dur=-5",
            "guest-running;dur=NaN",
            "guest-running;dur=inf",
            "guest-running;dur=900000",
        ] {
            assert_eq!(server_timing_metric(v, GUEST_RUNNING_METRIC), None, "{v:?}");
        }
    }
}
