//! The receiver's content stores: [`MemStore`] in memory, [`DiskStore`] on disk under the
//! node's data dir, both bounded in bytes with least-recently-used eviction.
//!
//! `DiskStore` layout, one file per content hash, fanned out by the hash's first byte:
//!
//! ```text
//! <dir>/ab/ab12…(64 hex digits)    the content, exactly
//! <dir>/ab/.tmp-<pid>-<n>          a write in progress
//! ```
//!
//! A write goes to a temp file that is renamed into place, so a crash (even `kill -9` mid
//! write) leaves at worst a temp file, which `open` removes; never a half-written entry under
//! a hash name. Entries are not fsynced: every read is checked against its BLAKE3, and an
//! entry that fails (torn by a power loss, or damaged later) is removed and reported as
//! missing, so the sender is asked for the bytes again. Access order lives in memory and in the
//! files' mtimes (set on every write and read), from which `open` rebuilds it.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::lru::Lru;
use super::{ContentHash, ContentStore};

/// What went wrong in a content store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store directory could not be created or listed.
    #[error("could not open the content store at {dir}")]
    Open {
        /// The store directory.
        dir: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// An entry could not be read.
    #[error("could not read content store entry {path}")]
    Read {
        /// The entry's file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// An entry could not be written.
    #[error("could not write content store entry {path}")]
    Write {
        /// The file being written.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// An entry could not be removed.
    #[error("could not remove content store entry {path}")]
    Remove {
        /// The entry's file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

/// Content in memory, at most `max_bytes` of it, least recently used evicted first.
#[derive(Debug)]
pub struct MemStore {
    entries: Lru<ContentHash, Vec<u8>>,
    total_bytes: usize,
    max_bytes: usize,
}

impl MemStore {
    /// An empty store holding at most `max_bytes` of content.
    #[must_use]
    pub fn new(max_bytes: usize) -> Self {
        Self {
            entries: Lru::new(),
            total_bytes: 0,
            max_bytes,
        }
    }

    /// Number of entries.
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the store is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.len() == 0
    }

    /// Bytes of content held.
    #[must_use]
    pub fn total_bytes(&self) -> usize {
        self.total_bytes
    }

    /// Whether `hash` is held, without touching it.
    #[must_use]
    pub fn contains(&self, hash: &ContentHash) -> bool {
        self.entries.contains(hash)
    }
}

impl ContentStore for MemStore {
    fn get(&mut self, hash: &ContentHash) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.entries.get(hash).cloned())
    }

    fn put(&mut self, hash: ContentHash, content: &[u8]) -> Result<(), StoreError> {
        if content.len() > self.max_bytes {
            return Ok(());
        }
        if let Some(old) = self.entries.insert(hash, content.to_vec()) {
            self.total_bytes -= old.len();
        }
        self.total_bytes += content.len();
        while self.total_bytes > self.max_bytes {
            match self.entries.pop_oldest() {
                Some((_, old)) => self.total_bytes -= old.len(),
                None => break,
            }
        }
        Ok(())
    }
}

/// Content on disk under one directory, at most `max_bytes` of it (see the module doc).
#[derive(Debug)]
pub struct DiskStore {
    dir: PathBuf,
    /// Size in bytes of each entry, in access order.
    index: Lru<ContentHash, u64>,
    total_bytes: u64,
    max_bytes: u64,
    next_temp: u64,
}

const TEMP_PREFIX: &str = ".tmp-";

impl DiskStore {
    /// Opens (creating it if needed) the store in `dir`, removing temp files left by an
    /// interrupted write, and evicting down to `max_bytes`.
    ///
    /// # Errors
    /// [`StoreError::Open`] if the directory cannot be created or listed,
    /// [`StoreError::Remove`] if an eviction fails.
    pub fn open(dir: impl Into<PathBuf>, max_bytes: u64) -> Result<Self, StoreError> {
        let dir = dir.into();
        let open_err = |source| StoreError::Open {
            dir: dir.clone(),
            source,
        };
        fs::create_dir_all(&dir).map_err(open_err)?;
        let mut found = Vec::new();
        for fan in fs::read_dir(&dir).map_err(open_err)? {
            let fan = fan.map_err(open_err)?;
            let Some(prefix) = fan.file_name().to_str().and_then(parse_fan) else {
                continue;
            };
            if !fan.file_type().map_err(open_err)?.is_dir() {
                continue;
            }
            for entry in fs::read_dir(fan.path()).map_err(open_err)? {
                let entry = entry.map_err(open_err)?;
                let name = entry.file_name();
                let Some(name) = name.to_str() else {
                    continue;
                };
                if name.starts_with(TEMP_PREFIX) {
                    // Best effort: a temp file that cannot be removed is still never read.
                    let _ = fs::remove_file(entry.path());
                    continue;
                }
                let Some(hash) = parse_hash(name).filter(|h| h.0.first() == Some(&prefix)) else {
                    continue;
                };
                let meta = entry.metadata().map_err(open_err)?;
                if !meta.is_file() {
                    continue;
                }
                let mtime = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                found.push((mtime, hash, meta.len()));
            }
        }
        found.sort();
        let mut store = Self {
            dir,
            index: Lru::new(),
            total_bytes: 0,
            max_bytes,
            next_temp: 0,
        };
        for (_, hash, len) in found {
            store.index.insert(hash, len);
            store.total_bytes += len;
        }
        store.evict()?;
        Ok(store)
    }

    /// Number of entries.
    #[must_use]
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether the store is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.index.len() == 0
    }

    /// Bytes of content held.
    #[must_use]
    pub fn total_bytes(&self) -> u64 {
        self.total_bytes
    }

    /// Whether `hash` is listed, without reading or touching it.
    #[must_use]
    pub fn contains(&self, hash: &ContentHash) -> bool {
        self.index.contains(hash)
    }

    /// Every hash held, in no particular order (for the index a receiver sends).
    pub fn hashes(&self) -> impl Iterator<Item = &ContentHash> {
        self.index.keys()
    }

    /// The file that holds `hash`.
    #[must_use]
    pub fn path_of(&self, hash: &ContentHash) -> PathBuf {
        let name = hash.to_string();
        let fan = name.get(..2).unwrap_or_default();
        self.dir.join(fan).join(&name)
    }

    /// Drops `hash` from the index and its file from disk.
    fn drop_entry(&mut self, hash: &ContentHash) -> Result<(), StoreError> {
        if let Some(len) = self.index.remove(hash) {
            self.total_bytes -= len;
        }
        self.remove_file(hash)
    }

    fn remove_file(&self, hash: &ContentHash) -> Result<(), StoreError> {
        let path = self.path_of(hash);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(StoreError::Remove { path, source }),
        }
    }

    /// Removes least recently used entries until the store is within its bound.
    fn evict(&mut self) -> Result<(), StoreError> {
        while self.total_bytes > self.max_bytes {
            let Some((hash, len)) = self.index.pop_oldest() else {
                break;
            };
            self.total_bytes -= len;
            self.remove_file(&hash)?;
        }
        Ok(())
    }

    fn write_new(&mut self, hash: &ContentHash, content: &[u8]) -> Result<(), StoreError> {
        let path = self.path_of(hash);
        let fan = path.parent().unwrap_or(&self.dir).to_path_buf();
        self.next_temp += 1;
        let temp = fan.join(format!(
            "{TEMP_PREFIX}{}-{}",
            std::process::id(),
            self.next_temp
        ));
        let write = |temp: &Path| -> io::Result<()> {
            fs::create_dir_all(&fan)?;
            let mut file = fs::File::create(temp)?;
            file.write_all(content)?;
            // A precise mtime, so that `open` can order entries written within one tick.
            file.set_modified(SystemTime::now())?;
            drop(file);
            fs::rename(temp, &path)
        };
        write(&temp).map_err(|source| {
            // Best effort: a leftover temp file is removed at the next open anyway.
            let _ = fs::remove_file(&temp);
            StoreError::Write {
                path: path.clone(),
                source,
            }
        })
    }
}

impl ContentStore for DiskStore {
    fn get(&mut self, hash: &ContentHash) -> Result<Option<Vec<u8>>, StoreError> {
        if !self.index.contains(hash) {
            return Ok(None);
        }
        let path = self.path_of(hash);
        let read = || -> io::Result<(fs::File, Vec<u8>)> {
            let mut file = fs::File::open(&path)?;
            let mut content = Vec::new();
            file.read_to_end(&mut content)?;
            Ok((file, content))
        };
        let (file, content) = match read() {
            Ok(found) => found,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.drop_entry(hash)?;
                return Ok(None);
            }
            Err(source) => return Err(StoreError::Read { path, source }),
        };
        if !hash.matches(&content) {
            self.drop_entry(hash)?;
            return Ok(None);
        }
        self.index.touch(hash);
        // Best effort: a stale mtime only makes the order rebuilt at open less exact.
        let _ = file.set_modified(SystemTime::now());
        Ok(Some(content))
    }

    fn put(&mut self, hash: ContentHash, content: &[u8]) -> Result<(), StoreError> {
        let len = content.len() as u64;
        if len > self.max_bytes {
            return Ok(());
        }
        if self.index.touch(&hash) {
            match fs::File::open(self.path_of(&hash))
                .and_then(|f| f.set_modified(SystemTime::now()))
            {
                // Listed but gone (removed behind the store's back): write it again.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    if let Some(old) = self.index.remove(&hash) {
                        self.total_bytes -= old;
                    }
                }
                // Best effort, as in `get`.
                _ => return Ok(()),
            }
        }
        self.write_new(&hash, content)?;
        self.index.insert(hash, len);
        self.total_bytes += len;
        self.evict()
    }
}

/// The byte a fan-out directory name stands for (two lowercase hex digits).
fn parse_fan(name: &str) -> Option<u8> {
    if name.len() != 2 {
        return None;
    }
    u8::from_str_radix(name, 16)
        .ok()
        .filter(|b| format!("{b:02x}") == name)
}

/// The hash an entry file name stands for (64 lowercase hex digits).
fn parse_hash(name: &str) -> Option<ContentHash> {
    if name.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(name.as_bytes().chunks_exact(2)) {
        let pair = std::str::from_utf8(pair).ok()?;
        *byte = u8::from_str_radix(pair, 16).ok()?;
    }
    (ContentHash(out).to_string() == name).then_some(ContentHash(out))
}
