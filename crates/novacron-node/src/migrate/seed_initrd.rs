//! The pages of the files in an image's initrd, for the DWCP content store.
//!
//! The kernel unpacks its initramfs into a RAM file system, where each file's content sits in
//! page-cache pages from its first byte, the last one filled with zeros past the end of the
//! file. A guest that runs from its initramfs (as appliance and test guests do) keeps those
//! pages as they are for as long as the files live: the pages of the test guest's 16 files
//! (942 of them, 1.5 MB compressed) were all found in its memory.
//!
//! An initrd is one or more `newc` cpio archives, each as it is or compressed with gzip or
//! zstd (the usual layout of distributions: an uncompressed archive of early firmware, then
//! the compressed main one). Archives are read in turn while they are recognised; a
//! compressed archive ends the reading (what follows its compressed stream is not found
//! reliably). The file is not trusted: every name and file length is bounded and at most
//! [`MAX_UNPACKED`] bytes are unpacked; the caller stops the reading when it has the pages it
//! takes ([`super::seed::seed_initrd`]: [`super::seed::MAX_PAGES`]).

use std::io::{self, BufRead, BufReader, Read};

/// Most bytes unpacked from one initrd (compressed archives expand).
pub(crate) const MAX_UNPACKED: u64 = 1 << 30;
/// Size of a `newc` cpio header.
const HEADER: usize = 110;
/// Longest file name read (Linux's `PATH_MAX`).
const MAX_NAME: u64 = 4096;
/// Zero bytes skipped between concatenated archives (they are padded to 512 bytes or less).
const MAX_GAP: usize = 4096;
/// Size of a guest page.
const PAGE: usize = 4096;

/// What an archive starts with.
enum Kind {
    Cpio,
    Gzip,
    Zstd,
}

/// Gives `page` each non-zero page of every regular file of the initrd read from `file`, the
/// last page of a file padded with zeros, until `page` answers `false`; returns the bytes of
/// file content read.
///
/// # Errors
///
/// [`io::Error`] when the file cannot be read, a compressed archive is corrupt, or `page`
/// fails. A file that is no initrd gives no page and no error.
pub(crate) fn initrd_pages(
    file: impl Read,
    mut page: impl FnMut(Vec<u8>) -> io::Result<bool>,
) -> io::Result<u64> {
    let mut reader = BufReader::new(file);
    let mut budget = MAX_UNPACKED;
    let (read, next) = cpio_archives(&mut reader, &mut budget, &mut page)?;
    // Within a compressed archive, what follows its cpio archives ends the reading too.
    let inner = match next {
        Some(Kind::Gzip) => {
            let mut inner = BufReader::new(flate2::read::MultiGzDecoder::new(reader));
            cpio_archives(&mut inner, &mut budget, &mut page)?.0
        }
        Some(Kind::Zstd) => {
            let mut inner = BufReader::new(zstd::stream::read::Decoder::new(reader)?);
            cpio_archives(&mut inner, &mut budget, &mut page)?.0
        }
        Some(Kind::Cpio) | None => 0,
    };
    Ok(read + inner)
}

/// Reads the cpio archives that follow one another in `reader`, giving the pages of their
/// regular files; returns the bytes of file content read and the compressed archive after
/// them, if that is what came next (`None`: the end, anything else, or a stop).
fn cpio_archives(
    reader: &mut impl BufRead,
    budget: &mut u64,
    page: &mut impl FnMut(Vec<u8>) -> io::Result<bool>,
) -> io::Result<(u64, Option<Kind>)> {
    let mut read = 0;
    loop {
        match next_archive(reader)? {
            Some(Kind::Cpio) => {
                let (n, more) = archive_pages(reader, budget, page)?;
                read += n;
                if !more {
                    return Ok((read, None));
                }
            }
            next => return Ok((read, next)),
        }
    }
}

/// Skips the zero padding before the next archive and tells what it is; `None` at the end
/// of the input or before anything else.
fn next_archive(reader: &mut impl BufRead) -> io::Result<Option<Kind>> {
    let mut skipped = 0;
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            return Ok(None);
        }
        let zeros = buf.iter().take_while(|&&b| b == 0).count();
        if zeros == 0 {
            break;
        }
        skipped += zeros;
        reader.consume(zeros);
        if skipped > MAX_GAP {
            return Ok(None);
        }
    }
    let buf = reader.fill_buf()?;
    Ok(if buf.starts_with(b"07070") {
        Some(Kind::Cpio)
    } else if buf.starts_with(&[0x1f, 0x8b]) {
        Some(Kind::Gzip)
    } else if buf.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Some(Kind::Zstd)
    } else {
        None
    })
}

/// Reads one cpio archive up to its trailer, giving the pages of its regular files; returns
/// the bytes of file content read and whether to go on (`false`: `page` said stop, the budget
/// ran out, or the archive is not one this reads).
fn archive_pages(
    reader: &mut impl Read,
    budget: &mut u64,
    page: &mut impl FnMut(Vec<u8>) -> io::Result<bool>,
) -> io::Result<(u64, bool)> {
    let mut read = 0;
    loop {
        let mut header = [0u8; HEADER];
        reader.read_exact(&mut header)?;
        let (Some(b"070701" | b"070702"), Some(mode), Some(size), Some(name_len)) = (
            header.first_chunk::<6>(),
            hex_field(&header, 1),
            hex_field(&header, 6),
            hex_field(&header, 11),
        ) else {
            return Ok((read, false));
        };
        if name_len == 0 || name_len > MAX_NAME {
            return Ok((read, false));
        }
        // The name and its padding bring the header to a multiple of four bytes.
        let mut name = vec![0u8; padded(HEADER as u64 + name_len) - HEADER];
        reader.read_exact(&mut name)?;
        if name.starts_with(b"TRAILER!!!\0") {
            return Ok((read, true));
        }
        if size > *budget {
            return Ok((read, false));
        }
        *budget -= size;
        read += size;
        let regular = mode & 0o170_000 == 0o100_000;
        let mut left = size;
        while left > 0 {
            let n = left.min(PAGE as u64);
            let mut buf = vec![0u8; PAGE];
            let part = buf
                .get_mut(..usize::try_from(n).unwrap_or(PAGE))
                .unwrap_or_default();
            reader.read_exact(part)?;
            left -= n;
            if regular && buf.iter().any(|&b| b != 0) && !page(buf)? {
                return Ok((read, false));
            }
        }
        let pad = padded(size) - usize::try_from(size).unwrap_or(usize::MAX);
        let mut skip = [0u8; 3];
        reader.read_exact(skip.get_mut(..pad.min(3)).unwrap_or_default())?;
    }
}

/// Field `index` (after the magic) of a `newc` header: eight hexadecimal digits.
fn hex_field(header: &[u8; HEADER], index: usize) -> Option<u64> {
    let at = 6 + 8 * index;
    let digits = std::str::from_utf8(header.get(at..at + 8)?).ok()?;
    u64::from_str_radix(digits, 16).ok()
}

/// `n` rounded up to a multiple of four.
fn padded(n: u64) -> usize {
    usize::try_from(n.div_ceil(4) * 4).unwrap_or(usize::MAX)
}

#[cfg(test)]
#[path = "seed_initrd_test.rs"]
mod tests;
