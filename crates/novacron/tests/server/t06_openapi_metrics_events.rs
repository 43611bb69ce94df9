//! The OpenAPI document lists the routes the daemon serves; metrics and the event stream
//! report what happens.

use crate::fixtures::Daemon;
use std::io::{BufRead, BufReader};
use std::time::Duration;

#[test]
fn openapi_document_matches_the_routes() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path());
    let api = d.admin();
    let (s, doc) = api.get("/api/v1/openapi.json");
    assert_eq!(s, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{doc}");
    let paths = doc["paths"].as_object().unwrap();
    let mut listed: Vec<String> = Vec::new();
    for (path, item) in paths {
        for method in ["get", "post", "delete", "put", "patch"] {
            if item.get(method).is_some() {
                listed.push(format!("{} {path}", method.to_uppercase()));
            }
        }
    }
    listed.sort();
    let expected = [
        "DELETE /api/v1/images/{name}",
        "DELETE /api/v1/peer/migrations/{id}",
        "DELETE /api/v1/vms/{vm}",
        "GET /api/v1/events",
        "GET /api/v1/images",
        "GET /api/v1/images/{name}",
        "GET /api/v1/node",
        "GET /api/v1/node/dwcp-flags",
        "GET /api/v1/operations/{id}",
        "GET /api/v1/operations/{id}/wait",
        "GET /api/v1/tenants",
        "GET /api/v1/vms",
        "GET /api/v1/vms/{vm}",
        "GET /api/v1/vms/{vm}/console",
        "POST /api/v1/images",
        "POST /api/v1/operations/{id}/cancel",
        "POST /api/v1/peer/migrations",
        "POST /api/v1/peer/migrations/{id}/commit",
        "POST /api/v1/peer/migrations/{id}/image",
        "POST /api/v1/peer/migrations/{id}/image/commit",
        "POST /api/v1/tenants",
        "POST /api/v1/tokens",
        "POST /api/v1/vms",
        "POST /api/v1/vms/{vm}/migrate",
        "POST /api/v1/vms/{vm}/pause",
        "POST /api/v1/vms/{vm}/restart",
        "POST /api/v1/vms/{vm}/resume",
        "POST /api/v1/vms/{vm}/start",
        "POST /api/v1/vms/{vm}/stop",
        "PUT /api/v1/node/dwcp-flags",
    ];
    assert_eq!(listed, expected);
    // Every documented route is served: no unauthenticated call gets the fallback 404. The
    // calls between nodes want a node certificate rather than a token.
    for entry in &listed {
        let (method, path) = entry.split_once(' ').unwrap();
        let path = path
            .replace("{vm}", "x")
            .replace("{name}", "x")
            .replace("{id}", "x");
        let url = format!("{}{path}", api.base);
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let resp = reqwest::blocking::Client::new()
            .request(method, url)
            .send()
            .unwrap();
        let want = if path.starts_with("/api/v1/peer/") {
            403
        } else {
            401
        };
        assert_eq!(resp.status().as_u16(), want, "{entry} is not served");
    }
}

#[test]
fn metrics_and_events_report_vm_changes() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path());
    let api = d.admin();
    api.import_guest();

    // Follow the event stream while a VM is created and started.
    let resp = api.open_events();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(resp).lines().map_while(Result::ok) {
            if let Some(data) = line.strip_prefix("data: ") {
                if tx.send(data.to_owned()).is_err() {
                    break;
                }
            }
        }
    });
    api.create_vm("watched");
    api.act_ok("watched", "start");
    let mut seen = Vec::new();
    while !seen
        .iter()
        .any(|e: &serde_json::Value| e["type"] == "operation_done")
    {
        let data = rx.recv_timeout(Duration::from_secs(60)).expect("event");
        seen.push(serde_json::from_str(&data).unwrap());
    }
    let kinds: Vec<String> = seen
        .iter()
        .map(|e| {
            let to = e["to"]
                .as_str()
                .map(|t| format!(":{t}"))
                .unwrap_or_default();
            format!("{}{to}", e["type"].as_str().unwrap())
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "vm_created",
            "vm_state:starting",
            "vm_state:running",
            "operation_done"
        ],
        "{seen:?}"
    );
    assert!(
        seen.windows(2)
            .all(|w| w[0]["seq"].as_u64() < w[1]["seq"].as_u64())
    );

    let text = api.get_text("/metrics");
    assert!(text.contains("novacron_vms{state=\"running\"} 1"), "{text}");
    let rss = text
        .lines()
        .find(|l| l.starts_with("novacron_qemu_resident_bytes{") && l.contains("name=\"watched\""))
        .unwrap_or_else(|| panic!("no QEMU RSS in\n{text}"));
    let bytes: f64 = rss.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(bytes > 1e6, "{rss}");
    assert!(text.contains("novacron_qemu_cpu_seconds{"), "{text}");
    assert!(
        text.lines().any(
            |l| l.starts_with("novacron_api_request_duration_seconds_bucket{")
                && l.contains("le=\"+Inf\",method=\"POST\",route=\"/api/v1/vms\",status=\"201\"}")
                && l.ends_with(" 1")
        ),
        "{text}"
    );
    assert_eq!(api.get_text("/healthz"), "ok\n");
}
