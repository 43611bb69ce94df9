//! Connections dialed while the first one opens the session. A connection joins a session
//! only once the receiver opened it, but its TCP handshake (and TLS's) need not wait for
//! that: dialed beside the first connection's `Hello`, the session's first connections join
//! one round trip sooner (two with TLS), and the link fills that much earlier: over
//! `intercontinental`'s 150 ms round trip, 150 or 300 ms of a transfer of a few seconds.

use tokio::task::JoinHandle;

use super::super::MAX_STREAMS;
use super::super::send_opts::StreamCount;
use super::super::tuner::StreamTuner;
use crate::mode::Mode;
use crate::transport::{Connection, Dialer, TransportError};

/// A connection being dialed ahead of joining; the dial is abandoned if this is dropped.
pub(super) struct Predial(JoinHandle<Result<Connection, TransportError>>);

impl Predial {
    /// Starts dialing through `dialer`.
    pub(super) fn start(dialer: &Dialer) -> Self {
        let dialer = dialer.clone();
        Self(tokio::spawn(async move { dialer.dial().await }))
    }

    /// The dialed connection, or why there is none.
    pub(super) async fn connection(mut self) -> Result<Connection, String> {
        match (&mut self.0).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(super::error_chain(&e)),
            Err(e) => Err(format!("dialing stopped: {e}")),
        }
    }
}

impl Drop for Predial {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// How many connections to dial beside the first for `streams`, on a link whose handshake
/// suggests `mode`: the count the session starts with (see [`StreamTuner::for_session`]), less
/// the first.
pub(super) fn count(streams: StreamCount, mode: Option<Mode>) -> usize {
    StreamTuner::for_session(streams, mode, usize::from(MAX_STREAMS))
        .current()
        .saturating_sub(1)
}

#[cfg(test)]
mod tests {
    use super::count;
    use crate::amst::send_opts::StreamCount;
    use crate::mode::Mode;

    #[test]
    fn the_connections_dialed_ahead_are_the_initial_count_less_the_first() {
        let auto = StreamCount::default();
        let internet = usize::from(Mode::Internet.defaults().initial_streams);
        assert_eq!(count(auto, Some(Mode::Internet)), internet - 1);
        // Without a measured handshake, only the first.
        assert_eq!(count(auto, None), 0);
        assert_eq!(count(StreamCount::Fixed(1), Some(Mode::Internet)), 0);
        assert_eq!(count(StreamCount::Fixed(6), None), 5);
        let capped = StreamCount::Auto {
            min: 1,
            max: 3,
            initial: 0,
        };
        assert_eq!(count(capped, Some(Mode::Internet)), 2);
        let asked = StreamCount::Auto {
            min: 1,
            max: 64,
            initial: 12,
        };
        assert_eq!(count(asked, Some(Mode::Datacenter)), 11);
        assert_eq!(count(StreamCount::Fixed(u16::MAX), None), 63);
    }
}
