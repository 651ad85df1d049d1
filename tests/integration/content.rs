//! Content over HTTP with real clients (curl): ranges, ETag, Repr-Digest; the policy and status
//! endpoints of the boot environment.

use std::process::Command;

use crate::deployments::write_site;
use crate::harness::{
    bearer, boot_script, cli_ok, http_request, loopback_config, token_in_script, Server,
};

/// The policy a boot medium gets for `path`, presenting a medium key.
fn media_policy(server: &Server, path: &str) -> serde_json::Value {
    let key = crate::harness::medium_key(&server.data_dir());
    let (status, body) = http_request(
        server.http_addr(),
        "GET",
        path,
        &[&crate::harness::medium_auth(&key)],
        b"",
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap()
}

/// The policy a PXE run's boot environment gets, presenting the run's token.
fn pxe_policy(server: &Server, mac: &str, deployment: &str, token: &str) -> serde_json::Value {
    let (status, body) = http_request(
        server.http_addr(),
        "GET",
        &format!("/agent/policy?mac={mac}&context=pxe&deployment={deployment}"),
        &[&bearer(token)],
        b"",
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap()
}

fn curl(args: &[&str]) -> String {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20"])
        .args(args)
        .output()
        .expect("curl is installed (Debian package curl)");
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn sha256_hex(path: &std::path::Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

/// A site whose task sequence applies a disk image from a package.
fn setup() -> (tempfile::TempDir, Server, String, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let k = dir.path().join("vmlinuz");
    let i = dir.path().join("initrd.img");
    std::fs::write(&k, b"kernel").unwrap();
    std::fs::write(&i, b"initrd").unwrap();
    let pkg = dir.path().join("disk");
    std::fs::create_dir_all(&pkg).unwrap();
    let image: Vec<u8> = (0..3u32 * 1024 * 1024)
        .map(|n| (n.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(pkg.join("disk.img"), &image).unwrap();
    let extra = "";
    let site = write_site(
        dir.path(),
        &k,
        &i,
        "52:54:00:0d:04:01",
        "52:54:00:0d:04:02",
        extra,
    );
    let text = std::fs::read_to_string(&site)
        .unwrap()
        .replace(
            "steps = [{ name = \"hello\", action = \"run_command\", command = \"echo hello\" }]",
            "steps = [{ name = \"write the disk\", action = \"apply_image\", package = \"disk\", file = \"disk.img\", target = \"/dev/vda\" }, { name = \"off\", action = \"poweroff\" }]",
        )
        + &format!("\n[[package]]\nid = \"disk\"\nfrom = {:?}\n", pkg.display().to_string());
    std::fs::write(&site, text).unwrap();
    cli_ok(
        &dir.path().join("data"),
        &["site", "apply", site.to_str().unwrap()],
    );
    let server = Server::start(dir.path(), &loopback_config(dir.path(), "proxy", ""));
    let sha = sha256_hex(&pkg.join("disk.img"));
    (dir, server, sha, image)
}

#[test]
fn content_is_served_by_hash_with_ranges_etag_and_repr_digest() {
    let (dir, server, sha, image) = setup();
    let url = format!("{}/content/{sha}", server.url());
    let out = dir.path().join("out");
    let headers = curl(&["-D", "-", "-o", out.to_str().unwrap(), &url]);
    assert_eq!(std::fs::read(&out).unwrap(), image);
    let lower = headers.to_ascii_lowercase();
    assert!(lower.contains(&format!("etag: \"{sha}\"")), "{headers}");
    assert!(lower.contains("repr-digest: sha-256=:"), "{headers}");
    assert!(lower.contains("accept-ranges: bytes"), "{headers}");
    // The digest is the SHA-256 of the bytes, base64 (RFC 9530).
    let b64 = headers
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("repr-digest"))
        .unwrap();
    let expected = netdeploy::content::base64(&netdeploy_wire::hex::decode(&sha).unwrap());
    assert!(b64.contains(&expected), "{b64} vs {expected}");
    // A resumed download: curl -C - continues a partial file with Range.
    std::fs::write(&out, &image[..1_000_000]).unwrap();
    curl(&["-C", "-", "-o", out.to_str().unwrap(), &url]);
    assert_eq!(
        std::fs::read(&out).unwrap(),
        image,
        "resumed download differs"
    );
    curl(&["-r", "100-199", "-o", out.to_str().unwrap(), &url]);
    assert_eq!(std::fs::read(&out).unwrap(), &image[100..200]);
    let (status, _) = http_request(
        server.http_addr(),
        "GET",
        &format!("/content/{sha}"),
        &["Range: bytes=99999999-"],
        b"",
    );
    assert_eq!(status, 416);
    let (status, _) = http_request(
        server.http_addr(),
        "GET",
        &format!("/content/{sha}"),
        &[&format!("If-None-Match: \"{sha}\"")],
        b"",
    );
    assert_eq!(status, 304);
    let (status, _) = http_request(
        server.http_addr(),
        "GET",
        "/content/../../etc/passwd",
        &[],
        b"",
    );
    assert_eq!(status, 404);
}

#[test]
fn a_required_run_started_by_pxe_gets_the_reason_explain_gives_not_a_preferred_id() {
    let (dir, server, _, _) = setup();
    let explained = cli_ok(
        &dir.path().join("data"),
        &["explain", "--mac", "52:54:00:0d:04:01", "--arch", "0"],
    );
    assert!(
        explained.contains("run LAB00001 unattended") && explained.contains("rule 5"),
        "{explained}"
    );
    let script = boot_script(&server, "/boot.ipxe?mac=52-54-00-0d-04-01&arch=0");
    assert!(script.contains("netdeploy.deployment=LAB00001"), "{script}");
    let token = token_in_script(&script).expect("a run token in the script");
    let p = pxe_policy(&server, "52:54:00:0d:04:01", "LAB00001", &token);
    assert_eq!(p["action"], "run", "{p}");
    assert_eq!(p["reason"], "required (rule 5)", "{p}");
    // Media naming a deployment is what rule 3 is about.
    let p = media_policy(
        &server,
        "/agent/policy?mac=52:54:00:0d:04:01&context=media&deployment=LAB00001",
    );
    assert_eq!(p["reason"], "preferred (rule 3)", "{p}");
}

#[test]
fn policy_lists_steps_and_hashed_content_and_status_messages_are_stored() {
    let (dir, server, sha, image) = setup();
    // The PXE script starts LAB00001 (and sets the loop guard)...
    let script = boot_script(&server, "/boot.ipxe?mac=52-54-00-0d-04-01&arch=0");
    assert!(
        script.contains("netdeploy.deployment=LAB00001 netdeploy.context=pxe"),
        "{script}"
    );
    // ...and the boot environment it started still gets that deployment's policy.
    let token = token_in_script(&script).expect("a run token in the script");
    let p = pxe_policy(&server, "52:54:00:0d:04:01", "LAB00001", &token);
    assert_eq!(p["action"], "run", "{p}");
    assert_eq!(p["deployment"]["id"], "LAB00001");
    assert_eq!(p["steps"][0]["action"], "apply_image");
    let f = &p["packages"]["disk"][0];
    assert_eq!(f["sha256"], sha.as_str());
    assert_eq!(f["size"], image.len() as u64);
    assert_eq!(f["url"], format!("{}/content/{sha}", server.url()).as_str());
    // A machine nothing targets is told so plainly.
    let p = media_policy(&server, "/agent/policy?mac=52:54:00:0d:04:02&context=media");
    assert_eq!(p["action"], "none", "{p}");
    assert!(p["reason"].as_str().unwrap().contains("rule 8"), "{p}");
    // Status messages in; the failure becomes the last attempt.
    for body in [
        r#"{"kind":"started","mac":"52:54:00:0d:04:01","deployment":"LAB00001"}"#,
        r#"{"kind":"failed","mac":"52:54:00:0d:04:01","deployment":"LAB00001","step":"write the disk","file":"disk.img","reason":"hash mismatch"}"#,
    ] {
        let (status, _) = http_request(
            server.http_addr(),
            "POST",
            "/agent/status",
            &["Content-Type: application/json", &bearer(&token)],
            body.as_bytes(),
        );
        assert_eq!(status, 201);
    }
    let (status, _) = http_request(
        server.http_addr(),
        "POST",
        "/agent/status",
        &[],
        b"{\"kind\":\"exploded\",\"mac\":\"52:54:00:0d:04:01\"}",
    );
    assert_eq!(status, 400);
    server
        .wait_for_log(
            &["agent status", "failed", "hash mismatch"],
            std::time::Duration::from_secs(3),
        )
        .expect("failure logged");
    drop(server);
    let _ = dir;
}

#[test]
fn winpe_deployment_loads_wimboot_files_and_injects_the_agent_and_what_starts_it() {
    let dir = tempfile::tempdir().unwrap();
    let k = dir.path().join("vmlinuz");
    let i = dir.path().join("initrd.img");
    std::fs::write(&k, b"kernel").unwrap();
    std::fs::write(&i, b"initrd").unwrap();
    for (name, bytes) in [
        ("wimboot", "wimboot binary"),
        ("bootmgr", "bootmgr bytes"),
        ("BCD", "bcd store"),
        ("boot.sdi", "sdi"),
        ("boot.wim", "a windows image"),
        ("netdeploy-agent.exe", "MZ the windows agent"),
    ] {
        std::fs::write(dir.path().join(name), bytes).unwrap();
    }
    let site = write_site(
        dir.path(),
        &k,
        &i,
        "52:54:00:0d:05:01",
        "52:54:00:0d:05:02",
        "",
    );
    let text = std::fs::read_to_string(&site).unwrap().replace(
        "[[task_sequence]]\nid = \"hello\"",
        "[[boot_image]]\nid = \"winpe-x64\"\narch = \"x64\"\nkind = \"winpe\"\nwimboot = \"wimboot\"\nbootmgr = \"bootmgr\"\nbcd = \"BCD\"\nboot_sdi = \"boot.sdi\"\nboot_wim = \"boot.wim\"\n\n[[task_sequence]]\nid = \"hello\"",
    ).replace("boot_image = \"linux-x64\"\nsteps", "boot_image = \"winpe-x64\"\nsteps");
    std::fs::write(&site, text).unwrap();
    cli_ok(
        &dir.path().join("data"),
        &["site", "apply", site.to_str().unwrap()],
    );
    let agent = format!(
        "[boot]\nwindows_agent = {:?}\n",
        dir.path().join("netdeploy-agent.exe").display().to_string()
    );
    let server = Server::start(dir.path(), &loopback_config(dir.path(), "proxy", &agent));
    let script = boot_script(&server, "/boot.ipxe?mac=52-54-00-0d-05-01&arch=7");
    assert!(script.starts_with("#!ipxe"), "{script}");
    let url = server.url();
    let mut seen = 0;
    for line in script
        .lines()
        .filter(|l| l.starts_with("kernel ") || l.starts_with("initrd "))
    {
        let target = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap();
        let path = target.strip_prefix(&url).unwrap();
        let (status, body) = crate::harness::http_get_status(server.http_addr(), path);
        assert_eq!(status, 200, "{line}");
        for (name, bytes) in [
            ("--name bootmgr", "bootmgr bytes"),
            ("--name BCD", "bcd store"),
            ("--name boot.sdi", "sdi"),
            ("--name boot.wim", "a windows image"),
            ("--name netdeploy-agent.exe", "MZ the windows agent"),
            (
                "--name winpeshl.ini",
                "[LaunchApps]\r\n%SYSTEMROOT%\\System32\\wpeinit.exe\r\n\
                 %SYSTEMROOT%\\System32\\netdeploy-agent.exe, run\r\n",
            ),
        ] {
            if line.contains(name) {
                assert_eq!(body, bytes.as_bytes(), "{line}");
                seen += 1;
            }
        }
        if line.starts_with("kernel ") {
            assert_eq!(body, b"wimboot binary");
            seen += 1;
        }
        if line.contains("--name netdeploy.ini") {
            let vars = String::from_utf8(body).unwrap();
            assert!(
                vars.contains(&format!("SMSTSServerURL={url}\r\n")),
                "{vars}"
            );
            assert!(
                vars.contains("SMSTSPreferredAdvertID=LAB00001\r\n"),
                "{vars}"
            );
            assert!(vars.contains("SMSTSMediaType=PXE\r\n"), "{vars}");
            seen += 1;
        }
    }
    assert_eq!(
        seen, 8,
        "wimboot, the variables file, the agent, winpeshl.ini and four Windows PE files:\n{script}"
    );
}
