//! The receiver's storage pipeline for one session: a writer thread appends the in-order
//! stream to `NAME.partial` (or writes it into a registered sink) while a hasher thread
//! computes its BLAKE3, in parallel. The acknowledged offset is the smaller of the two, so
//! neither can fall behind by more than the window; at the end the file is synced and renamed
//! only if the hash matches the sender's.

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::watch;

use super::rx_session::{RxStatus, fail};
use super::sink::SinkOut;
use crate::wire::{ErrorCode, ErrorMessage};

/// Work for the writer, in stream order.
pub(crate) enum WriteCmd {
    /// The next bytes of the stream.
    Data(Bytes),
    /// The stream is `len` bytes long and hashes to `hash`: verify and store.
    Finish { len: u64, hash: [u8; 32] },
}

/// Where the stream goes.
pub(crate) enum Output {
    /// Into `NAME.partial`, renamed to `NAME` once verified.
    File(FileOut),
    /// Into a registered sink.
    Sink(Box<SinkOut>),
}

/// A file being received.
pub(crate) struct FileOut {
    pub(crate) file: File,
    pub(crate) partial: PathBuf,
    pub(crate) target: PathBuf,
    pub(crate) dir: PathBuf,
}

impl Output {
    fn describe(&self) -> String {
        match self {
            Self::File(f) => f.partial.display().to_string(),
            Self::Sink(s) => format!("sink {}", s.name()),
        }
    }

    /// Called when no data is waiting: pushes out whatever a sink's writer holds.
    fn idle(&mut self) -> Result<(), ErrorMessage> {
        match self {
            Self::File(_) => Ok(()),
            Self::Sink(s) => s.flush(),
        }
    }
}

/// What the pipeline starts from.
pub(crate) struct Writer {
    pub(crate) out: Output,
    /// Hash state covering the first `start` bytes (a resumed prefix).
    pub(crate) hasher: blake3::Hasher,
    pub(crate) start: u64,
    pub(crate) status: watch::Sender<RxStatus>,
}

/// Bytes written and bytes hashed; the status shows the smaller.
///
/// Publishing wakes every connection of the session, so it happens when the acknowledged
/// offset moved by [`PUBLISH_BYTES`] or [`PUBLISH_EVERY`] passed, not on every chunk.
struct Marks {
    counts: Mutex<Counts>,
    status: watch::Sender<RxStatus>,
}

struct Counts {
    written: u64,
    hashed: u64,
    published: u64,
    published_at: Instant,
}

/// Publish after this many more bytes are written and hashed...
const PUBLISH_BYTES: u64 = 2 << 20;
/// ...or after this long, whichever comes first.
const PUBLISH_EVERY: Duration = Duration::from_millis(5);

impl Marks {
    fn advance(&self, written: u64, hashed: u64) {
        let mut c = self
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        c.written += written;
        c.hashed += hashed;
        let done = c.written.min(c.hashed);
        if done - c.published < PUBLISH_BYTES && c.published_at.elapsed() < PUBLISH_EVERY {
            return;
        }
        c.published = done;
        c.published_at = Instant::now();
        drop(c);
        self.publish(done);
    }

    /// Publishes whatever is done now: called by a thread that is about to wait for work, so
    /// that the last bytes before a pause are acknowledged however few they are.
    fn flush(&self) {
        let mut c = self
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let done = c.written.min(c.hashed);
        if done == c.published {
            return;
        }
        c.published = done;
        c.published_at = Instant::now();
        drop(c);
        self.publish(done);
    }

    fn publish(&self, done: u64) {
        self.status.send_if_modified(|st| {
            let changed = st.written != done;
            st.written = done;
            changed
        });
    }

    fn fail(&self, err: ErrorMessage) {
        self.status.send_if_modified(|st| {
            if st.outcome.is_some() {
                return false;
            }
            st.outcome = Some(Err(err));
            true
        });
    }
}

/// The next message, publishing progress first when none is waiting; `None` once the
/// channel is closed.
fn next<T>(rx: &std_mpsc::Receiver<T>, marks: &Marks) -> Option<T> {
    match rx.try_recv() {
        Ok(item) => Some(item),
        Err(std_mpsc::TryRecvError::Empty) => {
            marks.flush();
            rx.recv().ok()
        }
        Err(std_mpsc::TryRecvError::Disconnected) => None,
    }
}

/// Starts the writer and hasher threads; returns the channel that feeds them.
///
/// # Errors
/// The OS error if a thread cannot be started.
pub(crate) fn start(w: Writer) -> std::io::Result<std_mpsc::Sender<WriteCmd>> {
    let (tx, rx) = std_mpsc::channel();
    let marks = Arc::new(Marks {
        counts: Mutex::new(Counts {
            written: w.start,
            hashed: w.start,
            published: w.start,
            published_at: Instant::now(),
        }),
        status: w.status.clone(),
    });
    let (hash_tx, hash_rx) = std_mpsc::channel::<Bytes>();
    let mut hasher = w.hasher.clone();
    let hash_marks = Arc::clone(&marks);
    let hash_thread = std::thread::Builder::new()
        .name("dwcp-hasher".into())
        .spawn(move || {
            while let Some(data) = next(&hash_rx, &hash_marks) {
                hasher.update(&data);
                hash_marks.advance(0, data.len() as u64);
            }
            hasher
        })?;
    std::thread::Builder::new()
        .name("dwcp-writer".into())
        .spawn(move || {
            let mut pipeline = Pipeline {
                w,
                marks,
                written: 0,
                hash_tx: Some(hash_tx),
                hash_thread: Some(hash_thread),
            };
            pipeline.run(&rx);
        })?;
    Ok(tx)
}

struct Pipeline {
    w: Writer,
    marks: Arc<Marks>,
    /// Bytes appended by this pipeline (after `w.start`).
    written: u64,
    hash_tx: Option<std_mpsc::Sender<Bytes>>,
    hash_thread: Option<std::thread::JoinHandle<blake3::Hasher>>,
}

impl Pipeline {
    fn run(&mut self, rx: &std_mpsc::Receiver<WriteCmd>) {
        loop {
            let cmd = match rx.try_recv() {
                Ok(cmd) => Ok(cmd),
                Err(std_mpsc::TryRecvError::Empty) => {
                    // Nothing waiting: deliver what a sink holds now, however little.
                    match self.w.out.idle() {
                        Ok(()) => {
                            self.marks.flush();
                            match rx.recv() {
                                Ok(cmd) => Ok(cmd),
                                Err(_) => return,
                            }
                        }
                        Err(e) => Err(e),
                    }
                }
                Err(std_mpsc::TryRecvError::Disconnected) => return,
            };
            let result = cmd.and_then(|cmd| match cmd {
                WriteCmd::Data(data) => self.append(&data),
                WriteCmd::Finish { len, hash } => self.finish(len, hash),
            });
            if let Err(err) = result {
                tracing::warn!(to = %self.w.out.describe(), error = %err.message, "receive failed");
                self.marks.fail(err);
                return;
            }
        }
    }

    fn append(&mut self, data: &Bytes) -> Result<(), ErrorMessage> {
        if let Some(tx) = &self.hash_tx {
            // The hasher only stops when this side drops the channel.
            let _ = tx.send(Bytes::clone(data));
        }
        match &mut self.w.out {
            Output::File(f) => f.file.write_all(data).map_err(|e| {
                fail(
                    ErrorCode::Storage,
                    format!("receiver could not write {}: {e}", f.partial.display()),
                )
            })?,
            Output::Sink(s) => s.write(data)?,
        }
        let n = data.len() as u64;
        self.written += n;
        self.marks.advance(n, 0);
        Ok(())
    }

    fn finish(&mut self, len: u64, hash: [u8; 32]) -> Result<(), ErrorMessage> {
        let stored = self.w.start + self.written;
        if stored != len {
            return Err(fail(
                ErrorCode::Integrity,
                format!("stored {stored} bytes, sender sent {len}"),
            ));
        }
        self.hash_tx.take();
        let hasher = self
            .hash_thread
            .take()
            .and_then(|t| t.join().ok())
            .ok_or_else(|| fail(ErrorCode::Storage, "the hashing thread failed"))?;
        let ours = hasher.finalize();
        if *ours.as_bytes() != hash {
            let mut message = format!(
                "BLAKE3 mismatch: sender {}, receiver {}",
                blake3::Hash::from_bytes(hash).to_hex(),
                ours.to_hex()
            );
            if let Output::File(f) = &self.w.out {
                // The partial file cannot be resumed into the right content: remove it.
                if let Err(e) = std::fs::remove_file(&f.partial) {
                    tracing::warn!(error = %e, "could not remove corrupt partial file");
                }
                message.push_str("; the partial file was removed");
            }
            return Err(fail(ErrorCode::Integrity, message));
        }
        match &mut self.w.out {
            Output::File(f) => f.store()?,
            Output::Sink(s) => s.flush()?,
        }
        self.w.status.send_modify(|st| {
            st.written = len;
            st.outcome = Some(Ok(hash));
        });
        Ok(())
    }
}

impl FileOut {
    /// Syncs the verified file and renames it to its final name.
    fn store(&mut self) -> Result<(), ErrorMessage> {
        let partial = &self.partial;
        let storage = |what: &str, e: std::io::Error| {
            fail(
                ErrorCode::Storage,
                format!("receiver could not {what} {}: {e}", partial.display()),
            )
        };
        self.file.flush().map_err(|e| storage("flush", e))?;
        self.file.sync_all().map_err(|e| storage("sync", e))?;
        std::fs::rename(partial, &self.target).map_err(|e| storage("rename", e))?;
        if let Ok(dir) = File::open(&self.dir) {
            // Persisting the rename is best effort: the data itself is already synced.
            let _ = dir.sync_all();
        }
        Ok(())
    }
}
