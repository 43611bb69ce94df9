//! Mutual-TLS configurations for DWCP connections, built from the files [`crate::pki`] writes.
//!
//! Both ends authenticate: a receiver ([`server_config`]) requires a client certificate signed
//! by the cluster CA, and a sender ([`client_config`]) trusts that CA alone, never the system
//! roots, and presents its own node certificate. Only TLS 1.3 is offered, with rustls' `ring`
//! provider.
//!
//! ```text
//! sender (client)                             receiver (server)
//!   ClientHello                      ------>
//!                                    <------  ServerHello, Certificate (node), CertificateRequest
//!   verify server cert: CA + name
//!   Certificate (node), Finished     ------>  verify client cert: CA
//!                                    <------  alert if refused, seen by the sender's first read
//! ```
//!
//! In TLS 1.3 the client finishes its handshake before the server has judged the client
//! certificate, so a refused client learns it from its first read, not from `connect`.
//! [`describe_handshake_error`] turns either failure into one line for a person.
//!
//! Performance: DWCP pushes several GB/s through these connections. The `ring` provider's
//! TLS 1.3 suites are AES-256-GCM, AES-128-GCM and ChaCha20-Poly1305, in that order; AES-GCM
//! runs on ring's assembly (AES-NI and carry-less multiply on x86-64, the crypto extensions on
//! aarch64). Records stay at rustls' default maximum of 16 KiB of plaintext, the largest TLS
//! allows, so per-record overhead is as small as TLS permits. Do not set `max_fragment_size`.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls::{AlertDescription, CertificateError, ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::{self, PemObject as _};
use rustls_pki_types::{CertificateDer, InvalidDnsNameError, PrivateKeyDer, ServerName};
use thiserror::Error;

use crate::pki::{CA_CERT_FILE, NodePaths};

#[cfg(test)]
#[path = "tls_test.rs"]
mod tls_test;

/// The three PEM files a node needs for mutual TLS: the cluster CA certificate it trusts, its
/// own certificate chain (leaf first) and its private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The cluster CA certificate, the only trust anchor.
    pub ca: PathBuf,
    /// The node certificate, optionally followed by the CA certificate.
    pub cert: PathBuf,
    /// The node private key (PKCS#8, SEC1 or PKCS#1 PEM).
    pub key: PathBuf,
}

impl TlsFiles {
    /// The files [`crate::pki::issue_node`] writes for `node_name` into `dir`: `dir/ca.crt`,
    /// `dir/<node_name>.crt` and `dir/<node_name>.key`.
    #[must_use]
    pub fn in_dir(dir: &Path, node_name: &str) -> Self {
        Self {
            ca: dir.join(CA_CERT_FILE),
            cert: dir.join(format!("{node_name}.crt")),
            key: dir.join(format!("{node_name}.key")),
        }
    }
}

impl From<NodePaths> for TlsFiles {
    fn from(paths: NodePaths) -> Self {
        Self {
            ca: paths.ca,
            cert: paths.cert,
            key: paths.key,
        }
    }
}

/// Which of the [`TlsFiles`] an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsFile {
    /// [`TlsFiles::ca`].
    CaCertificate,
    /// [`TlsFiles::cert`].
    Certificate,
    /// [`TlsFiles::key`].
    PrivateKey,
}

impl fmt::Display for TlsFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::CaCertificate => "CA certificate",
            Self::Certificate => "certificate",
            Self::PrivateKey => "private key",
        })
    }
}

/// Errors from building a TLS configuration or server name.
#[derive(Debug, Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("could not read {file} {path}")]
    Read {
        /// Which file.
        file: TlsFile,
        /// Its path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// A file is not valid PEM.
    #[error("could not parse {file} {path} as PEM")]
    ParsePem {
        /// Which file.
        file: TlsFile,
        /// Its path.
        path: PathBuf,
        /// The PEM error.
        #[source]
        source: pem::Error,
    },
    /// A certificate file holds no `CERTIFICATE` block.
    #[error("no certificate found in {file} {path}")]
    NoCertificate {
        /// Which file.
        file: TlsFile,
        /// Its path.
        path: PathBuf,
    },
    /// The key file holds no private key block.
    #[error("no private key found in {path}")]
    NoPrivateKey {
        /// Its path.
        path: PathBuf,
    },
    /// A CA certificate was refused as a trust anchor.
    #[error("CA certificate {path} is not usable as a trust anchor")]
    TrustAnchor {
        /// The CA certificate file.
        path: PathBuf,
        /// The rustls error, boxed to keep `Result<_, TlsError>` small.
        #[source]
        source: Box<rustls::Error>,
    },
    /// The client certificate verifier could not be built from the CA.
    #[error("could not build the client certificate verifier from {path}")]
    ClientVerifier {
        /// The CA certificate file.
        path: PathBuf,
        /// The rustls error.
        #[source]
        source: rustls::server::VerifierBuilderError,
    },
    /// rustls refused the configuration, typically a key that does not match the certificate.
    #[error("could not build the TLS {side} configuration from {cert} and {key}")]
    Config {
        /// `"server"` or `"client"`.
        side: &'static str,
        /// The certificate file.
        cert: PathBuf,
        /// The private key file.
        key: PathBuf,
        /// The rustls error, boxed to keep `Result<_, TlsError>` small.
        #[source]
        source: Box<rustls::Error>,
    },
    /// A host is neither a DNS name nor an IP address.
    #[error("invalid server name {host:?}: expected a DNS name or an IP address")]
    ServerName {
        /// The refused host.
        host: String,
        /// The parse error.
        #[source]
        source: InvalidDnsNameError,
    },
}

/// Builds the receiving side's configuration: TLS 1.3 only, `ring`, presenting `files.cert`,
/// and requiring a client certificate that chains to `files.ca`.
///
/// Reads the files with blocking I/O; call it at startup or from `spawn_blocking`.
///
/// # Errors
///
/// [`TlsError`] naming the file that could not be read or parsed, or the rustls step that
/// refused it (for example a key that does not match the certificate).
pub fn server_config(files: &TlsFiles) -> Result<Arc<ServerConfig>, TlsError> {
    server_config_with(files, ClientAuth::Required)
}

/// Whether a server built by [`server_config_with`] insists on a client certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// Every client presents a certificate that chains to the CA (DWCP, node-to-node calls).
    Required,
    /// A client may present no certificate; one it does present must chain to the CA. For
    /// endpoints that also serve people, who authenticate another way.
    Optional,
}

/// Like [`server_config`], with the client certificate required or optional as `auth` says.
///
/// # Errors
///
/// As [`server_config`].
pub fn server_config_with(
    files: &TlsFiles,
    auth: ClientAuth,
) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = provider();
    let roots = load_roots(&files.ca)?;
    let builder = WebPkiClientVerifier::builder_with_provider(roots, provider.clone());
    let builder = match auth {
        ClientAuth::Required => builder,
        ClientAuth::Optional => builder.allow_unauthenticated(),
    };
    let verifier: Arc<dyn ClientCertVerifier> =
        builder.build().map_err(|source| TlsError::ClientVerifier {
            path: files.ca.clone(),
            source,
        })?;
    let chain = load_certs(TlsFile::Certificate, &files.cert)?;
    let key = load_key(&files.key)?;
    let config_err = |source| TlsError::Config {
        side: "server",
        cert: files.cert.clone(),
        key: files.key.clone(),
        source: Box::new(source),
    };
    let config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(config_err)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(config_err)?;
    Ok(Arc::new(config))
}

/// Builds the sending side's configuration: TLS 1.3 only, `ring`, trusting `files.ca` alone
/// (no system roots) and presenting `files.cert` as client certificate.
///
/// Reads the files with blocking I/O; call it at startup or from `spawn_blocking`.
///
/// # Errors
///
/// [`TlsError`] naming the file that could not be read or parsed, or the rustls step that
/// refused it (for example a key that does not match the certificate).
pub fn client_config(files: &TlsFiles) -> Result<Arc<ClientConfig>, TlsError> {
    let provider = provider();
    let roots = load_roots(&files.ca)?;
    let chain = load_certs(TlsFile::Certificate, &files.cert)?;
    let key = load_key(&files.key)?;
    let config_err = |source| TlsError::Config {
        side: "client",
        cert: files.cert.clone(),
        key: files.key.clone(),
        source: Box::new(source),
    };
    let config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(config_err)?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(config_err)?;
    Ok(Arc::new(config))
}

/// Converts a host (DNS name, IPv4 or IPv6 address, optionally in `[..]`) into the name a
/// connector checks the server certificate against.
///
/// # Errors
///
/// [`TlsError::ServerName`] if `host` is neither a DNS name nor an IP address.
pub fn server_name(host: &str) -> Result<ServerName<'static>, TlsError> {
    let trimmed = host.trim();
    let unbracketed = trimmed
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .unwrap_or(trimmed);
    ServerName::try_from(unbracketed.to_owned()).map_err(|source| TlsError::ServerName {
        host: host.to_owned(),
        source,
    })
}

/// The node a certificate names: its first DNS subject alternative name (where
/// [`crate::pki::issue_node`] puts the node name), else its common name. `None` for a
/// certificate that cannot be parsed or names nothing. Call it only on a certificate rustls
/// has verified against the cluster CA.
#[must_use]
pub fn certificate_node_name(der: &[u8]) -> Option<String> {
    use x509_parser::extensions::GeneralName;
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let san = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .and_then(|ext| {
            ext.value.general_names.iter().find_map(|n| match n {
                GeneralName::DNSName(name) => Some((*name).to_owned()),
                _ => None,
            })
        });
    san.or_else(|| {
        cert.subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_owned)
    })
}

/// Turns a failed TLS handshake, connect or first read into one line for a person, saying
/// whose certificate was refused and why. `err` is the `io::Error` tokio-rustls returned; a
/// rustls error inside it is recognised, any other error is described by its I/O kind.
#[must_use]
pub fn describe_handshake_error(err: &io::Error) -> String {
    match err
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(tls) => describe_rustls_error(tls),
        None => describe_io_error(err),
    }
}

/// Whether a failed handshake ended with the peer closing the connection, with no TLS alert
/// and no other error: the peer gave up on it (refusing a certificate sends an alert).
#[must_use]
pub fn closed_in_handshake(err: &io::Error) -> bool {
    err.kind() == io::ErrorKind::UnexpectedEof
        && err
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            .is_none()
}

fn describe_rustls_error(err: &rustls::Error) -> String {
    match err {
        rustls::Error::InvalidCertificate(cert) => describe_certificate_error(cert),
        rustls::Error::NoCertificatesPresented => {
            "peer sent no certificate, but this cluster requires one from every node".to_owned()
        }
        rustls::Error::AlertReceived(alert) => describe_alert(*alert),
        rustls::Error::PeerIncompatible(why) => {
            format!("peer is incompatible with us; both ends must speak TLS 1.3 ({why:?})")
        }
        rustls::Error::InvalidMessage(_)
        | rustls::Error::InappropriateMessage { .. }
        | rustls::Error::InappropriateHandshakeMessage { .. } => format!(
            "peer does not speak TLS as expected; is it a DWCP endpoint with TLS enabled? ({err})"
        ),
        other => format!("TLS handshake failed: {other}"),
    }
}

fn describe_certificate_error(err: &CertificateError) -> String {
    match err {
        CertificateError::UnknownIssuer => {
            "peer certificate not trusted by our CA (UnknownIssuer); was it issued by another \
             cluster's CA?"
                .to_owned()
        }
        CertificateError::BadSignature => {
            "peer certificate not trusted by our CA (BadSignature)".to_owned()
        }
        CertificateError::NotValidForName => "peer certificate is not valid for the name we \
             connected to (NotValidForName); connect by one of its names or re-issue it"
            .to_owned(),
        CertificateError::NotValidForNameContext {
            expected,
            presented,
        } => {
            let names: Vec<&str> = presented.iter().map(|name| san_text(name)).collect();
            format!(
                "peer certificate is not valid for the name we connected to, {:?} \
                 (NotValidForName); it names {}; connect by one of those or re-issue it",
                expected.to_str(),
                names.join(", ")
            )
        }
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            format!("peer certificate has expired; re-issue it ({err:?})")
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            format!("peer certificate is not valid yet; check both nodes' clocks ({err:?})")
        }
        CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
            format!(
                "peer certificate is not allowed for this use; issue node certificates with \
                 `pki::issue_node` ({err:?})"
            )
        }
        other => format!("peer certificate rejected ({other:?})"),
    }
}

/// `DnsName("a")` or `IpAddress(1.2.3.4)`, as rustls reports presented names, to `a` or
/// `1.2.3.4`; anything else unchanged.
fn san_text(presented: &str) -> &str {
    presented
        .strip_prefix("DnsName(\"")
        .and_then(|rest| rest.strip_suffix("\")"))
        .or_else(|| {
            presented
                .strip_prefix("IpAddress(")
                .and_then(|rest| rest.strip_suffix(')'))
        })
        .unwrap_or(presented)
}

fn describe_alert(alert: AlertDescription) -> String {
    match alert {
        AlertDescription::CertificateRequired => {
            "peer requires a client certificate and we sent none (CertificateRequired)".to_owned()
        }
        AlertDescription::BadCertificate
        | AlertDescription::UnsupportedCertificate
        | AlertDescription::CertificateRevoked
        | AlertDescription::CertificateExpired
        | AlertDescription::CertificateUnknown
        | AlertDescription::UnknownCA
        | AlertDescription::AccessDenied => {
            format!("peer refused our certificate ({alert:?}); is it signed by the peer's CA?")
        }
        AlertDescription::ProtocolVersion => {
            "peer refused our TLS version; both ends must speak TLS 1.3 (ProtocolVersion)"
                .to_owned()
        }
        other => format!("peer aborted the TLS handshake ({other:?})"),
    }
}

fn describe_io_error(err: &io::Error) -> String {
    match err.kind() {
        io::ErrorKind::UnexpectedEof => format!(
            "peer closed the connection during the TLS handshake without an alert: it gave up \
             on the connection, or is not a TLS peer ({err})"
        ),
        io::ErrorKind::ConnectionReset => format!(
            "peer reset the connection during the TLS handshake; it may have refused our \
             certificate ({err})"
        ),
        io::ErrorKind::TimedOut => format!("TLS handshake timed out ({err})"),
        _ => format!("TLS handshake failed: {err}"),
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(file: TlsFile, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        file,
        path: path.to_path_buf(),
        source,
    })
}

fn load_certs(file: TlsFile, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(file, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::ParsePem {
            file,
            path: path.to_path_buf(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            file,
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

fn load_roots(path: &Path) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(TlsFile::CaCertificate, path)? {
        roots.add(cert).map_err(|source| TlsError::TrustAnchor {
            path: path.to_path_buf(),
            source: Box::new(source),
        })?;
    }
    Ok(Arc::new(roots))
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    warn_if_key_exposed(path);
    let pem = read(TlsFile::PrivateKey, path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|source| match source {
        pem::Error::NoItemsFound => TlsError::NoPrivateKey {
            path: path.to_path_buf(),
        },
        source => TlsError::ParsePem {
            file: TlsFile::PrivateKey,
            path: path.to_path_buf(),
            source,
        },
    })
}

/// Logs a warning when a private key is readable by group or others. Not an error: the
/// operator may have a reason, but should hear about it.
fn warn_if_key_exposed(path: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(
                path = %path.display(),
                mode = format_args!("{:o}", mode & 0o777),
                "private key is accessible to other users; run chmod 600 on it"
            );
        }
    }
}
