//! Tenants are isolated: another tenant's VM is "not found", never "forbidden"; roles limit
//! what a token may do; no token, no access.

use crate::fixtures::Daemon;
use serde_json::json;

#[test]
fn tenants_see_and_touch_only_their_own_vms() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path());
    let admin = d.admin();
    admin.import_guest();
    let a = d.api(&admin.tenant_token("tenant-a", "operator"));
    let b = d.api(&admin.tenant_token("tenant-b", "operator"));
    let vm = a.create_vm("web");
    let id = vm["id"].as_str().unwrap();

    // B cannot see it by id or by name, in lists, or act on it: always 404.
    assert_eq!(b.get("/api/v1/vms").1["items"], json!([]));
    for path in [
        format!("/api/v1/vms/{id}"),
        "/api/v1/vms/web".to_owned(),
        format!("/api/v1/vms/{id}/console"),
    ] {
        let (s, e) = b.get(&path);
        assert_eq!(s, 404, "{path}: {e}");
        assert_eq!(e["error"], "not_found");
    }
    for action in ["start", "stop", "pause", "resume", "restart"] {
        let (s, e) = b.post_empty(&format!("/api/v1/vms/{id}/{action}"));
        assert_eq!(s, 404, "{action}: {e}");
    }
    assert_eq!(b.delete(&format!("/api/v1/vms/{id}?force=true")).0, 404);
    // B may use the same name in its own namespace.
    b.create_vm("web");
    assert_eq!(a.get("/api/v1/vms").1["items"].as_array().unwrap().len(), 1);
    assert_eq!(a.get(&format!("/api/v1/vms/{id}")).0, 200);

    // An operation id of A's is not B's either.
    let (_, op) = a.delete("/api/v1/vms/web");
    let op_id = op["operation"]["id"].as_str().unwrap();
    assert_eq!(b.get(&format!("/api/v1/operations/{op_id}")).0, 404);
    assert_eq!(a.get(&format!("/api/v1/operations/{op_id}")).0, 200);
}

#[test]
fn roles_and_tokens_are_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path());
    let admin = d.admin();
    admin.import_guest();
    let viewer = d.api(&admin.tenant_token("ro", "viewer"));
    let operator = d.api(&admin.tenant_token("ops", "operator"));

    let (s, e) = viewer.post(
        "/api/v1/vms",
        &json!({"name": "x", "vcpus": 1, "memory": "64M", "image": "guest"}),
    );
    assert_eq!(s, 403, "{e}");
    assert_eq!(e["error"], "forbidden");
    assert_eq!(viewer.get("/api/v1/vms").0, 200);
    // Operators may not import images or issue tokens.
    let (s, _) = operator.post("/api/v1/tokens", &json!({"tenant": "ops", "role": "admin"}));
    assert_eq!(s, 403);
    let (s, _) = operator.post(
        "/api/v1/images",
        &json!({"name": "i", "disk": "/nonexistent"}),
    );
    assert_eq!(s, 403);

    let (s, e) = admin.anonymous().get("/api/v1/vms");
    assert_eq!(s, 401, "{e}");
    assert_eq!(e["error"], "unauthorized");
    let (s, _) = d.api("nct_not-a-real-token").get("/api/v1/vms");
    assert_eq!(s, 401);
    // Health and metrics need no token.
    assert_eq!(admin.anonymous().get("/healthz").0, 200);
}
