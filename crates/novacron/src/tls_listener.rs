//! The API over TLS: a [`Listener`] that accepts TCP connections and hands axum only those
//! whose TLS handshake succeeded.
//!
//! Handshakes run concurrently, each under [`HANDSHAKE_TIMEOUT`], at most
//! [`MAX_HANDSHAKES`] at a time, so a stalled or hostile peer cannot hold up the accept loop.
//! A failed handshake is logged with its reason and the connection dropped; the loop goes on.

use axum::serve::Listener;
use novacron_api::migration::PeerNode;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::server::TlsStream;

/// Longest a client may take to complete its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Most handshakes in progress at once; further connections wait in the kernel's backlog.
pub const MAX_HANDSHAKES: usize = 256;

type Handshake = Result<(TlsStream<TcpStream>, SocketAddr), (SocketAddr, HandshakeError)>;

/// Why a handshake did not produce a connection.
#[derive(Debug)]
enum HandshakeError {
    Tls(std::io::Error),
    TimedOut,
}

/// Wraps a TCP listener `L` so that every connection it yields speaks TLS.
pub struct TlsListener<L> {
    inner: L,
    acceptor: TlsAcceptor,
    handshakes: JoinSet<Handshake>,
}

impl<L> TlsListener<L> {
    /// Serves `config` on the connections `inner` accepts.
    pub fn new(inner: L, config: Arc<ServerConfig>) -> Self {
        Self {
            inner,
            acceptor: TlsAcceptor::from(config),
            handshakes: JoinSet::new(),
        }
    }

    fn start_handshake(&mut self, tcp: TcpStream, peer: SocketAddr) {
        let acceptor = self.acceptor.clone();
        self.handshakes.spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => Ok((tls, peer)),
                Ok(Err(e)) => Err((peer, HandshakeError::Tls(e))),
                Err(_) => Err((peer, HandshakeError::TimedOut)),
            }
        });
    }
}

/// The connection of a finished handshake, or `None` (logged) when it failed.
fn finished(
    done: Result<Handshake, tokio::task::JoinError>,
) -> Option<(TlsStream<TcpStream>, SocketAddr)> {
    match done {
        Ok(Ok(conn)) => Some(conn),
        Ok(Err((peer, HandshakeError::Tls(e)))) => {
            tracing::warn!(
                %peer,
                error = %e,
                reason = %dwcp::tls::describe_handshake_error(&e),
                "TLS handshake failed; connection dropped"
            );
            None
        }
        Ok(Err((peer, HandshakeError::TimedOut))) => {
            tracing::warn!(%peer, timeout = ?HANDSHAKE_TIMEOUT, "TLS handshake timed out; connection dropped");
            None
        }
        Err(e) => {
            tracing::error!(error = %e, "TLS handshake task failed");
            None
        }
    }
}

impl<L> Listener for TlsListener<L>
where
    L: Listener<Io = TcpStream, Addr = SocketAddr>,
{
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        // Both branches are cancel-safe: axum may drop this future at shutdown.
        loop {
            if self.handshakes.len() >= MAX_HANDSHAKES {
                if let Some(conn) = self.handshakes.join_next().await.and_then(finished) {
                    return conn;
                }
                continue;
            }
            tokio::select! {
                (tcp, peer) = self.inner.accept() => self.start_handshake(tcp, peer),
                Some(done) = self.handshakes.join_next(), if !self.handshakes.is_empty() => {
                    if let Some(conn) = finished(done) {
                        return conn;
                    }
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// Makes the service of each TLS connection: the app, with the node named by the client's
/// verified certificate (if it presented one) added to every request as
/// `Option<PeerNode>`, for the calls between nodes.
#[derive(Clone)]
pub struct WithPeerNode(pub axum::Router);

impl<L> tower::Service<axum::serve::IncomingStream<'_, TlsListener<L>>> for WithPeerNode
where
    L: Listener<Io = TcpStream, Addr = SocketAddr>,
{
    type Response = axum::Router;
    type Error = std::convert::Infallible;
    type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, conn: axum::serve::IncomingStream<'_, TlsListener<L>>) -> Self::Future {
        let peer = conn
            .io()
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|certs| certs.first())
            .and_then(|leaf| dwcp::tls::certificate_node_name(leaf))
            .map(PeerNode);
        if let Some(p) = &peer {
            tracing::debug!(node = %p.0, addr = %conn.remote_addr(), "connection from a cluster node");
        }
        std::future::ready(Ok(self.0.clone().layer(axum::Extension(peer))))
    }
}
