//! [`DiskStore`]: content on disk under one directory, in append-only pack files, at most
//! `max_bytes` of them, the oldest pack evicted first.
//!
//! ```text
//! <dir>/pack-<seq, 16 hex digits>     records, appended in order; the highest seq is active
//! record: magic "NCS1" (4) | len: u32 BE (4) | BLAKE3 of the content (32) | content[len]
//! ```
//!
//! One `put` is one append of one record (one `write` call), so storing the thousands of small
//! segments of a stream costs no more than writing them once. The index (hash → pack, offset,
//! length) lives in memory; `open` rebuilds it by reading the records' headers.
//!
//! Crash safety: records are not fsynced. A crash (even `kill -9` mid-write) leaves at worst a
//! torn record at the end of the active pack; `open` cuts a pack at its first record whose
//! header is malformed or whose content runs past the end of the file. Content damaged in
//! place (a power loss) is caught by the BLAKE3 check of every `get`: the entry is dropped and
//! reported missing, so the sender is asked for the bytes again.
//!
//! Eviction is by pack, oldest first, whenever the packs pass `max_bytes`. So that content in
//! use survives it (least recently used, approximately), an entry read or stored again while it
//! sits in the older half of the packs is copied forward into the active one.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use super::store::StoreError;
use super::{ContentHash, ContentStore, HashKey};

const MAGIC: [u8; 4] = *b"NCS1";
/// Bytes of a record header.
const HEADER_BYTES: usize = 40;
const HEADER_LEN: u64 = HEADER_BYTES as u64;
/// Largest record content: a frame's payload limit.
const MAX_CONTENT: u32 = crate::wire::MAX_PAYLOAD;
/// Largest pack before a new one is started (smaller for small stores: an eighth of them).
const MAX_PACK: u64 = 256 << 20;
const PREFIX: &str = "pack-";

#[derive(Debug, Clone, Copy)]
struct Loc {
    pack: u64,
    /// Offset of the content in the pack file.
    offset: u64,
    len: u32,
}

#[derive(Debug)]
struct Pack {
    file: File,
    /// Bytes of the file (records, live or not).
    bytes: u64,
}

/// Content on disk under one directory (see the module doc).
#[derive(Debug)]
pub struct DiskStore {
    dir: PathBuf,
    /// Ordered, so that a short reference's key finds its hashes by range.
    index: BTreeMap<ContentHash, Loc>,
    packs: BTreeMap<u64, Pack>,
    /// Bytes of all packs.
    disk_bytes: u64,
    /// Bytes of live content.
    live_bytes: u64,
    max_bytes: u64,
    pack_limit: u64,
}

impl DiskStore {
    /// Opens (creating it if needed) the store in `dir`: rebuilds the index from the packs,
    /// cutting each at its first torn or malformed record, then evicts down to `max_bytes`.
    ///
    /// # Errors
    /// [`StoreError::Open`] if the directory or a pack cannot be read or cut,
    /// [`StoreError::Remove`] if an eviction fails.
    pub fn open(dir: impl Into<PathBuf>, max_bytes: u64) -> Result<Self, StoreError> {
        let dir = dir.into();
        let open_err = |source| StoreError::Open {
            dir: dir.clone(),
            source,
        };
        fs::create_dir_all(&dir).map_err(open_err)?;
        let mut seqs = Vec::new();
        for entry in fs::read_dir(&dir).map_err(open_err)? {
            let entry = entry.map_err(open_err)?;
            let name = entry.file_name();
            if let Some(seq) = name.to_str().and_then(parse_pack_name) {
                seqs.push(seq);
            }
        }
        seqs.sort_unstable();
        let mut store = Self {
            dir: dir.clone(),
            index: BTreeMap::new(),
            packs: BTreeMap::new(),
            disk_bytes: 0,
            live_bytes: 0,
            max_bytes,
            pack_limit: (max_bytes / 8).clamp(1, MAX_PACK),
        };
        for seq in seqs {
            store.load(seq).map_err(open_err)?;
        }
        store.evict()?;
        Ok(store)
    }

    /// Reads pack `seq`'s headers into the index, cutting it at its first bad record.
    fn load(&mut self, seq: u64) -> io::Result<()> {
        let path = self.pack_path(seq);
        let file = OpenOptions::new().read(true).append(true).open(&path)?;
        let len = file.metadata()?.len();
        let mut reader = BufReader::with_capacity(1 << 16, &file);
        let mut at = 0u64;
        let mut found = Vec::new();
        loop {
            let mut header = [0u8; HEADER_BYTES];
            if at + HEADER_LEN > len || reader.read_exact(&mut header).is_err() {
                break;
            }
            let Some((content_len, hash)) = parse_header(&header) else {
                break;
            };
            let end = at + HEADER_LEN + u64::from(content_len);
            if end > len {
                break;
            }
            found.push((
                hash,
                Loc {
                    pack: seq,
                    offset: at + HEADER_LEN,
                    len: content_len,
                },
            ));
            reader.seek_relative(i64::from(content_len))?;
            at = end;
        }
        drop(reader);
        if at < len {
            tracing::warn!(pack = %path.display(), kept = at, dropped = len - at, "content store pack cut at a torn or malformed record");
            file.set_len(at)?;
        }
        if at == 0 {
            drop(file);
            fs::remove_file(&path)?;
            return Ok(());
        }
        for (hash, loc) in found {
            if let Some(old) = self.index.insert(hash, loc) {
                self.live_bytes -= u64::from(old.len);
            }
            self.live_bytes += u64::from(loc.len);
        }
        self.packs.insert(seq, Pack { file, bytes: at });
        self.disk_bytes += at;
        Ok(())
    }

    fn pack_path(&self, seq: u64) -> PathBuf {
        self.dir.join(format!("{PREFIX}{seq:016x}"))
    }

    /// Number of entries.
    #[must_use]
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether the store is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Bytes of content held.
    #[must_use]
    pub fn total_bytes(&self) -> u64 {
        self.live_bytes
    }

    /// Bytes the packs take on disk (content held, record headers, and records superseded or
    /// dropped but not yet evicted).
    #[must_use]
    pub fn disk_bytes(&self) -> u64 {
        self.disk_bytes
    }

    /// Whether `hash` is listed, without reading or touching it.
    #[must_use]
    pub fn contains(&self, hash: &ContentHash) -> bool {
        self.index.contains_key(hash)
    }

    /// The one hash listed whose first bytes are `key`; `None` when none is, or more than one
    /// (a short reference to those is asked for in full).
    #[must_use]
    pub fn hash_by_key(&self, key: HashKey) -> Option<ContentHash> {
        let mut found = self
            .index
            .range(ContentHash::from_key(key)..)
            .map(|(hash, _)| *hash)
            .take_while(|hash| hash.key() == key);
        let first = found.next()?;
        found.next().is_none().then_some(first)
    }

    /// Every hash held, in no particular order (for the index a receiver sends).
    pub fn hashes(&self) -> impl Iterator<Item = &ContentHash> {
        self.index.keys()
    }

    /// The pack file and offset of `hash`'s record, for tests that damage it.
    #[cfg(test)]
    pub(crate) fn record_of(&self, hash: &ContentHash) -> Option<(PathBuf, u64)> {
        let loc = self.index.get(hash)?;
        Some((self.pack_path(loc.pack), loc.offset - HEADER_LEN))
    }

    /// Whether an entry in `pack` is old enough to be copied forward when used.
    fn is_old(&self, pack: u64) -> bool {
        let half = self.packs.len() / 2;
        self.packs.keys().take(half.max(1)).any(|p| *p == pack)
            && self
                .packs
                .last_key_value()
                .is_some_and(|(last, _)| *last != pack)
    }

    /// Appends a record, starting a new pack when the active one is full.
    fn append(&mut self, hash: ContentHash, content: &[u8]) -> Result<(), StoreError> {
        let len = u32::try_from(content.len())
            .ok()
            .filter(|l| *l <= MAX_CONTENT)
            .ok_or_else(|| StoreError::Write {
                path: self.dir.clone(),
                source: io::Error::new(io::ErrorKind::InvalidInput, "content too large"),
            })?;
        let record_len = HEADER_LEN + u64::from(len);
        let active = match self.packs.last_key_value() {
            Some((seq, pack)) if pack.bytes + record_len <= self.pack_limit || pack.bytes == 0 => {
                *seq
            }
            Some((seq, _)) => self.start_pack(seq + 1)?,
            None => self.start_pack(1)?,
        };
        let path = self.pack_path(active);
        let Some(pack) = self.packs.get_mut(&active) else {
            return Err(StoreError::Write {
                path,
                source: io::Error::other("active pack vanished"),
            });
        };
        let mut record = Vec::with_capacity(usize::try_from(record_len).unwrap_or(0));
        record.extend_from_slice(&MAGIC);
        record.extend_from_slice(&len.to_be_bytes());
        record.extend_from_slice(&hash.0);
        record.extend_from_slice(content);
        let offset = pack.bytes;
        if let Err(source) = pack.file.write_all(&record) {
            // Whatever part was written is cut at the next open; drop it from the accounting
            // by starting a new pack next time.
            pack.bytes = self.pack_limit.max(pack.bytes);
            return Err(StoreError::Write { path, source });
        }
        pack.bytes += record_len;
        self.disk_bytes += record_len;
        let loc = Loc {
            pack: active,
            offset: offset + HEADER_LEN,
            len,
        };
        if let Some(old) = self.index.insert(hash, loc) {
            self.live_bytes -= u64::from(old.len);
        }
        self.live_bytes += u64::from(len);
        Ok(())
    }

    fn start_pack(&mut self, seq: u64) -> Result<u64, StoreError> {
        let path = self.pack_path(seq);
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|source| StoreError::Write {
                path: path.clone(),
                source,
            })?;
        let bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
        self.disk_bytes += bytes;
        self.packs.insert(seq, Pack { file, bytes });
        Ok(seq)
    }

    /// Removes the oldest packs (and their entries) until the store is within its bound.
    fn evict(&mut self) -> Result<(), StoreError> {
        while self.disk_bytes > self.max_bytes {
            let Some((seq, pack)) = self.packs.pop_first() else {
                break;
            };
            self.disk_bytes -= pack.bytes;
            drop(pack);
            let mut freed = 0u64;
            self.index.retain(|_, loc| {
                let keep = loc.pack != seq;
                if !keep {
                    freed += u64::from(loc.len);
                }
                keep
            });
            self.live_bytes -= freed;
            let path = self.pack_path(seq);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => return Err(StoreError::Remove { path, source }),
            }
        }
        Ok(())
    }

    fn drop_entry(&mut self, hash: &ContentHash) {
        if let Some(loc) = self.index.remove(hash) {
            self.live_bytes -= u64::from(loc.len);
        }
    }
}

impl ContentStore for DiskStore {
    fn get(&mut self, hash: &ContentHash) -> Result<Option<Vec<u8>>, StoreError> {
        let Some(loc) = self.index.get(hash).copied() else {
            return Ok(None);
        };
        let Some(pack) = self.packs.get(&loc.pack) else {
            self.drop_entry(hash);
            return Ok(None);
        };
        let mut content = vec![0u8; usize::try_from(loc.len).unwrap_or(0)];
        match pack.file.read_exact_at(&mut content, loc.offset) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                self.drop_entry(hash);
                return Ok(None);
            }
            Err(source) => {
                return Err(StoreError::Read {
                    path: self.pack_path(loc.pack),
                    source,
                });
            }
        }
        if !hash.matches(&content) {
            self.drop_entry(hash);
            return Ok(None);
        }
        if self.is_old(loc.pack) {
            self.append(*hash, &content)?;
            self.evict()?;
        }
        Ok(Some(content))
    }

    fn put(&mut self, hash: ContentHash, content: &[u8]) -> Result<(), StoreError> {
        if HEADER_LEN + content.len() as u64 > self.max_bytes {
            return Ok(());
        }
        if let Some(loc) = self.index.get(&hash).copied() {
            if !self.is_old(loc.pack) {
                return Ok(());
            }
        }
        self.append(hash, content)?;
        self.evict()
    }
}

fn parse_header(header: &[u8; HEADER_BYTES]) -> Option<(u32, ContentHash)> {
    let (magic, rest) = header.split_first_chunk::<4>()?;
    let (len, hash) = rest.split_first_chunk::<4>()?;
    let len = u32::from_be_bytes(*len);
    if *magic != MAGIC || len == 0 || len > MAX_CONTENT {
        return None;
    }
    let hash: [u8; 32] = hash.try_into().ok()?;
    Some((len, ContentHash(hash)))
}

/// The sequence number a pack file name stands for (`pack-` and 16 lowercase hex digits).
fn parse_pack_name(name: &str) -> Option<u64> {
    let hex = name.strip_prefix(PREFIX)?;
    if hex.len() != 16 {
        return None;
    }
    u64::from_str_radix(hex, 16)
        .ok()
        .filter(|seq| format!("{seq:016x}") == hex && *seq > 0)
}
