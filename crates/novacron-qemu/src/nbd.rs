//! The few pieces of the NBD protocol a migration's disks need beside QEMU's own client and
//! server (see the protocol's `doc/proto.md`): hiding the export's flush from a client, and
//! asking an export for a flush over a connection of one's own.
//!
//! A block mirror flushes its target before it completes. Over a long link that flush is a
//! round trip the stopped guest waits for, although every write was answered already. With
//! the flush hidden from the mirror's NBD client ([`FlushHidden`] on the answers' way), the
//! mirror completes at once, and the destination makes the writes durable itself with
//! [`flush`] on a connection of its own to the same export: QEMU's server flushes the whole
//! disk, whichever connection asks.

use std::io::{self, Write};
use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The server's greeting: `NBDMAGIC`.
const NBD_MAGIC: u64 = 0x4e42_444d_4147_4943;
/// Newstyle negotiation, in the greeting and before each client option: `IHAVEOPT`.
const OPT_MAGIC: u64 = 0x4948_4156_454f_5054;
/// Before each of the server's option replies.
const REPLY_MAGIC: u64 = 0x0003_e889_0455_65a9;
/// Greeting flag: the server speaks the fixed newstyle negotiation.
const FLAG_FIXED_NEWSTYLE: u16 = 1;
/// Client flags: fixed newstyle, and no padding after `NBD_OPT_EXPORT_NAME`.
const CLIENT_FLAGS: u32 = 1 | 2;
/// `NBD_OPT_GO`: choose the export and start the transmission.
const OPT_GO: u32 = 7;
/// `NBD_REP_ACK`.
const REP_ACK: u32 = 1;
/// `NBD_REP_INFO`.
const REP_INFO: u32 = 3;
/// Option replies with this bit set are errors.
const REP_ERROR: u32 = 1 << 31;
/// `NBD_INFO_EXPORT`: the export's size and transmission flags.
const INFO_EXPORT: u16 = 0;
/// Transmission flag: the server takes `NBD_CMD_FLUSH`.
const FLAG_SEND_FLUSH: u16 = 1 << 2;
/// Magic of a (compact) request.
const REQUEST_MAGIC: u32 = 0x2560_9513;
/// Magic of a simple reply.
const SIMPLE_REPLY_MAGIC: u32 = 0x6744_6698;
/// `NBD_CMD_DISC`.
const CMD_DISC: u16 = 2;
/// `NBD_CMD_FLUSH`.
const CMD_FLUSH: u16 = 3;
/// Most bytes of option reply data [`flush`] reads: a reply is a few bytes, or a message.
const MAX_REPLY_DATA: u32 = 64 << 10;

/// What [`FlushHidden`] has yet to see of the server's negotiation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Seen {
    /// The 18-byte greeting.
    Greeting,
    /// A 20-byte option reply header.
    ReplyHeader,
    /// The 12 bytes of an `NBD_INFO_EXPORT` reply, which carry the flags.
    ExportInfo { rest: u64, ends: bool },
    /// Bytes of a reply's data passed on as they are.
    Data { left: u64, ends: bool },
    /// The transmission (or a negotiation not understood): everything passes on as it is.
    Through,
}

/// The answers of an NBD server on their way to its client, with `NBD_FLAG_SEND_FLUSH`
/// cleared from the export's flags in the fixed newstyle negotiation: the client then never
/// sends a flush (QEMU's NBD client takes a flush as done at once). Bytes from the
/// transmission on, or of a negotiation it does not understand, pass on unchanged.
pub struct FlushHidden<W> {
    inner: W,
    seen: Seen,
    /// Bytes of the greeting, a reply header or an export info not yet complete.
    held: Vec<u8>,
}

impl<W: Write> FlushHidden<W> {
    /// Passes the answers on to `inner`.
    pub const fn new(inner: W) -> Self {
        Self {
            inner,
            seen: Seen::Greeting,
            held: Vec::new(),
        }
    }

    /// The next state once `held` holds what `self.seen` waited for; `held` goes on, changed
    /// where it carries the flags.
    fn complete(&mut self) -> Seen {
        let held = &mut self.held;
        match self.seen {
            Seen::Greeting => {
                let newstyle = u64_at(held, 0) == Some(NBD_MAGIC)
                    && u64_at(held, 8) == Some(OPT_MAGIC)
                    && u16_at(held, 16).is_some_and(|f| f & FLAG_FIXED_NEWSTYLE != 0);
                if newstyle {
                    Seen::ReplyHeader
                } else {
                    Seen::Through
                }
            }
            Seen::ReplyHeader => {
                let (Some(REPLY_MAGIC), Some(option), Some(kind), Some(len)) = (
                    u64_at(held, 0),
                    u32_at(held, 8),
                    u32_at(held, 12),
                    u32_at(held, 16),
                ) else {
                    return Seen::Through;
                };
                // The transmission starts after the last reply to `NBD_OPT_GO`.
                let ends = option == OPT_GO && kind == REP_ACK;
                let len = u64::from(len);
                if kind == REP_INFO && len >= 12 {
                    Seen::ExportInfo { rest: len, ends }
                } else {
                    Seen::Data { left: len, ends }
                }
            }
            Seen::ExportInfo { rest, ends } => {
                if u16_at(held, 0) == Some(INFO_EXPORT)
                    && let Some(flags) = u16_at(held, 10)
                    && let Some(slot) = held.get_mut(10..12)
                {
                    slot.copy_from_slice(&(flags & !FLAG_SEND_FLUSH).to_be_bytes());
                }
                Seen::Data {
                    left: rest.saturating_sub(12),
                    ends,
                }
            }
            Seen::Data { .. } | Seen::Through => self.seen,
        }
    }
}

impl<W: Write> Write for FlushHidden<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut rest = buf;
        while !rest.is_empty() {
            let want = match self.seen {
                Seen::Through => {
                    self.inner.write_all(rest)?;
                    break;
                }
                Seen::Data { left, ends } => {
                    let n = usize::try_from(left).unwrap_or(usize::MAX).min(rest.len());
                    let (now, later) = rest.split_at(n);
                    self.inner.write_all(now)?;
                    rest = later;
                    let left = left.saturating_sub(u64::try_from(n).unwrap_or(u64::MAX));
                    self.seen = match (left, ends) {
                        (0, true) => Seen::Through,
                        (0, false) => Seen::ReplyHeader,
                        (left, ends) => Seen::Data { left, ends },
                    };
                    continue;
                }
                Seen::Greeting => 18usize,
                Seen::ReplyHeader => 20,
                Seen::ExportInfo { .. } => 12,
            };
            let n = want.saturating_sub(self.held.len()).min(rest.len());
            let (now, later) = rest.split_at(n);
            self.held.extend_from_slice(now);
            rest = later;
            if self.held.len() == want {
                self.seen = self.complete();
                self.inner.write_all(&self.held)?;
                self.held.clear();
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    b.get(at..at + 8)?.try_into().ok().map(u64::from_be_bytes)
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4)?.try_into().ok().map(u32::from_be_bytes)
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    b.get(at..at + 2)?.try_into().ok().map(u16::from_be_bytes)
}

/// Why [`flush`] failed.
#[derive(Debug, thiserror::Error)]
pub enum NbdError {
    /// The socket could not be reached or broke.
    #[error("NBD connection to {path}: {source}")]
    Io {
        /// The server's socket.
        path: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The server said something this client does not expect.
    #[error("NBD server at {path}: {what}")]
    Protocol {
        /// The server's socket.
        path: String,
        /// What was wrong.
        what: String,
    },
    /// No answer in time.
    #[error("NBD server at {path} did not answer within {} s", .after.as_secs_f64())]
    Timeout {
        /// The server's socket.
        path: String,
        /// How long it waited.
        after: Duration,
    },
}

/// Connects to the NBD server on unix socket `socket`, opens export `export` and flushes it
/// (`NBD_CMD_FLUSH`), within `limit`. QEMU's server flushes the whole disk, so the writes of
/// every connection to it are then durable.
///
/// # Errors
/// [`NbdError`]: no server, an export it refuses, a flush that failed, no answer in time.
pub async fn flush(socket: &Path, export: &str, limit: Duration) -> Result<(), NbdError> {
    let path = socket.display().to_string();
    match tokio::time::timeout(limit, flush_now(socket, export, &path)).await {
        Ok(done) => done,
        Err(_) => Err(NbdError::Timeout { path, after: limit }),
    }
}

async fn flush_now(socket: &Path, export: &str, path: &str) -> Result<(), NbdError> {
    let io = |source| NbdError::Io {
        path: path.to_owned(),
        source,
    };
    let protocol = |what: String| NbdError::Protocol {
        path: path.to_owned(),
        what,
    };
    let mut conn = tokio::net::UnixStream::connect(socket).await.map_err(io)?;
    let mut greeting = [0u8; 18];
    conn.read_exact(&mut greeting).await.map_err(io)?;
    if u64_at(&greeting, 0) != Some(NBD_MAGIC) || u64_at(&greeting, 8) != Some(OPT_MAGIC) {
        return Err(protocol("not a newstyle NBD server".to_owned()));
    }
    conn.write_all(&CLIENT_FLAGS.to_be_bytes())
        .await
        .map_err(io)?;
    // NBD_OPT_GO: the name's length, the name, no information requests.
    let name = export.as_bytes();
    let name_len =
        u32::try_from(name.len()).map_err(|_| protocol("export name too long".into()))?;
    let mut go = Vec::with_capacity(26 + name.len());
    go.extend_from_slice(&OPT_MAGIC.to_be_bytes());
    go.extend_from_slice(&OPT_GO.to_be_bytes());
    go.extend_from_slice(&(name_len + 6).to_be_bytes());
    go.extend_from_slice(&name_len.to_be_bytes());
    go.extend_from_slice(name);
    go.extend_from_slice(&0u16.to_be_bytes());
    conn.write_all(&go).await.map_err(io)?;
    let mut flags = None;
    loop {
        let mut header = [0u8; 20];
        conn.read_exact(&mut header).await.map_err(io)?;
        let (Some(REPLY_MAGIC), Some(OPT_GO), Some(kind), Some(len)) = (
            u64_at(&header, 0),
            u32_at(&header, 8),
            u32_at(&header, 12),
            u32_at(&header, 16),
        ) else {
            return Err(protocol("malformed reply to NBD_OPT_GO".to_owned()));
        };
        if len > MAX_REPLY_DATA {
            return Err(protocol(format!("a reply of {len} bytes to NBD_OPT_GO")));
        }
        let mut data = vec![0u8; usize::try_from(len).unwrap_or(0)];
        conn.read_exact(&mut data).await.map_err(io)?;
        if kind & REP_ERROR != 0 {
            return Err(protocol(format!(
                "export {export:?} refused ({kind:#x}): {}",
                String::from_utf8_lossy(&data)
            )));
        }
        if kind == REP_INFO && u16_at(&data, 0) == Some(INFO_EXPORT) {
            flags = u16_at(&data, 10);
        }
        if kind == REP_ACK {
            break;
        }
    }
    let can_flush = flags.is_some_and(|f| f & FLAG_SEND_FLUSH != 0);
    if can_flush {
        conn.write_all(&request(CMD_FLUSH, 1)).await.map_err(io)?;
        let mut reply = [0u8; 16];
        conn.read_exact(&mut reply).await.map_err(io)?;
        match (u32_at(&reply, 0), u32_at(&reply, 4), u64_at(&reply, 8)) {
            (Some(SIMPLE_REPLY_MAGIC), Some(0), Some(1)) => {}
            (Some(SIMPLE_REPLY_MAGIC), Some(error), Some(1)) => {
                return Err(protocol(format!("the flush failed (error {error})")));
            }
            _ => return Err(protocol("malformed reply to the flush".to_owned())),
        }
    }
    // A polite end; the server closes the connection on it.
    conn.write_all(&request(CMD_DISC, 2)).await.map_err(io)?;
    if can_flush {
        Ok(())
    } else {
        Err(protocol(format!("export {export:?} takes no flush")))
    }
}

/// A compact request of `kind` with no offset, length or payload.
fn request(kind: u16, cookie: u64) -> [u8; 28] {
    let mut r = [0u8; 28];
    let mut at = 0;
    for field in [
        &REQUEST_MAGIC.to_be_bytes()[..],
        &0u16.to_be_bytes(),
        &kind.to_be_bytes(),
        &cookie.to_be_bytes(),
    ] {
        if let Some(slot) = r.get_mut(at..at + field.len()) {
            slot.copy_from_slice(field);
        }
        at += field.len();
    }
    r
}

#[cfg(test)]
#[path = "nbd_test.rs"]
mod tests;
