//! [`Node`]: the state every request shares, opening the data directory, and the helpers
//! the service files build on (store access, state transitions, VM lookup).

use crate::events::EventBus;
use crate::layout::Layout;
use novacron_api::{Caller, ServiceError};
use novacron_model::{EventKind, Name, Vm, VmId, VmRuntime, VmState};
use novacron_qemu::{Accel, QemuProcess};
use novacron_store::{Command, RedbStore, Store, StoreError};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How a node is set up.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// Data directory (store, images, VM disks and run files).
    pub data_dir: PathBuf,
    /// Accelerator to use; `None` probes KVM and falls back to TCG.
    pub accel: Option<Accel>,
    /// Default wait for an ACPI power-down before QEMU is stopped by force.
    pub stop_timeout: Duration,
    /// Peers and certificates for live migration; `None`: this node does not migrate.
    pub cluster: Option<crate::migrate::ClusterConfig>,
}

impl NodeConfig {
    /// Defaults for `data_dir`: probe the accelerator, 30 s stop timeout.
    #[must_use]
    pub fn new(data_dir: PathBuf) -> Self {
        Self {
            data_dir,
            accel: None,
            stop_timeout: Duration::from_secs(30),
            cluster: None,
        }
    }
}

/// Why the node could not open.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The data directory could not be created or used.
    #[error("could not use data directory {path}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The store could not be opened.
    #[error("could not open the state store")]
    Store(#[source] StoreError),
    /// The first admin token could not be made.
    #[error("could not create the first admin token: {0}")]
    Bootstrap(String),
    /// The certificates or the DWCP receiver for migrations could not be set up.
    #[error(transparent)]
    Cluster(#[from] crate::migrate::ClusterError),
}

/// What a node holds while it runs; cheap to clone.
#[derive(Clone)]
pub struct Node {
    pub(crate) inner: Arc<NodeInner>,
}

pub(crate) struct NodeInner {
    pub(crate) config: NodeConfig,
    pub(crate) layout: Layout,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) events: EventBus,
    pub(crate) accel: Accel,
    pub(crate) accel_note: String,
    pub(crate) qemu_version: String,
    pub(crate) hostname: String,
    pub(crate) started: Instant,
    /// QEMU processes this daemon supervises, by VM.
    pub(crate) processes: Mutex<HashMap<VmId, Arc<QemuProcess>>>,
    /// Image names being imported now (not yet in the store).
    pub(crate) importing: Mutex<std::collections::HashSet<Name>>,
    /// Bumped after every change to the store; tags cached answers.
    pub(crate) generation: AtomicU64,
    /// Serialized VM list pages by (tenant, after, limit), with the generation they were
    /// made at.
    pub(crate) list_cache: Mutex<HashMap<ListKey, (u64, bytes::Bytes)>>,
    /// Live migration: peers, certificates, the DWCP receiver and migrations under way.
    pub(crate) cluster: Option<crate::migrate::Cluster>,
}

/// Key of a cached VM list page.
pub(crate) type ListKey = (Name, Option<String>, usize);

/// Most cached list pages; the cache is emptied when it holds more.
const LIST_CACHE_ENTRIES: usize = 1024;

impl Node {
    /// Opens the data directory: the store, the admin token on first start, and the VMs
    /// whose QEMU still runs (re-attached) or died meanwhile (marked failed).
    ///
    /// Returns the node and, on first start only, the path of the admin token file.
    ///
    /// # Errors
    /// [`NodeError`] when the directory or store cannot be used.
    pub async fn open(config: NodeConfig) -> Result<(Self, Option<PathBuf>), NodeError> {
        let layout = Layout::new(config.data_dir.clone());
        for dir in [layout.root().to_path_buf(), layout.images(), layout.vms()] {
            std::fs::create_dir_all(&dir).map_err(|source| NodeError::DataDir {
                path: dir.clone(),
                source,
            })?;
        }
        let store_path = layout.store();
        let store = tokio::task::spawn_blocking(move || RedbStore::open(store_path))
            .await
            .map_err(|e| NodeError::Bootstrap(format!("store open task failed: {e}")))?
            .map_err(NodeError::Store)?;
        let cluster = match config.cluster.clone() {
            Some(c) => {
                let scratch = layout.root().join("dwcp");
                std::fs::create_dir_all(&scratch).map_err(|source| NodeError::DataDir {
                    path: scratch.clone(),
                    source,
                })?;
                let store = layout.root().join("dwcp-store");
                Some(crate::migrate::Cluster::start(c, &scratch, store).await?)
            }
            None => None,
        };
        let (accel, accel_note) = match config.accel {
            Some(a) => (a, format!("{} (configured)", a.qemu_name())),
            None => {
                let a = novacron_qemu::probe_kvm();
                (a, format!("{} (probed)", a.qemu_name()))
            }
        };
        let node = Self {
            inner: Arc::new(NodeInner {
                layout,
                store: Arc::new(store),
                events: EventBus::new(),
                accel,
                accel_note,
                qemu_version: crate::host::qemu_version().await,
                hostname: crate::host::hostname(),
                started: Instant::now(),
                processes: Mutex::new(HashMap::new()),
                importing: Mutex::new(std::collections::HashSet::new()),
                generation: AtomicU64::new(0),
                list_cache: Mutex::new(HashMap::new()),
                cluster,
                config,
            }),
        };
        let token_path = match node.bootstrap_admin().await? {
            Some(secret) => Some(node.write_admin_token(&secret)?),
            None => None,
        };
        node.recover().await;
        node.seed_held_images();
        Ok((node, token_path))
    }

    fn write_admin_token(&self, secret: &str) -> Result<PathBuf, NodeError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let path = self.inner.layout.admin_token();
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .and_then(|mut f| f.write_all(format!("{secret}\n").as_bytes()).map(|()| f))
            .map_err(|source| NodeError::DataDir {
                path: path.clone(),
                source,
            })?;
        f.flush().map_err(|source| NodeError::DataDir {
            path: path.clone(),
            source,
        })?;
        Ok(path)
    }

    /// The migration side of the node, or why there is none.
    pub(crate) fn cluster(&self) -> Result<&crate::migrate::Cluster, ServiceError> {
        self.inner.cluster.as_ref().ok_or_else(|| {
            ServiceError::Unavailable(
                "this node takes no part in live migrations: start it with --tls-dir, --node and --peer"
                    .to_owned(),
            )
        })
    }

    /// The port of the node's DWCP receiver, when it migrates.
    #[must_use]
    pub fn dwcp_port(&self) -> Option<u16> {
        self.inner.cluster.as_ref().map(|c| c.streams.port())
    }

    /// The store.
    pub(crate) fn store(&self) -> &dyn Store {
        self.inner.store.as_ref()
    }

    /// The data directory layout.
    pub(crate) fn layout(&self) -> &Layout {
        &self.inner.layout
    }

    /// Applies a command off the reactor (a commit waits for the disk).
    pub(crate) async fn apply(&self, cmd: Command) -> Result<(), ServiceError> {
        let store = Arc::clone(&self.inner.store);
        let result = tokio::task::spawn_blocking(move || store.apply(cmd))
            .await
            .map_err(|e| ServiceError::Internal(format!("store task failed: {e}")))?
            .map_err(service_error);
        // After the commit: a reader that saw the old generation may have cached the old
        // state, and will find its entry stale.
        self.inner.generation.fetch_add(1, Ordering::AcqRel);
        result
    }

    /// One page of the caller's VMs as JSON, serialized once per store change.
    pub(crate) fn vm_list_json(
        &self,
        caller: &Caller,
        after: Option<&str>,
        limit: usize,
    ) -> bytes::Bytes {
        // Read the generation before the store, so a change in between makes the entry stale.
        let generation = self.inner.generation.load(Ordering::Acquire);
        let key: ListKey = (caller.tenant.clone(), after.map(str::to_owned), limit);
        {
            let cache = self
                .inner
                .list_cache
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some((g, body)) = cache.get(&key) {
                if *g == generation {
                    return body.clone();
                }
            }
        }
        let vms = self.store().vms(Some(&caller.tenant));
        let body = novacron_api::types::VmListResponse::page_json(&vms, after, limit);
        let mut cache = self
            .inner
            .list_cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= LIST_CACHE_ENTRIES {
            cache.clear();
        }
        cache.insert(key, (generation, body.clone()));
        body
    }

    /// The supervised QEMU of `vm`, if any.
    pub(crate) fn process(&self, vm: VmId) -> Option<Arc<QemuProcess>> {
        self.inner
            .processes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&vm)
            .cloned()
    }

    pub(crate) fn set_process(&self, vm: VmId, p: Option<Arc<QemuProcess>>) {
        let mut map = self
            .inner
            .processes
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match p {
            Some(p) => map.insert(vm, p),
            None => map.remove(&vm),
        };
    }

    /// Finds one of the caller's VMs by id or name; anyone else's is "not found".
    pub(crate) fn resolve(&self, caller: &Caller, vm: &str) -> Result<Vm, ServiceError> {
        let not_found = || ServiceError::NotFound {
            kind: "vm",
            key: vm.to_owned(),
        };
        let found = if let Ok(id) = vm.parse::<VmId>() {
            self.store().vm(id)
        } else {
            let name = Name::new(vm).map_err(|_| not_found())?;
            self.store().vm_by_name(&caller.tenant, &name)
        };
        found
            .filter(|v| v.tenant == caller.tenant)
            .ok_or_else(not_found)
    }

    /// Moves `vm` from `from` to `to` if it is still in `from`, with `reason` and `runtime`,
    /// and publishes the change.
    pub(crate) async fn transition(
        &self,
        vm: &Vm,
        from: VmState,
        to: VmState,
        reason: Option<String>,
        runtime: Option<VmRuntime>,
    ) -> Result<Vm, ServiceError> {
        let mut next = vm.clone();
        next.state = to;
        next.state_reason = reason.clone();
        next.runtime = runtime;
        next.updated_at = novacron_model::Timestamp::now();
        self.apply(Command::UpdateVm {
            vm: next.clone(),
            expect_state: from,
        })
        .await?;
        tracing::info!(vm = %vm.id, name = %vm.spec.name, %from, %to, reason = reason.as_deref().unwrap_or(""), "vm state");
        self.inner.events.publish(
            Some(vm.tenant.clone()),
            EventKind::VmState {
                vm: vm.id,
                name: vm.spec.name.clone(),
                from,
                to,
                reason,
            },
        );
        Ok(next)
    }
}

/// Maps a store refusal or failure to what the API says. Exhaustive: a new store error must
/// be placed here.
pub(crate) fn service_error(e: StoreError) -> ServiceError {
    match e {
        StoreError::NotFound { kind, key } => ServiceError::NotFound { kind, key },
        StoreError::AlreadyExists { kind, key } => ServiceError::AlreadyExists { kind, key },
        e @ StoreError::QuotaExceeded { .. } => ServiceError::QuotaExceeded(e.to_string()),
        e @ (StoreError::Conflict { .. } | StoreError::InUse { .. }) => {
            ServiceError::Conflict(e.to_string())
        }
        StoreError::Immutable { field } => ServiceError::Invalid {
            field: field.to_owned(),
            message: "cannot be changed after the VM is created".to_owned(),
        },
        StoreError::Invalid { message } => ServiceError::Conflict(message),
        e @ (StoreError::Database(_)
        | StoreError::Corrupt { .. }
        | StoreError::Encode { .. }
        | StoreError::SchemaTooNew { .. }) => {
            tracing::error!(error = %e, source = ?std::error::Error::source(&e), "store failure");
            ServiceError::Internal("the state store failed; see the node's log".to_owned())
        }
    }
}
