//! Cluster certificate authority and node certificates for DWCP mutual TLS.
//!
//! A cluster has one CA ([`init_ca`]) that signs one certificate per node ([`issue_node`]). Every
//! node certificate is valid for both server and client authentication, so the same files serve
//! a node whether it sends or receives a stream. [`crate::tls`] turns the files into rustls
//! configurations.
//!
//! Files, all PEM:
//!
//! ```text
//! <ca_dir>/ca.crt          CA certificate, self-signed, ~10 years     (0644)
//! <ca_dir>/ca.key          CA private key, PKCS#8                     (0600)
//! <out_dir>/<node>.crt     node certificate, the leaf only, ~2 years  (0644)
//! <out_dir>/<node>.key     node private key, PKCS#8                   (0600)
//! <out_dir>/ca.crt         copy of the CA certificate, so that the directory alone
//!                          configures a node (see `tls::TlsFiles::in_dir`)
//! ```
//!
//! Keys are ECDSA P-256. Directories this module creates are mode 0700. File I/O is blocking:
//! these are one-off administrative operations, not part of the data path.

use std::fmt;
use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{self, Write as _};
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::RootCertStore;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier as _;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, DnsName, InvalidDnsNameError, ServerName, UnixTime};
use thiserror::Error;

#[cfg(test)]
#[path = "pki_test.rs"]
mod pki_test;

/// File name of the CA certificate, in the CA directory and in every node directory.
pub const CA_CERT_FILE: &str = "ca.crt";
/// File name of the CA private key in the CA directory.
pub const CA_KEY_FILE: &str = "ca.key";
/// Longest accepted node name, in bytes: one DNS label.
pub const MAX_NODE_NAME_LEN: usize = 63;
/// Longest accepted CA name, in bytes: the X.509 upper bound for a common name.
pub const MAX_CA_NAME_LEN: usize = 64;

/// How long a CA certificate is valid: about 10 years.
const CA_VALIDITY: Duration = Duration::from_secs(3650 * 24 * 60 * 60);
/// How long a node certificate is valid: about 2 years.
const NODE_VALIDITY: Duration = Duration::from_secs(730 * 24 * 60 * 60);
/// Certificates start being valid this long before they are made, so that a node whose clock
/// is a little behind the issuer's accepts them at once.
const BACKDATE: Duration = Duration::from_secs(60 * 60);
/// 9999-12-31T23:59:59Z, the last instant an X.509 time (and rcgen's date type) can express.
const LATEST_EXPRESSIBLE: Duration = Duration::from_secs(253_402_300_799);
/// Organization written into every certificate's subject.
const ORGANIZATION: &str = "NovaCron";

/// Where [`init_ca`] wrote the CA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaPaths {
    /// The CA directory.
    pub dir: PathBuf,
    /// The CA certificate, `<dir>/ca.crt`.
    pub cert: PathBuf,
    /// The CA private key, `<dir>/ca.key` (mode 0600).
    pub key: PathBuf,
}

impl CaPaths {
    /// The CA file paths inside `dir`, whether or not they exist.
    #[must_use]
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
            cert: dir.join(CA_CERT_FILE),
            key: dir.join(CA_KEY_FILE),
        }
    }
}

/// Where [`issue_node`] wrote a node's files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodePaths {
    /// The CA certificate the node trusts, `<out_dir>/ca.crt`.
    pub ca: PathBuf,
    /// The node certificate, `<out_dir>/<node>.crt`: the leaf alone, without the CA.
    pub cert: PathBuf,
    /// The node private key, `<out_dir>/<node>.key` (mode 0600).
    pub key: PathBuf,
}

/// Why a node or CA name was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameProblem {
    /// The name is empty.
    Empty,
    /// The name is longer than `max` bytes.
    TooLong {
        /// Length of the refused name, in bytes.
        len: usize,
        /// Longest accepted length, in bytes.
        max: usize,
    },
    /// The name holds a character outside the allowed set.
    BadChar(char),
    /// The name starts with a character that may not start it.
    BadStart(char),
    /// The name ends with a character that may not end it.
    BadEnd(char),
    /// The name has two dots in a row.
    EmptyLabel,
    /// The name would collide with the CA's own files.
    Reserved,
    /// The name is not usable as a TLS server name (for example, its last label is all digits).
    NotHostName,
}

impl fmt::Display for NameProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("it is empty"),
            Self::TooLong { len, max } => write!(f, "it is {len} bytes long, the limit is {max}"),
            Self::BadChar(ch) => write!(
                f,
                "{ch:?} is not allowed (use lowercase letters, digits, '-' and '.')"
            ),
            Self::BadStart(ch) => write!(f, "it may not start with {ch:?}"),
            Self::BadEnd(ch) => write!(f, "it may not end with {ch:?}"),
            Self::EmptyLabel => f.write_str("it has two dots in a row"),
            Self::Reserved => f.write_str("the name is reserved for the CA's own files"),
            Self::NotHostName => f.write_str(
                "it is not a valid host name or IP address (is the last label all digits?)",
            ),
        }
    }
}

/// Errors from creating a CA or issuing a node certificate.
#[derive(Debug, Error)]
pub enum PkiError {
    /// The node name is not acceptable.
    #[error("invalid node name {name:?}: {problem}")]
    InvalidNodeName {
        /// The refused name.
        name: String,
        /// What is wrong with it.
        problem: NameProblem,
    },
    /// The CA name is not acceptable.
    #[error("invalid CA name {name:?}: {problem}")]
    InvalidCaName {
        /// The refused name.
        name: String,
        /// What is wrong with it.
        problem: NameProblem,
    },
    /// An extra subject alternative name is neither an IP address nor a DNS name.
    #[error("invalid subject alternative name {name:?}: not an IP address or DNS name")]
    InvalidSan {
        /// The refused name.
        name: String,
        /// Why the DNS name was refused.
        #[source]
        source: InvalidDnsNameError,
    },
    /// `init_ca` found a CA file in place and left it alone.
    #[error("a CA already exists at {path}; refusing to overwrite it (remove it to start over)")]
    CaExists {
        /// The existing file.
        path: PathBuf,
    },
    /// The node directory already holds a different CA certificate.
    #[error(
        "{existing} holds a different CA certificate than {ca}; refusing to mix two clusters' \
         files in one directory"
    )]
    ForeignCa {
        /// The CA certificate already in the node directory.
        existing: PathBuf,
        /// The CA certificate that signs the node.
        ca: PathBuf,
    },
    /// The system clock cannot be turned into certificate validity dates.
    #[error("the system clock is outside the range a certificate can express")]
    Clock,
    /// Creating a directory failed.
    #[error("could not create directory {path}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// Reading a file failed.
    #[error("could not read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// Writing a file failed.
    #[error("could not write {path}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// Generating a key pair failed.
    #[error("could not generate a key pair")]
    GenerateKey(#[source] rcgen::Error),
    /// Signing the self-signed CA certificate failed.
    #[error("could not create the CA certificate")]
    SignCa(#[source] rcgen::Error),
    /// The CA private key file could not be parsed.
    #[error("could not load CA private key {path}")]
    LoadCaKey {
        /// The key file.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: rcgen::Error,
    },
    /// The CA certificate file could not be parsed.
    #[error("could not load CA certificate {path}")]
    LoadCaCert {
        /// The certificate file.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: rcgen::Error,
    },
    /// Building or signing the node certificate failed.
    #[error("could not sign the certificate for node {node}")]
    SignNode {
        /// The node name.
        node: String,
        /// The rcgen error.
        #[source]
        source: rcgen::Error,
    },
    /// The freshly issued certificate does not verify against the CA certificate, which means
    /// the CA key and certificate do not belong together.
    #[error(
        "the certificate issued for node {node} does not verify against {ca_cert}; \
         does {ca_key} belong to it?"
    )]
    SelfCheck {
        /// The node name.
        node: String,
        /// The CA certificate.
        ca_cert: PathBuf,
        /// The CA private key.
        ca_key: PathBuf,
        /// The verification error, boxed to keep `Result<_, PkiError>` small.
        #[source]
        source: Box<rustls::Error>,
    },
}

/// Creates a new cluster CA in `dir`: writes `ca.crt` and `ca.key` (mode 0600).
///
/// `dir` and any missing parents are created with mode 0700; an existing directory keeps its
/// mode. The CA certificate is valid for about 10 years, may sign end-entity certificates only
/// (path length 0) and names `name` as its common name.
///
/// # Errors
///
/// [`PkiError::InvalidCaName`] if `name` is empty, too long or holds control characters;
/// [`PkiError::CaExists`] if `ca.crt` or `ca.key` already exists (nothing is changed);
/// otherwise the step that failed: creating the directory, generating the key, signing, or
/// writing a file. On a write error no partial CA is left behind.
pub fn init_ca(dir: &Path, name: &str) -> Result<CaPaths, PkiError> {
    validate_ca_name(name)?;
    let paths = CaPaths::in_dir(dir);
    for path in [&paths.cert, &paths.key] {
        if path.exists() {
            return Err(PkiError::CaExists { path: path.clone() });
        }
    }

    let (not_before, not_after) = validity(CA_VALIDITY)?;
    let mut params = CertificateParams::default();
    params.not_before = not_before.into();
    params.not_after = not_after.into();
    params.distinguished_name = subject(name);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate().map_err(PkiError::GenerateKey)?;
    let cert = params.self_signed(&key).map_err(PkiError::SignCa)?;

    create_dir(dir)?;
    // `create_new` makes the existence check above race-free: a CA created in between is
    // reported as existing, never overwritten.
    write_new(&paths.key, key.serialize_pem().as_bytes(), 0o600)?;
    if let Err(err) = write_new(&paths.cert, cert.pem().as_bytes(), 0o644) {
        // Best effort: a key without its certificate would make the next `init_ca` refuse to
        // run. The write error is the one worth reporting, so a removal failure is dropped.
        let _ = fs::remove_file(&paths.key);
        return Err(err);
    }
    tracing::info!(dir = %dir.display(), name, "created cluster CA");
    Ok(paths)
}

/// Issues a certificate for node `node_name`, signed by the CA in `ca_dir`, and writes
/// `<node_name>.crt` (the leaf alone) and `<node_name>.key` (mode 0600) into `out_dir`.
///
/// The certificate's subject alternative names are `node_name` followed by `sans`; each entry
/// that parses as an IP address becomes an IP SAN, any other a DNS SAN. Nothing is added
/// implicitly: to connect via `localhost`, `127.0.0.1` or `::1`, list them in `sans`. The
/// certificate is valid for about 2 years (not capped at the CA's own expiry) for both TLS
/// server and client authentication.
///
/// `out_dir` is created (mode 0700) if missing. If it holds no `ca.crt`, a copy of the CA
/// certificate is written there so that [`crate::tls::TlsFiles::in_dir`] finds all three files.
/// Existing node files are replaced atomically, so re-issuing renews a certificate.
///
/// # Errors
///
/// [`PkiError::InvalidNodeName`] unless `node_name` is 1 to 63 bytes of `[a-z0-9-.]` that does
/// not start with `.` or `-`, has no empty label and is not `ca`; [`PkiError::InvalidSan`] for
/// an extra name that is neither an IP address nor a DNS name; [`PkiError::ForeignCa`] if
/// `out_dir/ca.crt` is a different CA; [`PkiError::SelfCheck`] if the CA key does not match
/// its certificate; otherwise the step that failed (reading or parsing the CA, generating the
/// key, signing, writing).
pub fn issue_node(
    ca_dir: &Path,
    node_name: &str,
    sans: &[String],
    out_dir: &Path,
) -> Result<NodePaths, PkiError> {
    validate_node_name(node_name)?;
    let alt_names = subject_alt_names(node_name, sans)?;

    let ca = CaPaths::in_dir(ca_dir);
    let ca_pem = read_to_string(&ca.cert)?;
    let ca_key_pem = read_to_string(&ca.key)?;
    let ca_key = KeyPair::from_pem(&ca_key_pem).map_err(|source| PkiError::LoadCaKey {
        path: ca.key.clone(),
        source,
    })?;
    let issuer =
        Issuer::from_ca_cert_pem(&ca_pem, ca_key).map_err(|source| PkiError::LoadCaCert {
            path: ca.cert.clone(),
            source,
        })?;

    let (not_before, not_after) = validity(NODE_VALIDITY)?;
    let mut params = CertificateParams::default();
    params.not_before = not_before.into();
    params.not_after = not_after.into();
    params.distinguished_name = subject(node_name);
    params.subject_alt_names = alt_names;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate().map_err(PkiError::GenerateKey)?;
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(|source| PkiError::SignNode {
            node: node_name.to_owned(),
            source,
        })?;

    let ca_der = ca_cert_der(&ca, &ca_pem)?;
    self_check(node_name, cert.der(), ca_der, &ca)?;

    create_dir(out_dir)?;
    let paths = NodePaths {
        ca: out_dir.join(CA_CERT_FILE),
        cert: out_dir.join(format!("{node_name}.crt")),
        key: out_dir.join(format!("{node_name}.key")),
    };
    place_ca_copy(&paths.ca, &ca.cert, &ca_pem)?;
    write_replace(&paths.key, key.serialize_pem().as_bytes(), 0o600)?;
    write_replace(&paths.cert, cert.pem().as_bytes(), 0o644)?;
    tracing::info!(node = node_name, out_dir = %out_dir.display(), "issued node certificate");
    Ok(paths)
}

/// Checks a node name: 1 to 63 bytes of `[a-z0-9-.]`, not starting with `.` or `-`, not ending
/// with `.` or `-`, no two dots in a row, usable as a TLS server name, and not `ca` (which would
/// collide with the CA files).
///
/// # Errors
///
/// [`PkiError::InvalidNodeName`] naming the problem.
pub fn validate_node_name(name: &str) -> Result<(), PkiError> {
    node_name_problem(name).map_or(Ok(()), |problem| {
        Err(PkiError::InvalidNodeName {
            name: name.to_owned(),
            problem,
        })
    })
}

fn node_name_problem(name: &str) -> Option<NameProblem> {
    let (Some(first), Some(last)) = (name.chars().next(), name.chars().next_back()) else {
        return Some(NameProblem::Empty);
    };
    if name.len() > MAX_NODE_NAME_LEN {
        return Some(NameProblem::TooLong {
            len: name.len(),
            max: MAX_NODE_NAME_LEN,
        });
    }
    if let Some(ch) = name
        .chars()
        .find(|ch| !(ch.is_ascii_lowercase() || ch.is_ascii_digit() || *ch == '-' || *ch == '.'))
    {
        return Some(NameProblem::BadChar(ch));
    }
    if first == '.' || first == '-' {
        return Some(NameProblem::BadStart(first));
    }
    if last == '.' || last == '-' {
        return Some(NameProblem::BadEnd(last));
    }
    if name.contains("..") {
        return Some(NameProblem::EmptyLabel);
    }
    // `ca` would write `ca.crt`/`ca.key`, overwriting the CA when out_dir is the CA directory.
    if name == "ca" {
        return Some(NameProblem::Reserved);
    }
    // Peers check the name through rustls, so it must be a name rustls can connect to.
    if ServerName::try_from(name).is_err() {
        return Some(NameProblem::NotHostName);
    }
    None
}

fn validate_ca_name(name: &str) -> Result<(), PkiError> {
    let problem = if name.trim().is_empty() {
        Some(NameProblem::Empty)
    } else if name.len() > MAX_CA_NAME_LEN {
        Some(NameProblem::TooLong {
            len: name.len(),
            max: MAX_CA_NAME_LEN,
        })
    } else {
        name.chars()
            .find(|ch| ch.is_control())
            .map(NameProblem::BadChar)
    };
    problem.map_or(Ok(()), |problem| {
        Err(PkiError::InvalidCaName {
            name: name.to_owned(),
            problem,
        })
    })
}

/// The SAN list: `node_name` first, then `extra` in order, duplicates dropped.
fn subject_alt_names(node_name: &str, extra: &[String]) -> Result<Vec<SanType>, PkiError> {
    let mut out: Vec<SanType> = Vec::with_capacity(extra.len().saturating_add(1));
    for name in std::iter::once(node_name).chain(extra.iter().map(String::as_str)) {
        let san = san(name)?;
        if !out.contains(&san) {
            out.push(san);
        }
    }
    Ok(out)
}

fn san(name: &str) -> Result<SanType, PkiError> {
    let name = name.trim();
    // Accept the bracketed IPv6 form operators copy from URLs, e.g. `[::1]`.
    let unbracketed = name
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .unwrap_or(name);
    if let Ok(ip) = unbracketed.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    let invalid = |source| PkiError::InvalidSan {
        name: name.to_owned(),
        source,
    };
    // Validate with the same rules rustls applies to the name a client connects to.
    let dns = DnsName::try_from(name).map_err(invalid)?;
    let ia5 = dns
        .as_ref()
        .to_owned()
        .try_into()
        .map_err(|_| invalid(InvalidDnsNameError))?;
    Ok(SanType::DnsName(ia5))
}

fn subject(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, ORGANIZATION);
    dn.push(DnType::CommonName, common_name);
    dn
}

/// `(not_before, not_after)` for a certificate valid for `lifetime` from now.
fn validity(lifetime: Duration) -> Result<(SystemTime, SystemTime), PkiError> {
    let now = SystemTime::now();
    let not_before = now.checked_sub(BACKDATE).ok_or(PkiError::Clock)?;
    let not_after = now.checked_add(lifetime).ok_or(PkiError::Clock)?;
    // N.B. converting to rcgen's date type panics beyond year 9999; refuse such clocks here.
    match not_after.duration_since(UNIX_EPOCH) {
        Ok(since_epoch) if since_epoch > LATEST_EXPRESSIBLE => Err(PkiError::Clock),
        Ok(_) | Err(_) => Ok((not_before, not_after)),
    }
}

/// The CA certificate as DER, taken from the PEM text that was loaded.
fn ca_cert_der(ca: &CaPaths, ca_pem: &str) -> Result<CertificateDer<'static>, PkiError> {
    CertificateDer::from_pem_slice(ca_pem.as_bytes()).map_err(|_| PkiError::LoadCaCert {
        path: ca.cert.clone(),
        source: rcgen::Error::CouldNotParseCertificate,
    })
}

/// Verifies `leaf` against the CA as both a server and a client certificate, exactly as a peer
/// will, so a mismatched CA key or a bad SAN shows up now rather than at the first handshake.
fn self_check(
    node_name: &str,
    leaf: &CertificateDer<'_>,
    ca_der: CertificateDer<'static>,
    ca: &CaPaths,
) -> Result<(), PkiError> {
    let fail = |source| PkiError::SelfCheck {
        node: node_name.to_owned(),
        ca_cert: ca.cert.clone(),
        ca_key: ca.key.clone(),
        source: Box::new(source),
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    roots.add(ca_der).map_err(fail)?;
    let roots = Arc::new(roots);
    let now = UnixTime::now();

    let server_verifier =
        WebPkiServerVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .map_err(|err| fail(rustls::Error::General(err.to_string())))?;
    let name =
        ServerName::try_from(node_name).map_err(|_| fail(rustls::Error::UnsupportedNameType))?;
    server_verifier
        .verify_server_cert(leaf, &[], &name, &[], now)
        .map_err(fail)?;

    let client_verifier = WebPkiClientVerifier::builder_with_provider(roots, provider)
        .build()
        .map_err(|err| fail(rustls::Error::General(err.to_string())))?;
    client_verifier
        .verify_client_cert(leaf, &[], now)
        .map_err(fail)?;
    Ok(())
}

/// Makes `dest` hold the CA certificate: writes it if missing, leaves an identical copy alone
/// (including the case where `dest` is the CA's own file), and refuses a different one.
fn place_ca_copy(dest: &Path, ca_cert: &Path, ca_pem: &str) -> Result<(), PkiError> {
    match fs::read_to_string(dest) {
        Ok(existing) if existing.trim() == ca_pem.trim() => Ok(()),
        Ok(_) => Err(PkiError::ForeignCa {
            existing: dest.to_path_buf(),
            ca: ca_cert.to_path_buf(),
        }),
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            write_replace(dest, ca_pem.as_bytes(), 0o644)
        }
        Err(source) => Err(PkiError::Read {
            path: dest.to_path_buf(),
            source,
        }),
    }
}

fn read_to_string(path: &Path) -> Result<String, PkiError> {
    fs::read_to_string(path).map_err(|source| PkiError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn create_dir(dir: &Path) -> Result<(), PkiError> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| PkiError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })
}

/// Writes a file that must not exist yet, created with `mode` so a key is never readable by
/// others, not even for a moment.
fn write_new(path: &Path, contents: &[u8], mode: u32) -> Result<(), PkiError> {
    let write_err = |source| PkiError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut file = match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
    {
        Ok(file) => file,
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
            return Err(PkiError::CaExists {
                path: path.to_path_buf(),
            });
        }
        Err(err) => return Err(write_err(err)),
    };
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(write_err)
}

/// Writes `path` atomically through a temporary file in the same directory, replacing any
/// previous file; readers see the old or the new contents, never a mix.
fn write_replace(path: &Path, contents: &[u8], mode: u32) -> Result<(), PkiError> {
    let write_err = |source| PkiError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    // A leftover from an interrupted run may have any mode; start from a fresh file.
    match fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
        Err(err) => return Err(write_err(err)),
    }
    let result = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .and_then(|mut file| {
            file.write_all(contents)?;
            file.sync_all()
        })
        .and_then(|()| fs::rename(&tmp, path));
    if let Err(err) = result {
        // Best effort: the write error is what the operator needs; a stray temporary file is
        // removed by the next run anyway.
        let _ = fs::remove_file(&tmp);
        return Err(write_err(err));
    }
    Ok(())
}
