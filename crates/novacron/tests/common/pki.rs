//! Certificates for end-to-end tests, made by the binary under test (`novacron ca`). Shared by
//! the test crates through `#[path]`.

use std::path::Path;
use std::process::Command;

/// A CA directory with node certificates `names` issued for 127.0.0.1.
pub fn make_pki(dir: &Path, names: &[&str]) {
    let ca = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_novacron"))
            .arg("ca")
            .args(args)
            .arg("--dir")
            .arg(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    ca(&["init"]);
    for name in names {
        ca(&["issue", name, "--san", "127.0.0.1"]);
    }
}
