//! Compression helpers: the caller's [`CodecChoice`], the [`Codec`] named in an encoded item,
//! and compress/decompress with a bounded output.
//!
//! Decompression never trusts the input: output goes into a buffer of the caller's limit, and
//! input that would produce more is an error, not a larger allocation.

/// Lowest zstd level accepted (zstd's fast levels go further down; they gain little here).
pub const ZSTD_MIN_LEVEL: i8 = -7;
/// Highest zstd level accepted.
pub const ZSTD_MAX_LEVEL: i8 = 22;

/// How the sender compresses what it cannot elide, as chosen by the caller (PBA).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum CodecChoice {
    /// Send everything that is not elided raw.
    None,
    /// lz4 block compression (fast, modest ratio).
    #[default]
    Lz4,
    /// zstd at this level, clamped to [`ZSTD_MIN_LEVEL`]..=[`ZSTD_MAX_LEVEL`].
    Zstd(i8),
}

/// The compressor named in an encoded item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Codec {
    /// Never valid in an item.
    Invalid = 0,
    /// lz4 block format, no size prefix.
    Lz4 = 1,
    /// A zstd frame.
    Zstd = 2,
}

impl TryFrom<u8> for Codec {
    type Error = CodecError;

    fn try_from(value: u8) -> Result<Self, CodecError> {
        match value {
            1 => Ok(Self::Lz4),
            2 => Ok(Self::Zstd),
            other => Err(CodecError::UnknownCodec(other)),
        }
    }
}

impl CodecChoice {
    /// The codec and level this choice compresses with, or `None` for no compression.
    #[must_use]
    pub fn codec(self) -> Option<(Codec, i8)> {
        match self {
            Self::None => None,
            Self::Lz4 => Some((Codec::Lz4, 0)),
            Self::Zstd(level) => Some((Codec::Zstd, level.clamp(ZSTD_MIN_LEVEL, ZSTD_MAX_LEVEL))),
        }
    }
}

/// What went wrong compressing or decompressing.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The codec byte is not one this version defines.
    #[error("unknown codec {0}")]
    UnknownCodec(u8),
    /// zstd refused to compress.
    #[error("zstd compression failed")]
    ZstdCompress(#[source] std::io::Error),
    /// The zstd input is malformed or decompresses to more than the limit.
    #[error("zstd input is malformed or larger than {limit} bytes once decompressed")]
    ZstdDecompress {
        /// The output limit in bytes.
        limit: usize,
        /// What zstd reported.
        #[source]
        source: std::io::Error,
    },
    /// The lz4 input is malformed or decompresses to more than the limit.
    #[error("lz4 input is malformed or larger than {limit} bytes once decompressed")]
    Lz4Decompress {
        /// The output limit in bytes.
        limit: usize,
        /// What lz4 reported.
        #[source]
        source: lz4_flex::block::DecompressError,
    },
}

thread_local! {
    /// This thread's zstd compression context, kept between calls: a new context per chunk
    /// allocates and clears its tables (a megabyte or more at the levels PBA picks) each time.
    static ZSTD_COMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> =
        const { std::cell::RefCell::new(None) };
    /// This thread's zstd decompression context, kept between calls for the same reason.
    static ZSTD_DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

/// Compresses `data` with `codec` at `level` (ignored by lz4).
///
/// # Errors
/// [`CodecError::ZstdCompress`] if zstd fails; [`CodecError::UnknownCodec`] for `Invalid`.
pub fn compress(codec: Codec, level: i8, data: &[u8]) -> Result<Vec<u8>, CodecError> {
    match codec {
        Codec::Lz4 => Ok(lz4_flex::block::compress(data)),
        Codec::Zstd => {
            let level = i32::from(level.clamp(ZSTD_MIN_LEVEL, ZSTD_MAX_LEVEL));
            ZSTD_COMPRESSOR
                .with_borrow_mut(|slot| match slot {
                    Some(c) => {
                        c.set_compression_level(level)?;
                        c.compress(data)
                    }
                    None => slot
                        .insert(zstd::bulk::Compressor::new(level)?)
                        .compress(data),
                })
                .map_err(CodecError::ZstdCompress)
        }
        Codec::Invalid => Err(CodecError::UnknownCodec(Codec::Invalid as u8)),
    }
}

/// Compresses `data` with zstd at `level`, matching against `prefix` too: bytes the receiver
/// already holds right before `data` (the decoder must be given the same prefix). An empty
/// prefix compresses as [`compress`] does.
///
/// The prefix is referenced, not copied, so each call takes a context of its own.
///
/// # Errors
/// [`CodecError::ZstdCompress`] if zstd fails.
pub fn compress_prefixed(level: i8, prefix: &[u8], data: &[u8]) -> Result<Vec<u8>, CodecError> {
    let level = i32::from(level.clamp(ZSTD_MIN_LEVEL, ZSTD_MAX_LEVEL));
    let zstd_err = |code| CodecError::ZstdCompress(zstd_error(code));
    let mut cctx = zstd::zstd_safe::CCtx::create();
    cctx.set_parameter(zstd::zstd_safe::CParameter::CompressionLevel(level))
        .map_err(zstd_err)?;
    cctx.ref_prefix(prefix).map_err(zstd_err)?;
    let mut out = Vec::with_capacity(zstd::zstd_safe::compress_bound(data.len()));
    cctx.compress2(&mut out, data).map_err(zstd_err)?;
    Ok(out)
}

/// Decompresses a zstd frame made by [`compress_prefixed`] with `prefix`, into at most
/// `limit` bytes.
///
/// # Errors
/// [`CodecError::ZstdDecompress`] when the input is malformed, was compressed against another
/// prefix, or would decompress to more than `limit` bytes.
pub fn decompress_prefixed(
    data: &[u8],
    limit: usize,
    prefix: &[u8],
) -> Result<Vec<u8>, CodecError> {
    let zstd_err = |code| CodecError::ZstdDecompress {
        limit,
        source: zstd_error(code),
    };
    let mut dctx = zstd::zstd_safe::DCtx::create();
    dctx.ref_prefix(prefix).map_err(zstd_err)?;
    let mut out = Vec::with_capacity(limit);
    dctx.decompress(&mut out, data).map_err(zstd_err)?;
    Ok(out)
}

/// zstd's error code as an I/O error carrying its name.
fn zstd_error(code: usize) -> std::io::Error {
    std::io::Error::other(zstd::zstd_safe::get_error_name(code))
}

/// Decompresses `data` into at most `limit` bytes.
///
/// # Errors
/// [`CodecError::Lz4Decompress`] or [`CodecError::ZstdDecompress`] when the input is malformed
/// or would decompress to more than `limit` bytes; [`CodecError::UnknownCodec`] for `Invalid`.
pub fn decompress(codec: Codec, data: &[u8], limit: usize) -> Result<Vec<u8>, CodecError> {
    match codec {
        Codec::Lz4 => {
            let mut out = vec![0u8; limit];
            let len = lz4_flex::block::decompress_into(data, &mut out)
                .map_err(|source| CodecError::Lz4Decompress { limit, source })?;
            out.truncate(len);
            Ok(out)
        }
        Codec::Zstd => ZSTD_DECOMPRESSOR
            .with_borrow_mut(|slot| match slot {
                Some(d) => d.decompress(data, limit),
                None => slot
                    .insert(zstd::bulk::Decompressor::new()?)
                    .decompress(data, limit),
            })
            .map_err(|source| CodecError::ZstdDecompress { limit, source }),
        Codec::Invalid => Err(CodecError::UnknownCodec(Codec::Invalid as u8)),
    }
}
