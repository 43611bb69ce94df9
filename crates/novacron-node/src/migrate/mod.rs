//! Live migration between nodes.
//!
//! ```text
//!  source node                                              destination node
//!  POST /vms/{vm}/migrate ─► migrating
//!    ├─ POST /peer/migrations/{id}/image ─────────────────► the VM's image: held already, or
//!    │  its files over DWCP, then …/image/commit ───────────► checked and kept (`image_in`)
//!    ├─ POST /peer/migrations ─────────────────────────────► record `incoming`, disk overlay,
//!    │                                                       QEMU -incoming defer -S, DWCP sinks,
//!    │                                                       NBD export of each disk
//!    ├─ block mirror ─► NBD ─► DWCP, answers back over DWCP ► export (see `mirror`), until ready
//!    ├─ QEMU migrate fd: ─► socket ─► DWCP (mutual TLS) ───► socket ─► QEMU migrate-incoming
//!    ├─ sample query-migrate + DWCP (every 250 ms and at each QEMU migration event) ─► policy
//!    │  (downtime limit, post-copy, cancel) ─► progress, events
//!    ├─ guest stopped: mirrors asked to end, and at once
//!    ├─ POST /peer/migrations/{id}/commit ─────────────────► wait stream + QEMU `completed`
//!    │  (meanwhile: QEMU's last bytes, mirrors' last writes;  (or `postcopy-active`), each mirror's
//!    │   a mirror's stream ends once it completed)          stream ended; close exports, `cont`
//!    │  twice at once, on two connections: either answer;   a commit repeated, or after the end,
//!    │  once more should neither come                       gets the first one's outcome
//!    └─ delete the record, QEMU and disks here
//!  any failure before the commit: migrate_cancel, DELETE /peer/migrations/{id}, guest resumed
//! ```
//!
//! Nodes know each other from [`ClusterConfig`]: their own certificate from the cluster CA,
//! and the API address of each peer by name. Calls between nodes and DWCP sessions use mutual
//! TLS; the destination accepts the calls only from a caller with a valid node certificate.
//! Each peer's API client lives as long as the node, its connection kept open (`peers`).

mod dest;
mod features;
mod image_in;
mod mirror;
mod peers;
pub(crate) mod seed;
pub(crate) mod seed_initrd;
mod source;
mod streams;

pub(crate) use dest::Incoming;
pub(crate) use image_in::ImageIn;
pub(crate) use source::Outgoing;

use novacron_api::ServiceError;
use novacron_api::client::{Client, TlsClientOptions};
use novacron_model::OperationId;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// How many ended incoming migrations a node remembers the outcome of: a source repeats its
/// commit within seconds, and a node takes in few migrations at a time.
const CONCLUDED_KEPT: usize = 64;

/// How this node takes part in migrations.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// This node's name, as its certificate names it.
    pub node_name: String,
    /// The cluster CA and this node's certificate and key.
    pub tls: dwcp::tls::TlsFiles,
    /// Peer nodes by name: the base URL of their API (`https://HOST:PORT`).
    pub peers: BTreeMap<String, String>,
    /// Where this node's DWCP receiver listens for migration streams.
    pub dwcp_listen: SocketAddr,
    /// The port peers send migration streams to, when it is not the listening one (a port
    /// forwarded through NAT or a relay).
    pub dwcp_advertise_port: Option<u16>,
    /// Most bytes the node's DWCP content store keeps (`DATA_DIR/dwcp-store`): segments of
    /// streams sent and received, so that a peer's later stream can reference them. 0: no
    /// store, no deduplication.
    pub store_max: u64,
    /// DWCP feature flags at start ([`dwcp::flags::Flags::default`], all on, without a file).
    pub dwcp_flags: dwcp::flags::Flags,
    /// The file `dwcp_flags` were read from ([`crate::read_dwcp_flags`]): read again by
    /// [`crate::Node::reload_dwcp_flags`] and rewritten when the API changes the flags.
    /// `None`: a change lasts until the daemon stops.
    pub dwcp_flags_file: Option<std::path::PathBuf>,
}

/// What a node with a [`ClusterConfig`] holds while it runs.
pub(crate) struct Cluster {
    pub(crate) config: ClusterConfig,
    /// API clients of the peers, authenticated by this node's certificate.
    peers: peers::Peers,
    /// TLS client configuration of outgoing DWCP sessions.
    pub(crate) dwcp_client: Arc<rustls::ClientConfig>,
    /// The DWCP receiver's sinks and port.
    pub(crate) streams: streams::Inbox,
    /// Segments of migration streams sent and received (`None` when `store_max` is 0).
    pub(crate) content: Option<dwcp::hde::SharedStore>,
    /// DWCP feature flags in force; each stream sent takes a snapshot when it starts.
    pub(crate) flags: dwcp::flags::FlagSet,
    /// Held while the flags (and their file) change, so that a re-read and a change through
    /// the API never interleave.
    pub(crate) flags_change: tokio::sync::Mutex<()>,
    /// Migrations arriving here, by migration id.
    pub(crate) incoming: Mutex<HashMap<OperationId, Arc<Incoming>>>,
    /// Migrations leaving from here, by operation id.
    pub(crate) outgoing: Mutex<HashMap<OperationId, Arc<Outgoing>>>,
    /// Images arriving ahead of migrations, by migration id.
    pub(crate) images_in: Mutex<HashMap<OperationId, Arc<ImageIn>>>,
    /// How the last [`CONCLUDED_KEPT`] migrations that arrived here ended, oldest first: a
    /// commit repeated after its migration left `incoming` gets the same answer.
    concluded: Mutex<std::collections::VecDeque<(OperationId, String, dest::Ended)>>,
    /// Migrations ended since start: out succeeded, out failed, in succeeded, in failed.
    ended: [AtomicU64; 4],
    /// VMs being prepared to arrive: one prepare per VM at a time.
    preparing: Mutex<std::collections::HashSet<novacron_model::VmId>>,
}

/// A VM reserved for one prepare; released when dropped.
pub(crate) struct Preparing<'a> {
    cluster: &'a Cluster,
    vm: novacron_model::VmId,
}

impl Drop for Preparing<'_> {
    fn drop(&mut self) {
        self.cluster
            .preparing
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.vm);
    }
}

/// Which way a migration went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Direction {
    /// From this node.
    Out,
    /// To this node.
    In,
}

/// Why the cluster side of a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// A TLS file could not be read or used.
    #[error("could not load the node's TLS files: {0}")]
    Tls(String),
    /// The DWCP content store could not be opened.
    #[error("could not open the DWCP content store: {0}")]
    Store(String),
    /// The DWCP receiver could not listen.
    #[error("could not start the DWCP receiver on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl Cluster {
    /// Loads the TLS files, opens the content store in `store_dir` and starts the DWCP
    /// receiver.
    pub(crate) async fn start(
        config: ClusterConfig,
        scratch: &std::path::Path,
        store_dir: std::path::PathBuf,
    ) -> Result<Self, ClusterError> {
        let read = |p: &std::path::Path| {
            std::fs::read(p).map_err(|e| ClusterError::Tls(format!("{}: {e}", p.display())))
        };
        let api_tls = TlsClientOptions {
            ca_pem: read(&config.tls.ca)?,
            client_cert_pem: Some(read(&config.tls.cert)?),
            client_key_pem: Some(read(&config.tls.key)?),
        };
        let dwcp_client = dwcp::tls::client_config(&config.tls)
            .map_err(|e| ClusterError::Tls(crate::vms::chain(&e)))?;
        let dwcp_server = dwcp::tls::server_config(&config.tls)
            .map_err(|e| ClusterError::Tls(crate::vms::chain(&e)))?;
        let content = if config.store_max == 0 {
            None
        } else {
            let max = config.store_max;
            let opened =
                tokio::task::spawn_blocking(move || dwcp::hde::DiskStore::open(store_dir, max))
                    .await
                    .map_err(|e| ClusterError::Store(e.to_string()))?
                    .map_err(|e| ClusterError::Store(crate::vms::chain(&e)))?;
            tracing::info!(
                segments = opened.len(),
                bytes = opened.total_bytes(),
                max,
                "DWCP content store open"
            );
            Some(Arc::new(std::sync::Mutex::new(opened)))
        };
        let streams =
            streams::Inbox::start(config.dwcp_listen, dwcp_server, scratch, content.clone())
                .await
                .map_err(|source| ClusterError::Listen {
                    addr: config.dwcp_listen,
                    source,
                })?;
        Ok(Self {
            flags: dwcp::flags::FlagSet::new(config.dwcp_flags),
            flags_change: tokio::sync::Mutex::new(()),
            peers: peers::Peers::start(&config.peers, &api_tls),
            config,
            dwcp_client,
            streams,
            content,
            incoming: Mutex::new(HashMap::new()),
            outgoing: Mutex::new(HashMap::new()),
            images_in: Mutex::new(HashMap::new()),
            concluded: Mutex::default(),
            ended: Default::default(),
            preparing: Mutex::default(),
        })
    }

    /// The port peers send this node's DWCP sessions to.
    pub(crate) fn dwcp_port(&self) -> u16 {
        self.config
            .dwcp_advertise_port
            .unwrap_or_else(|| self.streams.port())
    }

    /// The API base URL of peer `name`.
    pub(crate) fn peer_url(&self, name: &str) -> Result<&str, ServiceError> {
        if name == self.config.node_name {
            return Err(ServiceError::Invalid {
                field: "target".to_owned(),
                message: format!("{name} is this node"),
            });
        }
        self.config
            .peers
            .get(name)
            .map(String::as_str)
            .ok_or_else(|| ServiceError::Invalid {
                field: "target".to_owned(),
                message: if self.config.peers.is_empty() {
                    format!("no peer node named {name:?}: this node knows no peers (--peer)")
                } else {
                    let known: Vec<&str> = self.config.peers.keys().map(String::as_str).collect();
                    format!("no peer node named {name:?} (known: {})", known.join(", "))
                },
            })
    }

    /// An API client of peer `name`, authenticated by this node's certificate.
    pub(crate) fn peer_client(&self, name: &str) -> Result<Client, ServiceError> {
        self.peer_url(name)?;
        self.peers.client(name).map_err(ServiceError::Unavailable)
    }

    /// Reserves `vm` for one prepare, or `None` when another is under way.
    pub(crate) fn reserve(&self, vm: novacron_model::VmId) -> Option<Preparing<'_>> {
        self.preparing
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(vm)
            .then_some(Preparing { cluster: self, vm })
    }

    /// Counts a migration that ended.
    pub(crate) fn count_ended(&self, direction: Direction, succeeded: bool) {
        let slot = match (direction, succeeded) {
            (Direction::Out, true) => &self.ended[0],
            (Direction::Out, false) => &self.ended[1],
            (Direction::In, true) => &self.ended[2],
            (Direction::In, false) => &self.ended[3],
        };
        slot.fetch_add(1, Ordering::Relaxed);
    }

    /// `(direction, result, count)` of the migrations ended since start.
    pub(crate) fn ended(&self) -> Vec<(&'static str, &'static str, u64)> {
        let [out_ok, out_failed, in_ok, in_failed] = &self.ended;
        vec![
            ("out", "succeeded", out_ok.load(Ordering::Relaxed)),
            ("out", "failed", out_failed.load(Ordering::Relaxed)),
            ("in", "succeeded", in_ok.load(Ordering::Relaxed)),
            ("in", "failed", in_failed.load(Ordering::Relaxed)),
        ]
    }

    /// Migrations arriving, by id.
    pub(crate) fn incoming(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<OperationId, Arc<Incoming>>> {
        self.incoming.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Keeps how migration `id` from `peer` ended, forgetting the oldest beyond
    /// [`CONCLUDED_KEPT`].
    pub(crate) fn conclude(&self, id: OperationId, peer: &str, ended: dest::Ended) {
        let mut concluded = self
            .concluded
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if concluded.len() >= CONCLUDED_KEPT {
            concluded.pop_front();
        }
        concluded.push_back((id, peer.to_owned(), ended));
    }

    /// How migration `id` from `peer` ended, if it ended here lately.
    pub(crate) fn concluded(&self, id: OperationId, peer: &str) -> Option<dest::Ended> {
        self.concluded
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .rev()
            .find(|(i, p, _)| *i == id && p == peer)
            .map(|(_, _, ended)| ended.clone())
    }

    /// Images arriving ahead of migrations, by migration id.
    pub(crate) fn images_in(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<OperationId, Arc<ImageIn>>> {
        self.images_in
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Migrations leaving, by operation id.
    pub(crate) fn outgoing(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<OperationId, Arc<Outgoing>>> {
        self.outgoing.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl crate::node::Node {
    /// Prometheus figures of the migrations leaving this node now.
    pub(crate) fn migration_metrics(&self) -> Vec<novacron_api::MigrationMetrics> {
        let Ok(cluster) = self.cluster() else {
            return Vec::new();
        };
        cluster
            .outgoing()
            .values()
            .map(|o| {
                let progress = o.progress();
                novacron_api::MigrationMetrics {
                    vm: o.vm.id.to_string(),
                    name: o.vm.spec.name.to_string(),
                    tenant: o.vm.tenant.to_string(),
                    target: progress.target.clone(),
                    progress,
                }
            })
            .collect()
    }

    /// Migrations ended since the daemon started.
    pub(crate) fn migrations_ended(&self) -> Vec<(&'static str, &'static str, u64)> {
        self.cluster().map(Cluster::ended).unwrap_or_default()
    }
}

/// The host part of a base URL (`https://HOST:PORT` → `HOST`, brackets kept for IPv6).
pub(crate) fn url_host(url: &str) -> Option<&str> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next()?;
    if authority.starts_with('[') {
        return authority.split_once(']').map(|(h, _)| h).and_then(|h| {
            let end = h.len() + 1;
            authority.get(..end)
        });
    }
    authority
        .rsplit_once(':')
        .map_or(Some(authority), |(h, _)| Some(h))
}

#[cfg(test)]
mod tests {
    use super::url_host;

    #[test]
    fn url_host_takes_the_host_of_any_base() {
        assert_eq!(url_host("https://127.0.0.1:8640"), Some("127.0.0.1"));
        assert_eq!(
            url_host("https://node-b.example:8640/x"),
            Some("node-b.example")
        );
        assert_eq!(url_host("node-b:1"), Some("node-b"));
        assert_eq!(url_host("https://[::1]:8640"), Some("[::1]"));
        assert_eq!(url_host("https://host"), Some("host"));
    }
}
