//! The receiver's content stores: [`MemStore`] in memory, least recently used evicted first,
//! and [`DiskStore`] on disk under the node's data dir (pack files, see `pack`), both bounded
//! in bytes; and the error they share.

use std::io;
use std::path::PathBuf;

use super::lru::Lru;
pub use super::pack::DiskStore;

/// A [`DiskStore`] shared by a node's sessions: its receiver's and its senders' recorders.
pub type SharedStore = std::sync::Arc<std::sync::Mutex<DiskStore>>;
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
