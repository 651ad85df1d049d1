//! Several servers, one site: two netdeploy servers on one PostgreSQL database (`[store] url`)
//! share the catalog, the loop guard and the status messages; each keeps its own leases and
//! content. The database is a throwaway server this test starts (Debian's `postgresql`).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use netdeploy::store::pg_cluster::Cluster;

use crate::deployments::{captured_discover_from, offered, small_image, write_site};
use crate::harness::{binary, boot_script, loopback_config, Server};

const PC1: &str = "52:54:00:0d:0a:01";
const PC2: &str = "52:54:00:0d:0a:02";

/// `netdeploy --config <dir>/netdeploy.toml ARGS`, as an admin on that server's host runs it.
pub fn cli_of(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(binary())
        .arg("--config")
        .arg(dir.join("netdeploy.toml"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("run netdeploy");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "netdeploy {args:?} failed:\n{text}");
    text
}

/// Polls `check` every 100 ms for at most `limit`.
pub fn within(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if check() {
            return true;
        }
        if start.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn two_servers_on_one_postgresql_share_the_site_the_loop_guard_and_the_status() {
    let pg = Cluster::start().expect("a throwaway PostgreSQL server starts");
    let url = pg.new_database().unwrap();
    let root = tempfile::tempdir().unwrap();
    let (a, b) = (root.path().join("a"), root.path().join("b"));
    for d in [&a, &b] {
        std::fs::create_dir_all(d).unwrap();
    }
    let store = format!("[store]\nurl = {url:?}\n");
    let server_a = Server::start(&a, &loopback_config(&a, "proxy", &store));
    let server_b = Server::start(&b, &loopback_config(&b, "proxy", &store));
    for s in [&server_a, &server_b] {
        s.wait_for_log(&["store opened", "PostgreSQL"], Duration::from_secs(5))
            .expect("the store is named in the log");
        assert!(!s.log().contains(&url), "the URL is never logged");
    }

    // A site with two machines under a required deployment, applied through server A's host.
    let (k, i) = small_image(&a);
    let site = write_site(&a, &k, &i, PC1, "52:54:00:0d:0a:09", "");
    let text = std::fs::read_to_string(&site)
        .unwrap()
        .replace(
            "[[collection]]",
            &format!("[[device]]\nname = \"pc2\"\nmacs = [\"{PC2}\"]\n\n[[collection]]"),
        )
        .replace("members = [\"pc1\"]", "members = [\"pc1\", \"pc2\"]");
    std::fs::write(&site, text).unwrap();
    let applied = cli_of(&a, &["site", "apply", site.to_str().unwrap()]);
    assert!(applied.contains("LAB00001"), "{applied}");

    // Server B uses it within a second or so: pc1's script runs LAB00001. (Before, with no
    // deployment in the catalog, B answered every machine that nothing is to boot.)
    let mut script = String::new();
    assert!(
        within(Duration::from_secs(5), || {
            script = boot_script(&server_b, "/boot.ipxe?mac=52-54-00-0d-0a-01&arch=0");
            script.contains("netdeploy.deployment=LAB00001")
        }),
        "server B does not run LAB00001 on pc1 after the site was applied through A:\n\
         {script}\n{}",
        server_b.log()
    );

    // The loop guard holds across servers: pc1 started through B gets no offer from A.
    assert!(
        within(Duration::from_secs(5), || !offered(
            server_a.dhcp_addr(),
            &captured_discover_from(PC1)
        )),
        "server A still offers to pc1, which started through B:\n{}",
        server_a.log()
    );
    server_a
        .wait_for_log(&["no boot offer", "rule 7"], Duration::from_secs(5))
        .expect("A logs the loop guard");

    // pc2 starts through A. Either host's status shows what both servers recorded: pc1's
    // refusal by A (its last message) and pc2's start through A, on B's host as on A's.
    assert!(offered(server_a.dhcp_addr(), &captured_discover_from(PC2)));
    let script = boot_script(&server_a, "/boot.ipxe?mac=52-54-00-0d-0a-02&arch=0");
    assert!(script.contains("netdeploy.deployment=LAB00001"), "{script}");
    server_a.settled();
    server_b.settled();
    let on_a = cli_of(&a, &["status", "--machines"]);
    let on_b = cli_of(&b, &["status", "--machines"]);
    assert_eq!(on_a, on_b, "both hosts show the same status");
    let line = |name: &str| {
        on_b.lines()
            .find(|l| l.trim_start().starts_with(name))
            .unwrap_or_else(|| panic!("{name} is not listed:\n{on_b}"))
            .to_owned()
    };
    assert!(line("pc1").contains("rule 7"), "{on_b}");
    assert!(line("pc2").contains("In progress"), "{on_b}");
    let guards = cli_of(&b, &["pxe", "guards"]);
    assert_eq!(guards.matches("LAB00001").count(), 2, "{guards}");
    // Leases and content stay per server: B's data directory holds no catalog file.
    assert!(!b.join("data/netdeploy.db").exists());
    assert!(!a.join("data/netdeploy.db").exists());
}

/// POSTs an agent status message with the run token of the machine's script.
fn report(server: &Server, token: &str, mac: &str, kind: &str, step: Option<usize>) -> u16 {
    let mut body = serde_json::json!({"kind": kind, "mac": mac, "deployment": "LAB00001"});
    if let Some(i) = step {
        body["step"] = format!("step {i}").into();
        body["step_index"] = i.into();
        body["ok"] = true.into();
    }
    crate::harness::http_request(
        server.http_addr(),
        "POST",
        "/agent/status",
        &[
            "Content-Type: application/json",
            &crate::harness::bearer(token),
        ],
        body.to_string().as_bytes(),
    )
    .0
}

#[test]
fn postgresql_stopped_mid_deployment_loses_no_status_message_and_records_none_twice() {
    let mut pg = Cluster::start().expect("a throwaway PostgreSQL server starts");
    let url = pg.new_database().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let server = Server::start(
        d,
        &loopback_config(d, "proxy", &format!("[store]\nurl = {url:?}\n")),
    );
    let (k, i) = small_image(d);
    let site = write_site(d, &k, &i, PC1, "52:54:00:0d:0a:09", "");
    let text = std::fs::read_to_string(&site)
        .unwrap()
        .replace(
            "[[collection]]",
            &format!("[[device]]\nname = \"pc2\"\nmacs = [\"{PC2}\"]\n\n[[collection]]"),
        )
        .replace("members = [\"pc1\"]", "members = [\"pc1\", \"pc2\"]");
    std::fs::write(&site, text).unwrap();
    cli_of(d, &["site", "apply", site.to_str().unwrap()]);
    let mut script = String::new();
    assert!(within(Duration::from_secs(5), || {
        script = boot_script(&server, "/boot.ipxe?mac=52-54-00-0d-0a-01&arch=0");
        script.contains("netdeploy.deployment=LAB00001")
    }));
    let token = crate::harness::token_in_script(&script).expect("a run token");
    assert_eq!(report(&server, &token, PC1, "started", None), 201);

    // The database goes away in the middle of the deployment.
    pg.stop();
    for step in 0..2 {
        assert_eq!(
            report(&server, &token, PC1, "step", Some(step)),
            202,
            "accepted and kept while the database is away:\n{}",
            server.log()
        );
    }
    assert_eq!(report(&server, &token, PC1, "succeeded", None), 202);
    // PXE decisions go on from the last snapshot: pc2 starts, its loop guard kept too.
    for _ in 0..3 {
        assert!(offered(server.dhcp_addr(), &captured_discover_from(PC2)));
    }
    let script2 = boot_script(&server, "/boot.ipxe?mac=52-54-00-0d-0a-02&arch=0");
    assert!(
        script2.contains("netdeploy.deployment=LAB00001"),
        "{script2}"
    );
    server
        .wait_for_log(&["the store is unreachable"], Duration::from_secs(5))
        .expect("the outage is logged");
    let spool = d.join("data/spool");
    assert!(
        std::fs::read_dir(&spool).unwrap().count() >= 4,
        "kept on disk"
    );

    // It comes back: everything kept is sent, in order, once.
    pg.restart().expect("PostgreSQL starts again");
    server
        .wait_for_log(&["the store answers again"], Duration::from_secs(10))
        .expect("the return is logged");
    assert!(
        within(Duration::from_secs(10), || std::fs::read_dir(&spool)
            .unwrap()
            .count()
            == 0),
        "the spool empties:\n{}",
        server.log()
    );
    let log = server.log();
    assert_eq!(
        log.matches("the store is unreachable").count(),
        1,
        "said once, not per packet:\n{log}"
    );
    let mut db = netdeploy::store::pg::parse_url(&url)
        .unwrap()
        .connect(postgres::NoTls)
        .unwrap();
    let kinds: Vec<String> = db
        .query(
            "SELECT kind FROM status_message WHERE source = 'agent' ORDER BY seq",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(kinds, ["started", "step", "step", "succeeded"]);
    let guards = cli_of(d, &["pxe", "guards"]);
    assert!(
        guards.contains("mac:52:54:00:0d:0a:02 LAB00001"),
        "{guards}"
    );
    let status = cli_of(d, &["status", "--machines"]);
    let pc1 = status
        .lines()
        .find(|l| l.trim_start().starts_with("pc1"))
        .unwrap_or_default();
    assert!(pc1.contains("Compliant"), "{status}");
    // The run ended while the database was away: its token is refused now.
    assert_eq!(report(&server, &token, PC1, "step", Some(5)), 403);
}

/// An HTTP server on loopback that answers every request with `body` (a tampered upstream).
fn lying_upstream(body: &'static [u8]) -> String {
    use std::io::{Read as _, Write as _};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        // Bounded: the test makes a handful of requests.
        for conn in l.incoming().take(16) {
            let Ok(mut c) = conn else { continue };
            let mut buf = [0u8; 4096];
            let _ = c.read(&mut buf);
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = c.write_all(head.as_bytes());
            let _ = c.write_all(body);
        }
    });
    format!("http://{addr}")
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    netdeploy_wire::hex::encode(&sha2::Sha256::digest(bytes))
}

#[test]
fn a_server_without_the_content_fetches_it_from_upstream_checks_it_and_says_who_holds_what() {
    let pg = Cluster::start().expect("a throwaway PostgreSQL server starts");
    let url = pg.new_database().unwrap();
    let root = tempfile::tempdir().unwrap();
    let dirs: Vec<_> = ["a", "b", "c", "d"]
        .iter()
        .map(|n| root.path().join(n))
        .collect();
    for d in &dirs {
        std::fs::create_dir_all(d).unwrap();
    }
    let config = |d: &Path, name: &str, extra: &str| {
        loopback_config(d, "proxy", &format!("[store]\nurl = {url:?}\n{extra}"))
            .replace("[server]\n", &format!("[server]\nname = {name:?}\n"))
    };
    let a = Server::start(&dirs[0], &config(&dirs[0], "a", ""));
    let upstream_a = format!("[content]\nupstream = [{:?}]\n", a.url());
    let b = Server::start(&dirs[1], &config(&dirs[1], "b", &upstream_a));
    let liar = format!("[content]\nupstream = [{:?}]\n", lying_upstream(b"wrong"));
    let c = Server::start(&dirs[2], &config(&dirs[2], "c", &liar));
    std::fs::write(
        dirs[3].join("netdeploy.toml"),
        config(&dirs[3], "d", &upstream_a),
    )
    .unwrap();

    let (k, i) = small_image(&dirs[0]);
    let site = write_site(&dirs[0], &k, &i, PC1, "52:54:00:0d:0a:09", "");
    cli_of(&dirs[0], &["site", "apply", site.to_str().unwrap()]);
    let kernel = sha256_hex(&std::fs::read(&k).unwrap());
    let path = format!("/content/{kernel}");
    let b_copy = dirs[1].join(format!("data/content/{}/{kernel}", &kernel[..2]));
    assert!(!b_copy.exists(), "B starts without the content");

    // B lacks the kernel: it fetches it from A, checks it, keeps it and serves it.
    let mut got = (0, Vec::new());
    assert!(
        within(Duration::from_secs(5), || {
            got = crate::harness::http_get_status(b.http_addr(), &path);
            got.0 == 200
        }),
        "B serves the kernel: {}\n{}",
        got.0,
        b.log()
    );
    assert_eq!(got.1, std::fs::read(&k).unwrap());
    assert!(b_copy.is_file(), "kept in B's library");
    b.wait_for_log(&["content fetched from upstream"], Duration::from_secs(5))
        .expect("the fetch is logged");
    let initrd = sha256_hex(&std::fs::read(&i).unwrap());
    let (code, bytes) =
        crate::harness::http_get_status(b.http_addr(), &format!("/content/{initrd}"));
    assert_eq!((code, bytes), (200, std::fs::read(&i).unwrap()));

    // C's upstream sends other bytes: refused before they are stored, and said why.
    let (code, body) = crate::harness::http_get_status(c.http_addr(), &path);
    assert_eq!(code, 502, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("SHA-256 mismatch"));
    assert!(!dirs[2]
        .join(format!("data/content/{}/{kernel}", &kernel[..2]))
        .exists());

    // D (no server running) pre-stages the deployment's content from A.
    let synced = cli_of(&dirs[3], &["content", "sync", "LAB00001"]);
    assert!(synced.contains("fetched  boot image linux-x64"), "{synced}");
    assert!(synced.contains("0 failed"), "{synced}");

    // Any host shows which server holds what, and why C failed.
    let mut shown = String::new();
    assert!(
        within(Duration::from_secs(5), || {
            shown = cli_of(&dirs[3], &["content", "status"]);
            shown.contains("FAILED") && shown.matches("holds    boot_image:linux-x64").count() >= 3
        }),
        "{shown}"
    );
    let section = |name: &str| {
        shown
            .split("\n\n")
            .flat_map(|s| s.split_inclusive('\n'))
            .skip_while(|l| !l.starts_with(&format!("{name}  ")))
            .skip(1)
            .take_while(|l| l.starts_with("    "))
            .collect::<String>()
    };
    assert!(
        section("a").contains("holds    boot_image:linux-x64"),
        "{shown}"
    );
    assert!(
        section("d").contains("holds    boot_image:linux-x64"),
        "{shown}"
    );
    assert!(
        section("c").contains(&format!("FAILED   {kernel}")),
        "{shown}"
    );
    assert!(section("c").contains("SHA-256 mismatch"), "{shown}");
    drop((a, b, c));
}
