//! What a transfer reports while it runs and when it ends.

use std::time::Duration;

use serde::Serialize;

/// Where a transfer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Opening the first connection.
    Connecting,
    /// Hashing the part the receiver already holds, before resuming after it.
    HashingPrefix,
    /// Moving data.
    Transferring,
    /// All data acknowledged; waiting for the receiver's end-to-end check.
    Verifying,
    /// The receiver verified and stored the stream.
    Done,
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Connecting => "connecting",
            Self::HashingPrefix => "hashing-prefix",
            Self::Transferring => "transferring",
            Self::Verifying => "verifying",
            Self::Done => "done",
        })
    }
}

/// A snapshot of a running transfer, published on a `watch` channel.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Progress {
    /// Current phase.
    pub phase: Phase,
    /// Stream bytes the receiver has acknowledged, counting any resumed prefix.
    pub bytes_acked: u64,
    /// Stream bytes beyond `bytes_acked` the receiver reported holding out of order (only
    /// on a session whose window its owner narrows; 0 otherwise).
    pub bytes_held: u64,
    /// Stream length, `None` while unknown (reading a pipe).
    pub bytes_total: Option<u64>,
    /// Offset the session started at (non-zero when resuming).
    pub start_offset: u64,
    /// Recent goodput in bytes per second (acknowledged and held bytes, smoothed).
    pub rate_bytes_per_sec: f64,
    /// Connections open now.
    pub streams: usize,
    /// Bytes sent more than once because a connection dropped.
    pub retransmitted_bytes: u64,
    /// Payload bytes framed so far for the stream (after data reduction; first transmissions,
    /// grown by the literals sent in place of references the receiver lacked).
    pub wire_bytes: u64,
    /// Payload bytes of the frames the receiver acknowledged: `wire_bytes` less those still
    /// queued or in flight.
    pub wire_acked: u64,
    /// Recent rate of `wire_acked` in bytes per second: what the link carries of this stream.
    pub wire_rate_bytes_per_sec: f64,
    /// Stream bytes framed so far as references to content the receiver holds.
    pub ref_bytes: u64,
    /// Time since the session started.
    #[serde(with = "secs")]
    pub elapsed: Duration,
}

impl Progress {
    /// The state before anything happened.
    #[must_use]
    pub fn starting() -> Self {
        Self {
            phase: Phase::Connecting,
            bytes_acked: 0,
            bytes_held: 0,
            bytes_total: None,
            start_offset: 0,
            rate_bytes_per_sec: 0.0,
            streams: 0,
            retransmitted_bytes: 0,
            wire_bytes: 0,
            wire_acked: 0,
            wire_rate_bytes_per_sec: 0.0,
            ref_bytes: 0,
            elapsed: Duration::ZERO,
        }
    }

    /// Estimated time left at the recent rate, when the total is known and data is moving.
    #[must_use]
    pub fn eta(&self) -> Option<Duration> {
        let total = self.bytes_total?;
        let left = total.saturating_sub(self.bytes_acked);
        (self.rate_bytes_per_sec > 1.0)
            .then(|| Duration::from_secs_f64(left as f64 / self.rate_bytes_per_sec))
    }
}

/// The outcome of a successful transfer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TransferSummary {
    /// Name the receiver stored the stream under.
    pub name: String,
    /// Length of the whole stream in bytes.
    pub bytes: u64,
    /// Bytes carried by this session (the stream less any resumed prefix).
    pub bytes_sent: u64,
    /// Offset this session resumed from (0 for a fresh transfer).
    pub resumed_from: u64,
    /// Wall time from first connect to the receiver's confirmation, in seconds.
    pub seconds: f64,
    /// `bytes_sent / seconds`, in bytes per second.
    pub goodput_bytes_per_sec: f64,
    /// The same in Mbit/s.
    pub goodput_mbit: f64,
    /// Payload bytes per data frame (the mode's default unless set).
    pub chunk_size: u32,
    /// Most connections open at once.
    pub streams_max: usize,
    /// Connections open at the end.
    pub streams_final: usize,
    /// Bytes sent again after connection drops.
    pub retransmitted_bytes: u64,
    /// Connections that dropped and were re-dialed.
    pub reconnects: u64,
    /// BLAKE3 of the whole stream, hex, as confirmed by the receiver.
    pub blake3: String,
    /// Whether the connections were TLS.
    pub tls: bool,
    /// The data reduction asked for: `off`, `auto`, `none`, `lz4`, `zstd:N`.
    pub compression: String,
    /// Whether the receiver confirmed HDE; without it every frame went raw.
    pub hde: bool,
    /// The link's mode: measured (see `mode_measured`), else guessed from the first RTT.
    pub mode: crate::mode::Mode,
    /// Whether `mode` comes from measurements of this session.
    pub mode_measured: bool,
    /// The codec in force at the end: `none`, `lz4` or `zstd-N`.
    pub codec: String,
    /// How often PBA changed the codec.
    pub codec_changes: u32,
    /// Stream bytes this session framed (first transmissions; equals `bytes_sent`).
    pub stream_bytes: u64,
    /// Payload bytes framed for them (first transmissions, grown by the literals sent in
    /// place of references the receiver lacked; without frame headers).
    pub wire_bytes: u64,
    /// `stream_bytes / wire_bytes` (1 without reduction; 1 for an empty stream).
    pub reduction_ratio: f64,
    /// Whether the receiver confirmed deduplication against its content store.
    pub dedup: bool,
    /// Stream bytes sent as references to content the receiver held.
    pub ref_bytes: u64,
    /// Frames sent again as literals because the receiver lacked a referenced segment.
    pub content_requests: u64,
    /// Whether the session was paced as a whole (see `dwcp::amst::pacer`).
    pub paced: bool,
    /// The pacer's cap on the session's rate at the end, in Mbit/s of stream payload
    /// (`None`: not paced, or still in startup).
    pub pacing_mbit: Option<f64>,
}

mod secs {
    use std::time::Duration;

    use serde::Serializer;

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eta_is_remaining_bytes_over_rate() {
        let p = Progress {
            bytes_acked: 100,
            bytes_total: Some(1100),
            rate_bytes_per_sec: 250.0,
            ..Progress::starting()
        };
        assert_eq!(p.eta(), Some(Duration::from_secs(4)));
    }

    #[test]
    fn eta_is_unknown_without_total_or_rate() {
        let p = Progress {
            bytes_total: None,
            rate_bytes_per_sec: 10.0,
            ..Progress::starting()
        };
        assert_eq!(p.eta(), None);
        let p = Progress {
            bytes_total: Some(10),
            ..Progress::starting()
        };
        assert_eq!(p.eta(), None);
    }
}
