//! The HTTP admin API: bearer token, the same checks as the command line.

use crate::deployments::write_site;
use crate::harness::{cli_ok, http_request, loopback_config, Server};

const TOKEN: &str = "lab-admin-token-0123456789";

fn start(with_token: bool) -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().unwrap();
    let k = dir.path().join("vmlinuz");
    let i = dir.path().join("initrd.img");
    std::fs::write(&k, b"kernel").unwrap();
    std::fs::write(&i, b"initrd").unwrap();
    let site = write_site(
        dir.path(),
        &k,
        &i,
        "52:54:00:0d:03:01",
        "52:54:00:0d:03:02",
        "",
    );
    cli_ok(
        &dir.path().join("data"),
        &["site", "apply", site.to_str().unwrap()],
    );
    let mut config = loopback_config(dir.path(), "proxy", "");
    if with_token {
        config = config.replace("[http]\n", &format!("[http]\nadmin_token = {TOKEN:?}\n"));
    }
    let server = Server::start(dir.path(), &config);
    (dir, server)
}

fn call(s: &Server, method: &str, path: &str, body: &str) -> (u16, serde_json::Value) {
    let auth = format!("Authorization: Bearer {TOKEN}");
    let (status, bytes) = http_request(
        s.http_addr(),
        method,
        path,
        &[&auth, "Content-Type: application/json"],
        body.as_bytes(),
    );
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    )
}

#[test]
fn admin_api_needs_the_bearer_token_and_is_off_without_one() {
    let (_d, server) = start(true);
    let (status, _) = http_request(server.http_addr(), "GET", "/api/v1/deployments", &[], b"");
    assert_eq!(status, 401);
    let (status, _) = http_request(
        server.http_addr(),
        "GET",
        "/api/v1/deployments",
        &["Authorization: Bearer wrong-token-wrong-token"],
        b"",
    );
    assert_eq!(status, 401);
    let (status, v) = call(&server, "GET", "/api/v1/deployments", "");
    assert_eq!(status, 200);
    assert_eq!(v.as_array().unwrap().len(), 2, "{v}");
    // The boot path itself needs no token.
    let (status, _) = http_request(
        server.http_addr(),
        "GET",
        "/boot.ipxe?mac=52-54-00-0d-03-01&arch=0",
        &[],
        b"",
    );
    assert_eq!(status, 200);

    let (_d2, off) = start(false);
    let (status, _) = call(&off, "GET", "/api/v1/deployments", "");
    assert_eq!(status, 403);
}

#[test]
fn admin_api_creates_deployments_with_the_same_checks_and_explains() {
    let (_d, server) = start(true);
    let (status, v) = call(
        &server,
        "POST",
        "/api/v1/deployments",
        r#"{"task_sequence":"hello","collection":"all_systems","purpose":"available","available_to":"media_pxe"}"#,
    );
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["id"], "LAB00003");
    let (status, v) = call(
        &server,
        "POST",
        "/api/v1/deployments",
        r#"{"task_sequence":"nope","collection":"lab","purpose":"available","available_to":"media_pxe"}"#,
    );
    assert_eq!(status, 422, "{v}");
    assert!(v["refusals"][0].as_str().unwrap().contains("nope"), "{v}");

    let (status, v) = call(
        &server,
        "GET",
        "/api/v1/explain?mac=52:54:00:0d:03:01&arch=0",
        "",
    );
    assert_eq!(status, 200);
    assert_eq!(v["decision"]["action"]["deployment"], "LAB00001", "{v}");
    assert!(v["text"].as_str().unwrap().contains("rule 5"), "{v}");

    // Booting writes the loop guard; the API lifts it.
    http_request(
        server.http_addr(),
        "GET",
        "/boot.ipxe?mac=52-54-00-0d-03-01&arch=0",
        &[],
        b"",
    );
    let (status, v) = call(&server, "POST", "/api/v1/pxe/clear", r#"{"device":"pc1"}"#);
    assert_eq!(status, 200);
    assert_eq!(v["cleared"], 1);
    let (status, v) = call(&server, "GET", "/api/v1/status", "");
    assert_eq!(status, 200);
    assert!(
        v.as_array()
            .unwrap()
            .iter()
            .any(|m| m["kind"] == "pxe-start"),
        "{v}"
    );
}

#[test]
fn admin_api_sets_lists_and_turns_off_a_deployment_alert() {
    let (_d, server) = start(true);
    let (status, v) = call(
        &server,
        "PUT",
        "/api/v1/alerts/LAB00001",
        r#"{"failure_percent": 10, "min_failures": 1}"#,
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["failure_percent"], 10);
    // Out of range, or for a deployment that does not exist: refused.
    let (status, _) = call(
        &server,
        "PUT",
        "/api/v1/alerts/LAB00001",
        r#"{"failure_percent": 120}"#,
    );
    assert_eq!(status, 422);
    let (status, _) = call(
        &server,
        "PUT",
        "/api/v1/alerts/LAB000FF",
        r#"{"failure_percent": 10}"#,
    );
    assert_eq!(status, 404);
    // pc1 fails: 1 of 1 machines, the alert is raised.
    let (status, _) = http_request(
        server.http_addr(),
        "POST",
        "/agent/status",
        &["Content-Type: application/json"],
        br#"{"kind":"failed","mac":"52:54:00:0d:03:01","deployment":"LAB00001"}"#,
    );
    assert_eq!(status, 201);
    let (_, v) = call(&server, "GET", "/api/v1/alerts", "");
    assert_eq!(v["thresholds"][0]["deployment"], "LAB00001", "{v}");
    assert_eq!(v["raised"][0]["failed"], 1, "{v}");
    let (status, _) = call(&server, "DELETE", "/api/v1/alerts/LAB00001", "");
    assert_eq!(status, 204);
    let (_, v) = call(&server, "GET", "/api/v1/alerts", "");
    assert_eq!(v["raised"].as_array().map(Vec::len), Some(0), "{v}");
}
