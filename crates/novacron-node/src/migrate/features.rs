//! What the DWCP feature flags allow a migration stream leaving this node: [`for_stream`] takes
//! one [`Flags`] snapshot when the stream starts and [`apply`] turns it into its send options.
//!
//! | flag off for this node (or kill switch) | the stream gets |
//! | --- | --- |
//! | `hde` | raw frames ([`Reduction::Off`]) |
//! | `pba` | zero elision and a fixed lz4 instead of the codec PBA picks |
//! | `multistream` | one connection ([`StreamCount::Fixed`]`(1)`) |
//! | `dedup_store` | no deduplication against the peer's content store, nothing recorded in ours |

use super::Cluster;
use dwcp::amst::{Reduction, SendOptions, StreamCount};
use dwcp::flags::{Component, Flags};

/// Sets the options of a stream that `cluster`'s node starts sending now, under one snapshot
/// of its flags: a change made later applies to the next stream, never to this one.
pub(crate) fn for_stream(opts: &mut SendOptions, cluster: &Cluster) {
    apply(opts, &cluster.flags.snapshot(), &cluster.config.node_name);
}

/// Sets the reduction, connection count and deduplication of a stream sent by node `node`
/// under `flags`. Every stream asks for [`Reduction::Auto`], the default connection count and
/// the deduplication its node's content store allows; the flags only take away.
pub(crate) fn apply(opts: &mut SendOptions, flags: &Flags, node: &str) {
    opts.reduce = Reduction::Auto.gated(flags, node);
    if !flags.is_enabled(Component::Multistream, node) {
        opts.streams = StreamCount::Fixed(1);
    }
    if !flags.is_enabled(Component::DedupStore, node) {
        // `record` is only used once deduplication is negotiated; clearing it too keeps the
        // store out of the stream's path whatever the sender does with it.
        opts.dedup = false;
        opts.record = None;
    }
    tracing::debug!(
        stream = %opts.name,
        reduce = %opts.reduce,
        streams = ?opts.streams,
        dedup = opts.dedup,
        kill_switch = flags.kill_switch(),
        "DWCP features of a migration stream"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use dwcp::flags::FlagRule;
    use dwcp::hde::CodecChoice;

    /// The options of a stream from a node with a content store, once `flags` are applied.
    fn applied(flags: &Flags, node: &str) -> SendOptions {
        let dir = tempfile::tempdir().unwrap();
        let store = dwcp::hde::DiskStore::open(dir.path().to_owned(), 1 << 20).unwrap();
        let mut opts = SendOptions::new("vm-memory");
        opts.dedup = true;
        opts.record = Some(std::sync::Arc::new(std::sync::Mutex::new(store)));
        apply(&mut opts, flags, node);
        opts
    }

    fn off(component: Component) -> Flags {
        Flags::default().with_rule(component, FlagRule::OFF)
    }

    #[test]
    fn all_on_asks_pba_for_the_codec_probes_the_connection_count_and_deduplicates() {
        let opts = applied(&Flags::default(), "a");
        assert_eq!(opts.reduce, Reduction::Auto);
        assert_eq!(opts.streams, StreamCount::default());
        assert!(opts.dedup && opts.record.is_some());
    }

    #[test]
    fn the_kill_switch_sends_raw_frames_on_one_connection_without_the_store() {
        let opts = applied(&Flags::default().with_kill_switch(true), "a");
        assert_eq!(opts.reduce, Reduction::Off);
        assert_eq!(opts.streams, StreamCount::Fixed(1));
        assert!(!opts.dedup && opts.record.is_none());
    }

    #[test]
    fn dedup_store_off_keeps_compression_and_connections_but_not_the_store() {
        let opts = applied(&off(Component::DedupStore), "a");
        assert_eq!(opts.reduce, Reduction::Auto);
        assert_eq!(opts.streams, StreamCount::default());
        assert!(!opts.dedup && opts.record.is_none());
    }

    #[test]
    fn hde_off_sends_raw_frames_and_keeps_the_connections() {
        let opts = applied(&off(Component::Hde), "a");
        assert_eq!(opts.reduce, Reduction::Off);
        assert_eq!(opts.streams, StreamCount::default());
    }

    #[test]
    fn pba_off_fixes_the_codec_to_lz4() {
        let opts = applied(&off(Component::Pba), "a");
        assert_eq!(opts.reduce, Reduction::Fixed(CodecChoice::Lz4));
        assert_eq!(opts.streams, StreamCount::default());
    }

    #[test]
    fn multistream_off_uses_one_connection_and_keeps_compression() {
        let opts = applied(&off(Component::Multistream), "a");
        assert_eq!(opts.reduce, Reduction::Auto);
        assert_eq!(opts.streams, StreamCount::Fixed(1));
    }

    #[test]
    fn the_rollout_decides_by_node_name() {
        let at = |percent| {
            Flags::default()
                .with_rule(Component::Hde, FlagRule::new(true, percent).unwrap())
                .with_rule(
                    Component::Multistream,
                    FlagRule::new(true, percent).unwrap(),
                )
        };
        for node in ["a", "b", "node-a", "site-b-17"] {
            let none = applied(&at(0), node);
            assert_eq!(none.reduce, Reduction::Off, "{node} at 0 %");
            assert_eq!(none.streams, StreamCount::Fixed(1), "{node} at 0 %");
            let all = applied(&at(100), node);
            assert_eq!(all.reduce, Reduction::Auto, "{node} at 100 %");
            assert_eq!(all.streams, StreamCount::default(), "{node} at 100 %");
        }
    }

    #[test]
    fn a_partial_rollout_follows_the_nodes_bucket() {
        // "node-a" is in bucket 29 and "node-b" in bucket 28 of the hde flag (pinned in
        // dwcp's flags tests): at 29 % only node-b is in.
        let flags = Flags::default().with_rule(Component::Hde, FlagRule::new(true, 29).unwrap());
        assert_eq!(applied(&flags, "node-a").reduce, Reduction::Off);
        assert_eq!(applied(&flags, "node-b").reduce, Reduction::Auto);
    }
}
