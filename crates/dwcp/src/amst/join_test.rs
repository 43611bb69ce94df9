//! Connections that join a session write frames right behind their `Hello`, before the
//! receiver answered it: over real sockets on 127.0.0.1, a receiver that refuses the joins
//! (it allows one connection per session) still gets the whole stream exact, the refused
//! connections' frames going again on the one it admitted.

use super::hde_test::{MIB, Rx, mixed, opts, send_to};
use super::{ReceiverConfig, Reduction, StreamCount};
use crate::transport::Security;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_behind_a_refused_join_go_on_the_admitted_connection() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = ReceiverConfig::new(dir.path());
    cfg.max_streams = 1;
    let rx = Rx::with_config(cfg, Security::Insecure).await;
    let data = mixed(8 * MIB);
    let mut o = opts("joined", Reduction::Off);
    o.streams = StreamCount::Fixed(4);
    let summary = send_to(&rx.addr, &Security::Insecure, &data, o).await;
    assert_eq!(summary.bytes, data.len() as u64);
    assert_eq!(std::fs::read(dir.path().join("joined")).unwrap(), data);
}
