//! [`NodeService`] for [`Node`]: each call delegates to the file that owns its concern.

use crate::node::Node;
use novacron_api::dwcp_flags::{DwcpFlags, DwcpFlagsResponse};
use novacron_api::migration::{
    PeerCommitted, PeerImageAnswer, PeerImageOffer, PeerNode, PeerPrepareRequest,
    PeerPrepareResponse, VmMigrateRequest,
};
use novacron_api::types::{
    ImageImportRequest, NodeInfo, StateCount, TenantPutRequest, TenantResponse, TokenCreateRequest,
    TokenCreateResponse, VmAction,
};
use novacron_api::{BoxFuture, Caller, NodeMetrics, NodeService, ProcessMetrics, ServiceError};
use novacron_model::{ByteSize, Event, Image, Operation, OperationId, Vm, VmSpec, VmState};
use novacron_qemu::ProcessStats;
use std::time::Duration;
use tokio::sync::broadcast;

fn count_states<'a>(vms: impl Iterator<Item = &'a Vm>) -> Vec<(VmState, u64)> {
    let mut counts: Vec<(VmState, u64)> = VmState::ALL.iter().map(|s| (*s, 0)).collect();
    for vm in vms {
        if let Some(c) = counts.iter_mut().find(|(s, _)| *s == vm.state) {
            c.1 = c.1.saturating_add(1);
        }
    }
    counts
}

impl NodeService for Node {
    fn authenticate(&self, token: &str) -> Option<Caller> {
        self.authenticate_token(token)
    }

    fn node_info(&self, caller: &Caller) -> NodeInfo {
        let vms = self.vm_list(caller);
        NodeInfo {
            hostname: self.inner.hostname.clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            qemu_version: self.inner.qemu_version.clone(),
            accel: self.inner.accel_note.clone(),
            cpus: crate::host::cpus(),
            memory: ByteSize(crate::host::memory_bytes()),
            uptime_secs: self.inner.started.elapsed().as_secs(),
            tenant: caller.tenant.clone(),
            role: caller.role,
            vms: count_states(vms.iter())
                .into_iter()
                .map(|(state, count)| StateCount { state, count })
                .collect(),
        }
    }

    fn list_vms(&self, caller: &Caller) -> Vec<Vm> {
        self.vm_list(caller)
    }

    fn list_vms_json(&self, caller: &Caller, after: Option<&str>, limit: usize) -> bytes::Bytes {
        self.vm_list_json(caller, after, limit)
    }

    fn get_vm(&self, caller: &Caller, vm: &str) -> Result<Vm, ServiceError> {
        self.resolve(caller, vm)
    }

    fn create_vm(&self, caller: &Caller, spec: VmSpec) -> BoxFuture<'_, Result<Vm, ServiceError>> {
        let caller = caller.clone();
        Box::pin(async move { self.vm_create(&caller, spec).await })
    }

    fn vm_action(
        &self,
        caller: &Caller,
        vm: &str,
        action: VmAction,
    ) -> BoxFuture<'_, Result<Operation, ServiceError>> {
        let caller = caller.clone();
        let vm = vm.to_owned();
        Box::pin(async move { self.vm_act(&caller, &vm, action).await })
    }

    fn delete_vm(
        &self,
        caller: &Caller,
        vm: &str,
        force: bool,
    ) -> BoxFuture<'_, Result<Operation, ServiceError>> {
        let caller = caller.clone();
        let vm = vm.to_owned();
        Box::pin(async move { self.vm_delete(&caller, &vm, force).await })
    }

    fn console(
        &self,
        caller: &Caller,
        vm: &str,
        lines: usize,
    ) -> BoxFuture<'_, Result<String, ServiceError>> {
        let caller = caller.clone();
        let vm = vm.to_owned();
        Box::pin(async move { self.vm_console(&caller, &vm, lines).await })
    }

    fn list_images(&self) -> Vec<Image> {
        self.store().images()
    }

    fn get_image(&self, name: &str) -> Result<Image, ServiceError> {
        self.image_get(name)
    }

    fn import_image(
        &self,
        caller: &Caller,
        req: ImageImportRequest,
    ) -> BoxFuture<'_, Result<Operation, ServiceError>> {
        let caller = caller.clone();
        Box::pin(async move { self.image_import(&caller, req).await })
    }

    fn delete_image(&self, name: &str) -> BoxFuture<'_, Result<(), ServiceError>> {
        let name = name.to_owned();
        Box::pin(async move { self.image_delete(&name).await })
    }

    fn operation(&self, caller: &Caller, id: OperationId) -> Result<Operation, ServiceError> {
        self.op_get(caller, id)
            .map(|op| self.with_live_progress(op))
    }

    fn wait_operation(
        &self,
        caller: &Caller,
        id: OperationId,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<Operation, ServiceError>> {
        let caller = caller.clone();
        Box::pin(async move {
            self.op_wait(&caller, id, timeout)
                .await
                .map(|op| self.with_live_progress(op))
        })
    }

    fn migrate_vm(
        &self,
        caller: &Caller,
        vm: &str,
        req: VmMigrateRequest,
    ) -> BoxFuture<'_, Result<Operation, ServiceError>> {
        let caller = caller.clone();
        let vm = vm.to_owned();
        Box::pin(async move { self.migrate_out(&caller, &vm, req).await })
    }

    fn cancel_operation(
        &self,
        caller: &Caller,
        id: OperationId,
    ) -> BoxFuture<'_, Result<Operation, ServiceError>> {
        let result = self.migrate_cancel(caller, id);
        Box::pin(async move { result })
    }

    fn dwcp_flags(&self) -> Result<DwcpFlagsResponse, ServiceError> {
        self.dwcp_flags_get()
    }

    fn put_dwcp_flags(
        &self,
        caller: &Caller,
        flags: DwcpFlags,
    ) -> BoxFuture<'_, Result<DwcpFlagsResponse, ServiceError>> {
        let caller = caller.clone();
        Box::pin(async move { self.dwcp_flags_put(&caller, flags).await })
    }

    fn peer_image_offer(
        &self,
        peer: &PeerNode,
        migration: OperationId,
        offer: PeerImageOffer,
    ) -> BoxFuture<'_, Result<PeerImageAnswer, ServiceError>> {
        let peer = peer.clone();
        Box::pin(async move { self.peer_image_offer_in(&peer, migration, offer).await })
    }

    fn peer_image_commit(
        &self,
        peer: &PeerNode,
        migration: OperationId,
    ) -> BoxFuture<'_, Result<Image, ServiceError>> {
        let peer = peer.clone();
        Box::pin(async move { self.peer_image_commit_in(&peer, migration).await })
    }

    fn peer_prepare(
        &self,
        peer: &PeerNode,
        req: PeerPrepareRequest,
    ) -> BoxFuture<'_, Result<PeerPrepareResponse, ServiceError>> {
        let peer = peer.clone();
        Box::pin(async move { self.peer_prepare_in(&peer, req).await })
    }

    fn peer_commit(
        &self,
        peer: &PeerNode,
        migration: OperationId,
    ) -> BoxFuture<'_, Result<PeerCommitted, ServiceError>> {
        let peer = peer.clone();
        Box::pin(async move { self.peer_commit_in(&peer, migration).await })
    }

    fn peer_abort(
        &self,
        peer: &PeerNode,
        migration: OperationId,
    ) -> BoxFuture<'_, Result<(), ServiceError>> {
        let peer = peer.clone();
        Box::pin(async move { self.peer_abort_in(&peer, migration).await })
    }

    fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.inner.events.subscribe()
    }

    fn list_tenants(&self) -> Vec<TenantResponse> {
        self.tenant_list()
    }

    fn put_tenant(
        &self,
        req: TenantPutRequest,
    ) -> BoxFuture<'_, Result<TenantResponse, ServiceError>> {
        Box::pin(async move { self.tenant_put(req).await })
    }

    fn create_token(
        &self,
        req: TokenCreateRequest,
    ) -> BoxFuture<'_, Result<TokenCreateResponse, ServiceError>> {
        Box::pin(async move { self.token_create(req).await })
    }

    fn metrics(&self) -> NodeMetrics {
        let vms = self.store().vms(None);
        let processes = vms
            .iter()
            .filter_map(|vm| {
                let rt = vm.runtime.as_ref()?;
                let stats = ProcessStats::read(rt.pid).ok()?;
                Some(ProcessMetrics {
                    vm: vm.id.to_string(),
                    name: vm.spec.name.to_string(),
                    tenant: vm.tenant.to_string(),
                    cpu_seconds: stats.cpu_seconds,
                    rss_bytes: stats.rss_bytes,
                })
            })
            .collect();
        let (dwcp_features, dwcp_kill_switch) = self.dwcp_flag_metrics();
        NodeMetrics {
            vms_by_state: count_states(vms.iter()),
            processes,
            migrations: self.migration_metrics(),
            migrations_ended: self.migrations_ended(),
            dwcp_features,
            dwcp_kill_switch,
        }
    }
}
