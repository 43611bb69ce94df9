//! Mutual-TLS tests over real TCP sockets on 127.0.0.1: a working handshake, each way a peer
//! is refused, and the one-line descriptions an operator reads.

use std::fs;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::ProtocolVersion;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::*;
use crate::pki::{init_ca, issue_node};

/// Bytes each side sends in the successful exchange; several TLS records' worth.
const PAYLOAD_LEN: usize = 256 * 1024;
/// Deadline for any one network step, so a broken test fails instead of hanging.
const STEP: Duration = Duration::from_secs(10);

/// A CA in `root/<ca>` and a certificate for `node` (with `127.0.0.1` as extra SAN) in
/// `root/<ca>-<node>`.
fn node(root: &Path, ca: &str, node: &str) -> TlsFiles {
    let ca_dir = root.join(ca);
    if !ca_dir.join("ca.crt").exists() {
        init_ca(&ca_dir, ca).unwrap();
    }
    let out = root.join(format!("{ca}-{node}"));
    issue_node(&ca_dir, node, &["127.0.0.1".to_owned()], &out)
        .unwrap()
        .into()
}

/// What the server saw of one connection.
struct Accepted {
    version: Option<ProtocolVersion>,
    client_certs: usize,
}

/// Accepts one connection, completes the handshake, reads `PAYLOAD_LEN` bytes and sends them
/// back reversed.
async fn serve_once(config: Arc<ServerConfig>) -> (SocketAddr, JoinHandle<io::Result<Accepted>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (tcp, _) = timeout(STEP, listener.accept()).await??;
        let mut tls = timeout(STEP, TlsAcceptor::from(config).accept(tcp)).await??;
        let (_, conn) = tls.get_ref();
        let accepted = Accepted {
            version: conn.protocol_version(),
            client_certs: conn.peer_certificates().map_or(0, <[_]>::len),
        };
        let mut buf = vec![0_u8; PAYLOAD_LEN];
        timeout(STEP, tls.read_exact(&mut buf)).await??;
        buf.reverse();
        timeout(STEP, tls.write_all(&buf)).await??;
        timeout(STEP, tls.shutdown()).await??;
        Ok(accepted)
    });
    (addr, task)
}

async fn connect(
    config: Arc<ClientConfig>,
    addr: SocketAddr,
    name: &str,
) -> io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = timeout(STEP, TcpStream::connect(addr)).await??;
    timeout(
        STEP,
        TlsConnector::from(config).connect(server_name(name).unwrap(), tcp),
    )
    .await?
}

/// Connects and reads without writing: in TLS 1.3 a refused client certificate shows up here.
async fn connect_and_read(
    config: Arc<ClientConfig>,
    addr: SocketAddr,
    name: &str,
) -> io::Result<usize> {
    let mut tls = connect(config, addr, name).await?;
    let mut byte = [0_u8; 1];
    timeout(STEP, tls.read(&mut byte)).await?
}

fn assert_mentions(err: &io::Error, needle: &str) {
    let line = describe_handshake_error(err);
    assert!(line.contains(needle), "{line:?} lacks {needle:?} ({err:?})");
}

#[tokio::test]
async fn mutual_tls_exchanges_bytes_both_ways_over_tls13() {
    let tmp = tempfile::tempdir().unwrap();
    let server = node(tmp.path(), "cluster", "node-a");
    let client = node(tmp.path(), "cluster", "node-b");
    let (addr, task) = serve_once(server_config(&server).unwrap()).await;

    let mut tls = connect(client_config(&client).unwrap(), addr, "127.0.0.1")
        .await
        .unwrap();
    assert_eq!(
        tls.get_ref().1.protocol_version(),
        Some(ProtocolVersion::TLSv1_3)
    );
    let sent: Vec<u8> = (0..=250_u8).cycle().take(PAYLOAD_LEN).collect();
    timeout(STEP, tls.write_all(&sent)).await.unwrap().unwrap();
    let mut received = Vec::new();
    timeout(STEP, tls.read_to_end(&mut received))
        .await
        .unwrap()
        .unwrap();

    let mut expected = sent;
    expected.reverse();
    assert!(received == expected, "echo differs");
    let accepted = task.await.unwrap().unwrap();
    assert_eq!(accepted.version, Some(ProtocolVersion::TLSv1_3));
    assert_eq!(
        accepted.client_certs, 1,
        "the client presented its node certificate"
    );
}

#[tokio::test]
async fn server_refuses_a_client_certificate_from_another_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let server = node(tmp.path(), "cluster", "node-a");
    let foreign = node(tmp.path(), "other", "node-b");
    // The client trusts the right CA, so only the server has a reason to refuse.
    let client = TlsFiles {
        ca: server.ca.clone(),
        ..foreign
    };
    let (addr, task) = serve_once(server_config(&server).unwrap()).await;

    let client_err = connect_and_read(client_config(&client).unwrap(), addr, "node-a")
        .await
        .unwrap_err();
    let server_err = task.await.unwrap().err().unwrap();

    assert_mentions(&server_err, "not trusted by our CA (UnknownIssuer)");
    assert_mentions(&client_err, "peer refused our certificate");
}

#[tokio::test]
async fn client_refuses_a_server_certificate_from_another_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let client = node(tmp.path(), "cluster", "node-b");
    let foreign = node(tmp.path(), "other", "node-a");
    // The server accepts the client, so only the client has a reason to refuse.
    let server = TlsFiles {
        ca: client.ca.clone(),
        ..foreign
    };
    let (addr, task) = serve_once(server_config(&server).unwrap()).await;

    let client_err = connect(client_config(&client).unwrap(), addr, "node-a")
        .await
        .unwrap_err();
    let server_err = task.await.unwrap().err().unwrap();

    assert_mentions(&client_err, "not trusted by our CA (UnknownIssuer)");
    let server_line = describe_handshake_error(&server_err);
    assert!(
        server_line.contains("refused our certificate") || server_line.contains("closed"),
        "{server_line:?}"
    );
}

#[tokio::test]
async fn server_refuses_a_client_without_certificate() {
    let tmp = tempfile::tempdir().unwrap();
    let server = node(tmp.path(), "cluster", "node-a");
    let anonymous = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(load_roots(&server.ca).unwrap())
        .with_no_client_auth();
    let (addr, task) = serve_once(server_config(&server).unwrap()).await;

    let client_err = connect_and_read(Arc::new(anonymous), addr, "node-a")
        .await
        .unwrap_err();
    let server_err = task.await.unwrap().err().unwrap();

    assert_mentions(&server_err, "peer sent no certificate");
    assert_mentions(&client_err, "requires a client certificate");
}

#[tokio::test]
async fn client_refuses_a_server_certificate_for_another_name() {
    let tmp = tempfile::tempdir().unwrap();
    let server = node(tmp.path(), "cluster", "node-a");
    let client = client_config(&node(tmp.path(), "cluster", "node-b")).unwrap();

    // `localhost` and `::1` were not requested, so they are not in the certificate either.
    for wrong in ["node-b", "localhost", "::1"] {
        let (addr, task) = serve_once(server_config(&server).unwrap()).await;

        let err = connect(client.clone(), addr, wrong).await.unwrap_err();

        assert_mentions(&err, "not valid for the name");
        task.await.unwrap().err().unwrap();
    }
}

#[test]
fn server_name_accepts_names_and_addresses() {
    assert!(matches!(server_name("node-a"), Ok(ServerName::DnsName(_))));
    assert!(matches!(
        server_name("10.0.0.1"),
        Ok(ServerName::IpAddress(_))
    ));
    assert!(matches!(server_name("::1"), Ok(ServerName::IpAddress(_))));
    assert!(matches!(
        server_name("[fd00::1]"),
        Ok(ServerName::IpAddress(_))
    ));

    let err = server_name("not a host").unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid server name \"not a host\": expected a DNS name or an IP address"
    );
}

#[test]
fn config_errors_name_the_file_to_fix() {
    let tmp = tempfile::tempdir().unwrap();
    let good = node(tmp.path(), "cluster", "node-a");

    let missing_ca = TlsFiles {
        ca: tmp.path().join("nope").join("ca.crt"),
        ..good.clone()
    };
    let err = server_config(&missing_ca).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("could not read CA certificate {}", missing_ca.ca.display())
    );
    assert!(std::error::Error::source(&err).is_some());

    let empty_cert = tmp.path().join("empty.crt");
    fs::write(&empty_cert, "").unwrap();
    let err = client_config(&TlsFiles {
        cert: empty_cert.clone(),
        ..good.clone()
    })
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "no certificate found in certificate {}",
            empty_cert.display()
        )
    );

    // A certificate where the key should be: PEM, but no key in it.
    let err = server_config(&TlsFiles {
        key: good.cert.clone(),
        ..good.clone()
    })
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("no private key found in {}", good.cert.display())
    );

    let other = node(tmp.path(), "cluster", "node-b");
    let err = server_config(&TlsFiles {
        key: other.key,
        ..good.clone()
    })
    .unwrap_err();
    assert!(
        matches!(err, TlsError::Config { side: "server", .. }),
        "{err:?}"
    );

    let pem_garbage = tmp.path().join("garbage.crt");
    fs::write(&pem_garbage, "-----BEGIN CERTIFICATE-----\n!!!\n").unwrap();
    let err = client_config(&TlsFiles {
        ca: pem_garbage,
        ..good
    })
    .unwrap_err();
    assert!(
        matches!(
            err,
            TlsError::ParsePem {
                file: TlsFile::CaCertificate,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn in_dir_points_at_the_files_issue_node_writes() {
    let tmp = tempfile::tempdir().unwrap();
    let written = node(tmp.path(), "cluster", "node-a");

    let found = TlsFiles::in_dir(&tmp.path().join("cluster-node-a"), "node-a");

    assert_eq!(found, written);
}

#[test]
fn plain_io_errors_are_described_too() {
    let eof = io::Error::new(io::ErrorKind::UnexpectedEof, "tls handshake eof");
    assert!(describe_handshake_error(&eof).contains("closed the connection"));
    assert!(
        closed_in_handshake(&eof),
        "a close without an alert is the peer giving up"
    );
    let timed_out = io::Error::new(io::ErrorKind::TimedOut, "deadline");
    assert!(describe_handshake_error(&timed_out).contains("timed out"));
    let wrapped = io::Error::new(
        io::ErrorKind::InvalidData,
        rustls::Error::InvalidCertificate(rustls::CertificateError::Expired),
    );
    assert!(describe_handshake_error(&wrapped).contains("expired"));
    assert!(!closed_in_handshake(&wrapped));
    assert!(!closed_in_handshake(&timed_out));
}

#[test]
fn certificate_node_name_is_the_node_a_certificate_was_issued_to() {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject as _;
    let tmp = tempfile::tempdir().unwrap();
    let files = node(tmp.path(), "ca", "node-b");
    let der = CertificateDer::from_pem_file(&files.cert).unwrap();
    assert_eq!(certificate_node_name(&der).as_deref(), Some("node-b"));
    let ca = CertificateDer::from_pem_file(&files.ca).unwrap();
    assert_eq!(certificate_node_name(&ca).as_deref(), Some("ca"));
    assert_eq!(certificate_node_name(b"not a certificate"), None);
}
