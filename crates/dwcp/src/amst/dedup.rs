//! Deduplication on the sending side of a session that negotiated it: each chunk is cut into
//! segments (guest pages or content-defined, about 4 KiB: [`super::cutter`]), and a segment goes as a reference when the
//! receiver holds it, as a zero run when it is all zeros, and as literal bytes otherwise
//! ([`super::segments`]).
//!
//! The receiver holds a segment when its [`ContentIndex`] (sent once when the session opened)
//! says so, or when this session sent it as a literal in a frame the receiver has since
//! acknowledged: the receiver stores each literal segment before it acknowledges the frame. A
//! segment sent in a frame still in flight goes as a literal again, since another connection
//! may deliver the reference first. Neither source is certain (the filter has false positives,
//! the store evicts), so the receiver answers a reference it cannot resolve with `Need`, naming
//! what it lacks, and the sender sends that frame again with those segments as literals
//! ([`super::segments::with_literals`]), or with every segment as a literal when the `Need`
//! names none ([`literal_payload`]).
//!
//! A guest page sent again at the same place (a later pass of a migration) whose previous
//! version the receiver holds goes as a delta against it when at least half its bytes are
//! unchanged: the XOR, mostly zeros, joins the literal block and its codec packs it. The
//! previous versions of the last [`VERSIONS_CAPACITY`] pages sent are kept for that.
//!
//! On a session that negotiated it, the literal block is compressed against the stream bytes
//! right before the chunk ([`super::prefix`]), which the receiver holds by the time it decodes
//! the frame.
//!
//! On a session that negotiated short references, references and delta bases name their
//! content by the first 8 bytes of its hash, the frame carrying a check over the full hashes
//! ([`super::segments`]): 13 bytes a page instead of 37. On one that negotiated recipes, a
//! chunk whose recipe the receiver holds (the same segments, in order, as a frame it decoded
//! before) goes as one reference to that recipe ([`super::recipe`]).
//!
//! With a local store to record into ([`super::SendOptions::record`]), a background thread
//! also stores every segment sent, so that this node can be referenced when the stream comes
//! back the other way (a VM migrated out and later back).

use std::collections::{HashMap, VecDeque};
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::time::Instant;

use bytes::Bytes;

use super::cutter::{Cut, Cutter, Segmenting};
use super::hde_frame::{EncodedChunk, Observation};
use super::prefix::{StreamTail, prefix_len};
use super::recipe;
use super::segments::{MIN_STORED, Segment, pack, write, write_packed};
use crate::hde::lru::Lru;
use crate::hde::{
    Codec, CodecChoice, CodecError, ContentHash, ContentIndex, ContentStore, SharedStore,
};
use crate::wire::{FEATURE_PREFIX, FEATURE_RECIPES, FEATURE_SHORT_REFS, PayloadKind};

/// Segments this session remembers sending (about 1 GiB of content at 4 KiB each).
const SENT_CAPACITY: usize = 1 << 18;
/// Guest pages whose last version sent is kept for deltas (32 MiB of content).
const VERSIONS_CAPACITY: usize = 1 << 13;
/// Segments queued for the recorder before new ones are dropped.
const RECORD_QUEUE: usize = 4096;

/// Stores segments in the node's own store off the producer's thread.
#[derive(Debug)]
struct Recorder {
    tx: SyncSender<(ContentHash, Bytes)>,
    /// Segments dropped because the recorder was behind.
    dropped: std::cell::Cell<u64>,
}

impl Recorder {
    fn start(store: SharedStore) -> Option<Self> {
        let (tx, rx) = sync_channel::<(ContentHash, Bytes)>(RECORD_QUEUE);
        let spawned = std::thread::Builder::new()
            .name("dwcp-record".into())
            .spawn(move || {
                while let Ok((hash, bytes)) = rx.recv() {
                    let mut store = store
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    if let Err(e) = store.put(hash, &bytes) {
                        tracing::warn!(error = %super::sender::error_chain(&e), "could not record a sent segment");
                    }
                }
            });
        match spawned {
            Ok(_) => Some(Self {
                tx,
                dropped: std::cell::Cell::new(0),
            }),
            Err(e) => {
                tracing::warn!(error = %e, "could not start the segment recorder; not recording");
                None
            }
        }
    }

    /// Queues a segment; drops it when the recorder is behind (the store is a cache).
    fn record(&self, hash: ContentHash, bytes: Bytes) {
        if let Err(TrySendError::Full(_)) = self.tx.try_send((hash, bytes)) {
            self.dropped.set(self.dropped.get().saturating_add(1));
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        let dropped = self.dropped.get();
        if dropped > 0 {
            tracing::debug!(
                dropped,
                "segments sent but not recorded: the recorder was behind"
            );
        }
    }
}

/// `new` XOR `base` into `out` when at least half of the bytes are unchanged.
fn xor_if_close(new: &[u8], base: &[u8], out: &mut Vec<u8>) -> bool {
    if new.len() != base.len() {
        return false;
    }
    let same = new.iter().zip(base).filter(|(a, b)| a == b).count();
    if same * 2 < new.len() {
        return false;
    }
    out.extend(new.iter().zip(base).map(|(a, b)| a ^ b));
    true
}

/// The producer's deduplication state for one session.
#[derive(Debug)]
pub(crate) struct Dedup {
    cutter: Cutter,
    index: Option<ContentIndex>,
    /// Segments sent as literals: the stream offset at which their frame ends.
    sent: HashMap<ContentHash, u64>,
    order: VecDeque<ContentHash>,
    recorder: Option<Recorder>,
    /// Segments of the next chunk, found by [`Self::frame_len`], so it is not cut twice.
    next_cuts: Vec<Cut>,
    /// The last version sent of the most recently sent pages, by where they live, for deltas.
    versions: Lru<u64, (ContentHash, Bytes)>,
    /// The last chunks encoded, when literal blocks are compressed against them.
    tail: Option<StreamTail>,
    /// Whether references and delta bases go as short ones (the session negotiated them).
    short: bool,
    /// Whether a chunk whose recipe the receiver holds goes as a reference to it.
    recipes: bool,
    /// Whether the compressor has time to spare (see [`super::prefix::Spare`]): literal
    /// blocks are then compressed against the whole prefix held.
    pub(crate) spare: bool,
}

impl Dedup {
    /// State for chunks of at most `chunk_size` bytes, with the receiver's `index` (if it sent
    /// one) and a local store to record sent segments into, on a session that negotiated
    /// `features` (literal blocks compressed against the bytes before their frame, short
    /// references, recipes).
    pub(crate) fn new(
        chunk_size: usize,
        segmenting: Segmenting,
        index: Option<ContentIndex>,
        record: Option<SharedStore>,
        features: u32,
    ) -> Self {
        Self {
            cutter: Cutter::new(chunk_size, segmenting),
            index,
            sent: HashMap::new(),
            order: VecDeque::new(),
            recorder: record.and_then(Recorder::start),
            next_cuts: Vec::new(),
            versions: Lru::new(),
            tail: (features & FEATURE_PREFIX != 0).then(StreamTail::default),
            short: features & FEATURE_SHORT_REFS != 0,
            recipes: features & FEATURE_RECIPES != 0,
            spare: false,
        }
    }

    /// How much of `data` (at stream offset `offset`, more to follow) to frame now: up to
    /// where its last segment that a frame may end before starts, since the bytes from there
    /// on may continue past `data` (all of it when there is no such point). The segments
    /// before it are kept for [`Self::encode`] of that frame.
    pub(crate) fn frame_len(&mut self, data: &[u8], offset: u64) -> usize {
        let mut cuts = self.cutter.cut(data, offset);
        let len = match cuts.iter().rposition(|c| c.resume && c.start > 0) {
            Some(i) => {
                let start = cuts.get(i).map_or(data.len(), |c| c.start);
                cuts.truncate(i);
                start
            }
            None => data.len(),
        };
        self.next_cuts = cuts;
        len
    }

    fn receiver_holds(&self, hash: &ContentHash, acked: u64) -> bool {
        self.sent.get(hash).is_some_and(|end| *end <= acked)
            || self.index.as_ref().is_some_and(|i| i.may_contain(hash))
    }

    fn remember(&mut self, hash: ContentHash, end: u64) {
        if self.sent.contains_key(&hash) {
            return;
        }
        if self.order.len() >= SENT_CAPACITY {
            if let Some(old) = self.order.pop_front() {
                self.sent.remove(&old);
            }
        }
        self.sent.insert(hash, end);
        self.order.push_back(hash);
    }

    /// Forgets the segments [`Self::frame_len`] found: their chunk is sent another way.
    pub(crate) fn skip(&mut self) {
        self.next_cuts.clear();
    }

    /// Encodes `chunk`, whose frame ends at stream offset `end`, as a `Segments` payload whose
    /// literals are compressed with `choice`; `acked` is the receiver's acknowledged offset.
    ///
    /// # Errors
    /// [`CodecError`] when the compressor fails.
    pub(crate) fn encode(
        &mut self,
        chunk: Bytes,
        end: u64,
        acked: u64,
        choice: CodecChoice,
    ) -> Result<EncodedChunk, CodecError> {
        let mut segments = Vec::new();
        let mut literals = Vec::with_capacity(chunk.len());
        let mut ref_bytes = 0u64;
        let mut deltas = false;
        let mut new = Vec::new();
        let mut recipe = self.recipes.then(recipe::Builder::default);
        let mut named_bytes = 0u64;
        let offset = end - chunk.len() as u64;
        let mut cuts = std::mem::take(&mut self.next_cuts);
        if cuts.last().map(|c| c.start + c.len) != Some(chunk.len()) {
            cuts = self.cutter.cut(&chunk, offset);
        }
        for &Cut {
            start, len, page, ..
        } in &cuts
        {
            let bytes = chunk.slice(start..start + len);
            let len32 = u32::try_from(len).unwrap_or(u32::MAX);
            if crate::hde::is_zero(&bytes) {
                segments.push(Segment::Zero(len32));
                if let Some(r) = &mut recipe {
                    r.zero(len32);
                }
                if let Some(page) = page {
                    self.versions.remove(&page);
                }
                continue;
            }
            if len < MIN_STORED {
                if let Some(r) = &mut recipe {
                    r.inline(&bytes);
                }
                segments.push(Segment::Literal(len32));
                literals.extend_from_slice(&bytes);
                continue;
            }
            let hash = ContentHash::of(&bytes);
            if let Some(rec) = &self.recorder {
                rec.record(hash, bytes.clone());
            }
            if let Some(r) = &mut recipe {
                r.content(len32, hash);
            }
            named_bytes += len as u64;
            let base = page
                .and_then(|p| self.versions.peek(&p))
                .filter(|(base, _)| *base != hash && self.receiver_holds(base, acked));
            if self.receiver_holds(&hash, acked) {
                segments.push(Segment::Ref { len: len32, hash });
                ref_bytes += len as u64;
            } else if let Some((base, _)) =
                base.filter(|(_, old)| xor_if_close(&bytes, old, &mut literals))
            {
                segments.push(Segment::Delta {
                    len: len32,
                    base: *base,
                });
                deltas = true;
                new.push(hash);
            } else {
                segments.push(Segment::Literal(len32));
                literals.extend_from_slice(&bytes);
                new.push(hash);
            }
            if let Some(page) = page {
                // A copy: a slice would keep its whole chunk alive.
                self.versions
                    .insert(page, (hash, Bytes::copy_from_slice(&bytes)));
                while self.versions.len() > VERSIONS_CAPACITY {
                    self.versions.pop_oldest();
                }
            }
        }
        if let Some((name, bytes)) = recipe.and_then(recipe::Builder::finish) {
            if self.receiver_holds(&name, acked) {
                return Ok(self.as_recipe(chunk, offset, name, named_bytes));
            }
            // The receiver stores it with the frame: later chunks may name it.
            if let Some(rec) = &self.recorder {
                rec.record(name, bytes.into());
            }
            new.push(name);
        }
        for hash in new {
            self.remember(hash, end);
        }

        let mut observed = None;
        let payload = match choice.codec().filter(|_| !literals.is_empty()) {
            Some((codec, level)) => {
                let started = Instant::now();
                let original = literals.len() as u64;
                let before = match (&self.tail, codec) {
                    (Some(tail), Codec::Zstd) => tail.before(
                        offset,
                        prefix_len(tail.len_before(offset), literals.len(), self.spare),
                    ),
                    _ => None,
                };
                let packed = pack(
                    literals,
                    codec,
                    level,
                    before.as_deref().unwrap_or_default(),
                )?;
                observed = Some(Observation {
                    choice,
                    original,
                    compressed: packed.compressed as u64,
                    cpu: started.elapsed(),
                });
                write_packed(&segments, &packed, self.short)
            }
            None => write(&segments, None, &literals, self.short),
        };
        if let Some(tail) = &mut self.tail {
            tail.push(offset, chunk.clone());
        }
        Ok(EncodedChunk {
            kind: PayloadKind::Segments,
            payload,
            observed,
            original: (ref_bytes > 0 || deltas).then_some(chunk),
            ref_bytes,
        })
    }

    /// `chunk` (at stream offset `offset`) as one reference to its recipe, held by the
    /// receiver under `name`; `named_bytes` of it are neither zeros nor inline.
    fn as_recipe(
        &mut self,
        chunk: Bytes,
        offset: u64,
        name: ContentHash,
        named_bytes: u64,
    ) -> EncodedChunk {
        let recipe = Segment::Recipe {
            len: u32::try_from(chunk.len()).unwrap_or(u32::MAX),
            hash: name,
        };
        let payload = write(&[recipe], None, &[], self.short);
        if let Some(tail) = &mut self.tail {
            tail.push(offset, chunk.clone());
        }
        EncodedChunk {
            kind: PayloadKind::Segments,
            payload,
            observed: None,
            original: Some(chunk),
            ref_bytes: named_bytes,
        }
    }

    /// How this session cuts chunks.
    pub(crate) fn cutter(&self) -> Cutter {
        self.cutter
    }
}

/// A `Segments` payload of `chunk` (at stream offset `offset`) with every non-zero segment as
/// a literal, uncompressed: the answer to a `Need`, which the receiver can always decode (and
/// then stores).
pub(crate) fn literal_payload(cutter: Cutter, chunk: &[u8], offset: u64) -> Bytes {
    let segments: Vec<Segment> = cutter
        .cut(chunk, offset)
        .into_iter()
        .map(|Cut { start, len, .. }| {
            let len32 = u32::try_from(len).unwrap_or(u32::MAX);
            if chunk
                .get(start..start + len)
                .is_some_and(crate::hde::is_zero)
            {
                Segment::Zero(len32)
            } else {
                Segment::Literal(len32)
            }
        })
        .collect();
    let mut block = Vec::with_capacity(chunk.len());
    let mut at = 0usize;
    for s in &segments {
        let len = usize::try_from(s.len()).unwrap_or(0);
        if let (Segment::Literal(_), Some(bytes)) = (s, chunk.get(at..at + len)) {
            block.extend_from_slice(bytes);
        }
        at += len;
    }
    write(&segments, None, &block, false)
}
