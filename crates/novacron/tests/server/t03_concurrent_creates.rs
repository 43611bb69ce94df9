//! 20 concurrent creates: all succeed, or exactly the quota does; nothing is half-created.

use crate::fixtures::Daemon;
use serde_json::json;

fn create_many(
    api: &crate::fixtures::Api,
    prefix: &str,
    n: usize,
) -> Vec<(u16, serde_json::Value)> {
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .map(|i| {
                s.spawn(move || {
                    api.post(
                        "/api/v1/vms",
                        &json!({"name": format!("{prefix}-{i}"), "vcpus": 1, "memory": "64M", "image": "guest"}),
                    )
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

#[test]
fn twenty_concurrent_creates_all_succeed_and_a_quota_holds_under_concurrency() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path());
    let admin = d.admin();
    admin.import_guest();

    let results = create_many(&admin, "many", 20);
    for (s, v) in &results {
        assert_eq!(*s, 201, "{v}");
    }
    let (_, list) = admin.get("/api/v1/vms");
    assert_eq!(list["items"].as_array().unwrap().len(), 20);
    assert!(list["next"].is_null());

    // Pages of 7: 7 + 7 + 6, in name order, each VM once.
    let mut names = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let q = after
            .as_ref()
            .map(|a| format!("&after={a}"))
            .unwrap_or_default();
        let (s, page) = admin.get(&format!("/api/v1/vms?limit=7{q}"));
        assert_eq!(s, 200, "{page}");
        pages += 1;
        names.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v["spec"]["name"].as_str().unwrap().to_owned()),
        );
        match page["next"].as_str() {
            Some(n) => after = Some(n.to_owned()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let mut sorted = names.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(names, sorted);
    assert_eq!(names.len(), 20);
    for bad in ["limit=0", "limit=1001", "limit=x", "colour=red"] {
        let (s, e) = admin.get(&format!("/api/v1/vms?{bad}"));
        assert_eq!(
            (s, e["error"].as_str()),
            (400, Some("invalid_parameter")),
            "{bad}: {e}"
        );
    }

    // A tenant with a quota of 10 VMs: exactly 10 of 20 concurrent creates succeed.
    let (s, v) = admin.post(
        "/api/v1/tenants",
        &json!({"name": "small", "quota": {"max_vms": 10, "max_vcpus": 100, "max_memory": "100G"}}),
    );
    assert_eq!(s, 200, "{v}");
    let (_, t) = admin.post(
        "/api/v1/tokens",
        &json!({"tenant": "small", "role": "operator"}),
    );
    let small = d.api(t["token"].as_str().unwrap());
    let results = create_many(&small, "q", 20);
    let ok = results.iter().filter(|(s, _)| *s == 201).count();
    assert_eq!(ok, 10, "{results:?}");
    for (s, v) in results.iter().filter(|(s, _)| *s != 201) {
        assert_eq!(*s, 409, "{v}");
        assert_eq!(v["error"], "quota_exceeded", "{v}");
        assert!(
            v["message"]
                .as_str()
                .unwrap()
                .contains("vms quota exceeded"),
            "{v}"
        );
    }
    // Nothing half-created: one directory per stored VM.
    let dirs = std::fs::read_dir(d.data.join("vms")).unwrap().count();
    assert_eq!(dirs, 30);
}
