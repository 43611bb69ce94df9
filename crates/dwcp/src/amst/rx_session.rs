//! One session on the receiver: puts frames back in order within the window, hands the
//! contiguous prefix to a writer thread that appends and hashes it, and finishes the file once
//! the sender's `End` matches what was written.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc as std_mpsc};
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::watch;

use super::hde_frame::{HdeFrameError, decode_payload, is_heavy};
use super::prefix::StreamTail;
use super::rx_writer::{FileOut, Output, WriteCmd};
use super::segments::{self, SegmentsError};
use super::sink::SinkOut;
use crate::bufpool::BufPool;
use crate::hde::{ContentHash, SharedStore};
use crate::wire::{
    ErrorCode, ErrorMessage, FEATURE_PREFIX, FEATURE_RECIPES, FEATURE_SHORT_REFS, Frame, FrameKind,
    PayloadKind, SessionId,
};

/// Where a session's data stands, published to its connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RxStatus {
    /// Bytes of the stream written (to `NAME.partial` or the sink) and hashed.
    pub(crate) written: u64,
    /// Set once: the verified BLAKE3, or why the session failed.
    pub(crate) outcome: Option<Result<[u8; 32], ErrorMessage>>,
}

#[derive(Default)]
struct Reorder {
    /// Offset of the next byte to hand to the writer.
    next: u64,
    /// Frames that arrived ahead of `next`, by offset.
    pending: BTreeMap<u64, Bytes>,
    /// `Segments` frames that arrived ahead of `next` with a block compressed against the
    /// bytes before them, still encoded, by offset: each is decoded once `next` reaches it.
    parked: BTreeMap<u64, Frame>,
    /// The last bytes handed to the writer, on a session that negotiated prefixed blocks.
    tail: StreamTail,
    /// Stream length and BLAKE3 from the sender's `End`.
    end: Option<(u64, [u8; 32])>,
    finishing: bool,
}

/// Most frames a session holds out of order.
pub(crate) const MAX_PENDING_FRAMES: usize = 1 << 16;

/// A receiving session.
pub(crate) struct RxSession {
    pub(crate) id: SessionId,
    pub(crate) name: String,
    pub(crate) start: u64,
    pub(crate) started: Instant,
    /// Whether the stream goes into a registered sink rather than a file.
    pub(crate) sink: bool,
    total_len: Option<u64>,
    window: u64,
    reorder: Mutex<Reorder>,
    writer: Mutex<Option<std_mpsc::Sender<WriteCmd>>>,
    status: watch::Sender<RxStatus>,
    /// Connections attached now.
    pub(crate) conns: AtomicUsize,
    /// Whether `Hde` data frames were negotiated.
    pub(crate) hde: bool,
    /// Most stream bytes one `Hde` item may decode to: the session's chunk size.
    item_limit: usize,
    /// The content store, when deduplication was negotiated (`Segments` data frames).
    pub(crate) dedup: Option<SharedStore>,
    /// The feature bits the session negotiated (`crate::wire::FEATURE_*`): what a `Join` is
    /// confirmed, and what the frames may use (see [`Self::has`]).
    pub(crate) features: u32,
    /// Buffers for the payloads of whole data frames, reused once written.
    pub(crate) frames: Option<Arc<BufPool>>,
}

/// What became of a `Segments` data frame ([`RxSession::decode_segments`]).
#[derive(Debug)]
enum SegmentsOutcome {
    /// Its stream bytes.
    Decoded(Bytes),
    /// It references content the store lacks: the sender is asked for the frame again,
    /// naming these (none: it lacks too many to name), and nothing of this copy is used.
    Missing(Vec<ContentHash>),
    /// It waits, still encoded, for the bytes before it; or it is a copy of a frame already
    /// decoded or waiting.
    Held,
}

/// The error for a sender that has too many frames waiting out of order.
fn too_many_out_of_order() -> ErrorMessage {
    fail(
        ErrorCode::Protocol,
        format!("more than {MAX_PENDING_FRAMES} frames out of order"),
    )
}

pub(crate) fn fail(code: ErrorCode, message: impl Into<String>) -> ErrorMessage {
    ErrorMessage {
        code,
        message: message.into(),
    }
}

/// Path of the partial file for `name` in `dir`.
pub(crate) fn partial_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.partial"))
}

impl RxSession {
    /// Opens (or, when resuming, reopens and hashes) `NAME.partial` and starts the writer.
    /// Blocking: call from `spawn_blocking`.
    pub(crate) fn open(
        id: SessionId,
        dir: &Path,
        name: &str,
        total_len: Option<u64>,
        window: u64,
        resume: bool,
    ) -> Result<Self, ErrorMessage> {
        let partial = partial_path(dir, name);
        let storage = |what: &str, e: std::io::Error| {
            fail(
                ErrorCode::Storage,
                format!("receiver could not {what} {}: {e}", partial.display()),
            )
        };
        let mut hasher = blake3::Hasher::new();
        let (file, start) = if resume && partial.exists() {
            let mut file = OpenOptions::new()
                .read(true)
                .append(true)
                .open(&partial)
                .map_err(|e| storage("open", e))?;
            let mut buf = vec![0u8; 1 << 20];
            let mut len = 0u64;
            loop {
                let n = file.read(&mut buf).map_err(|e| storage("read", e))?;
                if n == 0 {
                    break;
                }
                hasher.update(buf.get(..n).unwrap_or_default());
                len += n as u64;
            }
            (file, len)
        } else {
            let file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&partial)
                .map_err(|e| storage("create", e))?;
            (file, 0)
        };
        if total_len.is_some_and(|t| start > t) {
            return Err(fail(
                ErrorCode::Protocol,
                format!(
                    "{} holds {start} bytes, more than the {}-byte source; delete it to start over",
                    partial.display(),
                    total_len.unwrap_or_default()
                ),
            ));
        }
        let out = Output::File(FileOut {
            file,
            partial,
            target: dir.join(name),
            dir: dir.to_path_buf(),
        });
        Self::start(id, name, total_len, window, out, hasher, start)
    }

    /// A session that writes its stream into a claimed sink from offset 0; no file is made.
    pub(crate) fn open_sink(
        id: SessionId,
        name: &str,
        total_len: Option<u64>,
        window: u64,
        sink: Box<SinkOut>,
    ) -> Result<Self, ErrorMessage> {
        let out = Output::Sink(sink);
        Self::start(id, name, total_len, window, out, blake3::Hasher::new(), 0)
    }

    fn start(
        id: SessionId,
        name: &str,
        total_len: Option<u64>,
        window: u64,
        mut out: Output,
        hasher: blake3::Hasher,
        start: u64,
    ) -> Result<Self, ErrorMessage> {
        let (status, _) = watch::channel(RxStatus {
            written: start,
            outcome: None,
        });
        let sink = if let Output::Sink(s) = &mut out {
            s.attach(status.subscribe());
            true
        } else {
            false
        };
        let tx = super::rx_writer::start(super::rx_writer::Writer {
            out,
            hasher,
            start,
            status: status.clone(),
        })
        .map_err(|e| fail(ErrorCode::Storage, format!("could not start writer: {e}")))?;
        Ok(Self {
            id,
            name: name.to_owned(),
            start,
            started: Instant::now(),
            sink,
            total_len,
            window,
            reorder: Mutex::new(Reorder {
                next: start,
                ..Reorder::default()
            }),
            writer: Mutex::new(Some(tx)),
            status,
            conns: AtomicUsize::new(0),
            hde: false,
            item_limit: 0,
            dedup: None,
            features: 0,
            frames: None,
        })
    }

    /// This session, reading data frames of about `chunk_size` bytes into reused buffers.
    pub(crate) fn with_frames_of(mut self, chunk_size: u32) -> Self {
        let size = usize::try_from(chunk_size).unwrap_or(0);
        if size > 0 {
            self.frames = Some(BufPool::new(size, super::POOLED_FRAMES));
        }
        self
    }

    /// This session, accepting `Hde` data frames whose items decode to at most `chunk_size`
    /// bytes.
    pub(crate) fn with_hde(mut self, chunk_size: u32) -> Self {
        self.hde = true;
        self.item_limit = usize::try_from(chunk_size).unwrap_or(usize::MAX);
        self
    }

    /// This session, accepting `Segments` data frames resolved against and stored in `store`.
    pub(crate) fn with_dedup(mut self, store: SharedStore) -> Self {
        self.dedup = Some(store);
        self
    }

    /// This session, having negotiated `features`: with `FEATURE_HELD` it reports each data
    /// frame held ahead of the acknowledged bytes; with `FEATURE_PREFIX` it takes `Segments`
    /// blocks compressed against the bytes before their frame; with `FEATURE_SHORT_REFS`
    /// short references; with `FEATURE_RECIPES` recipes, and stores each frame's. (`Hde` and
    /// `Segments` frames come with [`Self::with_hde`] and [`Self::with_dedup`].)
    pub(crate) fn with_features(mut self, features: u32) -> Self {
        self.features = features;
        self
    }

    /// Whether the session negotiated feature `bit`.
    pub(crate) fn has(&self, bit: u32) -> bool {
        self.features & bit != 0
    }

    /// Connections attached.
    pub(crate) fn conn_count(&self) -> usize {
        self.conns.load(Ordering::Acquire)
    }

    /// A receiver of status changes, for a connection's acknowledgement loop.
    pub(crate) fn subscribe(&self) -> watch::Receiver<RxStatus> {
        self.status.subscribe()
    }

    /// The current status.
    pub(crate) fn status(&self) -> RxStatus {
        self.status.borrow().clone()
    }

    /// Ends the session with an error (unless it already ended) and stops the writer, which
    /// leaves `NAME.partial` with what was written.
    pub(crate) fn abort(&self, err: ErrorMessage) {
        self.status.send_if_modified(|st| {
            if st.outcome.is_some() {
                return false;
            }
            st.outcome = Some(Err(err));
            true
        });
        self.stop_writer();
    }

    /// Drops the writer's channel: it finishes what it holds and exits.
    pub(crate) fn stop_writer(&self) {
        let mut w = self
            .writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        w.take();
    }

    fn to_writer(&self, cmd: WriteCmd) {
        let w = self
            .writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(tx) = w.as_ref() {
            // A closed channel means the writer already failed and published why.
            let _ = tx.send(cmd);
        }
    }

    /// Takes one frame from the sender.
    ///
    /// # Errors
    /// An [`ErrorMessage`] when the frame breaks the protocol; the caller aborts the session.
    pub(crate) fn on_frame(&self, frame: Frame) -> Result<(), ErrorMessage> {
        let h = frame.header;
        match h.kind {
            FrameKind::Data => {
                if h.payload_kind != PayloadKind::Raw {
                    return Err(fail(
                        ErrorCode::Protocol,
                        "data frame with a payload that is neither raw nor a decoded HDE item",
                    ));
                }
                self.on_data(h.offset, frame.payload)
            }
            FrameKind::End => {
                let hash: [u8; 32] =
                    frame.payload.as_ref().try_into().map_err(|_| {
                        fail(ErrorCode::Protocol, "End frame without a 32-byte BLAKE3")
                    })?;
                if self.total_len.is_some_and(|t| t != h.offset) {
                    return Err(fail(ErrorCode::Protocol, "End length differs from Hello"));
                }
                let mut r = self.lock_reorder();
                if r.next > h.offset {
                    return Err(fail(
                        ErrorCode::Protocol,
                        "End before data already received",
                    ));
                }
                r.end = Some((h.offset, hash));
                self.maybe_finish(&mut r);
                Ok(())
            }
            FrameKind::Close => Ok(()),
            FrameKind::Error => {
                let msg = ErrorMessage::decode(&frame.payload)
                    .unwrap_or_else(|_| fail(ErrorCode::Aborted, "sender aborted"));
                Err(msg)
            }
            other => Err(fail(
                ErrorCode::Protocol,
                format!("unexpected {other:?} frame from the sender"),
            )),
        }
    }

    /// Takes the stream bytes at `offset` of a data frame (as sent, or decoded from its item).
    ///
    /// # Errors
    /// An [`ErrorMessage`] when they lie beyond the announced length or the window.
    pub(crate) fn on_data(&self, offset: u64, payload: Bytes) -> Result<(), ErrorMessage> {
        self.check_bounds(offset, payload.len() as u64)?;
        self.accept_data(offset, payload)
    }

    /// Whether `len` stream bytes at `offset` lie within the announced length and the window.
    fn check_bounds(&self, offset: u64, len: u64) -> Result<(), ErrorMessage> {
        let end = offset.saturating_add(len);
        if self.total_len.is_some_and(|t| end > t) {
            return Err(fail(
                ErrorCode::Protocol,
                "data beyond the announced length",
            ));
        }
        let written = self.status.borrow().written;
        if end > written.saturating_add(self.window) {
            return Err(fail(ErrorCode::Protocol, "sender exceeded the window"));
        }
        Ok(())
    }

    /// Decodes the item of an `Hde` data frame into its stream bytes, at most the session's
    /// chunk size.
    ///
    /// Decoding happens here, in the connection's task, before the frame reaches the reorder
    /// buffer: a `Zero` or `Raw` item is a length check and one allocation or copy, done in
    /// place; a `Compressed` one costs up to tens of milliseconds of CPU for a large chunk, so
    /// it runs on the blocking pool, keeping the reactor free for the other connections. Each
    /// connection waits for its frame's decoding before it reads the next one, so decoding is
    /// parallel across connections, at most one frame per connection at a time, and a slow
    /// decoder pushes back on its connection like a slow disk would.
    ///
    /// # Errors
    /// An [`ErrorMessage`] (`Protocol`) naming the frame and what is wrong with its item, or
    /// saying the session did not negotiate HDE.
    pub(crate) async fn decode_hde(&self, frame: Frame) -> Result<Bytes, ErrorMessage> {
        let h = frame.header;
        if !self.hde {
            return Err(fail(
                ErrorCode::Protocol,
                "HDE data frame on a session that did not negotiate HDE",
            ));
        }
        let describe = |e: HdeFrameError| {
            fail(
                ErrorCode::Protocol,
                format!(
                    "bad HDE item in data frame seq {} at offset {}: {e}",
                    h.seq, h.offset
                ),
            )
        };
        let limit = self.item_limit;
        if !is_heavy(&frame.payload) {
            return decode_payload(&frame.payload, limit).map_err(describe);
        }
        tokio::task::spawn_blocking(move || decode_payload(&frame.payload, limit))
            .await
            .map_err(|e| fail(ErrorCode::Other, format!("HDE decoding failed: {e}")))?
            .map_err(describe)
    }

    /// Decodes a `Segments` data frame into its stream bytes, on the blocking pool (it reads
    /// and writes the content store). A frame whose block was compressed against the bytes
    /// before it is decoded only once those are in: until then it waits, still encoded, and
    /// [`Self::take_parked`] takes it when they are.
    ///
    /// # Errors
    /// An [`ErrorMessage`] (`Protocol`) naming the frame and what is wrong with it, or saying
    /// the session did not negotiate deduplication.
    async fn decode_segments(&self, frame: Frame) -> Result<SegmentsOutcome, ErrorMessage> {
        let h = frame.header;
        let bad = |e: SegmentsError| {
            fail(
                ErrorCode::Protocol,
                format!(
                    "bad segments in data frame seq {} at offset {}: {e}",
                    h.seq, h.offset
                ),
            )
        };
        let Some(store) = self.dedup.clone() else {
            return Err(fail(
                ErrorCode::Protocol,
                "segments data frame on a session that did not negotiate deduplication",
            ));
        };
        let limit = self.item_limit;
        let parsed = segments::parse(&frame.payload, limit).map_err(bad)?;
        let recipes = self.has(FEATURE_RECIPES);
        if parsed.check.is_some() && !self.has(FEATURE_SHORT_REFS) {
            return Err(bad(SegmentsError::ShortRefs));
        }
        if !recipes
            && parsed
                .segments
                .iter()
                .any(|s| matches!(s, segments::Segment::Recipe { .. }))
        {
            return Err(bad(SegmentsError::Recipes));
        }
        let before = if parsed.prefix == 0 {
            Vec::new()
        } else if !self.has(FEATURE_PREFIX) {
            return Err(bad(SegmentsError::Prefix(
                u32::try_from(parsed.prefix).unwrap_or(u32::MAX),
            )));
        } else {
            match self.before_or_park(frame.clone(), parsed.prefix, parsed.total)? {
                Some(before) => before,
                None => return Ok(SegmentsOutcome::Held),
            }
        };
        let decoded = tokio::task::spawn_blocking(move || {
            segments::decode(&frame.payload, limit, &store, &before, recipes)
        })
        .await
        .map_err(|e| fail(ErrorCode::Other, format!("segment decoding failed: {e}")))?;
        match decoded {
            Ok(bytes) => Ok(SegmentsOutcome::Decoded(bytes)),
            Err(SegmentsError::Missing(hashes)) => {
                tracing::debug!(session = %self.id, offset = h.offset, missing = hashes.len(), first = hashes.first().map(tracing::field::display), "referenced content missing; asking for it");
                Ok(SegmentsOutcome::Missing(hashes))
            }
            Err(e) => Err(bad(e)),
        }
    }

    /// Takes a `Segments` data frame: its bytes, or, when it references content the store
    /// lacks, a call of `need` with its offset and what is missing (then `true`), or nothing
    /// yet when it waits for the bytes before it.
    ///
    /// # Errors
    /// As [`Self::decode_segments`] and [`Self::on_data`].
    pub(crate) async fn take_segments(
        &self,
        frame: Frame,
        need: &impl Fn(u64, &[ContentHash]),
    ) -> Result<bool, ErrorMessage> {
        let offset = frame.header.offset;
        match self.decode_segments(frame).await? {
            SegmentsOutcome::Decoded(bytes) => self.on_data(offset, bytes).map(|()| false),
            SegmentsOutcome::Missing(missing) => {
                need(offset, &missing);
                Ok(true)
            }
            SegmentsOutcome::Held => Ok(false),
        }
    }

    /// Takes the frames that waited for the bytes before them, as long as the next one's are
    /// in (see [`Self::take_segments`]).
    ///
    /// # Errors
    /// As [`Self::take_segments`].
    pub(crate) async fn take_parked(
        &self,
        need: &impl Fn(u64, &[ContentHash]),
    ) -> Result<(), ErrorMessage> {
        while let Some(frame) = self.take_waiting() {
            if self.take_segments(frame, need).await? {
                break;
            }
        }
        Ok(())
    }

    /// The `prefix` bytes before `frame` (which stands for `total` stream bytes) when every
    /// byte before it is in; `None` when it must wait (it is kept, unless a copy already
    /// waits) or is a copy of data already in.
    ///
    /// # Errors
    /// An [`ErrorMessage`] when the frame lies beyond the window or the announced length, too
    /// many frames wait, or the bytes before it are fewer than its prefix.
    fn before_or_park(
        &self,
        frame: Frame,
        prefix: usize,
        total: usize,
    ) -> Result<Option<Vec<u8>>, ErrorMessage> {
        let offset = frame.header.offset;
        let mut r = self.lock_reorder();
        if offset < r.next {
            return Ok(None);
        }
        if offset == r.next {
            let held = r.tail.len_before(offset);
            return r.tail.before(offset, prefix).map(Some).ok_or_else(|| {
                fail(
                    ErrorCode::Protocol,
                    format!(
                        "data frame at offset {offset}: {}",
                        SegmentsError::PrefixMissing { want: prefix, held }
                    ),
                )
            });
        }
        self.check_bounds(offset, total as u64)?;
        if r.pending.len() + r.parked.len() >= MAX_PENDING_FRAMES && !r.parked.contains_key(&offset)
        {
            return Err(too_many_out_of_order());
        }
        r.parked.entry(offset).or_insert(frame);
        Ok(None)
    }

    /// A frame [`Self::decode_segments`] kept that every byte before is now in (to decode
    /// again), dropping those that data already in has passed.
    fn take_waiting(&self) -> Option<Frame> {
        let mut r = self.lock_reorder();
        let next = r.next;
        while let Some(entry) = r.parked.first_entry() {
            match entry.key().cmp(&next) {
                std::cmp::Ordering::Less => {
                    entry.remove();
                }
                std::cmp::Ordering::Equal => return Some(entry.remove()),
                std::cmp::Ordering::Greater => break,
            }
        }
        None
    }

    fn lock_reorder(&self) -> std::sync::MutexGuard<'_, Reorder> {
        self.reorder
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn accept_data(&self, offset: u64, payload: Bytes) -> Result<(), ErrorMessage> {
        let mut r = self.lock_reorder();
        let end = offset + payload.len() as u64;
        if end <= r.next || payload.is_empty() {
            return Ok(()); // a duplicate of data already written
        }
        // The window bounds the bytes held; this bounds the bookkeeping, which tiny frames
        // would otherwise blow up.
        if r.pending.len() + r.parked.len() >= MAX_PENDING_FRAMES
            && !r.pending.contains_key(&offset)
        {
            return Err(too_many_out_of_order());
        }
        r.pending.entry(offset).or_insert(payload);
        loop {
            let next = r.next;
            let Some(entry) = r.pending.first_entry() else {
                break;
            };
            let key = *entry.key();
            if key > next {
                break;
            }
            let data = entry.remove();
            let data_end = key + data.len() as u64;
            if data_end <= r.next {
                continue;
            }
            let skip = usize::try_from(r.next - key).unwrap_or(usize::MAX);
            let data = data.slice(skip.min(data.len())..);
            if self.has(FEATURE_PREFIX) {
                let at = r.next;
                r.tail.push(at, data.clone());
            }
            r.next = data_end;
            self.to_writer(WriteCmd::Data(data));
        }
        self.maybe_finish(&mut r);
        Ok(())
    }

    fn maybe_finish(&self, r: &mut Reorder) {
        if let Some((len, hash)) = r.end {
            if !r.finishing && r.next == len {
                r.finishing = true;
                self.to_writer(WriteCmd::Finish { len, hash });
                self.stop_writer();
            }
        }
    }
}
