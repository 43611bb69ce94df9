//! Connections under a DWCP session: TCP tuned for long fat links (BBR where the kernel has it,
//! pacing, no Nagle), wrapped in mutual TLS 1.3 or, only when asked for, left in plaintext.

use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::ServerName;
use socket2::{SockRef, TcpKeepalive};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// A byte stream a session can run over: a TCP connection, with or without TLS.
pub trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}

/// A boxed [`Stream`].
pub type BoxStream = Box<dyn Stream>;

/// How long a TCP connect plus TLS handshake may take before it counts as failed.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Congestion control to ask the kernel for on each connection.
pub const PREFERRED_CONGESTION: &str = "bbr";

/// Socket settings applied to every connection.
#[derive(Debug, Clone, Default)]
pub struct TcpTuning {
    /// Congestion control algorithm (`bbr`, `cubic`, ...); `None` keeps the system default.
    pub congestion: Option<String>,
}

impl TcpTuning {
    /// Applies the settings to a connected socket. Settings the kernel refuses (an algorithm
    /// that is not loaded) are logged and skipped: the connection still works without them.
    pub fn apply(&self, tcp: &TcpStream) {
        let sock = SockRef::from(tcp);
        if let Err(err) = sock.set_tcp_nodelay(true) {
            tracing::debug!(%err, "could not disable Nagle");
        }
        let keepalive = TcpKeepalive::new()
            .with_time(Duration::from_secs(15))
            .with_interval(Duration::from_secs(5));
        if let Err(err) = sock.set_tcp_keepalive(&keepalive) {
            tracing::debug!(%err, "could not enable keepalive");
        }
        if let Some(cc) = &self.congestion {
            if let Err(err) = sock.set_tcp_congestion(cc.as_bytes()) {
                tracing::debug!(%err, congestion = %cc, "congestion control not available");
            }
        }
        set_notsent_lowat(tcp, NOTSENT_LOWAT);
    }
}

/// Size of `T` as a socket option length (option structs are far below `socklen_t::MAX`).
fn socklen_of<T>() -> libc::socklen_t {
    libc::socklen_t::try_from(std::mem::size_of::<T>()).unwrap_or(libc::socklen_t::MAX)
}

/// Unsent bytes a connection may queue in the kernel before it stops being writable.
///
/// Frames go to whichever connection is writable. Without this cap a connection's send buffer
/// (several MiB once autotuned) would take frames long before it can transmit them, and on a
/// lossy link the receiver would wait on frames queued behind a stalled connection.
pub const NOTSENT_LOWAT: u32 = 128 << 10;

/// Sets one integer socket option; a refusal (old kernel, stale descriptor) is logged and
/// otherwise ignored, since every option here is an optimisation.
fn set_int_option<T: Copy>(
    fd: std::os::fd::RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: T,
) {
    // SAFETY: setsockopt only reads `size_of::<T>()` bytes from `value`, a live plain integer
    // on this stack frame; a stale or invalid descriptor makes it fail with EBADF or ENOTSOCK,
    // and nothing else is touched.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            std::ptr::from_ref(&value).cast(),
            socklen_of::<T>(),
        )
    };
    if rc != 0 {
        tracing::debug!(err = %std::io::Error::last_os_error(), level, name, "socket option refused");
    }
}

/// Sets `TCP_NOTSENT_LOWAT`: the socket reports writable only while fewer than `bytes` are
/// queued unsent. Bytes in flight are not limited by it.
pub fn set_notsent_lowat(tcp: &TcpStream, bytes: u32) {
    let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    set_int_option(
        tcp.as_raw_fd(),
        libc::IPPROTO_TCP,
        libc::TCP_NOTSENT_LOWAT,
        value,
    );
}

/// Caps the kernel's pacing rate for one socket (`SO_MAX_PACING_RATE`), in bytes per second;
/// `u64::MAX` lifts the cap.
pub fn set_max_pacing_rate(fd: std::os::fd::RawFd, bytes_per_sec: u64) {
    set_int_option(
        fd,
        libc::SOL_SOCKET,
        libc::SO_MAX_PACING_RATE,
        bytes_per_sec,
    );
}

/// The start of the kernel's `struct tcp_info` (linux/tcp.h) up to `tcpi_delivered`, which the
/// `libc` crate's copy of the struct does not reach.
#[repr(C)]
#[derive(Default)]
struct TcpInfo {
    /// State, options and window scales: eight one-byte fields.
    head: [u8; 8],
    /// `tcpi_rto` through `tcpi_total_retrans`, 24 `u32` fields in kernel order.
    u32s: [u32; 24],
    pacing_rate: u64,
    max_pacing_rate: u64,
    bytes_acked: u64,
    bytes_received: u64,
    /// `tcpi_segs_out`, `tcpi_segs_in`, `tcpi_notsent_bytes`, `tcpi_min_rtt`,
    /// `tcpi_data_segs_in`, `tcpi_data_segs_out`.
    after_bytes: [u32; 6],
    /// `tcpi_delivery_rate`, `tcpi_busy_time`, `tcpi_rwnd_limited`, `tcpi_sndbuf_limited`.
    times: [u64; 4],
    /// `tcpi_delivered`, `tcpi_delivered_ce`.
    delivered: [u32; 2],
}

/// Position of `tcpi_snd_mss` in [`TcpInfo::u32s`].
const TCPI_SND_MSS: usize = 2;
/// Position of `tcpi_unacked` (segments) in [`TcpInfo::u32s`].
const TCPI_UNACKED: usize = 4;
/// Position of `tcpi_last_ack_recv` (milliseconds) in [`TcpInfo::u32s`].
const TCPI_LAST_ACK_RECV: usize = 12;
/// Position of `tcpi_rtt` (microseconds) in [`TcpInfo::u32s`].
const TCPI_RTT: usize = 15;
/// Position of `tcpi_total_retrans` in [`TcpInfo::u32s`].
const TCPI_TOTAL_RETRANS: usize = 23;
/// Position of `tcpi_min_rtt` (microseconds) in [`TcpInfo::after_bytes`].
const TCPI_MIN_RTT: usize = 3;

/// What the kernel knows about one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpStats {
    /// Smoothed round-trip time, if measured yet.
    pub rtt: Option<Duration>,
    /// Lowest round-trip time the connection has measured, if any (kernels from 4.6).
    pub min_rtt: Option<Duration>,
    /// Bytes the peer's TCP has acknowledged since the connection opened.
    pub bytes_acked: u64,
    /// Segments the peer has received, acknowledged cumulatively or selectively (kernels from
    /// 4.18; zero before): unlike `bytes_acked` it does not jump when a lost segment's
    /// retransmission fills a gap.
    pub delivered: u32,
    /// The connection's current maximum segment size.
    pub mss: u32,
    /// Segments retransmitted since the connection opened.
    pub total_retrans: u32,
    /// Segments sent and not yet acknowledged.
    pub unacked: u32,
    /// Time since the last acknowledgement arrived (millisecond resolution).
    pub since_ack: Duration,
}

/// Reads [`TcpStats`] for a socket; `None` if the kernel refuses (not a TCP socket, closed).
#[must_use]
pub fn tcp_stats(fd: std::os::fd::RawFd) -> Option<TcpStats> {
    let mut info = TcpInfo::default();
    let mut len = socklen_of::<TcpInfo>();
    // SAFETY: `info` is a live, writable, plain-integer repr(C) struct and `len` holds its
    // size; the kernel writes at most `len` bytes. A stale or invalid fd makes the call fail,
    // which is handled below.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            std::ptr::from_mut(&mut info).cast(),
            &raw mut len,
        )
    };
    if rc != 0 {
        return None;
    }
    let micros = |us: u32| (us > 0).then(|| Duration::from_micros(u64::from(us)));
    Some(TcpStats {
        rtt: micros(info.u32s.get(TCPI_RTT).copied().unwrap_or(0)),
        // Older kernels stop before it and leave it at zero; an unmeasured one is all ones.
        min_rtt: micros(info.after_bytes.get(TCPI_MIN_RTT).copied().unwrap_or(0))
            .filter(|_| info.after_bytes.get(TCPI_MIN_RTT) != Some(&u32::MAX)),
        // Kernels older than 4.1 stop before the byte counters and leave them at zero.
        bytes_acked: info.bytes_acked,
        delivered: info.delivered.first().copied().unwrap_or(0),
        mss: info.u32s.get(TCPI_SND_MSS).copied().unwrap_or(0),
        total_retrans: info.u32s.get(TCPI_TOTAL_RETRANS).copied().unwrap_or(0),
        unacked: info.u32s.get(TCPI_UNACKED).copied().unwrap_or(0),
        since_ack: Duration::from_millis(u64::from(
            info.u32s.get(TCPI_LAST_ACK_RECV).copied().unwrap_or(0),
        )),
    })
}

/// Whether connections are encrypted.
#[derive(Clone)]
pub enum Security {
    /// Mutual TLS 1.3 with the cluster CA.
    Tls {
        /// Client side configuration (used when dialing).
        client: Option<Arc<rustls::ClientConfig>>,
        /// Server side configuration (used when accepting).
        server: Option<Arc<rustls::ServerConfig>>,
        /// Name the peer's certificate must carry (when dialing).
        server_name: Option<ServerName<'static>>,
    },
    /// Plaintext: only for benchmarks and explicitly requested.
    Insecure,
}

impl std::fmt::Debug for Security {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Tls { server_name, .. } => f
                .debug_struct("Tls")
                .field("server_name", server_name)
                .finish_non_exhaustive(),
            Self::Insecure => f.write_str("Insecure"),
        }
    }
}

/// Why a connection could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// TCP connect failed (refused, unreachable, ...).
    #[error("could not connect to {addr}")]
    Connect {
        /// Address dialed.
        addr: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The connect or handshake took longer than [`HANDSHAKE_TIMEOUT`].
    #[error("connecting to {addr} timed out")]
    Timeout {
        /// Address dialed.
        addr: String,
    },
    /// The TLS handshake failed.
    #[error("TLS handshake with {peer} failed: {reason}")]
    Handshake {
        /// The peer address.
        peer: String,
        /// A one-line description for a person.
        reason: String,
        /// The peer closed the connection without a TLS alert: it gave up on the connection
        /// (a sender whose session ended while it dialed), rather than refusing it.
        closed: bool,
    },
    /// Security settings lack a piece needed for this direction.
    #[error("TLS is on but no {0} configuration was given")]
    MissingConfig(&'static str),
}

/// Dials connections to one receiver.
#[derive(Debug, Clone)]
pub struct Dialer {
    /// `host:port` of the receiver.
    pub addr: String,
    /// TLS or plaintext.
    pub security: Security,
    /// Socket settings.
    pub tuning: TcpTuning,
}

/// A connection plus its socket descriptor, kept for reading kernel statistics.
pub struct Connection {
    /// The stream to speak DWCP over.
    pub stream: BoxStream,
    /// The TCP socket's descriptor, valid while `stream` lives.
    pub fd: std::os::fd::RawFd,
    /// The peer's address.
    pub peer: std::net::SocketAddr,
}

impl Dialer {
    /// Opens one connection: TCP connect, tuning, and the TLS handshake when enabled.
    ///
    /// # Errors
    /// [`TransportError`] naming the step that failed.
    pub async fn dial(&self) -> Result<Connection, TransportError> {
        tokio::time::timeout(HANDSHAKE_TIMEOUT, self.dial_inner())
            .await
            .map_err(|_| TransportError::Timeout {
                addr: self.addr.clone(),
            })?
    }

    async fn dial_inner(&self) -> Result<Connection, TransportError> {
        let tcp =
            TcpStream::connect(&self.addr)
                .await
                .map_err(|source| TransportError::Connect {
                    addr: self.addr.clone(),
                    source,
                })?;
        self.tuning.apply(&tcp);
        let fd = tcp.as_raw_fd();
        let peer = tcp.peer_addr().map_err(|source| TransportError::Connect {
            addr: self.addr.clone(),
            source,
        })?;
        let stream: BoxStream = match &self.security {
            Security::Insecure => Box::new(tcp),
            Security::Tls {
                client,
                server_name,
                ..
            } => {
                let config = client
                    .clone()
                    .ok_or(TransportError::MissingConfig("client"))?;
                let name = server_name
                    .clone()
                    .ok_or(TransportError::MissingConfig("server name"))?;
                let tls = TlsConnector::from(config)
                    .connect(name, tcp)
                    .await
                    .map_err(|err| TransportError::Handshake {
                        peer: self.addr.clone(),
                        reason: crate::tls::describe_handshake_error(&err),
                        closed: crate::tls::closed_in_handshake(&err),
                    })?;
                Box::new(tls)
            }
        };
        Ok(Connection { stream, fd, peer })
    }
}

/// Accepts connections and completes their handshake.
pub struct Acceptor {
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    tuning: TcpTuning,
}

impl Acceptor {
    /// Wraps a bound listener.
    ///
    /// # Errors
    /// [`TransportError::MissingConfig`] when TLS is on without a server configuration.
    pub fn new(
        listener: TcpListener,
        security: &Security,
        tuning: TcpTuning,
    ) -> Result<Self, TransportError> {
        let tls = match security {
            Security::Insecure => None,
            Security::Tls { server, .. } => Some(TlsAcceptor::from(
                server
                    .clone()
                    .ok_or(TransportError::MissingConfig("server"))?,
            )),
        };
        Ok(Self {
            listener,
            tls,
            tuning,
        })
    }

    /// The bound address.
    ///
    /// # Errors
    /// The OS error if the socket has no local address.
    pub fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.listener.local_addr()
    }

    /// Waits for the next TCP connection. The handshake is left to [`Self::handshake`] so that
    /// a slow peer cannot hold up the accept loop.
    ///
    /// # Errors
    /// The OS error from `accept`.
    pub async fn accept_tcp(&self) -> std::io::Result<(TcpStream, std::net::SocketAddr)> {
        let (tcp, peer) = self.listener.accept().await?;
        self.tuning.apply(&tcp);
        Ok((tcp, peer))
    }

    /// Completes the TLS handshake (if any) within [`HANDSHAKE_TIMEOUT`].
    ///
    /// # Errors
    /// [`TransportError::Handshake`] or [`TransportError::Timeout`].
    pub async fn handshake(
        &self,
        tcp: TcpStream,
        peer: std::net::SocketAddr,
    ) -> Result<Connection, TransportError> {
        let fd = tcp.as_raw_fd();
        let stream: BoxStream = match &self.tls {
            None => Box::new(tcp),
            Some(acceptor) => {
                let tls = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp))
                    .await
                    .map_err(|_| TransportError::Timeout {
                        addr: peer.to_string(),
                    })?
                    .map_err(|err| TransportError::Handshake {
                        peer: peer.to_string(),
                        reason: crate::tls::describe_handshake_error(&err),
                        closed: crate::tls::closed_in_handshake(&err),
                    })?;
                Box::new(tls)
            }
        };
        Ok(Connection { stream, fd, peer })
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read as _, Write as _};
    use std::os::fd::AsRawFd as _;
    use std::time::Instant;

    use super::tcp_stats;

    #[test]
    fn tcp_stats_count_what_the_peer_received_and_the_lowest_rtt() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut tx = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut rx, _) = listener.accept().unwrap();
        let len = 4 << 20;
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            rx.read_to_end(&mut got).unwrap();
            got.len()
        });
        tx.write_all(&vec![7u8; len]).unwrap();
        // Everything written was read; its acknowledgements arrive within moments.
        let deadline = Instant::now() + std::time::Duration::from_secs(5);
        let stats = loop {
            let s = tcp_stats(tx.as_raw_fd()).unwrap();
            if s.bytes_acked >= len as u64 || Instant::now() > deadline {
                break s;
            }
            std::thread::yield_now();
        };
        tx.shutdown(std::net::Shutdown::Write).unwrap();
        assert_eq!(reader.join().unwrap(), len);
        assert!(stats.bytes_acked >= len as u64, "{stats:?}");
        assert!(stats.mss > 0, "{stats:?}");
        let delivered = u64::from(stats.delivered) * u64::from(stats.mss);
        // Segments may be shorter than the MSS, never longer.
        assert!(delivered >= len as u64, "{stats:?}");
        let (rtt, min) = (stats.rtt.unwrap(), stats.min_rtt.unwrap());
        assert!(min <= rtt, "{stats:?}");
    }
}
