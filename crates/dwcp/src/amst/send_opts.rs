//! What a transfer is asked to do ([`SendOptions`]) and how it can fail ([`SendError`]).

use std::path::PathBuf;
use std::time::Duration;

use super::reduce::Reduction;
use super::source::ProduceError;
use super::{DEFAULT_CHUNK_SIZE, DEFAULT_WINDOW, MAX_STREAMS};
use crate::transport::TransportError;
use crate::wire::ErrorMessage;

/// How many connections to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamCount {
    /// Exactly this many (1 to [`MAX_STREAMS`]).
    Fixed(u16),
    /// Probe: start at `initial` and grow while goodput rises, within `min..=max`.
    Auto {
        /// Fewest connections.
        min: u16,
        /// Most connections.
        max: u16,
        /// Where to start; 0: the default of the link's mode
        /// ([`crate::mode::ModeDefaults::initial_streams`]), from the first connection's RTT.
        initial: u16,
    },
}

impl Default for StreamCount {
    fn default() -> Self {
        Self::Auto {
            min: 1,
            max: MAX_STREAMS,
            initial: 0,
        }
    }
}

/// Settings of one transfer.
#[derive(Debug, Clone)]
pub struct SendOptions {
    /// Name the receiver stores the stream under.
    pub name: String,
    /// Connection count.
    pub streams: StreamCount,
    /// Payload bytes per data frame; 0: the default of the link's mode
    /// ([`crate::mode::ModeDefaults::chunk_size`]), from the first connection's RTT.
    pub chunk_size: u32,
    /// Most unacknowledged bytes.
    pub window: u64,
    /// Continue after what the receiver already holds in `NAME.partial`.
    pub resume: bool,
    /// Give up when no connection could be re-established for this long.
    pub reconnect_timeout: Duration,
    /// Cap on the total sending rate in bytes per second, split over the connections.
    pub rate_limit: Option<u64>,
    /// Data reduction (HDE items, compression chosen by PBA or fixed). Off by default: a
    /// caller turns it on, after [`Reduction::gated`] by the node's feature flags.
    pub reduce: Reduction,
    /// A window the caller changes while the transfer runs (clamped to one chunk ..=
    /// `window`); `None` keeps `window` throughout.
    pub window_limit: Option<tokio::sync::watch::Receiver<u64>>,
    /// Most payload bytes of data frames on the wire at once, which the caller changes while
    /// the transfer runs: frames written and neither acknowledged nor reported held by the
    /// receiver. A frame waits until it fits, or goes alone when nothing is out. `None`: no
    /// bound but the window. For a stream whose stream bytes per wire byte vary (references
    /// and compressed pages), where what must still cross the link is the wire's share.
    pub wire_limit: Option<tokio::sync::watch::Receiver<u64>>,
    /// Ask the receiver for deduplication against its content store (only with `reduce`
    /// on): segments it holds go as references. A receiver without a store declines.
    pub dedup: bool,
    /// This node's own content store: every segment sent is recorded in it, so that a later
    /// stream the other way can reference it. Only used when deduplication was negotiated.
    pub record: Option<crate::hde::SharedStore>,
    /// How chunks are cut into segments for deduplication (`auto`: guest pages in QEMU
    /// migration streams, content-defined elsewhere).
    pub segmenting: super::Segmenting,
    /// When set, the source's end counts only once the flag is set: an end of file read
    /// before it is a cut (the process writing into a [`super::Source::Stream`] closed it
    /// early), and the transfer fails instead of ending, so the receiver never takes a
    /// truncated stream for a whole one.
    pub end_confirmed: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
    /// Whether the session is paced as a whole ([`super::pacer`]): its connections together
    /// send at the rate the link delivers instead of overrunning its queue. By default where
    /// the session's mode calls for pacing.
    pub pacing: super::pacer::Pacing,
}

impl SendOptions {
    /// Defaults for sending under `name`.
    #[must_use]
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            streams: StreamCount::default(),
            chunk_size: DEFAULT_CHUNK_SIZE,
            window: DEFAULT_WINDOW,
            resume: false,
            reconnect_timeout: Duration::from_secs(30),
            rate_limit: None,
            reduce: Reduction::Off,
            window_limit: None,
            wire_limit: None,
            dedup: false,
            record: None,
            segmenting: super::Segmenting::Auto,
            end_confirmed: None,
            pacing: super::pacer::Pacing::Auto,
        }
    }
}

/// Why a transfer failed. The receiver never stores a failed transfer under its final name.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The options are out of range.
    #[error("invalid option: {0}")]
    InvalidOption(String),
    /// The source file could not be opened.
    #[error("could not open {path}")]
    OpenSource {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Reading the source failed, or it is shorter than the resume point.
    #[error("reading the source failed")]
    Source(#[source] ProduceSourceError),
    /// A pipe cannot be resumed: its beginning is gone.
    #[error("--resume needs a file source; a pipe cannot be rewound")]
    ResumeNeedsFile,
    /// The first connection could not be made.
    #[error("could not reach the receiver")]
    Connect(#[source] TransportError),
    /// The first connection was made but the session could not be opened on it.
    #[error("could not open a session with the receiver: {0}")]
    Opening(String),
    /// The receiver refused or aborted the session.
    #[error("receiver refused: {}", .0.message)]
    Rejected(ErrorMessage),
    /// The receiver broke the protocol.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// Every connection dropped and none could be re-established in time.
    #[error(
        "lost the connection to the receiver ({reason}); {acked} bytes are stored, run again with --resume to continue"
    )]
    Lost {
        /// Bytes the receiver had acknowledged.
        acked: u64,
        /// The last failure seen.
        reason: String,
    },
    /// The receiver confirmed a different checksum than the sender computed.
    #[error("end-to-end checksum mismatch: sent {sent}, receiver stored {stored}")]
    Integrity {
        /// Ours.
        sent: String,
        /// Theirs.
        stored: String,
    },
}

/// The producer's failure, kept as a source of [`SendError::Source`].
pub type ProduceSourceError = Box<dyn std::error::Error + Send + Sync>;

impl From<ProduceError> for SendError {
    fn from(e: ProduceError) -> Self {
        Self::Source(Box::new(e))
    }
}
