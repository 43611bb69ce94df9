//! Bad input gets a 4xx with a JSON body naming the problem, and changes nothing.

use crate::fixtures::Daemon;
use serde_json::json;

/// Body, content type, expected status, error code and field.
type Case = (
    Vec<u8>,
    &'static str,
    u16,
    &'static str,
    Option<&'static str>,
);

#[test]
fn malformed_requests_get_json_errors_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path());
    let api = d.admin();
    api.import_guest();
    let json = "application/json";

    let cases: Vec<Case> = vec![
        (
            b"{\"name\": \"a\",".to_vec(),
            json,
            400,
            "invalid_json",
            None,
        ),
        (b"not json".to_vec(), json, 400, "invalid_json", None),
        (
            br#"{"name":"a","vcpus":"two","memory":"64M","image":"guest"}"#.to_vec(),
            json,
            400,
            "invalid_json",
            Some("vcpus"),
        ),
        (
            br#"{"name":"a","vcpus":1,"memory":"lots","image":"guest"}"#.to_vec(),
            json,
            400,
            "invalid_json",
            Some("memory"),
        ),
        (
            br#"{"name":"a","vcpus":1,"memory":"64M","image":"guest","gpu":1}"#.to_vec(),
            json,
            400,
            "invalid_json",
            None,
        ),
        (
            br#"{"name":"Bad Name","vcpus":1,"memory":"64M","image":"guest"}"#.to_vec(),
            json,
            400,
            "invalid_json",
            Some("name"),
        ),
        (
            br#"{"name":"a","memory":"64M","image":"guest"}"#.to_vec(),
            json,
            400,
            "invalid_json",
            None,
        ),
        (
            br#"{"name":"a","vcpus":1000,"memory":"64M","image":"guest"}"#.to_vec(),
            json,
            422,
            "invalid_field",
            Some("vcpus"),
        ),
        (
            br#"{"name":"a","vcpus":1,"memory":"4T","image":"guest"}"#.to_vec(),
            json,
            422,
            "invalid_field",
            Some("memory"),
        ),
        (
            br#"{"name":"a","vcpus":99999999999,"memory":"64M","image":"guest"}"#.to_vec(),
            json,
            400,
            "invalid_json",
            Some("vcpus"),
        ),
        (
            br#"{"name":"a","vcpus":1,"memory":"64M","image":"nope"}"#.to_vec(),
            json,
            422,
            "invalid_field",
            Some("image"),
        ),
        (
            br#"{"name":"a","vcpus":1,"memory":"64M","image":"guest"}"#.to_vec(),
            "text/plain",
            415,
            "not_json",
            None,
        ),
        (vec![b' '; 200 * 1024], json, 413, "too_large", None),
    ];
    for (body, ctype, status, code, field) in cases {
        let shown = String::from_utf8_lossy(&body[..body.len().min(80)]).into_owned();
        let (s, e) = api.post_raw("/api/v1/vms", ctype, body);
        assert_eq!(s, status, "{shown}: {e}");
        assert_eq!(e["error"], code, "{shown}: {e}");
        assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{e}");
        if let Some(f) = field {
            assert_eq!(e["field"], f, "{shown}: {e}");
        }
    }
    // Unknown field message names the field.
    let (_, e) = api.post_raw(
        "/api/v1/vms",
        json,
        br#"{"name":"a","vcpus":1,"memory":"64M","image":"guest","gpu":1}"#.to_vec(),
    );
    assert!(e["message"].as_str().unwrap().contains("gpu"), "{e}");
    // Nothing was created by any of them.
    assert_eq!(api.get("/api/v1/vms").1["items"], json!([]));
    assert_eq!(std::fs::read_dir(d.data.join("vms")).unwrap().count(), 0);

    // Bad parameters and paths.
    let (s, e) = api.get("/api/v1/operations/not-a-uuid");
    assert_eq!(
        (s, e["error"].as_str()),
        (400, Some("invalid_parameter")),
        "{e}"
    );
    let (s, e) = api.get("/api/v1/vms/x/console?lines=abc");
    assert_eq!(s, 400, "{e}");
    let (s, e) = api.get("/api/v1/nothing-here");
    assert_eq!(s, 404, "{e}");
    assert_eq!(e["error"], "not_found");
    // Sizes are accepted in either form; a duplicate name is a conflict.
    let (s, v) = api.post(
        "/api/v1/vms",
        &json!({"name": "a", "vcpus": 1, "memory": 67_108_864, "image": "guest"}),
    );
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["spec"]["memory"], 67_108_864);
    let (s, e) = api.post(
        "/api/v1/vms",
        &json!({"name": "a", "vcpus": 1, "memory": "64M", "image": "guest"}),
    );
    assert_eq!(
        (s, e["error"].as_str()),
        (409, Some("already_exists")),
        "{e}"
    );
    // Image import: relative paths and missing files are named.
    let (s, e) = api.post(
        "/api/v1/images",
        &json!({"name": "i2", "disk": "rel/disk.qcow2"}),
    );
    assert_eq!((s, e["field"].as_str()), (422, Some("disk")), "{e}");
    let (s, e) = api.post(
        "/api/v1/images",
        &json!({"name": "i2", "disk": "/does/not/exist"}),
    );
    assert_eq!((s, e["field"].as_str()), (422, Some("disk")), "{e}");
    // An image in use is not deleted.
    let (s, e) = api.delete("/api/v1/images/guest");
    assert_eq!((s, e["error"].as_str()), (409, Some("conflict")), "{e}");
}
