//! AMST, the Adaptive Multi-Stream Transport: one DWCP session striped over N TCP connections.
//!
//! The sender cuts the stream into chunks, frames each with its offset and checksum, and lets
//! whichever connection is ready take the next frame, so a slow or recovering connection never
//! holds the others back. The receiver puts frames back in order in a bounded window, writes
//! the contiguous prefix to `NAME.partial`, and acknowledges it. Unacknowledged frames stay with
//! the sender; when a connection drops they go out again on the others while it is re-dialed.
//! At the end the receiver checks the BLAKE3 of the whole stream and only then renames the file.
//!
//! ```text
//!  source ─▶ producer ─▶ work queue ─┬─▶ conn 0 ─┐            ┌─▶ reorder ─▶ writer ─▶ NAME.partial
//!  (file,    (chunk,     (bounded by ├─▶ conn 1 ─┼── (WAN) ───┤   window     (BLAKE3)    │ verified
//!   stdin)    CRC32C,     the window)└─▶ conn N ─┘            └─ acks ◀───────────────   ▼
//!             BLAKE3)          ▲ re-queue on drop                                      NAME
//! ```
//!
//! The number of connections is fixed, or `auto`: [`tuner::StreamTuner`] grows it while goodput
//! rises and falls back when it stops rising. Outside datacenters, [`pacer::Pacer`] caps the
//! session's connections together at the rate the link delivers, so that they do not
//! overrun the bottleneck's queue.
//!
//! # Sinks and stream sources
//!
//! Instead of a file, a session's stream can be handed to a local process. On the receiver,
//! [`Receiver::sinks`] gives a [`SinkRegistry`]; [`SinkRegistry::expect`] registers a writer
//! (a socket to the destination QEMU, say) for a session name before the sender connects, and
//! returns a [`SinkHandle`]. The first session with that name writes its in-order stream into
//! the writer from its writer thread (blocking writes, flushed whenever no more data is
//! waiting), verifies the BLAKE3 as usual, and publishes bytes delivered and the outcome on
//! [`SinkHandle::status`] / [`SinkHandle::outcome`]. If the writer fails, the session fails and
//! the sender's [`send`] returns [`SendError::Rejected`]. A sink takes one session and cannot be
//! resumed; dropping the handle before a session arrives withdraws the name (later senders are
//! refused). Sink sessions are not reported on [`Receiver::run`]'s `done` channel.
//!
//! # Data reduction
//!
//! With [`SendOptions::reduce`] other than [`Reduction::Off`], the sender asks for HDE in its
//! `Hello`; when the receiver confirms, the producer thread encodes each chunk as one HDE item
//! (a zero chunk in 5 bytes, a compressed chunk when that is smaller) in a frame of payload
//! kind `Hde`, and sends the rest raw. Under [`Reduction::Auto`], PBA picks the codec about
//! once a second from the measured link and compressor. The window, acknowledgements and the
//! final BLAKE3 count stream bytes. The receiver decodes each item as it arrives, bounded by
//! the session's chunk size, and stores the stream as usual.
//!
//! On the sender, [`Source::Stream`] reads a local socket and sends whatever each read returns
//! at once, so a small write reaches the receiver without waiting for a full chunk.

mod conn_pacing;
mod cutter;
mod dedup;
#[cfg(test)]
mod dedup_test;
mod hde_frame;
#[cfg(test)]
mod hde_test;
mod hedge;
#[cfg(test)]
mod held_test;
mod inflight;
#[cfg(test)]
mod join_test;
mod names;
#[cfg(test)]
mod need_held_test;
pub mod pacer;
mod pages;
mod prefix;
mod progress;
mod rate;
mod receiver;
mod recipe;
mod reduce;
mod reduce_ctl;
mod rx_session;
#[cfg(test)]
mod rx_session_test;
mod rx_writer;
mod segments;
mod send_opts;
mod sender;
mod sender_conn;
mod sink;
#[cfg(test)]
mod sink_test;
mod source;
#[cfg(test)]
mod test_support;
pub mod tuner;
mod window;

pub use cutter::{ParseSegmentingError, Segmenting};
pub use names::{MAX_NAME_BYTES, NameError, validate_name};
pub use pacer::{Pacing, ParsePacingError};
pub use progress::{Phase, Progress, TransferSummary};
pub use receiver::{ReceiveError, ReceivedFile, Receiver, ReceiverConfig};
pub use reduce::{ParseReductionError, Reduction};
pub use send_opts::{SendError, SendOptions, StreamCount};
pub use sender::{Source, send};
pub use sink::{
    ExpectError, MAX_SINKS, MAX_WITHDRAWN, SinkError, SinkHandle, SinkRegistry, SinkState,
};

/// Default payload size of a data frame (512 KiB).
pub const DEFAULT_CHUNK_SIZE: u32 = 512 << 10;
/// Default bytes the sender may have unacknowledged, and the receiver buffers out of order.
pub const DEFAULT_WINDOW: u64 = 64 << 20;
/// Most connections one session may use.
pub const MAX_STREAMS: u16 = 64;
/// Frame buffers a session keeps for reuse, on either side (see [`crate::bufpool::BufPool`]):
/// enough for the frames one write or acknowledgement releases together.
pub(crate) const POOLED_FRAMES: usize = 8;

/// Decodes a `Segments` payload as a receiver does (docs/dwcp-wire.md section 11): at most
/// `limit` stream bytes, references resolved in `store` (and literal segments stored there),
/// a prefixed block against the last of the stream bytes `before` the frame. The entry point
/// of the fuzz target for this parser of untrusted bytes, not an API.
///
/// # Errors
/// What is wrong with the payload, as a receiver would report it.
#[doc(hidden)]
pub fn decode_segments_payload(
    payload: &[u8],
    limit: usize,
    store: &std::sync::Mutex<crate::hde::DiskStore>,
    before: &[u8],
) -> Result<bytes::Bytes, String> {
    segments::decode(payload, limit, store, before, true).map_err(|e| e.to_string())
}
