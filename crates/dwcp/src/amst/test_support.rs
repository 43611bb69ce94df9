//! What the AMST tests share: reproducible incompressible data and a loopback TLS setup.

use std::path::Path;

use crate::transport::Security;

/// `len` bytes of xorshift64 output from `seed`: incompressible, and the same for a seed.
pub(super) fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[0]
        })
        .collect()
}

/// Mutual TLS with one node certificate (SAN 127.0.0.1) under `root`, used by both ends.
pub(super) fn loopback_tls(root: &Path) -> Security {
    let ca = root.join("ca");
    crate::pki::init_ca(&ca, "cluster").unwrap();
    let files: crate::tls::TlsFiles =
        crate::pki::issue_node(&ca, "node-a", &["127.0.0.1".to_owned()], &root.join("node"))
            .unwrap()
            .into();
    Security::Tls {
        client: Some(crate::tls::client_config(&files).unwrap()),
        server: Some(crate::tls::server_config(&files).unwrap()),
        server_name: Some(crate::tls::server_name("127.0.0.1").unwrap()),
    }
}
