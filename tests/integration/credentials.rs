//! The boot environment's channel (docs/security.md): `/agent/policy` and `/agent/status`
//! against a real server on loopback, with the run tokens its iPXE scripts and policies hand
//! out, and without them.

use std::time::Duration;

use crate::deployments::write_site;
use crate::harness::{
    bearer, boot_script, cli_ok, http_exchange, http_get, http_request, ipxe_discover,
    loopback_config, medium_auth, medium_key, token_in_script, Server,
};

const PC1: &str = "52:54:00:0f:00:01";
const PC2: &str = "52:54:00:0f:00:02";

/// pc1 and pc2 in collection `lab`, which LAB00001 (required, media and PXE) targets.
fn setup() -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().unwrap();
    let k = dir.path().join("vmlinuz");
    let i = dir.path().join("initrd.img");
    std::fs::write(&k, b"kernel").unwrap();
    std::fs::write(&i, b"initrd").unwrap();
    let site = write_site(dir.path(), &k, &i, PC1, "52:54:00:0f:00:09", "");
    let mut text = std::fs::read_to_string(&site)
        .unwrap()
        .replace("members = [\"pc1\"]", "members = [\"pc1\", \"pc2\"]");
    text.push_str(&format!(
        "\n[[device]]\nname = \"pc2\"\nmacs = [\"{PC2}\"]\n"
    ));
    std::fs::write(&site, text).unwrap();
    cli_ok(
        &dir.path().join("data"),
        &["site", "apply", site.to_str().unwrap()],
    );
    let server = Server::start(dir.path(), &loopback_config(dir.path(), "proxy", ""));
    (dir, server)
}

/// The run token of the iPXE script that starts LAB00001 on `mac`.
fn pxe_run(server: &Server, mac: &str) -> String {
    let script = boot_script(
        server,
        &format!("/boot.ipxe?mac={}&arch=0", mac.replace(':', "-")),
    );
    assert!(script.contains("netdeploy.deployment=LAB00001"), "{script}");
    let token = token_in_script(&script).expect("a run token on the kernel line");
    assert_eq!(token.len(), 64, "{script}");
    token
}

fn policy(server: &Server, mac: &str, token: Option<&str>) -> (u16, String) {
    let auth = token.map(bearer);
    let headers: Vec<&str> = auth.iter().map(String::as_str).collect();
    let (status, body) = http_request(
        server.http_addr(),
        "GET",
        &format!("/agent/policy?mac={mac}&context=pxe&deployment=LAB00001"),
        &headers,
        b"",
    );
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn status(server: &Server, body: &str, token: Option<&str>) -> u16 {
    let auth = token.map(bearer);
    let mut headers = vec!["Content-Type: application/json"];
    headers.extend(auth.as_deref());
    http_request(
        server.http_addr(),
        "POST",
        "/agent/status",
        &headers,
        body.as_bytes(),
    )
    .0
}

fn succeeded(mac: &str) -> String {
    format!(r#"{{"kind":"succeeded","mac":"{mac}","deployment":"LAB00001"}}"#)
}

/// What `netdeploy status --json` says of the deployments and machines.
fn recorded(server: &Server) -> serde_json::Value {
    let v: serde_json::Value =
        serde_json::from_str(&cli_ok(&server.data_dir(), &["status", "--json"])).unwrap();
    v
}

#[test]
fn a_policy_request_without_a_run_token_is_refused_401_logged_and_counted() {
    let (_dir, server) = setup();
    pxe_run(&server, PC1);
    let (code, body) = policy(&server, PC1, None);
    assert_eq!(code, 401, "{body}");
    assert!(body.contains("no run token"), "{body}");
    assert!(!body.contains("steps"), "{body}");
    let (code, _) = policy(&server, PC1, Some("not-a-token"));
    assert_eq!(code, 401);
    // A token of the right shape that the server never issued proves nothing either.
    let (code, _) = policy(&server, PC1, Some(&"0".repeat(64)));
    assert_eq!(code, 401);
    assert_eq!(server.counter("agent_unauthorized"), 3);
    assert_eq!(server.counter("agent_forbidden"), 0);
    server
        .wait_for_log(
            &[
                "policy request refused",
                "client=127.0.0.1:",
                "no run token",
            ],
            Duration::from_secs(3),
        )
        .expect("the refusal is logged with the caller's address");
}

#[test]
fn a_policy_request_with_another_machines_token_is_forbidden() {
    let (_dir, server) = setup();
    let pc2_token = pxe_run(&server, PC2);
    let (code, body) = policy(&server, PC1, Some(&pc2_token));
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("another machine"), "{body}");
    assert!(!body.contains("steps"), "{body}");
    assert_eq!(server.counter("agent_forbidden"), 1);
    // pc2's own request with it is served, with the steps.
    let (code, body) = policy(&server, PC2, Some(&pc2_token));
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"steps\""), "{body}");
}

#[test]
fn a_forged_status_message_leaves_netdeploy_status_unchanged() {
    let (_dir, server) = setup();
    pxe_run(&server, PC1);
    let pc2_token = pxe_run(&server, PC2);
    let before = recorded(&server);
    assert_eq!(status(&server, &succeeded(PC1), None), 401);
    assert_eq!(status(&server, &succeeded(PC1), Some(&pc2_token)), 403);
    assert_eq!(recorded(&server), before);
    let out = cli_ok(&server.data_dir(), &["status", "--machines"]);
    let pc1 = out
        .lines()
        .find(|l| l.trim_start().starts_with("pc1 "))
        .unwrap_or_else(|| panic!("pc1 in {out}"));
    assert!(pc1.contains("In progress"), "{pc1}");
}

#[test]
fn a_token_replayed_after_its_run_completed_is_refused() {
    let (_dir, server) = setup();
    let token = pxe_run(&server, PC1);
    assert_eq!(policy(&server, PC1, Some(&token)).0, 200);
    let started = format!(r#"{{"kind":"started","mac":"{PC1}","deployment":"LAB00001"}}"#);
    assert_eq!(status(&server, &started, Some(&token)), 201);
    assert_eq!(status(&server, &succeeded(PC1), Some(&token)), 201);
    let after_run = recorded(&server);
    // The run is over: neither its policy nor another message is taken with its token.
    assert_eq!(status(&server, &succeeded(PC1), Some(&token)), 403);
    let failed = format!(r#"{{"kind":"failed","mac":"{PC1}","deployment":"LAB00001"}}"#);
    assert_eq!(status(&server, &failed, Some(&token)), 403);
    let (code, body) = policy(&server, PC1, Some(&token));
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("ended"), "{body}");
    assert_eq!(recorded(&server), after_run);
}

#[test]
fn a_status_message_for_another_deployment_is_forbidden() {
    let (_dir, server) = setup();
    let token = pxe_run(&server, PC1);
    let other = format!(r#"{{"kind":"succeeded","mac":"{PC1}","deployment":"LAB00002"}}"#);
    assert_eq!(status(&server, &other, Some(&token)), 403);
}

#[test]
fn a_boot_medium_gets_its_run_token_with_its_policy_and_reports_with_it() {
    let (_dir, server) = setup();
    let key = medium_key(&server.data_dir());
    let (code, head, body) = http_exchange(
        server.http_addr(),
        "GET",
        &format!("/agent/policy?mac={PC1}&context=media&deployment=LAB00001"),
        &[&medium_auth(&key)],
        b"",
    );
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    let token: String = head
        .lines()
        .find_map(|l| l.strip_prefix("netdeploy-run-token: "))
        .expect("a run token header")
        .trim()
        .to_owned();
    assert_eq!(token.len(), 64);
    assert_eq!(status(&server, &succeeded(PC1), Some(&token)), 201);
    // Another machine cannot use it.
    assert_eq!(status(&server, &succeeded(PC2), Some(&token)), 403);
}

/// Rows of the tables a request could add to, read from the server's database.
pub(crate) fn rows(server: &Server) -> (i64, i64, i64, i64) {
    let db = rusqlite::Connection::open(server.data_dir().join("netdeploy.db")).unwrap();
    let count = |table: &str| -> i64 {
        db.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
            .unwrap()
    };
    (
        count("status_message"),
        count("pxe_guard"),
        count("attempt"),
        count("run_credential"),
    )
}

#[test]
fn a_script_request_naming_a_machine_not_seen_in_dhcp_records_nothing_and_its_next_dhcp_still_gets_its_offer(
) {
    let (_dir, server) = setup();
    let before = (rows(&server), recorded(&server));
    // Someone else names pc1, which has not asked for a network boot.
    let script = http_get(
        server.http_addr(),
        &format!("/boot.ipxe?mac={}&arch=0", PC1.replace(':', "-")),
    );
    assert!(!script.contains("netdeploy.deployment="), "{script}");
    assert!(token_in_script(&script).is_none(), "{script}");
    assert!(script.contains("has not asked this server"), "{script}");
    assert_eq!((rows(&server), recorded(&server)), before);
    assert_eq!(server.counter("boot_scripts_unproven"), 1);
    assert!(cli_ok(&server.data_dir(), &["pxe", "guards"])
        .lines()
        .all(|l| !l.contains("LAB00001")));
    // pc1's own DHCP exchange is still answered with its script, which starts LAB00001.
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    s.send_to(&ipxe_discover(PC1, None), server.dhcp_addr())
        .unwrap();
    let mut buf = [0u8; 1500];
    let (n, _) = s.recv_from(&mut buf).expect("pc1 gets its offer");
    assert!(
        String::from_utf8_lossy(&buf[..n]).contains("/boot.ipxe?mac="),
        "the offer sends iPXE to its script"
    );
    assert!(token_in_script(&boot_script(
        &server,
        &format!("/boot.ipxe?mac={}&arch=0", PC1.replace(':', "-"))
    ))
    .is_some());
}

#[test]
fn a_flood_of_requests_adds_a_bounded_number_of_rows() {
    let (_dir, server) = setup();
    let key = medium_key(&server.data_dir());
    let before = rows(&server);
    // 300 script requests for machines that never asked for a network boot: no row at all.
    for n in 0..300u32 {
        let path = format!(
            "/boot.ipxe?mac=52-54-00-aa-{:02x}-{:02x}&arch=0",
            n >> 8,
            n & 0xff
        );
        http_get(server.http_addr(), &path);
    }
    assert_eq!(rows(&server), before);
    // pc1 asked once; its script requests over and over start LAB00001 once, then the loop
    // guard holds it back with one message.
    crate::harness::dhcp_discover(&server, PC1, None);
    for _ in 0..100 {
        http_get(
            server.http_addr(),
            &format!("/boot.ipxe?mac={}&arch=0", PC1.replace(':', "-")),
        );
    }
    // Boot media asking for pc1's policy over and over keep a bounded number of tokens.
    for _ in 0..50 {
        http_request(
            server.http_addr(),
            "GET",
            &format!("/agent/policy?mac={PC1}&context=media"),
            &[&medium_auth(&key)],
            b"",
        );
    }
    let after = rows(&server);
    assert!(
        after.0 - before.0 <= 3,
        "status messages {before:?} -> {after:?}"
    );
    assert_eq!(after.1 - before.1, 1, "one loop guard");
    assert_eq!(after.2 - before.2, 1, "one attempt");
    assert!(
        after.3 - before.3 <= 8,
        "run tokens {before:?} -> {after:?}"
    );
}

#[test]
fn status_messages_past_the_retention_age_or_count_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    {
        let store = netdeploy::store::Store::open(&data.join("netdeploy.db")).unwrap();
        let now = netdeploy::bootpath::now();
        // 10 messages of three days ago, 1200 of today.
        for i in 0..1210 {
            let at = if i < 10 { now - 3 * 86_400 } else { now - 60 };
            store
                .add_status(&netdeploy::store::StatusMessage {
                    seq: 0,
                    at,
                    source: "agent".into(),
                    kind: "step".into(),
                    identity: Some(format!("mac:52:54:00:0f:10:{:02x}", i % 256)),
                    device: None,
                    deployment: Some("LAB00001".into()),
                    body: serde_json::json!({ "n": i }),
                })
                .unwrap();
        }
    }
    let config = loopback_config(dir.path(), "proxy", "")
        + "[status]\nretention_days = 2\nmax_messages = 1000\n";
    let server = Server::start(dir.path(), &config);
    server
        .wait_for_log(&["old status messages removed"], Duration::from_secs(10))
        .expect("pruned at start");
    let db = rusqlite::Connection::open(data.join("netdeploy.db")).unwrap();
    let (count, oldest_n): (i64, i64) = db
        .query_row(
            "SELECT COUNT(*), MIN(json_extract(body, '$.n')) FROM status_message",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(count, 1000);
    assert_eq!(oldest_n, 210, "the newest are kept");
}

/// The run token a `200` policy response hands out.
fn handed_out(head: &str) -> String {
    head.lines()
        .find_map(|l| l.strip_prefix("netdeploy-run-token: "))
        .expect("a run token header")
        .trim()
        .to_owned()
}

#[test]
fn a_menu_pick_gets_a_token_of_the_chosen_deployment_and_the_menus_token_ends() {
    let (_dir, server) = setup();
    let key = medium_key(&server.data_dir());
    // An unknown computer: LAB00002 (available to unknown computers) is offered as a menu.
    let mac = "52:54:00:0f:00:07";
    let (code, head, body) = http_exchange(
        server.http_addr(),
        "GET",
        &format!("/agent/policy?mac={mac}&context=media"),
        &[&medium_auth(&key)],
        b"",
    );
    assert_eq!(code, 200);
    assert!(String::from_utf8_lossy(&body).contains("\"menu\""));
    let menu_token = handed_out(&head);
    let (code, head, body) = http_exchange(
        server.http_addr(),
        "GET",
        &format!("/agent/policy?mac={mac}&context=media&deployment=LAB00002"),
        &[&bearer(&menu_token)],
        b"",
    );
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    let run_token = handed_out(&head);
    assert_ne!(run_token, menu_token);
    let done = format!(r#"{{"kind":"succeeded","mac":"{mac}","deployment":"LAB00002"}}"#);
    assert_eq!(status(&server, &done, Some(&menu_token)), 403);
    assert_eq!(status(&server, &done, Some(&run_token)), 201);
}

#[test]
fn a_medium_told_nothing_is_deployed_reports_it_for_the_deployment_it_asked_for_and_nothing_more() {
    let (_dir, server) = setup();
    let key = medium_key(&server.data_dir());
    // srv1 is a known device in no collection: LAB00001, which its medium names, is not for it.
    let mac = "52:54:00:0f:00:09";
    let (code, head, body) = http_exchange(
        server.http_addr(),
        "GET",
        &format!("/agent/policy?mac={mac}&context=media&deployment=LAB00001"),
        &[&medium_auth(&key)],
        b"",
    );
    assert_eq!(code, 200);
    assert!(String::from_utf8_lossy(&body).contains("\"none\""));
    let token = handed_out(&head);
    let nothing = format!(
        r#"{{"kind":"no-deployment","mac":"{mac}","deployment":"LAB00001","reason":"rule 8"}}"#
    );
    assert_eq!(status(&server, &nothing, Some(&token)), 201);
    // That message ended the run.
    assert_eq!(status(&server, &succeeded(mac), Some(&token)), 403);
}

#[test]
fn a_boot_medium_without_its_key_is_refused_and_a_revoked_one_too() {
    let (_dir, server) = setup();
    let path = format!("/agent/policy?mac={PC1}&context=media&deployment=LAB00001");
    let ask = |headers: &[&str]| http_request(server.http_addr(), "GET", &path, headers, b"");
    let (code, body) = ask(&[]);
    assert_eq!(code, 401, "{}", String::from_utf8_lossy(&body));
    assert!(!String::from_utf8_lossy(&body).contains("steps"));
    // A key of the right shape the server never made proves nothing.
    let forged = format!("0a0b0c0d.{}", "5a".repeat(32));
    assert_eq!(ask(&[&medium_auth(&forged)]).0, 401);
    let key = medium_key(&server.data_dir());
    let (code, body) = ask(&[&medium_auth(&key)]);
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    let id = &key[..8];
    let out = cli_ok(&server.data_dir(), &["media", "revoke", id]);
    assert!(out.contains(&format!("medium {id} revoked")), "{out}");
    let listed = cli_ok(&server.data_dir(), &["media", "keys"]);
    assert!(
        listed.contains(id) && listed.contains("revoked"),
        "{listed}"
    );
    let (code, body) = ask(&[&medium_auth(&key)]);
    assert_eq!(code, 403, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("revoked"));
    assert_eq!(server.counter("agent_unauthorized"), 2);
    assert_eq!(server.counter("agent_forbidden"), 1);
}
