//! The client against the real router over loopback, with an in-memory service behind it:
//! every method reaches its route, and errors come back decoded.

use super::{Client, ClientError};
use crate::dwcp_flags::{DwcpFeatures, DwcpFlagRule, DwcpFlags, DwcpFlagsResponse};
use crate::service::{BoxFuture, Caller, NodeMetrics, NodeService, ServiceError};
use crate::types::{
    ImageImportRequest, NodeInfo, TenantPutRequest, TenantResponse, TokenCreateRequest,
    TokenCreateResponse, VmAction, VmStopRequest,
};
use futures_util::StreamExt as _;
use novacron_model::{
    ByteSize, Event, EventKind, Image, Name, Operation, OperationId, OperationKind,
    OperationStatus, Quota, Role, Timestamp, TokenId, TokenRecord, Usage, Vm, VmId, VmSpec,
    VmState,
};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::broadcast;

fn name(s: &str) -> Name {
    Name::new(s).unwrap()
}

fn vm(spec: VmSpec) -> Vm {
    Vm {
        id: VmId::random(),
        tenant: name("t"),
        spec,
        state: VmState::Stopped,
        state_reason: None,
        disks: vec![],
        runtime: None,
        created_at: Timestamp(1),
        updated_at: Timestamp(2),
    }
}

fn spec(n: &str) -> VmSpec {
    VmSpec {
        name: name(n),
        vcpus: 1,
        memory: ByteSize::mib(512),
        image: name("img"),
        disk_size: None,
    }
}

fn op(id: OperationId, kind: OperationKind, target: &str) -> Operation {
    Operation {
        id,
        tenant: name("t"),
        kind,
        target: target.to_owned(),
        status: OperationStatus::Succeeded,
        error: None,
        created_at: Timestamp(1),
        finished_at: Some(Timestamp(2)),
        migration: None,
    }
}

fn image(n: &str) -> Image {
    Image {
        name: name(n),
        disk: "/d".into(),
        disk_format: "qcow2".into(),
        virtual_size: ByteSize::mib(64),
        kernel: None,
        initrd: None,
        cmdline: None,
        created_at: Timestamp(1),
        digest: None,
    }
}

fn tenant(n: &Name, quota: Option<Quota>) -> TenantResponse {
    TenantResponse {
        name: n.clone(),
        quota: quota.unwrap_or_default(),
        usage: Usage::default(),
    }
}

/// Answers from fixed data and writes down what each call was given.
struct Stub {
    calls: Mutex<Vec<String>>,
    events: broadcast::Sender<Event>,
    flags: Mutex<DwcpFlags>,
}

impl Stub {
    fn log(&self, s: String) {
        self.calls.lock().unwrap().push(s);
    }
}

fn not_found(kind: &'static str, key: &str) -> ServiceError {
    ServiceError::NotFound {
        kind,
        key: key.to_owned(),
    }
}

impl NodeService for Stub {
    fn authenticate(&self, token: &str) -> Option<Caller> {
        let role = match token {
            "admin" => Role::Admin,
            "viewer" => Role::Viewer,
            _ => return None,
        };
        Some(Caller {
            token: TokenId::random(),
            tenant: name("t"),
            role,
        })
    }

    fn node_info(&self, caller: &Caller) -> NodeInfo {
        NodeInfo {
            hostname: "h".into(),
            version: "0".into(),
            qemu_version: "q".into(),
            accel: "tcg".into(),
            cpus: 2,
            memory: ByteSize::mib(1024),
            uptime_secs: 5,
            tenant: caller.tenant.clone(),
            role: caller.role,
            vms: vec![],
        }
    }

    fn list_vms(&self, _: &Caller) -> Vec<Vm> {
        vec![vm(spec("web"))]
    }

    fn get_vm(&self, _: &Caller, v: &str) -> Result<Vm, ServiceError> {
        self.log(format!("get_vm {v}"));
        if v == "web" {
            Ok(vm(spec("web")))
        } else {
            Err(not_found("vm", v))
        }
    }

    fn create_vm(&self, _: &Caller, spec: VmSpec) -> BoxFuture<'_, Result<Vm, ServiceError>> {
        Box::pin(async move {
            if spec.name.as_str() == "taken" {
                return Err(ServiceError::AlreadyExists {
                    kind: "vm",
                    key: "taken".into(),
                });
            }
            Ok(vm(spec))
        })
    }

    fn vm_action(
        &self,
        _: &Caller,
        v: &str,
        action: VmAction,
    ) -> BoxFuture<'_, Result<Operation, ServiceError>> {
        self.log(format!("action {v} {action:?}"));
        let kind = match action {
            VmAction::Start => OperationKind::VmStart,
            VmAction::Stop(_) => OperationKind::VmStop,
            VmAction::Pause => OperationKind::VmPause,
            VmAction::Resume => OperationKind::VmResume,
            VmAction::Restart => OperationKind::VmRestart,
        };
        let o = op(OperationId::random(), kind, v);
        Box::pin(async move { Ok(o) })
    }

    fn delete_vm(
        &self,
        _: &Caller,
        v: &str,
        force: bool,
    ) -> BoxFuture<'_, Result<Operation, ServiceError>> {
        self.log(format!("delete {v} force={force}"));
        let o = op(OperationId::random(), OperationKind::VmDelete, v);
        Box::pin(async move { Ok(o) })
    }

    fn console(
        &self,
        _: &Caller,
        v: &str,
        lines: usize,
    ) -> BoxFuture<'_, Result<String, ServiceError>> {
        let text = format!("{v}: {lines} lines\n");
        Box::pin(async move { Ok(text) })
    }

    fn list_images(&self) -> Vec<Image> {
        vec![image("img")]
    }

    fn get_image(&self, n: &str) -> Result<Image, ServiceError> {
        if n == "img" {
            Ok(image("img"))
        } else {
            Err(not_found("image", n))
        }
    }

    fn import_image(
        &self,
        _: &Caller,
        req: ImageImportRequest,
    ) -> BoxFuture<'_, Result<Operation, ServiceError>> {
        self.log(format!("import {} {}", req.name, req.disk));
        let o = op(
            OperationId::random(),
            OperationKind::ImageImport,
            req.name.as_str(),
        );
        Box::pin(async move { Ok(o) })
    }

    fn delete_image(&self, n: &str) -> BoxFuture<'_, Result<(), ServiceError>> {
        self.log(format!("delete image {n}"));
        Box::pin(async move { Ok(()) })
    }

    fn operation(&self, _: &Caller, id: OperationId) -> Result<Operation, ServiceError> {
        Ok(op(id, OperationKind::VmStart, "x"))
    }

    fn wait_operation(
        &self,
        _: &Caller,
        id: OperationId,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<Operation, ServiceError>> {
        self.log(format!("wait {}s", timeout.as_secs()));
        Box::pin(async move { Ok(op(id, OperationKind::VmStart, "x")) })
    }

    fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    fn list_tenants(&self) -> Vec<TenantResponse> {
        vec![tenant(&name("t"), None)]
    }

    fn put_tenant(
        &self,
        req: TenantPutRequest,
    ) -> BoxFuture<'_, Result<TenantResponse, ServiceError>> {
        Box::pin(async move { Ok(tenant(&req.name, req.quota)) })
    }

    fn create_token(
        &self,
        req: TokenCreateRequest,
    ) -> BoxFuture<'_, Result<TokenCreateResponse, ServiceError>> {
        Box::pin(async move {
            Ok(TokenCreateResponse {
                token: "secret".into(),
                record: TokenRecord {
                    id: TokenId::random(),
                    tenant: req.tenant,
                    role: req.role,
                    secret_hash: "h".into(),
                    label: req.label,
                    created_at: Timestamp(1),
                },
            })
        })
    }

    fn metrics(&self) -> NodeMetrics {
        NodeMetrics::default()
    }

    fn dwcp_flags(&self) -> Result<DwcpFlagsResponse, ServiceError> {
        let flags = *self.flags.lock().unwrap();
        let on = |r: DwcpFlagRule| !flags.kill_switch && r.enabled && r.rollout_percent == 100;
        Ok(DwcpFlagsResponse {
            node: "n1".into(),
            flags,
            effective: DwcpFeatures {
                hde: on(flags.hde),
                pba: on(flags.pba),
                multistream: on(flags.multistream),
                dedup_store: on(flags.dedup_store),
            },
            file: None,
        })
    }

    fn put_dwcp_flags(
        &self,
        caller: &Caller,
        flags: DwcpFlags,
    ) -> BoxFuture<'_, Result<DwcpFlagsResponse, ServiceError>> {
        self.log(format!("put flags as {}", caller.role));
        *self.flags.lock().unwrap() = flags;
        Box::pin(async move { self.dwcp_flags() })
    }
}

async fn serve() -> (Arc<Stub>, String) {
    let (events, _) = broadcast::channel(16);
    let stub = Arc::new(Stub {
        calls: Mutex::new(Vec::new()),
        events,
        flags: Mutex::new(DwcpFlags::default()),
    });
    let app = crate::app(Arc::clone(&stub) as Arc<dyn NodeService>);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (stub, format!("http://{addr}"))
}

fn calls(stub: &Stub) -> Vec<String> {
    std::mem::take(&mut *stub.calls.lock().unwrap())
}

#[tokio::test]
async fn every_vm_route_is_reached_with_its_arguments() {
    let (stub, addr) = serve().await;
    let c = Client::new(&addr, "admin").unwrap();
    c.health().await.unwrap();
    assert_eq!(c.node_info().await.unwrap().role, Role::Admin);
    assert_eq!(c.list_vms().await.unwrap().len(), 1);
    let created = c.create_vm(&spec("new")).await.unwrap();
    assert_eq!(created.spec.name.as_str(), "new");
    assert_eq!(c.get_vm("web").await.unwrap().spec.name.as_str(), "web");
    let stop = VmAction::Stop(VmStopRequest {
        timeout_secs: Some(5),
        force: true,
    });
    for action in [
        VmAction::Start,
        stop,
        VmAction::Pause,
        VmAction::Resume,
        VmAction::Restart,
    ] {
        c.vm_action("web", &action).await.unwrap();
    }
    let o = c.delete_vm("web", true).await.unwrap();
    assert_eq!(o.kind, OperationKind::VmDelete);
    c.delete_vm("web", false).await.unwrap();
    assert_eq!(c.console("web", Some(7)).await.unwrap(), "web: 7 lines\n");
    assert_eq!(c.console("web", None).await.unwrap(), "web: 100 lines\n");
    assert_eq!(
        calls(&stub),
        vec![
            "get_vm web",
            "action web Start",
            "action web Stop(VmStopRequest { timeout_secs: Some(5), force: true })",
            "action web Pause",
            "action web Resume",
            "action web Restart",
            "delete web force=true",
            "delete web force=false",
        ]
    );
}

#[tokio::test]
async fn image_operation_and_admin_routes_are_reached() {
    let (stub, addr) = serve().await;
    let c = Client::new(&addr, "admin").unwrap();
    assert_eq!(c.list_images().await.unwrap().len(), 1);
    assert_eq!(c.get_image("img").await.unwrap().disk_format, "qcow2");
    let req = ImageImportRequest {
        name: name("deb"),
        disk: "/srv/d.qcow2".into(),
        kernel: None,
        initrd: None,
        cmdline: None,
    };
    assert_eq!(
        c.import_image(&req).await.unwrap().kind,
        OperationKind::ImageImport
    );
    c.delete_image("img").await.unwrap();
    let id = OperationId::random();
    assert_eq!(c.operation(id).await.unwrap().id, id);
    assert_eq!(
        c.wait_operation(id, Duration::from_millis(1500))
            .await
            .unwrap()
            .id,
        id
    );
    assert_eq!(c.list_tenants().await.unwrap().len(), 1);
    let quota = Quota {
        max_vms: 3,
        ..Quota::default()
    };
    let t = c
        .put_tenant(&TenantPutRequest {
            name: name("blue"),
            quota: Some(quota),
        })
        .await
        .unwrap();
    assert_eq!(t.quota.max_vms, 3);
    let tok = c
        .create_token(&TokenCreateRequest {
            tenant: name("blue"),
            role: Role::Viewer,
            label: "ci".into(),
        })
        .await
        .unwrap();
    assert_eq!(
        (tok.token.as_str(), tok.record.role),
        ("secret", Role::Viewer)
    );
    assert_eq!(
        calls(&stub),
        vec!["import deb /srv/d.qcow2", "delete image img", "wait 2s"]
    );
}

#[tokio::test]
async fn refusals_come_back_as_api_errors_with_status_and_code() {
    let (stub, addr) = serve().await;
    let admin = Client::new(&addr, "admin").unwrap();
    let e = admin.get_vm("nope").await.unwrap_err();
    assert!(e.is_not_found(), "{e:?}");
    let e = admin.create_vm(&spec("taken")).await.unwrap_err();
    assert!(
        matches!(&e, ClientError::Api { status: 409, error, .. } if error == "already_exists"),
        "{e:?}"
    );
    let viewer = Client::new(&addr, "viewer").unwrap();
    let e = viewer.vm_action("web", &VmAction::Start).await.unwrap_err();
    assert_eq!(e.status(), Some(403), "{e:?}");
    let stranger = Client::new(&addr, "who").unwrap();
    let e = stranger.list_vms().await.unwrap_err();
    assert!(
        matches!(&e, ClientError::Api { status: 401, error, .. } if error == "unauthorized"),
        "{e:?}"
    );
    let e = admin.console("web", Some(1_000_000)).await.unwrap_err();
    assert_eq!(e.status(), Some(400), "{e:?}");
    // A name with characters that would change the path arrives as one segment.
    let e = admin.get_vm("a b/../c?d").await.unwrap_err();
    assert!(e.is_not_found(), "{e:?}");
    assert_eq!(calls(&stub), vec!["get_vm nope", "get_vm a b/../c?d"]);
}

#[tokio::test]
async fn events_arrive_as_model_events() {
    let (stub, addr) = serve().await;
    let c = Client::new(&addr, "admin").unwrap();
    let mut events = c.events().await.unwrap();
    let ev = Event {
        seq: 1,
        time: Timestamp(5),
        tenant: None,
        kind: EventKind::ImageImported { name: name("img") },
    };
    // The stream is open once the answer's headers are back, and the server subscribes
    // before sending them.
    stub.events.send(ev.clone()).unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), events.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(got, ev);
    let e = Client::new(&addr, "who").unwrap().events().await.err();
    assert_eq!(e.and_then(|e| e.status()), Some(401));
}

#[tokio::test]
async fn a_server_that_does_not_answer_times_out() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hold = tokio::spawn(async move {
        let (sock, _) = listener.accept().await.unwrap();
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(sock);
    });
    let c = Client::new(&addr.to_string(), "t")
        .unwrap()
        .with_timeout(Duration::from_millis(200));
    let e = c.list_vms().await.unwrap_err();
    assert!(matches!(e, ClientError::Timeout { .. }), "{e:?}");
    hold.abort();
}

#[tokio::test]
async fn dwcp_flags_are_read_and_replaced_by_admins_only() {
    let (stub, addr) = serve().await;
    let admin = Client::new(&addr, "admin").unwrap();
    let now = admin.dwcp_flags().await.unwrap();
    assert_eq!(now.flags, DwcpFlags::default());
    assert!(now.effective.hde && now.effective.multistream);
    let wanted = DwcpFlags {
        multistream: DwcpFlagRule {
            enabled: false,
            rollout_percent: 100,
        },
        ..DwcpFlags::default()
    };
    let after = admin.put_dwcp_flags(&wanted).await.unwrap();
    assert_eq!(after.flags, wanted);
    assert!(after.effective.hde && !after.effective.multistream);
    assert_eq!(admin.dwcp_flags().await.unwrap().flags, wanted);

    let viewer = Client::new(&addr, "viewer").unwrap();
    let e = viewer.dwcp_flags().await.unwrap_err();
    assert_eq!(e.status(), Some(403), "{e:?}");
    let e = viewer
        .put_dwcp_flags(&DwcpFlags::default())
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(403), "{e:?}");

    // An unknown key never reaches the service.
    let app = crate::app(Arc::clone(&stub) as Arc<dyn NodeService>);
    let request = axum::http::Request::put("/api/v1/node/dwcp-flags")
        .header("authorization", "Bearer admin")
        .header("content-type", "application/json")
        .body(axum::body::Body::from(
            r#"{"hde":{"enabled":true},"turbo":true}"#,
        ))
        .unwrap();
    let answer = tower::ServiceExt::oneshot(app, request).await.unwrap();
    assert_eq!(answer.status().as_u16(), 400);
    let body = axum::body::to_bytes(answer.into_body(), 1 << 16)
        .await
        .unwrap();
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["error"], "invalid_json", "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("unknown field `turbo`"),
        "{body}"
    );
    assert_eq!(calls(&stub), vec!["put flags as admin"]);
    assert_eq!(admin.dwcp_flags().await.unwrap().flags, wanted);
}
