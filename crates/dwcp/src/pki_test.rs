//! Tests for the cluster CA and node certificates: files, modes, names and what the
//! certificates are valid for, checked with the same verifiers rustls uses in a handshake.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier as _;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

use super::*;

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn certs(path: &Path) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_file_iter(path)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
}

fn strings(names: &[&str]) -> Vec<String> {
    names.iter().map(|name| (*name).to_owned()).collect()
}

/// Checks `leaf` against the CA in `ca_cert` as a server certificate for `name`.
fn valid_as_server(ca_cert: &Path, leaf: &CertificateDer<'_>, name: &str) -> bool {
    let mut roots = RootCertStore::empty();
    roots.add(certs(ca_cert).remove(0)).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .unwrap();
    let name = ServerName::try_from(name.to_owned()).unwrap();
    verifier
        .verify_server_cert(leaf, &[], &name, &[], UnixTime::now())
        .is_ok()
}

fn valid_as_client(ca_cert: &Path, leaf: &CertificateDer<'_>) -> bool {
    let mut roots = RootCertStore::empty();
    roots.add(certs(ca_cert).remove(0)).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .unwrap();
    verifier
        .verify_client_cert(leaf, &[], UnixTime::now())
        .is_ok()
}

#[test]
fn init_ca_writes_parseable_files_with_private_modes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cluster").join("ca");

    let paths = init_ca(&dir, "NovaCron test cluster").unwrap();

    assert_eq!(paths, CaPaths::in_dir(&dir));
    assert_eq!(paths.cert, dir.join("ca.crt"));
    assert_eq!(paths.key, dir.join("ca.key"));
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&paths.key), 0o600);
    assert_eq!(certs(&paths.cert).len(), 1);
    PrivateKeyDer::from_pem_file(&paths.key).unwrap();
}

#[test]
fn init_ca_refuses_to_overwrite_an_existing_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let paths = init_ca(tmp.path(), "first").unwrap();
    let cert_before = fs::read(&paths.cert).unwrap();
    let key_before = fs::read(&paths.key).unwrap();

    let err = init_ca(tmp.path(), "second").unwrap_err();

    assert!(
        matches!(&err, PkiError::CaExists { path } if *path == paths.cert),
        "{err:?}"
    );
    assert!(err.to_string().contains("refusing to overwrite"), "{err}");
    assert_eq!(fs::read(&paths.cert).unwrap(), cert_before);
    assert_eq!(fs::read(&paths.key).unwrap(), key_before);
}

#[test]
fn init_ca_refuses_when_only_the_key_is_left() {
    let tmp = tempfile::tempdir().unwrap();
    fs::write(tmp.path().join("ca.key"), "stale").unwrap();

    let err = init_ca(tmp.path(), "cluster").unwrap_err();

    assert!(
        matches!(&err, PkiError::CaExists { path } if path.ends_with("ca.key")),
        "{err:?}"
    );
    assert!(!tmp.path().join("ca.crt").exists());
}

#[test]
fn init_ca_rejects_unusable_names() {
    let tmp = tempfile::tempdir().unwrap();
    for (name, problem) in [
        ("", NameProblem::Empty),
        ("  ", NameProblem::Empty),
        ("a\nb", NameProblem::BadChar('\n')),
        (
            &"x".repeat(65) as &str,
            NameProblem::TooLong { len: 65, max: 64 },
        ),
    ] {
        let err = init_ca(tmp.path(), name).unwrap_err();
        assert!(
            matches!(&err, PkiError::InvalidCaName { problem: p, .. } if *p == problem),
            "{name:?}: {err:?}"
        );
    }
    assert!(!tmp.path().join("ca.key").exists());
}

#[test]
fn issue_node_writes_leaf_key_and_ca_copy() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = init_ca(&tmp.path().join("ca"), "cluster").unwrap();
    let out = tmp.path().join("nodes").join("node-a");

    let node = issue_node(&ca.dir, "node-a", &[], &out).unwrap();

    assert_eq!(node.cert, out.join("node-a.crt"));
    assert_eq!(node.key, out.join("node-a.key"));
    assert_eq!(node.ca, out.join("ca.crt"));
    assert_eq!(mode(&out), 0o700);
    assert_eq!(mode(&node.key), 0o600);
    assert_eq!(certs(&node.cert).len(), 1, "the file holds the leaf only");
    PrivateKeyDer::from_pem_file(&node.key).unwrap();
    assert_eq!(
        fs::read(&node.ca).unwrap(),
        fs::read(&ca.cert).unwrap(),
        "the node directory gets the CA it trusts"
    );
    assert!(!out.join("node-a.key.tmp").exists());
}

#[test]
fn issued_certificate_is_valid_for_its_names_only_and_for_both_roles() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = init_ca(tmp.path(), "cluster").unwrap();
    let sans = strings(&["10.0.0.5", "node-a.dc1.example", "[fd00::5]", "node-a"]);

    let node = issue_node(&ca.dir, "node-a", &sans, tmp.path()).unwrap();
    let leaf = certs(&node.cert).remove(0);

    for name in ["node-a", "10.0.0.5", "node-a.dc1.example", "fd00::5"] {
        assert!(valid_as_server(&ca.cert, &leaf, name), "{name}");
    }
    for name in ["node-b", "localhost", "127.0.0.1", "::1", "dc1.example"] {
        assert!(!valid_as_server(&ca.cert, &leaf, name), "{name}");
    }
    assert!(valid_as_client(&ca.cert, &leaf));
}

#[test]
fn issue_node_into_the_ca_directory_leaves_the_ca_intact() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = init_ca(tmp.path(), "cluster").unwrap();
    let ca_cert = fs::read(&ca.cert).unwrap();
    let ca_key = fs::read(&ca.key).unwrap();

    let node = issue_node(&ca.dir, "node-a", &[], &ca.dir).unwrap();

    assert_eq!(node.ca, ca.cert);
    assert_eq!(fs::read(&ca.cert).unwrap(), ca_cert);
    assert_eq!(fs::read(&ca.key).unwrap(), ca_key);
}

#[test]
fn reissuing_replaces_the_node_files() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = init_ca(tmp.path(), "cluster").unwrap();
    let first = issue_node(&ca.dir, "node-a", &[], tmp.path()).unwrap();
    let first_key = fs::read(&first.key).unwrap();
    // A looser mode on the old file must not survive the renewal.
    fs::set_permissions(&first.key, fs::Permissions::from_mode(0o644)).unwrap();

    let second = issue_node(&ca.dir, "node-a", &[], tmp.path()).unwrap();

    assert_eq!(first, second);
    assert_ne!(fs::read(&second.key).unwrap(), first_key);
    assert_eq!(mode(&second.key), 0o600);
}

#[test]
fn issue_node_validates_node_names() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = init_ca(tmp.path(), "cluster").unwrap();
    let long = "a".repeat(64);
    let cases = [
        ("", NameProblem::Empty),
        (long.as_str(), NameProblem::TooLong { len: 64, max: 63 }),
        ("Node-a", NameProblem::BadChar('N')),
        ("node_a", NameProblem::BadChar('_')),
        ("node/a", NameProblem::BadChar('/')),
        ("node a", NameProblem::BadChar(' ')),
        (".node", NameProblem::BadStart('.')),
        ("-node", NameProblem::BadStart('-')),
        ("node-", NameProblem::BadEnd('-')),
        ("node.", NameProblem::BadEnd('.')),
        ("node..a", NameProblem::EmptyLabel),
        ("ca", NameProblem::Reserved),
        ("123", NameProblem::NotHostName),
    ];
    for (name, problem) in cases {
        let err = issue_node(&ca.dir, name, &[], tmp.path()).unwrap_err();
        assert!(
            matches!(&err, PkiError::InvalidNodeName { problem: p, .. } if *p == problem),
            "{name:?}: {err:?}"
        );
    }
    for name in ["a", "node-1", "n1.dc2", "10.0.0.7", &"a".repeat(63) as &str] {
        validate_node_name(name).unwrap();
    }
}

#[test]
fn issue_node_rejects_a_san_that_is_no_host() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = init_ca(tmp.path(), "cluster").unwrap();

    let err = issue_node(&ca.dir, "node-a", &strings(&["not a host"]), tmp.path()).unwrap_err();

    assert!(
        matches!(&err, PkiError::InvalidSan { name, .. } if name == "not a host"),
        "{err:?}"
    );
    assert!(!tmp.path().join("node-a.key").exists());
}

#[test]
fn issue_node_without_a_ca_names_the_missing_file() {
    let tmp = tempfile::tempdir().unwrap();

    let err = issue_node(tmp.path(), "node-a", &[], tmp.path()).unwrap_err();

    let expected = tmp.path().join("ca.crt");
    assert!(
        matches!(&err, PkiError::Read { path, .. } if *path == expected),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!("could not read {}", expected.display())
    );
}

#[test]
fn issue_node_refuses_a_directory_holding_another_cluster_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let ca_a = init_ca(&tmp.path().join("a"), "cluster-a").unwrap();
    let ca_b = init_ca(&tmp.path().join("b"), "cluster-b").unwrap();

    let err = issue_node(&ca_a.dir, "node-a", &[], &ca_b.dir).unwrap_err();

    assert!(
        matches!(&err, PkiError::ForeignCa { existing, .. } if *existing == ca_b.cert),
        "{err:?}"
    );
    assert!(!ca_b.dir.join("node-a.crt").exists());
}

#[test]
fn issue_node_detects_a_ca_key_that_does_not_match_the_certificate() {
    let tmp = tempfile::tempdir().unwrap();
    let ca_a = init_ca(&tmp.path().join("a"), "cluster").unwrap();
    let ca_b = init_ca(&tmp.path().join("b"), "cluster").unwrap();
    fs::copy(&ca_b.key, &ca_a.key).unwrap();
    let out = tmp.path().join("out");

    let err = issue_node(&ca_a.dir, "node-a", &[], &out).unwrap_err();

    assert!(matches!(err, PkiError::SelfCheck { .. }), "{err:?}");
    assert!(err.to_string().contains("does not verify"), "{err}");
    assert!(
        !out.exists(),
        "nothing is written for a certificate that would not work"
    );
}

#[test]
fn issue_node_reports_an_unparseable_ca_key() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = init_ca(tmp.path(), "cluster").unwrap();
    fs::write(&ca.key, "not a key").unwrap();

    let err = issue_node(&ca.dir, "node-a", &[], tmp.path()).unwrap_err();

    assert!(
        matches!(&err, PkiError::LoadCaKey { path, .. } if *path == ca.key),
        "{err:?}"
    );
    assert!(std::error::Error::source(&err).is_some());
}
