//! Seeding the node's DWCP content store with the pages of its images' kernels.
//!
//! A VM started from an image with a kernel (direct kernel boot) holds that kernel's loadable
//! segments in its memory, page for page wherever the kernel did not change them once running
//! (most of its text and read-only data). The file lays each segment out at an offset congruent
//! to its address modulo the page size, so the file's pages at page-aligned offsets are the
//! memory's pages. A node that holds the image puts those pages into its content store, whose
//! index a sender gets when a session opens: the first migration of such a VM to this node then
//! sends references for them instead of their bytes.
//!
//! Only 64-bit little-endian ELF kernels (`vmlinux`) are read; a compressed kernel (`bzImage`)
//! holds no page of the running one and is left alone. The file is not trusted: the program
//! header table and every segment are bounded by the file's length, at most [`MAX_PAGES`] pages
//! are read, and each page goes into the store under the BLAKE3 computed here of its bytes.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::PoisonError;

use dwcp::hde::{ContentHash, ContentStore, SharedStore, StoreError};

/// Size of a guest page.
const PAGE_BYTES: usize = 4096;
/// [`PAGE_BYTES`] as a file offset.
const PAGE: u64 = 4096;
/// Most pages read from one kernel (128 MiB).
const MAX_PAGES: usize = 32 << 10;
/// Pages put into the store per hold of its lock, so that a migration's recorder waits little.
const BATCH: usize = 256;
/// Most program headers read.
const MAX_HEADERS: u16 = 128;
/// ELF's `PT_LOAD`.
const PT_LOAD: u32 = 1;

/// Why a kernel's pages could not be put into the store.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SeedError {
    /// The kernel file could not be read.
    #[error("could not read the kernel: {0}")]
    Read(#[from] io::Error),
    /// The store refused a page.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// File ranges (offset, length) of the loadable segments of the ELF kernel `file`, each
/// starting at a page boundary and ending within the file; `None` when `file` is not a 64-bit
/// little-endian ELF file.
///
/// # Errors
///
/// [`io::Error`] when the file cannot be read.
pub(crate) fn kernel_segments(
    file: &mut (impl Read + Seek),
) -> io::Result<Option<Vec<(u64, u64)>>> {
    let len = file.seek(SeekFrom::End(0))?;
    let mut header = [0u8; 64];
    file.seek(SeekFrom::Start(0))?;
    if len < 64 {
        return Ok(None);
    }
    file.read_exact(&mut header)?;
    // Magic, class 2 (64-bit), data 1 (little-endian).
    if header.get(..6) != Some(&[0x7f, b'E', b'L', b'F', 2, 1][..]) {
        return Ok(None);
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) = (
        u64_at(&header, 0x20),
        u16_at(&header, 0x36),
        u16_at(&header, 0x38),
    ) else {
        return Ok(None);
    };
    if !(56..=256).contains(&phentsize) || phnum > MAX_HEADERS {
        return Ok(None);
    }
    let table = u64::from(phentsize) * u64::from(phnum);
    if phoff.checked_add(table).is_none_or(|end| end > len) {
        return Ok(None);
    }
    let mut entries = vec![0u8; usize::from(phentsize) * usize::from(phnum)];
    file.seek(SeekFrom::Start(phoff))?;
    file.read_exact(&mut entries)?;
    let mut segments = Vec::new();
    for entry in entries.chunks_exact(usize::from(phentsize)) {
        let (Some(kind), Some(offset), Some(filesz)) =
            (u32_at(entry, 0), u64_at(entry, 8), u64_at(entry, 32))
        else {
            continue;
        };
        if kind != PT_LOAD || filesz == 0 || offset >= len {
            continue;
        }
        let start = offset - offset % PAGE;
        let end = offset.saturating_add(filesz).min(len);
        segments.push((start, end - start));
    }
    Ok(Some(segments))
}

/// Puts the pages of the loadable segments of kernel `path` into `store`, all but the zero
/// pages and those it holds already; returns how many it put (0 for a kernel that is not an
/// ELF file).
///
/// # Errors
///
/// [`SeedError`] when the kernel cannot be read or the store written.
pub(crate) fn seed_kernel(store: &SharedStore, path: &Path) -> Result<usize, SeedError> {
    let mut file = File::open(path)?;
    let Some(segments) = kernel_segments(&mut file)? else {
        return Ok(0);
    };
    let mut put = 0;
    let mut read = 0;
    let mut batch: Vec<(ContentHash, Vec<u8>)> = Vec::with_capacity(BATCH);
    for (start, len) in segments {
        file.seek(SeekFrom::Start(start))?;
        let mut left = len;
        // A last partial page is not a whole page of memory: it is left out.
        while left >= PAGE && read < MAX_PAGES {
            let mut page = vec![0u8; PAGE_BYTES];
            file.read_exact(&mut page)?;
            left -= PAGE;
            read += 1;
            if page.iter().all(|&b| b == 0) {
                continue;
            }
            batch.push((ContentHash::of(&page), page));
            if batch.len() == BATCH {
                put += put_batch(store, &mut batch)?;
            }
        }
    }
    put += put_batch(store, &mut batch)?;
    Ok(put)
}

/// Puts the pages of `batch` that `store` lacks, under one hold of its lock; empties `batch`.
fn put_batch(
    store: &SharedStore,
    batch: &mut Vec<(ContentHash, Vec<u8>)>,
) -> Result<usize, StoreError> {
    let mut store = store.lock().unwrap_or_else(PoisonError::into_inner);
    let mut put = 0;
    for (hash, page) in batch.drain(..) {
        if !store.contains(&hash) {
            store.put(hash, &page)?;
            put += 1;
        }
    }
    Ok(put)
}

fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(*bytes.get(at..)?.first_chunk()?))
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(*bytes.get(at..)?.first_chunk()?))
}

fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(*bytes.get(at..)?.first_chunk()?))
}

impl crate::node::Node {
    /// Puts the kernel pages of every image the node holds into its content store, in the
    /// background: those of images imported before the node did so, or of a store emptied
    /// since, are then there for the next migrations too.
    pub(crate) fn seed_held_kernels(&self) {
        if self
            .cluster()
            .ok()
            .and_then(|c| c.content.as_ref())
            .is_none()
        {
            return;
        }
        let node = self.clone();
        tokio::spawn(async move {
            for image in node.store().images() {
                node.seed_kernel_pages(&image).await;
            }
        });
    }

    /// Puts the pages of `image`'s kernel into the node's content store, if it has both, and
    /// logs the outcome: a store without them only costs later migrations bytes, so nothing
    /// fails for it.
    pub(crate) async fn seed_kernel_pages(&self, image: &novacron_model::Image) {
        let (Ok(cluster), Some(kernel)) = (self.cluster(), image.kernel.as_ref()) else {
            return;
        };
        let Some(store) = cluster.content.clone() else {
            return;
        };
        let path = std::path::PathBuf::from(kernel);
        let started = std::time::Instant::now();
        match tokio::task::spawn_blocking(move || seed_kernel(&store, &path)).await {
            Ok(Ok(0)) => {
                tracing::debug!(image = %image.name, "no kernel page to put into the DWCP content store")
            }
            Ok(Ok(pages)) => tracing::info!(
                image = %image.name,
                pages,
                ms = started.elapsed().as_millis(),
                "kernel pages put into the DWCP content store"
            ),
            Ok(Err(e)) => tracing::warn!(
                image = %image.name,
                error = %crate::vms::chain(&e),
                "could not put the kernel's pages into the DWCP content store"
            ),
            Err(e) => {
                tracing::warn!(image = %image.name, error = %e, "kernel page seeding stopped")
            }
        }
    }
}

#[cfg(test)]
#[path = "seed_test.rs"]
mod tests;
