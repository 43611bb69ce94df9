//! Reads newline-terminated lines from a byte stream, refusing any line longer than a limit so
//! that a broken or hostile peer cannot make us allocate without bound.

use std::io;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

/// Why a line could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LineError {
    /// The line grew past the limit before its newline arrived.
    #[error("line longer than {limit} bytes")]
    TooLong {
        /// The limit in bytes, newline excluded.
        limit: usize,
    },
    /// Reading the stream failed.
    #[error("could not read from the stream")]
    Io(#[from] io::Error),
}

/// A reader of bounded lines.
#[derive(Debug)]
pub(crate) struct LineReader<R> {
    inner: BufReader<R>,
    max_line: usize,
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    /// Wraps `inner`; lines longer than `max_line` bytes (newline excluded) are refused.
    pub(crate) fn new(inner: R, max_line: usize) -> Self {
        Self {
            inner: BufReader::with_capacity(64 * 1024, inner),
            max_line,
        }
    }

    /// The reader underneath, for tests that act on the socket itself.
    #[cfg(test)]
    pub(crate) fn get_ref(&self) -> &R {
        self.inner.get_ref()
    }

    /// Reads the next line without its newline. `None` means a clean end of stream; an
    /// unterminated last line at end of stream is also returned as a line.
    ///
    /// N.B. Not cancel-safe: a line being read when the future is dropped is lost.
    pub(crate) async fn read_line(&mut self) -> Result<Option<Vec<u8>>, LineError> {
        let mut line = Vec::new();
        loop {
            let available = self.inner.fill_buf().await?;
            if available.is_empty() {
                return Ok(if line.is_empty() { None } else { Some(line) });
            }
            let (chunk, found_newline) = match available.iter().position(|&b| b == b'\n') {
                Some(pos) => (available.get(..pos).unwrap_or(available), true),
                None => (available, false),
            };
            if line.len().saturating_add(chunk.len()) > self.max_line {
                return Err(LineError::TooLong {
                    limit: self.max_line,
                });
            }
            line.extend_from_slice(chunk);
            let consumed = chunk.len() + usize::from(found_newline);
            self.inner.consume(consumed);
            if found_newline {
                return Ok(Some(line));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn lines_of(input: &[u8], max: usize) -> Vec<Result<Option<Vec<u8>>, String>> {
        let mut reader = LineReader::new(input, max);
        let mut out = Vec::new();
        loop {
            let next = reader.read_line().await;
            let stop = !matches!(next, Ok(Some(_)));
            out.push(next.map_err(|e| e.to_string()));
            if stop {
                return out;
            }
        }
    }

    #[tokio::test]
    async fn splits_on_newlines_and_ends_cleanly() {
        let got = lines_of(b"one\ntwo\r\n\nthree", 100).await;
        assert_eq!(
            got,
            vec![
                Ok(Some(b"one".to_vec())),
                Ok(Some(b"two\r".to_vec())),
                Ok(Some(Vec::new())),
                Ok(Some(b"three".to_vec())),
                Ok(None),
            ]
        );
    }

    #[tokio::test]
    async fn a_line_at_the_limit_is_accepted() {
        let got = lines_of(b"12345\n", 5).await;
        assert_eq!(got.first(), Some(&Ok(Some(b"12345".to_vec()))));
    }

    #[tokio::test]
    async fn a_line_over_the_limit_is_an_error() {
        let got = lines_of(b"123456\nnext\n", 5).await;
        assert_eq!(got, vec![Err("line longer than 5 bytes".to_owned())]);
    }

    #[tokio::test]
    async fn an_endless_line_stops_at_the_limit() {
        // A peer that never sends a newline: reading must stop near the limit, not at EOF.
        let (mut tx, rx) = tokio::io::duplex(1024);
        let writer = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            let chunk = [b'x'; 1024];
            while tx.write_all(&chunk).await.is_ok() {}
        });
        let mut reader = LineReader::new(rx, 10 * 1024);
        let err = reader.read_line().await.unwrap_err();
        assert!(matches!(err, LineError::TooLong { limit: 10240 }));
        drop(reader);
        writer.await.unwrap();
    }
}
