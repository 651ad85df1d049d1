//! Monitoring: devices driven through the five states by real status messages over HTTP; the
//! JSON, the web page (in a real headless Chromium) and `netdeploy status` show the same counts.

use std::process::Command;

use crate::deployments::write_site;
use crate::harness::{boot_script, cli_ok, http_get, loopback_config, Server};

fn post_status(s: &Server, body: &str) {
    assert_eq!(s.post_status(body), 201, "{body}");
}

/// lab: pc1 (succeeded), pc2 (running), pc3 (failed), pc4 (offered by a menu), pc5 (silent);
/// pc1 is also in `pair` with pc5.
fn setup() -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().unwrap();
    let k = dir.path().join("vmlinuz");
    let i = dir.path().join("initrd.img");
    std::fs::write(&k, b"kernel").unwrap();
    std::fs::write(&i, b"initrd").unwrap();
    let site = write_site(
        dir.path(),
        &k,
        &i,
        "52:54:00:0e:00:01",
        "52:54:00:0e:00:09",
        "",
    );
    let mut text = std::fs::read_to_string(&site).unwrap().replace(
        "members = [\"pc1\"]",
        "members = [\"pc1\", \"pc2\", \"pc3\", \"pc4\", \"pc5\"]",
    );
    for n in 2..=5 {
        text.push_str(&format!(
            "\n[[device]]\nname = \"pc{n}\"\nmacs = [\"52:54:00:0e:00:0{n}\"]\n"
        ));
    }
    text.push_str("\n[[collection]]\nid = \"pair\"\nmembers = [\"pc1\", \"pc5\"]\n");
    // pc4 gets LAB00004, an available deployment, from a menu.
    text.push_str("\n[[deployment]]\nid = \"LAB00004\"\ntask_sequence = \"hello\"\ncollection = \"lab\"\npurpose = \"available\"\navailable_to = \"media_pxe\"\n");
    std::fs::write(&site, text).unwrap();
    cli_ok(
        &dir.path().join("data"),
        &["site", "apply", site.to_str().unwrap()],
    );
    let server = Server::start(dir.path(), &loopback_config(dir.path(), "proxy", ""));
    let m = |n: u8| format!("52:54:00:0e:00:0{n}");
    post_status(
        &server,
        &format!(
            r#"{{"kind":"started","mac":"{}","deployment":"LAB00001"}}"#,
            m(1)
        ),
    );
    post_status(
        &server,
        &format!(
            r#"{{"kind":"succeeded","mac":"{}","deployment":"LAB00001"}}"#,
            m(1)
        ),
    );
    post_status(
        &server,
        &format!(
            r#"{{"kind":"started","mac":"{}","deployment":"LAB00001"}}"#,
            m(2)
        ),
    );
    post_status(
        &server,
        &format!(
            r#"{{"kind":"step","mac":"{}","deployment":"LAB00001","step":"hello","ok":true}}"#,
            m(2)
        ),
    );
    post_status(
        &server,
        &format!(
            r#"{{"kind":"started","mac":"{}","deployment":"LAB00001"}}"#,
            m(3)
        ),
    );
    post_status(
        &server,
        &format!(
            r#"{{"kind":"failed","mac":"{}","deployment":"LAB00001","step":"hello","reason":"exit code 3"}}"#,
            m(3)
        ),
    );
    // pc4 runs LAB00001 through PXE; booted again the loop guard holds it back and PXE shows
    // the menu with LAB00004, which it does not pick.
    let first = boot_script(&server, "/boot.ipxe?mac=52-54-00-0e-00-04&arch=0");
    assert!(first.contains("netdeploy.deployment=LAB00001"), "{first}");
    post_status(
        &server,
        &format!(
            r#"{{"kind":"started","mac":"{}","deployment":"LAB00001"}}"#,
            m(4)
        ),
    );
    post_status(
        &server,
        &format!(
            r#"{{"kind":"succeeded","mac":"{}","deployment":"LAB00001"}}"#,
            m(4)
        ),
    );
    let menu = boot_script(&server, "/boot.ipxe?mac=52-54-00-0e-00-04&arch=0");
    assert!(menu.contains("item LAB00004"), "{menu}");
    (dir, server)
}

fn counts(json: &serde_json::Value, deployment: &str) -> Vec<u64> {
    let d = json["overview"]["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["deployment"] == deployment)
        .unwrap();
    [
        "compliant",
        "in_progress",
        "non_compliant",
        "failed",
        "unknown",
    ]
    .iter()
    .map(|s| d["counts"][s].as_u64().unwrap())
    .collect()
}

#[test]
fn devices_are_in_exactly_one_state_per_collection_scope() {
    let (dir, server) = setup();
    let j: serde_json::Value =
        serde_json::from_str(&http_get(server.http_addr(), "/status.json")).unwrap();
    // pc1 compliant; pc2 in progress; pc3 failed; pc4 compliant (it ran LAB00001); pc5 unknown.
    assert_eq!(counts(&j, "LAB00001"), vec![2, 1, 0, 1, 1], "{j}");
    // LAB00004 was offered to pc4 by the menu and not run: non-compliant; the rest unknown.
    assert_eq!(counts(&j, "LAB00004"), vec![0, 0, 1, 0, 4], "{j}");
    // Scope changed to `pair` (pc1, pc5): a device in two collections counts in both.
    let j: serde_json::Value = serde_json::from_str(&http_get(
        server.http_addr(),
        "/status.json?collection=pair",
    ))
    .unwrap();
    assert_eq!(counts(&j, "LAB00001"), vec![1, 0, 0, 0, 1], "{j}");
    // Failures over time follow the scope: pc3's failure is not in `pair`, it is in `lab`.
    let fails = |j: &serde_json::Value| -> u64 {
        j["overview"]["failures"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f[1].as_u64().unwrap())
            .sum()
    };
    assert_eq!(fails(&j), 0, "{j}");
    let lab: serde_json::Value =
        serde_json::from_str(&http_get(server.http_addr(), "/status.json?collection=lab")).unwrap();
    assert_eq!(fails(&lab), 1, "{lab}");
    // The CLI shows the same numbers.
    let out = cli_ok(&dir.path().join("data"), &["status"]);
    let row = out.lines().find(|l| l.starts_with("LAB00001")).unwrap();
    let nums: Vec<&str> = row.split_whitespace().skip(2).collect();
    assert_eq!(nums, ["2", "1", "0", "1", "1"], "{out}");
    assert!(out.contains("1 in all"), "{out}");
}

#[test]
fn the_status_page_shows_the_json_counts_in_a_real_browser() {
    let (dir, server) = setup();
    let j: serde_json::Value =
        serde_json::from_str(&http_get(server.http_addr(), "/status.json")).unwrap();
    let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("headless Chromium is needed: install the Debian package chromium");
    let url = format!("{}/status", server.url());
    let profile = dir.path().join("profile");
    let base = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ];
    let dom = Command::new(chromium)
        .args(base)
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(["--dump-dom", &url])
        .output()
        .expect("run chromium");
    let html = String::from_utf8_lossy(&dom.stdout);
    assert!(
        html.contains("netdeploy status"),
        "page did not load: {}",
        String::from_utf8_lossy(&dom.stderr)
    );
    let row_start = html
        .find("<tr data-deployment=\"LAB00001\">")
        .expect("row of LAB00001");
    let row = &html[row_start..html[row_start..].find("</tr>").unwrap() + row_start];
    for (state, n) in [
        "compliant",
        "in_progress",
        "non_compliant",
        "failed",
        "unknown",
    ]
    .iter()
    .zip(counts(&j, "LAB00001"))
    {
        assert!(
            row.contains(&format!("data-state=\"{state}\">{n}<")),
            "{state} should be {n} in {row}"
        );
    }
    assert!(
        html.contains("<svg id=\"failures\"") || html.contains("id=\"failures\""),
        "failure chart"
    );
    // A screenshot for review, kept in target/.
    let shot = crate::lab::repo().join("target/status-page.png");
    let out = Command::new(chromium)
        .args(base)
        .arg(format!("--user-data-dir={}", profile.display()))
        .args([
            "--window-size=1200,900",
            &format!("--screenshot={}", shot.display()),
            &url,
        ])
        .output()
        .expect("run chromium");
    assert!(
        shot.exists(),
        "no screenshot: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The machine's row of `deployment` in `/status.json`: its state and reason.
fn machine_state(server: &Server, deployment: &str, machine: &str) -> (String, String) {
    let j: serde_json::Value =
        serde_json::from_str(&http_get(server.http_addr(), "/status.json")).unwrap();
    let d = j["overview"]["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["deployment"] == deployment)
        .unwrap();
    let m = d["machines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["machine"] == machine)
        .unwrap_or_else(|| panic!("{machine} in {d}"));
    (
        m["state"].as_str().unwrap().to_owned(),
        m["reason"].as_str().unwrap_or("").to_owned(),
    )
}

#[test]
fn requirements_not_met_are_non_compliant_with_the_reason_and_a_power_cut_counts_as_run() {
    let dir = tempfile::tempdir().unwrap();
    let k = dir.path().join("vmlinuz");
    let i = dir.path().join("initrd.img");
    std::fs::write(&k, b"kernel").unwrap();
    std::fs::write(&i, b"initrd").unwrap();
    let site = write_site(
        dir.path(),
        &k,
        &i,
        "52:54:00:0e:01:01",
        "52:54:00:0e:01:09",
        "",
    );
    // LAB00001 (x64 boot image) reaches pc1, pc2 and pc3 and never runs twice.
    let mut text = std::fs::read_to_string(&site)
        .unwrap()
        .replace(
            "members = [\"pc1\"]",
            "members = [\"pc1\", \"pc2\", \"pc3\"]",
        )
        .replace(
            "available_to = \"media_pxe\"\n",
            "available_to = \"media_pxe\"\nrerun = \"never\"\n",
        );
    for n in 2..=3 {
        text.push_str(&format!(
            "\n[[device]]\nname = \"pc{n}\"\nmacs = [\"52:54:00:0e:01:0{n}\"]\n"
        ));
    }
    std::fs::write(&site, text).unwrap();
    cli_ok(
        &dir.path().join("data"),
        &["site", "apply", site.to_str().unwrap()],
    );
    let server = Server::start(dir.path(), &loopback_config(dir.path(), "proxy", ""));

    // pc1 is an ARM64 UEFI machine: its firmware cannot start an x64 boot image.
    let script = boot_script(&server, "/boot.ipxe?mac=52-54-00-0e-01-01&arch=11");
    assert!(!script.contains("netdeploy.deployment="), "{script}");
    let (state, reason) = machine_state(&server, "LAB00001", "pc1");
    assert_eq!(state, "non_compliant");
    assert!(reason.contains("rule 5a (architecture)"), "{reason}");

    // pc2 starts LAB00001 through PXE, loses power, and boots again: the loop guard refuses.
    let first = boot_script(&server, "/boot.ipxe?mac=52-54-00-0e-01-02&arch=0");
    assert!(first.contains("netdeploy.deployment=LAB00001"), "{first}");
    assert_eq!(machine_state(&server, "LAB00001", "pc2").0, "in_progress");
    let again = boot_script(&server, "/boot.ipxe?mac=52-54-00-0e-01-02&arch=0");
    assert!(!again.contains("netdeploy.deployment="), "{again}");
    let (state, reason) = machine_state(&server, "LAB00001", "pc2");
    assert_eq!(state, "non_compliant");
    assert!(reason.contains("rule 7 (loop guard)"), "{reason}");

    // pc3 starts LAB00001 from boot media and loses power: with rerun behaviour `never` that
    // run counts, so media do not start it again.
    let key = crate::harness::medium_key(&server.data_dir());
    let policy = |mac: &str| {
        let (status, body) = crate::harness::http_request(
            server.http_addr(),
            "GET",
            &format!("/agent/policy?mac={mac}&context=media"),
            &[&crate::harness::medium_auth(&key)],
            b"",
        );
        assert_eq!(status, 200);
        String::from_utf8_lossy(&body).into_owned()
    };
    assert!(
        policy("52:54:00:0e:01:03").contains("LAB00001"),
        "the first run is allowed"
    );
    post_status(
        &server,
        r#"{"kind":"started","mac":"52:54:00:0e:01:03","deployment":"LAB00001"}"#,
    );
    let after = policy("52:54:00:0e:01:03");
    assert!(after.contains("rerun behaviour"), "{after}");
    let (state, reason) = machine_state(&server, "LAB00001", "pc3");
    assert_eq!(state, "non_compliant");
    assert!(reason.contains("rule 7 (rerun behaviour)"), "{reason}");
    assert!(reason.contains("interrupted"), "{reason}");
    // `netdeploy status --machines` gives the same reason.
    let out = cli_ok(&dir.path().join("data"), &["status", "--machines"]);
    let line = out
        .lines()
        .find(|l| l.trim_start().starts_with("pc3 "))
        .unwrap_or_else(|| panic!("pc3 in {out}"));
    assert!(
        line.contains("Non-compliant") && line.contains("rule 7 (rerun behaviour)"),
        "{line}"
    );
    // Repeated refusals of one boot are one status message.
    policy("52:54:00:0e:01:03");
    let messages = cli_ok(&dir.path().join("data"), &["status", "--json"]);
    let j: serde_json::Value = serde_json::from_str(&messages).unwrap();
    let unmet = j["recent"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["kind"] == "requirements-not-met" && m["device"] == "pc3")
        .count();
    assert_eq!(unmet, 1, "{j}");
}

/// The DOM of `url` after headless Chromium loaded it.
fn chromium_dom(profile: &std::path::Path, url: &str) -> String {
    let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("headless Chromium is needed: install the Debian package chromium");
    let out = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(["--dump-dom", url])
        .output()
        .expect("run chromium");
    let html = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        html.contains("</html>"),
        "{url} did not load: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    html
}

/// The first link's target inside the element that starts with `start`.
fn link_in(html: &str, start: &str) -> String {
    let at = html
        .find(start)
        .unwrap_or_else(|| panic!("{start} in {html}"));
    let rest = &html[at..];
    let href = rest.find("href=\"").expect("a link") + 6;
    let end = rest[href..].find('"').unwrap() + href;
    rest[href..end].replace("&amp;", "&")
}

#[test]
fn the_status_page_leads_from_the_overview_to_a_failed_machine_and_its_failing_step() {
    let (dir, server) = setup();
    let profile = dir.path().join("profile");
    let overview = chromium_dom(&profile, &format!("{}/status", server.url()));
    // The deployment's row opens its page ...
    let deployment = link_in(&overview, "<tr data-deployment=\"LAB00001\">");
    let page = chromium_dom(&profile, &format!("{}{deployment}", server.url()));
    // ... with the five states, each listing its machines.
    for (state, machines) in [
        ("compliant", &["pc1", "pc4"][..]),
        ("in_progress", &["pc2"]),
        ("non_compliant", &[]),
        ("failed", &["pc3"]),
        ("unknown", &["pc5"]),
    ] {
        let at = page
            .find(&format!("<section id=\"{state}\">"))
            .unwrap_or_else(|| panic!("section {state} in {page}"));
        let section = &page[at..at + page[at..].find("</section>").unwrap()];
        for m in machines {
            assert!(
                section.contains(&format!("data-machine=\"{m}\"")),
                "{m} in {state}: {section}"
            );
        }
    }
    let failed_at = page.find("<section id=\"failed\">").unwrap();
    let failed = &page[failed_at..];
    assert!(failed.contains("52:54:00:0e:00:03"), "its MAC: {failed}");
    assert!(failed.contains(" UTC"), "a readable time: {failed}");
    // The failed machine opens its own page: the run, the failing step and its message.
    let machine = link_in(failed, "<tr data-machine=\"pc3\">");
    let page = chromium_dom(&profile, &format!("{}{machine}", server.url()));
    assert!(page.contains("data-state=\"failed\">Failed<"), "{page}");
    let step_at = page
        .find("<tr class=\"failed\" data-step=\"hello\">")
        .unwrap_or_else(|| panic!("the failing step in {page}"));
    let step = &page[step_at..step_at + page[step_at..].find("</tr>").unwrap()];
    assert!(step.contains("exit code 3"), "{step}");
    assert!(step.contains("<td class=\"result\">failed</td>"), "{step}");
    assert!(page.contains("Run 1: started"), "{page}");
    // Its status messages in order, and what explain says now.
    let started = page.find("<td>started</td>").expect("the start message");
    let ended = page.find("<td>failed</td>").expect("the failure message");
    assert!(started < ended, "messages in order");
    assert!(page.contains("id=\"explain\""), "{page}");
    assert!(page.contains("LAB00001"), "{page}");
}

#[test]
fn site_author_and_agent_text_on_the_status_pages_is_escaped() {
    let (dir, server) = setup();
    // A task sequence name and a deployment comment from a site file, and a failure reason
    // from a boot environment, each carrying markup.
    let site = dir.path().join("site.toml");
    let text = std::fs::read_to_string(&site)
        .unwrap()
        .replace(
            "name = \"Say hello\"",
            "name = \"<script>document.title='owned'</script>\"",
        )
        .replace(
            "id = \"LAB00001\"\n",
            "id = \"LAB00001\"\ncomments = \"<img src=x onerror=alert(1)>\"\n",
        );
    std::fs::write(&site, text).unwrap();
    cli_ok(
        &dir.path().join("data"),
        &["site", "apply", site.to_str().unwrap()],
    );
    post_status(
        &server,
        r#"{"kind":"failed","mac":"52:54:00:0e:00:05","deployment":"LAB00001","step":"<i>x</i>","reason":"<script>alert(2)</script>"}"#,
    );
    for path in [
        "/status".to_owned(),
        "/status/deployment?id=LAB00001".to_owned(),
        "/status/machine?deployment=LAB00001&machine=pc5".to_owned(),
    ] {
        let html = http_get(server.http_addr(), &path);
        assert!(!html.contains("<script"), "{path}: {html}");
        assert!(!html.contains("<img"), "{path}: {html}");
        assert!(!html.contains("<i>"), "{path}: {html}");
    }
    let page = http_get(server.http_addr(), "/status/deployment?id=LAB00001");
    assert!(
        page.contains("&lt;script&gt;document.title='owned'&lt;/script&gt;"),
        "{page}"
    );
    assert!(
        page.contains("&lt;img src=x onerror=alert(1)&gt;"),
        "{page}"
    );
    let machine = http_get(
        server.http_addr(),
        "/status/machine?deployment=LAB00001&machine=pc5",
    );
    assert!(
        machine.contains("&lt;script&gt;alert(2)&lt;/script&gt;"),
        "{machine}"
    );
}

/// A webhook receiver on 127.0.0.1: records each POST body and answers 200, for at most 60 s.
fn webhook_receiver() -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = got.clone();
    std::thread::spawn(move || {
        let end = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while std::time::Instant::now() < end {
            let Ok((stream, _)) = listener.accept() else {
                std::thread::sleep(std::time::Duration::from_millis(20));
                continue;
            };
            stream.set_nonblocking(false).unwrap();
            stream
                .set_read_timeout(Some(std::time::Duration::from_secs(5)))
                .unwrap();
            let mut reader = BufReader::new(stream);
            let mut length = 0;
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                if line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
                line.clear();
            }
            let mut body = vec![0u8; length];
            reader.read_exact(&mut body).unwrap();
            sink.lock()
                .unwrap()
                .push(serde_json::from_slice(&body).unwrap());
            let _ = reader
                .get_mut()
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    (addr, got)
}

fn wait_for_posts(got: &std::sync::Mutex<Vec<serde_json::Value>>, n: usize) {
    let end = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while got.lock().unwrap().len() < n && std::time::Instant::now() < end {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn an_alert_is_raised_posted_once_to_the_webhook_and_cleared() {
    let (hook, got) = webhook_receiver();
    let dir = tempfile::tempdir().unwrap();
    let k = dir.path().join("vmlinuz");
    let i = dir.path().join("initrd.img");
    std::fs::write(&k, b"kernel").unwrap();
    std::fs::write(&i, b"initrd").unwrap();
    let site = write_site(
        dir.path(),
        &k,
        &i,
        "52:54:00:0e:02:01",
        "52:54:00:0e:02:09",
        "",
    );
    // LAB00001 over pc1..pc4 raises an alert at 50% and at least 2 failed machines.
    let mut text = std::fs::read_to_string(&site)
        .unwrap()
        .replace(
            "members = [\"pc1\"]",
            "members = [\"pc1\", \"pc2\", \"pc3\", \"pc4\"]",
        )
        .replacen(
            "available_to = \"media_pxe\"\n",
            "available_to = \"media_pxe\"\nalert_failure_percent = 50\nalert_min_failures = 2\n",
            1,
        );
    for n in 2..=4 {
        text.push_str(&format!(
            "\n[[device]]\nname = \"pc{n}\"\nmacs = [\"52:54:00:0e:02:0{n}\"]\n"
        ));
    }
    std::fs::write(&site, text).unwrap();
    let data = dir.path().join("data");
    cli_ok(&data, &["site", "apply", site.to_str().unwrap()]);
    assert!(cli_ok(&data, &["alert", "list"]).contains("LAB00001  50%  at least 2"));
    let config = loopback_config(dir.path(), "proxy", "")
        + &format!("[alerts]\nwebhooks = [\"http://{hook}/netdeploy-alert\"]\n");
    let server = Server::start(dir.path(), &config);
    let alerts = || -> Vec<serde_json::Value> {
        let j: serde_json::Value =
            serde_json::from_str(&http_get(server.http_addr(), "/status.json")).unwrap();
        j["alerts"].as_array().unwrap().clone()
    };
    let report = |n: u8, kind: &str| {
        post_status(
            &server,
            &format!(r#"{{"kind":"{kind}","mac":"52:54:00:0e:02:0{n}","deployment":"LAB00001"}}"#),
        )
    };

    // One failure of four: 25%, and under the count.
    report(1, "failed");
    assert!(alerts().is_empty());
    // Two of four: 50% and 2 machines, the alert is raised.
    report(2, "failed");
    let raised = alerts();
    assert_eq!(raised.len(), 1, "{raised:?}");
    assert_eq!(raised[0]["deployment"], "LAB00001");
    assert_eq!(
        (raised[0]["failed"].as_u64(), raised[0]["machines"].as_u64()),
        (Some(2), Some(4))
    );
    let page = http_get(server.http_addr(), "/status");
    assert!(page.contains("<li data-alert=\"LAB00001\""), "{page}");
    let page = http_get(server.http_addr(), "/status/deployment?id=LAB00001");
    assert!(page.contains("id=\"alert\""), "{page}");
    wait_for_posts(&got, 1);
    {
        let posts = got.lock().unwrap();
        assert_eq!(posts.len(), 1, "{posts:?}");
        assert_eq!(posts[0]["event"], "raised");
        assert_eq!(posts[0]["alert"]["deployment"], "LAB00001");
    }
    // Further evaluations do not post it again; a third failure keeps it raised.
    report(3, "failed");
    server
        .wait_for_log(
            &["alert-raised", "LAB00001"],
            std::time::Duration::from_secs(5),
        )
        .expect("the raise is logged");
    std::thread::sleep(std::time::Duration::from_secs(5));
    assert_eq!(got.lock().unwrap().len(), 1, "posted once");

    // The machines are re-run and succeed: back under the threshold, the alert clears.
    for n in 1..=3 {
        report(n, "started");
        report(n, "succeeded");
    }
    assert!(alerts().is_empty());
    assert!(!http_get(server.http_addr(), "/status").contains("data-alert="));
    wait_for_posts(&got, 2);
    let posts = got.lock().unwrap();
    assert_eq!(posts.len(), 2, "{posts:?}");
    assert_eq!(posts[1]["event"], "cleared");
    assert_eq!(posts[1]["deployment"], "LAB00001");
}
