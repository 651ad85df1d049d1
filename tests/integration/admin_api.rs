//! The HTTP admin API: bearer token, the same checks as the command line.

use crate::deployments::write_site;
use crate::harness::{cli_ok, http_request, loopback_config, Server};

const TOKEN: &str = "lab-admin-token-0123456789";

/// The site file of these tests (pc1 in collection lab, srv1, two deployments) with its boot
/// image files, written into `dir`.
fn lab_site(dir: &std::path::Path) -> std::path::PathBuf {
    let k = dir.join("vmlinuz");
    let i = dir.join("initrd.img");
    std::fs::write(&k, b"kernel").unwrap();
    std::fs::write(&i, b"initrd").unwrap();
    write_site(dir, &k, &i, "52:54:00:0d:03:01", "52:54:00:0d:03:02", "")
}

fn start(with_token: bool) -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().unwrap();
    let site = lab_site(dir.path());
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

    // Booting writes the loop guard, under the MAC and UUID the machine sent; the API lifts it
    // by device or by UUID, and says what it lifted.
    let uuid = crate::harness::random_smbios_uuid();
    let boot = format!("/boot.ipxe?mac=52-54-00-0d-03-01&arch=0&uuid={uuid}");
    crate::harness::boot_script(&server, &boot);
    let (status, v) = call(&server, "POST", "/api/v1/pxe/clear", r#"{"device":"pc1"}"#);
    assert_eq!(status, 200);
    assert_eq!(v["cleared"], 1);
    assert_eq!(
        v["guards"][0]["identity"],
        format!("uuid:{uuid} mac:52:54:00:0d:03:01"),
        "{v}"
    );
    assert_eq!(v["guards"][0]["deployment"], "LAB00001", "{v}");
    crate::harness::boot_script(&server, &boot);
    let (status, v) = call(
        &server,
        "GET",
        "/api/v1/explain?mac=52:54:00:0d:03:01&arch=0",
        "",
    );
    assert_eq!(status, 200);
    let text = v["text"].as_str().unwrap();
    assert!(text.contains("LAB00001  not chosen  rule 7"), "{text}");
    assert!(
        text.contains(&format!("last seen with uuid {uuid}")),
        "{text}"
    );
    let body = format!(r#"{{"uuid":"{uuid}"}}"#);
    let (status, v) = call(&server, "POST", "/api/v1/pxe/clear", &body);
    assert_eq!((status, &v["cleared"]), (200, &1.into()), "{v}");
    let (status, v) = call(&server, "POST", "/api/v1/pxe/clear", r#"{"mac":"nope"}"#);
    assert_eq!(status, 400, "{v}");
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

/// The server of `start(true)` with `server.import_root` set to `root`.
fn start_with_import_root(root: &std::path::Path) -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().unwrap();
    let config = loopback_config(dir.path(), "proxy", "")
        .replace(
            "[server]\n",
            &format!("[server]\nimport_root = {:?}\n", root.display().to_string()),
        )
        .replace("[http]\n", &format!("[http]\nadmin_token = {TOKEN:?}\n"));
    let server = Server::start(dir.path(), &config);
    (dir, server)
}

fn site_naming(kernel: &str) -> String {
    format!(
        "site_code = \"LAB\"\n[[boot_image]]\nid = \"linux-x64\"\narch = \"x64\"\nkernel = {kernel:?}\n"
    )
}

fn stored_content(data: &std::path::Path) -> usize {
    netdeploy::content::Library::new(data)
        .stored()
        .unwrap()
        .len()
}

#[test]
fn a_site_file_posted_to_the_api_cannot_read_server_files_without_an_import_root() {
    let (d, server) = start(true);
    let before = stored_content(&d.path().join("data"));
    for path in ["/etc/passwd", "/proc/self/environ", "vmlinuz"] {
        let (status, v) = call(&server, "POST", "/api/v1/site", &site_naming(path));
        assert_eq!(status, 422, "{path}: {v}");
        let e = v["error"].as_str().unwrap();
        assert!(
            e.contains("boot_image \"linux-x64\".kernel") && e.contains("server.import_root"),
            "{e}"
        );
    }
    assert_eq!(stored_content(&d.path().join("data")), before);
    // The catalog is what it was.
    let (_, v) = call(&server, "GET", "/api/v1/deployments", "");
    assert_eq!(v.as_array().unwrap().len(), 2, "{v}");
}

#[test]
fn a_site_file_posted_to_the_api_reads_files_only_below_the_import_root() {
    let outside = tempfile::tempdir().unwrap();
    let root = outside.path().join("import");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("vmlinuz"), b"kernel from the import root").unwrap();
    std::fs::write(outside.path().join("secret"), b"not for the network").unwrap();
    std::os::unix::fs::symlink(outside.path().join("secret"), root.join("escape")).unwrap();
    let (d, server) = start_with_import_root(&root);
    let data = d.path().join("data");
    let secret = outside.path().join("secret").display().to_string();
    for path in ["/proc/self/environ", "../secret", "escape", secret.as_str()] {
        let (status, v) = call(&server, "POST", "/api/v1/site", &site_naming(path));
        assert_eq!(status, 422, "{path}: {v}");
        let e = v["error"].as_str().unwrap();
        assert!(
            e.contains("boot_image \"linux-x64\".kernel") && e.contains("server.import_root"),
            "{path}: {e}"
        );
    }
    assert_eq!(stored_content(&data), 0);
    let (status, v) = call(&server, "POST", "/api/v1/site", &site_naming("vmlinuz"));
    assert_eq!(status, 200, "{v}");
    assert_eq!(stored_content(&data), 1);
}

#[test]
fn content_nothing_references_is_not_served_and_gc_removes_it() {
    let (d, server) = start(true);
    let data = d.path().join("data");
    let lib = netdeploy::content::Library::new(&data);
    let kept = lib.import(&d.path().join("vmlinuz"), "kernel").unwrap();
    let stray_src = d.path().join("stray");
    std::fs::write(&stray_src, b"imported, then nothing referenced it").unwrap();
    let stray = lib.import(&stray_src, "stray").unwrap();
    let get = |sha: &str| {
        http_request(
            server.http_addr(),
            "GET",
            &format!("/content/{sha}"),
            &[],
            b"",
        )
    };
    let (status, body) = get(&kept.sha256);
    assert_eq!((status, body.as_slice()), (200, &b"kernel"[..]));
    assert_eq!(get(&stray.sha256).0, 404);

    let out = cli_ok(&data, &["content", "gc", "--dry-run"]);
    assert!(
        out.contains(&format!("would remove {} (36 bytes)", stray.sha256))
            && out.contains("would free 36 bytes in 1 file(s)")
            && !out.contains(&kept.sha256),
        "{out}"
    );
    assert!(lib.has(&stray.sha256));
    let out = cli_ok(&data, &["content", "gc"]);
    assert!(
        out.contains(&format!("removed {} (36 bytes)", stray.sha256))
            && out.contains("freed 36 bytes in 1 file(s)"),
        "{out}"
    );
    assert!(!lib.has(&stray.sha256) && lib.has(&kept.sha256));
    assert_eq!(get(&kept.sha256).0, 200);
}

#[test]
fn a_site_file_posted_to_the_api_that_is_not_utf8_is_refused_with_its_position() {
    let (_d, server) = start(true);
    let auth = format!("Authorization: Bearer {TOKEN}");
    let (status, body) = http_request(
        server.http_addr(),
        "POST",
        "/api/v1/site",
        &[&auth],
        b"site_code = \"LAB\"\n# caf\xe9\n",
    );
    let body = String::from_utf8_lossy(&body);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("line 2, column 6 (byte offset 23)"), "{body}");
}

#[test]
fn check_names_the_import_root_and_refuses_one_that_is_not_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("import");
    std::fs::create_dir_all(&root).unwrap();
    let config = |root: &str| {
        let text = loopback_config(dir.path(), "proxy", "")
            .replace("[server]\n", &format!("[server]\nimport_root = {root:?}\n"));
        let path = dir.path().join("netdeploy.toml");
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let path = config(&root.display().to_string());
    let out = cli_ok(dir.path(), &["check", "--config", &path]);
    assert!(
        out.contains(&format!("import root: {}", root.display())),
        "{out}"
    );
    let path = config(&dir.path().join("missing").display().to_string());
    let (ok, out) = crate::harness::cli(dir.path(), &["check", "--config", &path]);
    assert!(
        !ok && out.contains("server.import_root") && out.contains("is not a directory"),
        "{out}"
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
    let status = server
        .post_status(r#"{"kind":"failed","mac":"52:54:00:0d:03:01","deployment":"LAB00001"}"#);
    assert_eq!(status, 201);
    let (_, v) = call(&server, "GET", "/api/v1/alerts", "");
    assert_eq!(v["thresholds"][0]["deployment"], "LAB00001", "{v}");
    assert_eq!(v["raised"][0]["failed"], 1, "{v}");
    let (status, _) = call(&server, "DELETE", "/api/v1/alerts/LAB00001", "");
    assert_eq!(status, 204);
    let (_, v) = call(&server, "GET", "/api/v1/alerts", "");
    assert_eq!(v["raised"].as_array().map(Vec::len), Some(0), "{v}");
}

#[test]
fn deleting_an_object_still_in_use_is_refused_by_the_api_as_by_the_command_line() {
    let (d, server) = start(true);
    let data = d.path().join("data");
    // pc1 is a member of collection lab; the collection is used by LAB00001.
    for (path, user) in [
        ("/api/v1/devices/pc1", "collection lab"),
        ("/api/v1/collections/lab", "deployment LAB00001"),
    ] {
        let (status, v) = call(&server, "DELETE", path, "");
        assert_eq!(status, 409, "{path}: {v}");
        assert!(v["error"].as_str().unwrap().contains(user), "{path}: {v}");
    }
    let (ok, out) = crate::harness::cli(&data, &["device", "delete", "pc1"]);
    assert!(!ok && out.contains("still used by collection lab"), "{out}");
    // Once nothing uses it, either one deletes it.
    let (status, v) = call(&server, "DELETE", "/api/v1/devices/srv1", "");
    assert_eq!(status, 204, "{v}");
    let (status, _) = call(&server, "DELETE", "/api/v1/devices/srv1", "");
    assert_eq!(status, 404);
}

#[test]
fn a_device_or_collection_the_checks_refuse_is_refused_by_the_api_as_by_the_command_line() {
    let (d, server) = start(true);
    let data = d.path().join("data");
    // pc1 holds 52:54:00:0d:03:01: a second device with that MAC would be the same machine.
    let (status, v) = call(
        &server,
        "PUT",
        "/api/v1/devices/pc9",
        r#"{"name": "pc9", "macs": ["52:54:00:0d:03:01"], "uuid": null, "server": false, "site_system": false}"#,
    );
    assert_eq!(status, 422, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("already belongs to device \"pc1\""),
        "{v}"
    );
    let (ok, out) = crate::harness::cli(
        &data,
        &[
            "device",
            "create",
            "--name",
            "pc9",
            "--mac",
            "52:54:00:0d:03:01",
        ],
    );
    assert!(
        !ok && out.contains("already belongs to device \"pc1\""),
        "{out}"
    );
    // A collection of a device that does not exist.
    let (status, v) = call(
        &server,
        "PUT",
        "/api/v1/collections/lab2",
        r#"{"id": "lab2", "name": "Lab 2", "kind": "custom", "members": ["ghost"]}"#,
    );
    assert_eq!(status, 422, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("\"ghost\" is no device"),
        "{v}"
    );
    let (ok, out) = crate::harness::cli(
        &data,
        &["collection", "create", "--id", "lab2", "--member", "ghost"],
    );
    assert!(!ok && out.contains("\"ghost\" is no device"), "{out}");
    // What the checks allow, both write.
    let (status, v) = call(
        &server,
        "PUT",
        "/api/v1/devices/pc9",
        r#"{"name": "pc9", "macs": ["52:54:00:0d:03:09"], "uuid": null, "server": false, "site_system": false}"#,
    );
    assert_eq!(status, 204, "{v}");
}

#[test]
fn the_openapi_document_is_served_without_a_token_and_each_operation_reaches_a_handler() {
    let (_d, server) = start(true);
    let (status, body) = http_request(server.http_addr(), "GET", "/api/v1/openapi.json", &[], b"");
    assert_eq!(status, 200);
    assert_eq!(
        body,
        include_bytes!("../../docs/admin-api.openapi.json"),
        "the served document is not docs/admin-api.openapi.json"
    );
    let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let listed = crate::docs_reference::operations(&doc);
    assert!(listed.len() >= 10, "{listed:?}");
    let auth = format!("Authorization: Bearer {TOKEN}");
    let headers = [auth.as_str(), "Content-Type: application/json"];
    for (method, path) in &listed {
        let concrete = path
            .replace("{kind}", "devices")
            .replace("{id}", "no-such-device")
            .replace("{deployment}", "LAB0FFFF");
        // A body no handler accepts: nothing changes, and the answer comes from the handler.
        let (status, body) = http_request(server.http_addr(), method, &concrete, &headers, b"{");
        assert!(
            !(matches!(status, 404 | 405) && body.is_empty()),
            "{method} {path}: the router has no such route ({status})"
        );
        // A method the document does not list for this path is one the router refuses.
        for other in ["GET", "POST", "PUT", "DELETE", "PATCH"] {
            if listed.iter().any(|(m, p)| m == other && p == path) {
                continue;
            }
            let (status, body) = http_request(server.http_addr(), other, &concrete, &headers, b"{");
            assert!(
                status == 405 && body.is_empty(),
                "{other} {concrete} is served ({status}) but not in the document"
            );
        }
    }
    // The document is there while the rest of the API is off.
    let (_d2, off) = start(false);
    let (status, _) = http_request(off.http_addr(), "GET", "/api/v1/openapi.json", &[], b"");
    assert_eq!(status, 200);
    let (status, _) = call(&off, "GET", "/api/v1/catalog", "");
    assert_eq!(status, 403);
}

const READ_TOKEN: &str = "lab-read-only-token-0123456789";

fn call_as(s: &Server, token: &str, method: &str, path: &str) -> (u16, serde_json::Value) {
    let auth = format!("Authorization: Bearer {token}");
    let (status, bytes) = http_request(s.http_addr(), method, path, &[&auth], b"");
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    )
}

fn admin_changes(s: &Server) -> Vec<serde_json::Value> {
    let (status, v) = call(s, "GET", "/api/v1/status?limit=1000", "");
    assert_eq!(status, 200, "{v}");
    v.as_array()
        .unwrap()
        .iter()
        .filter(|m| m["kind"] == "admin-change")
        .cloned()
        .collect()
}

#[test]
fn a_read_only_token_reads_but_cannot_change_and_every_change_is_audited_with_its_token() {
    let dir = tempfile::tempdir().unwrap();
    let site = lab_site(dir.path());
    let data = dir.path().join("data");
    cli_ok(&data, &["site", "apply", site.to_str().unwrap()]);
    let config = format!(
        "{}[[http.api_tokens]]\nname = \"grafana\"\nrole = \"read\"\ntoken = {READ_TOKEN:?}\n",
        loopback_config(dir.path(), "proxy", "")
            .replace("[http]\n", &format!("[http]\nadmin_token = {TOKEN:?}\n"))
    );
    let server = Server::start(dir.path(), &config);

    let (status, v) = call_as(&server, READ_TOKEN, "GET", "/api/v1/deployments");
    assert_eq!(status, 200, "{v}");
    assert_eq!(v.as_array().unwrap().len(), 2, "{v}");
    let (status, v) = call_as(&server, READ_TOKEN, "DELETE", "/api/v1/devices/srv1");
    assert_eq!(status, 403, "{v}");
    let e = v["error"].as_str().unwrap();
    assert!(e.contains("\"grafana\" may only read"), "{e}");
    let (status, _) = call_as(&server, READ_TOKEN, "GET", "/api/v1/devices/srv1");
    assert_eq!(status, 200, "the refused change changed nothing");
    assert!(
        admin_changes(&server).is_empty(),
        "a refused change is no change"
    );

    let (status, v) = call(&server, "DELETE", "/api/v1/devices/srv1", "");
    assert_eq!(status, 204, "{v}");
    let changes = admin_changes(&server);
    assert_eq!(changes.len(), 1, "{changes:?}");
    let body = &changes[0]["body"];
    assert_eq!(body["who"], "admin", "{body}");
    assert_eq!(body["from"], "127.0.0.1", "{body}");
    assert_eq!(body["request"], "DELETE /api/v1/devices/srv1", "{body}");
    assert!(body["when"].as_i64().unwrap() > 0, "{body}");
    // A change the API refuses (in use) is not recorded as made.
    let (status, _) = call(&server, "DELETE", "/api/v1/devices/pc1", "");
    assert_eq!(status, 409);
    assert_eq!(admin_changes(&server).len(), 1);
    assert_eq!(server.counter("admin_forbidden"), 1);
}

#[test]
fn an_address_that_guesses_tokens_is_told_to_wait_and_the_secret_is_not_in_the_log() {
    let (_d, server) = start(true);
    for i in 0..5 {
        let (status, v) = call_as(
            &server,
            "guess-guess-guess-guess",
            "GET",
            "/api/v1/deployments",
        );
        assert_eq!(status, 401, "guess {i}: {v}");
    }
    let auth = "Authorization: Bearer guess-guess-guess-guess";
    let (status, head, body) = crate::harness::http_exchange(
        server.http_addr(),
        "GET",
        "/api/v1/deployments",
        &[auth],
        b"",
    );
    assert_eq!(status, 429, "{}", String::from_utf8_lossy(&body));
    assert!(
        head.to_ascii_lowercase().contains("\r\nretry-after: 1\r\n")
            || head.to_ascii_lowercase().ends_with("\r\nretry-after: 1"),
        "{head}"
    );
    assert_eq!(server.counter("admin_auth_failures"), 6);
    assert_eq!(server.counter("admin_auth_throttled"), 1);
    let log = server.log();
    assert!(log.contains("admin API: no valid bearer token"), "{log}");
    assert!(log.contains("from=127.0.0.1"), "{log}");
    assert!(
        !log.contains("guess-guess"),
        "a guessed secret is not logged:\n{log}"
    );
}

#[test]
fn a_secret_step_value_is_kept_but_shown_masked_by_every_command_and_api_view() {
    let dir = tempfile::tempdir().unwrap();
    let site = lab_site(dir.path());
    let plain = std::fs::read_to_string(&site).unwrap();
    let secret_step = r#"steps = [{ name = "join", action = "set_variable", variable = "DomainPassword", value = "hunter2-long", secret = true }, { name = "hello", action = "run_command", command = "echo hello" }]"#;
    let with_secret = plain.replace(
        r#"steps = [{ name = "hello", action = "run_command", command = "echo hello" }]"#,
        secret_step,
    );
    assert_ne!(plain, with_secret);
    std::fs::write(&site, &with_secret).unwrap();
    let data = dir.path().join("data");
    // Only a value can be secret.
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        plain.replace(
            r#"command = "echo hello" }]"#,
            r#"command = "echo hello", secret = true }]"#,
        ),
    )
    .unwrap();
    let (ok, out) = crate::harness::cli(&data, &["site", "apply", bad.to_str().unwrap()]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("steps[0].secret") && out.contains("only a value can be secret"),
        "{out}"
    );
    cli_ok(&data, &["site", "apply", site.to_str().unwrap()]);

    let mut shown = vec![
        cli_ok(&data, &["site", "show"]),
        cli_ok(&data, &["task-sequence", "show", "hello"]),
        cli_ok(&data, &["explain", "--mac", "52:54:00:0d:03:01"]),
    ];
    assert!(
        shown[0].contains("DomainPassword") && shown[0].contains("********"),
        "{}",
        shown[0]
    );
    let config = loopback_config(dir.path(), "proxy", "")
        .replace("[http]\n", &format!("[http]\nadmin_token = {TOKEN:?}\n"));
    let server = Server::start(dir.path(), &config);
    for path in [
        "/api/v1/catalog",
        "/api/v1/task_sequences",
        "/api/v1/task_sequences/hello",
    ] {
        let (status, v) = call(&server, "GET", path, "");
        assert_eq!(status, 200, "{path}: {v}");
        assert!(v.to_string().contains("********"), "{path}: {v}");
        shown.push(v.to_string());
    }
    shown.push(crate::harness::http_get(server.http_addr(), "/status"));
    shown.push(server.log());
    for text in &shown {
        assert!(!text.contains("hunter2"), "the secret is shown:\n{text}");
    }
    // The store keeps the value itself: the machine's policy needs it.
    let kept = netdeploy::store::Store::open(&data.join("netdeploy.db"))
        .unwrap()
        .get::<serde_json::Value>("task_sequence", "hello")
        .unwrap()
        .unwrap();
    assert_eq!(kept["steps"][0]["value"], "hunter2-long", "{kept}");
}
