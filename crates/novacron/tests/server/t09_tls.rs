//! The API over TLS: a daemon with `--tls-dir` serves only https, and the CLI trusts it only
//! with the cluster CA certificate.

use crate::fixtures::{Daemon, make_pki, novacron};
use std::ffi::OsString;
use std::process::Output;

fn node_info(d: &Daemon, addr: &str, extra: &[&OsString]) -> Output {
    novacron()
        .args([
            "node", "info", "--json", "--addr", addr, "--token", &d.admin,
        ])
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn the_api_over_tls_is_trusted_with_the_cluster_ca_only() {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    make_pki(&pki, &["n1"]);
    let d = Daemon::start_with(
        dir.path(),
        &[
            "--tls-dir".into(),
            pki.clone().into_os_string(),
            "--node".into(),
            "n1".into(),
        ],
    );
    let https = format!("https://{}", d.addr);
    let ca_cert: OsString = pki.join("ca.crt").into_os_string();

    let o = node_info(&d, &https, &[&"--ca-cert".into(), &ca_cert]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let info: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(info.is_object(), "{info}");

    let o = node_info(&d, &format!("http://{}", d.addr), &[]);
    assert_ne!(o.status.code(), Some(0), "plain http must not be served");

    let o = node_info(&d, &https, &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("certificate"), "{err}");
    assert!(err.contains("--ca-cert"), "{err}");
}
