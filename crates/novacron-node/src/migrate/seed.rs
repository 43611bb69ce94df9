//! Seeding the node's DWCP content store with the pages of its images' kernels and initrds.
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
/// Most pages read from one kernel or initrd (128 MiB).
pub(crate) const MAX_PAGES: usize = 32 << 10;
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
    let mut seeder = Seeder::new(store);
    let mut read = 0;
    for (start, len) in segments {
        file.seek(SeekFrom::Start(start))?;
        let mut left = len;
        // A last partial page is not a whole page of memory: it is left out.
        while left >= PAGE && read < MAX_PAGES {
            let mut page = vec![0u8; PAGE_BYTES];
            file.read_exact(&mut page)?;
            left -= PAGE;
            read += 1;
            if page.iter().any(|&b| b != 0) {
                seeder.push(page)?;
            }
        }
    }
    seeder.finish()
}

/// Puts the pages of the files in initrd `path` into `store` (see [`super::seed_initrd`]),
/// all but the zero pages and those it holds already; returns how many it put (0 for a file
/// that is not an initrd this reads).
///
/// # Errors
///
/// [`SeedError`] when the initrd cannot be read or unpacked, or the store written.
pub(crate) fn seed_initrd(store: &SharedStore, path: &Path) -> Result<usize, SeedError> {
    let mut seeder = Seeder::new(store);
    let mut given = 0;
    let mut failed = None;
    super::seed_initrd::initrd_pages(File::open(path)?, |page| {
        given += 1;
        if let Err(e) = seeder.push(page) {
            failed = Some(e);
            return Ok(false);
        }
        Ok(given < MAX_PAGES)
    })?;
    if let Some(e) = failed {
        return Err(e.into());
    }
    seeder.finish()
}

/// Puts pages into a store in batches, each under one hold of its lock, so that a migration's
/// recorder waits little; counts those the store lacked.
struct Seeder<'a> {
    store: &'a SharedStore,
    batch: Vec<(ContentHash, Vec<u8>)>,
    put: usize,
}

impl<'a> Seeder<'a> {
    fn new(store: &'a SharedStore) -> Self {
        Self {
            store,
            batch: Vec::with_capacity(BATCH),
            put: 0,
        }
    }

    fn push(&mut self, page: Vec<u8>) -> Result<(), StoreError> {
        self.batch.push((ContentHash::of(&page), page));
        if self.batch.len() == BATCH {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StoreError> {
        let mut store = self.store.lock().unwrap_or_else(PoisonError::into_inner);
        for (hash, page) in self.batch.drain(..) {
            if !store.contains(&hash) {
                store.put(hash, &page)?;
                self.put += 1;
            }
        }
        Ok(())
    }

    /// Puts what is left; the pages put in all.
    fn finish(mut self) -> Result<usize, SeedError> {
        self.flush()?;
        Ok(self.put)
    }
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
    /// Puts the kernel and initrd pages of every image the node holds into its content store,
    /// in the background: those of images imported before the node did so, or of a store
    /// emptied since, are then there for the next migrations too.
    pub(crate) fn seed_held_images(&self) {
        let Some(store) = self.content_store() else {
            return;
        };
        let node = self.clone();
        tokio::spawn(async move {
            for image in node.store().images() {
                seed_image(&store, &image).await;
            }
        });
    }

    /// Puts the pages of `image`'s kernel and of its initrd's files into the node's content
    /// store, if it has one (see [`seed_image`]).
    pub(crate) async fn seed_image_pages(&self, image: &novacron_model::Image) {
        if let Some(store) = self.content_store() {
            seed_image(&store, image).await;
        }
    }

    /// The node's DWCP content store, when it keeps one.
    fn content_store(&self) -> Option<SharedStore> {
        self.cluster().ok().and_then(|c| c.content.clone())
    }
}

/// Puts the pages of `image`'s kernel and of its initrd's files into `store`, for those it
/// has, and logs the outcome: a store without them only costs later migrations bytes, so
/// nothing fails for it.
async fn seed_image(store: &SharedStore, image: &novacron_model::Image) {
    let name = image.name.as_str();
    if let Some(kernel) = image.kernel.as_ref() {
        seed_from(name, "kernel", store, kernel, seed_kernel).await;
    }
    if let Some(initrd) = image.initrd.as_ref() {
        seed_from(name, "initrd file", store, initrd, seed_initrd).await;
    }
}

/// Runs `seed` (the pages of the `what` at `path` of image `image` into `store`) on the
/// blocking pool and logs the outcome.
async fn seed_from(
    image: &str,
    what: &'static str,
    store: &SharedStore,
    path: &str,
    seed: fn(&SharedStore, &Path) -> Result<usize, SeedError>,
) {
    let store = store.clone();
    let path = std::path::PathBuf::from(path);
    let started = std::time::Instant::now();
    match tokio::task::spawn_blocking(move || seed(&store, &path)).await {
        Ok(Ok(0)) => {
            tracing::debug!(image, "no {what} page to put into the DWCP content store")
        }
        Ok(Ok(pages)) => tracing::info!(
            image,
            pages,
            ms = started.elapsed().as_millis(),
            "{what} pages put into the DWCP content store"
        ),
        Ok(Err(e)) => tracing::warn!(
            image,
            error = %crate::vms::chain(&e),
            "could not put the {what}'s pages into the DWCP content store"
        ),
        Err(e) => tracing::warn!(image, error = %e, "{what} page seeding stopped"),
    }
}

#[cfg(test)]
#[path = "seed_test.rs"]
mod tests;
