//! Reusing the buffers of whole frames.
//!
//! A session moves its data in frames of about a chunk (1 MiB by default). Allocated fresh for
//! each frame, such a buffer comes from memory the allocator has just handed back to the
//! kernel or never had: every one of its pages faults on first write (the file read or
//! socket read copying into it), and the kernel zeroes each page before the copy overwrites
//! it. On loopback, where DWCP is bound by CPU, that was one sample in twenty of an insecure
//! transfer. A [`BufPool`] keeps a few buffers of the chunk's size: a frame's bytes, frozen
//! with [`BufPool::freeze`], go back to the pool when the last [`Bytes`] referring to them is
//! dropped (acknowledged at the sender, written at the receiver), and the next frame takes
//! them with [`BufPool::take`].
//!
//! Only buffers for large frames (at least half the pool's size) come from the pool, so that a
//! small frame held for a while (out of order, or waiting for its acknowledgement) does not pin
//! a chunk-sized buffer. The pool keeps at most [`BufPool::new`]'s `keep` buffers; those
//! returned beyond it are freed.

use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;

/// A bounded free list of buffers of one size.
#[derive(Debug)]
pub struct BufPool {
    size: usize,
    keep: usize,
    free: Mutex<Vec<Vec<u8>>>,
}

impl BufPool {
    /// A pool of buffers of `size` bytes keeping at most `keep` of them unused.
    #[must_use]
    pub fn new(size: usize, keep: usize) -> Arc<Self> {
        Arc::new(Self {
            size,
            keep,
            free: Mutex::new(Vec::new()),
        })
    }

    /// Whether a buffer for `len` bytes comes from the pool: between half its size and its size.
    #[must_use]
    pub fn serves(&self, len: usize) -> bool {
        len <= self.size && len >= self.size / 2
    }

    /// An empty buffer with room for at least `len` bytes: a pooled one (of the pool's size)
    /// when [`Self::serves`] `len` and one is free, else a new one of `len` (the pool's size
    /// when it serves `len`, so that it can be kept when it comes back).
    #[must_use]
    pub fn take(&self, len: usize) -> Vec<u8> {
        if !self.serves(len) {
            return Vec::with_capacity(len);
        }
        let reused = self
            .free
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        match reused {
            Some(mut buf) => {
                buf.clear();
                buf
            }
            None => Vec::with_capacity(self.size),
        }
    }

    /// `buf` as [`Bytes`]; a buffer of the pool's capacity comes back to the pool when the
    /// last `Bytes` referring to it is dropped.
    #[must_use]
    pub fn freeze(self: &Arc<Self>, buf: Vec<u8>) -> Bytes {
        if buf.capacity() != self.size {
            return Bytes::from(buf);
        }
        Bytes::from_owner(Pooled {
            buf,
            pool: Arc::clone(self),
        })
    }

    /// Buffers kept for reuse now.
    #[must_use]
    pub fn idle(&self) -> usize {
        self.free
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    fn put(&self, buf: Vec<u8>) {
        let mut free = self.free.lock().unwrap_or_else(PoisonError::into_inner);
        if free.len() < self.keep {
            free.push(buf);
        }
    }
}

/// A pooled buffer behind [`Bytes`]: returns to its pool when dropped.
struct Pooled {
    buf: Vec<u8>,
    pool: Arc<BufPool>,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        self.pool.put(std::mem::take(&mut self.buf));
    }
}

#[cfg(test)]
#[path = "bufpool_test.rs"]
mod bufpool_test;
