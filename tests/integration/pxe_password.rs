//! The PXE password (docs/selection-rules.md rule 9, docs/security.md) against a real server on
//! loopback: the hash `netdeploy pxe password-hash` prints, the iPXE prompt a machine gets
//! first, three wrong tries, the right one, a menu pick, the Secure Boot chain, and `explain`.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::credentials::rows;
use crate::deployments::{small_image, write_site};
use crate::harness::{
    binary, boot_script, cli, cli_ok, http_get, loopback_config, token_in_script, Server,
};

const PC1: &str = "52:54:00:9a:00:01";
/// The password typed in these tests: a space and a `#` travel URI-encoded, as iPXE's
/// `${password:uristring}` sends them.
pub const PASSWORD: &str = "pxe pass#1";
pub const TYPED: &str = "pxe%20pass%231";

/// `netdeploy pxe password-hash` with `input` on stdin: (success, stdout + stderr).
fn password_hash(input: &str) -> (bool, String) {
    let mut child = Command::new(binary())
        .args(["pxe", "password-hash"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run netdeploy");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// The `[boot]` lines of the password, as the command prints them.
pub fn password_config(password: &str) -> String {
    let (ok, out) = password_hash(&format!("{password}\n"));
    assert!(ok, "{out}");
    out
}

/// pc1 with LAB00001 (required, media and PXE); unknown computers get LAB00002 (available) as
/// a menu. `boot` goes in the configuration's `[boot]`.
fn start(dir: &Path, boot: &str) -> Server {
    let (kernel, initrd) = small_image(dir);
    let site = write_site(
        dir,
        &kernel,
        &initrd,
        PC1,
        "52:54:00:9a:00:09",
        "unknown_computers = true",
    );
    cli_ok(
        &dir.join("data"),
        &["site", "apply", site.to_str().unwrap()],
    );
    Server::start(dir, &loopback_config(dir, "proxy", boot))
}

/// The rows a start would add, once the server's queued writes are in the store.
fn settled_rows(server: &Server) -> (i64, i64, i64, i64) {
    server.settled();
    rows(server)
}

fn script_path(mac: &str) -> String {
    format!("/boot.ipxe?mac={}&arch=0", mac.replace(':', "-"))
}

#[test]
fn password_hash_prints_an_argon2id_config_line_and_refuses_an_empty_password() {
    let out = password_config(PASSWORD);
    let line = out
        .lines()
        .find(|l| l.starts_with("pxe_password_hash = \"$argon2id$v=19$"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(out.starts_with("[boot]\n"), "{out}");
    assert!(!out.contains(PASSWORD), "{out}");
    // A random salt: the same password hashes differently each time.
    assert_ne!(password_config(PASSWORD).lines().nth(1), Some(line));
    let (ok, out) = password_hash("\n");
    assert!(!ok && out.contains("empty"), "{out}");
}

#[test]
fn without_a_pxe_password_the_first_script_starts_the_deployment() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), "");
    let script = boot_script(&server, &script_path(PC1));
    assert!(script.contains("netdeploy.deployment=LAB00001"), "{script}");
    assert!(token_in_script(&script).is_some(), "{script}");
    assert!(!script.contains("login"), "{script}");
}

#[test]
fn with_a_pxe_password_three_wrong_tries_leave_to_the_next_boot_device_and_record_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &password_config(PASSWORD));
    crate::harness::dhcp_discover(&server, PC1, None);
    let before = settled_rows(&server);

    let prompt = http_get(server.http_addr(), &script_path(PC1));
    assert!(prompt.contains("\nlogin || goto cancel\n"), "{prompt}");
    assert!(
        prompt.contains("&pxe_tries=0&pxe_password=${password:uristring}"),
        "{prompt}"
    );
    assert!(!prompt.contains("netdeploy.deployment="), "{prompt}");
    assert!(token_in_script(&prompt).is_none(), "{prompt}");

    let q = script_path(PC1);
    let again = http_get(
        server.http_addr(),
        &format!("{q}&pxe_tries=0&pxe_password=wrong"),
    );
    assert!(
        again.contains("wrong PXE password, 2 tries left"),
        "{again}"
    );
    assert!(again.contains("&pxe_tries=1&"), "{again}");
    let again = http_get(
        server.http_addr(),
        &format!("{q}&pxe_tries=1&pxe_password=pxe%20pass%232"),
    );
    assert!(again.contains("wrong PXE password, 1 try left"), "{again}");
    let out = http_get(
        server.http_addr(),
        &format!("{q}&pxe_tries=2&pxe_password=pxe+pass"),
    );
    assert!(out.contains("3 wrong PXE passwords"), "{out}");
    assert!(out.contains("\nexit 1\n"), "{out}");
    assert!(!out.contains("login"), "{out}");
    assert!(token_in_script(&out).is_none(), "{out}");

    // Nothing recorded: no start, no loop guard, no run token; a counter and log lines.
    assert_eq!(settled_rows(&server), before);
    assert!(cli_ok(&server.data_dir(), &["pxe", "guards"])
        .trim()
        .is_empty());
    assert_eq!(server.counter("pxe_password_wrong"), 3);
    let log = server.log();
    let wrong: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("wrong PXE password; nothing recorded"))
        .collect();
    assert_eq!(wrong.len(), 3, "{log}");
    assert!(
        wrong
            .iter()
            .all(|l| l.contains(PC1) && l.contains("127.0.0.1")),
        "{wrong:?}"
    );
    assert!(!log.contains(PASSWORD) && !log.contains(TYPED), "{log}");

    // The right password gets the deployment script, with a run token, and the start is
    // recorded (rule 7).
    let run = http_get(
        server.http_addr(),
        &format!("{q}&pxe_tries=0&pxe_password={TYPED}"),
    );
    assert!(run.contains("netdeploy.deployment=LAB00001"), "{run}");
    assert_eq!(token_in_script(&run).map(|t| t.len()), Some(64), "{run}");
    assert_ne!(settled_rows(&server), before);
    assert!(cli_ok(&server.data_dir(), &["pxe", "guards"]).contains("LAB00001"));
}

#[test]
fn a_menu_and_its_pick_are_given_only_with_the_pxe_password() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &password_config(PASSWORD));
    let stranger = "52:54:00:9a:00:07";
    let q = script_path(stranger);
    let prompt = boot_script(&server, &q);
    assert!(prompt.contains("login"), "{prompt}");
    assert!(!prompt.contains("LAB00002"), "{prompt}");

    let menu = http_get(server.http_addr(), &format!("{q}&pxe_password={TYPED}"));
    assert!(menu.contains("item LAB00002 "), "{menu}");
    assert!(
        menu.contains("&deployment=${target}&pxe_password=${password:uristring}\n"),
        "{menu}"
    );

    // The pick is checked again: without the password it is asked for, the pick kept.
    let pick = format!("{q}&deployment=LAB00002");
    let asked = http_get(server.http_addr(), &pick);
    assert!(asked.contains("login"), "{asked}");
    assert!(
        asked.contains("&deployment=LAB00002&pxe_tries=0&"),
        "{asked}"
    );
    assert!(token_in_script(&asked).is_none(), "{asked}");
    let run = http_get(server.http_addr(), &format!("{pick}&pxe_password={TYPED}"));
    assert!(run.contains("netdeploy.deployment=LAB00002"), "{run}");
    assert!(token_in_script(&run).is_some(), "{run}");
}

#[test]
fn explain_says_the_pxe_password_is_asked() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(dir.path(), &password_config(PASSWORD));
    server.stop();
    let explain = |config: &Path| {
        let out = Command::new(binary())
            .arg("--config")
            .arg(config)
            .args(["explain", "--mac", PC1, "--arch", "0"])
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let config = dir.path().join("netdeploy.toml");
    let with = explain(&config);
    assert!(
        with.contains("password: the PXE password is asked before the deployment starts (rule 9)"),
        "{with}"
    );
    std::fs::write(&config, loopback_config(dir.path(), "proxy", "")).unwrap();
    let without = explain(&config);
    assert!(!without.contains("PXE password"), "{without}");
}

#[test]
fn a_pxe_password_hash_that_is_not_argon2id_is_refused_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("netdeploy.toml");
    for bad in [
        "letmein",
        "$argon2i$v=19$m=19456,t=2,p=1$AwMDAwMDAwMDAwMDAwMDAw$9Uw5d5mTJpDS4AZEQvCb8w",
    ] {
        std::fs::write(
            &path,
            loopback_config(
                dir.path(),
                "proxy",
                &format!("[boot]\npxe_password_hash = {bad:?}\n"),
            ),
        )
        .unwrap();
        let (ok, out) = cli(dir.path(), &["check", "--config", path.to_str().unwrap()]);
        assert!(!ok, "{out}");
        assert!(out.contains("boot.pxe_password_hash"), "{out}");
        assert!(out.contains("netdeploy pxe password-hash"), "{out}");
    }
}

#[test]
fn the_secure_boot_chain_with_a_pxe_password_starts_nothing_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let (kernel, initrd) = small_image(dir.path());
    let site = write_site(dir.path(), &kernel, &initrd, PC1, "52:54:00:9a:00:09", "");
    cli_ok(
        &dir.path().join("data"),
        &["site", "apply", site.to_str().unwrap()],
    );
    let config = crate::secure_boot::shim_config(dir.path()).replace(
        "[http]\n",
        &format!("{}[http]\n", password_config(PASSWORD)),
    );
    let server = Server::start(dir.path(), &config);
    crate::harness::dhcp_discover(&server, PC1, None);
    let before = settled_rows(&server);
    let name = format!(
        "/netdeploy/boot.grub?mac={}&uuid=&arch=7",
        PC1.replace(':', "-")
    );
    let cfg = String::from_utf8(
        crate::secure_boot::tftp_get(&server, dir.path(), &name).expect("served"),
    )
    .unwrap();
    assert!(cfg.contains("a PXE password is set"), "{cfg}");
    assert!(!cfg.contains("netdeploy.deployment="), "{cfg}");
    assert!(!cfg.contains("netdeploy.token="), "{cfg}");
    assert_eq!(settled_rows(&server), before);
}

#[test]
fn an_address_that_types_wrong_pxe_passwords_too_often_waits_even_with_the_right_one() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &password_config(PASSWORD));
    crate::harness::dhcp_discover(&server, PC1, None);
    let q = script_path(PC1);
    // A machine that keeps saying it has made no wrong try yet gets the prompt again and
    // again; its address is slowed down all the same.
    for i in 0..6 {
        let again = http_get(
            server.http_addr(),
            &format!("{q}&pxe_tries=0&pxe_password=guess{i}"),
        );
        assert!(again.contains("login"), "guess {i}: {again}");
    }
    assert_eq!(server.counter("pxe_password_throttled"), 0);
    // Right after the sixth wrong one the address waits: the right password is not even
    // checked, and counts as a wrong try.
    let held = http_get(
        server.http_addr(),
        &format!("{q}&pxe_tries=0&pxe_password={TYPED}"),
    );
    assert!(
        held.contains("too many wrong PXE passwords from this address lately"),
        "{held}"
    );
    assert!(held.contains("&pxe_tries=1&"), "{held}");
    assert!(token_in_script(&held).is_none(), "{held}");
    assert_eq!(server.counter("pxe_password_throttled"), 1);
    assert_eq!(server.counter("pxe_password_wrong"), 6);
    // The log line is read from the server's output a moment after the answer left.
    assert!(
        server
            .wait_for_log(
                &["typed wrong passwords too often"],
                std::time::Duration::from_secs(10)
            )
            .is_some(),
        "{}",
        server.log()
    );
}

#[test]
fn the_default_boot_images_run_token_cannot_start_a_deployment_behind_the_pxe_password() {
    let dir = tempfile::tempdir().unwrap();
    let (kernel, initrd) = small_image(dir.path());
    // No deployment is declared yet: every machine gets the default boot image, unasked.
    let boot = format!(
        "{}[boot.image]\nkernel = {:?}\ninitrd = {:?}\n",
        password_config(PASSWORD),
        kernel.display().to_string(),
        initrd.display().to_string()
    );
    let server = Server::start(dir.path(), &loopback_config(dir.path(), "proxy", &boot));
    let script = boot_script(&server, &script_path(PC1));
    assert!(!script.contains("login"), "{script}");
    let token = token_in_script(&script).expect("the default image's run token");
    // Then LAB00001 (required) is declared for pc1: the default image's token does not get it.
    let site = write_site(dir.path(), &kernel, &initrd, PC1, "52:54:00:9a:00:09", "");
    server.cli_changes(
        &server.data_dir(),
        &["site", "apply", site.to_str().unwrap()],
    );
    let auth = crate::harness::bearer(&token);
    let (status, body) = crate::harness::http_request(
        server.http_addr(),
        "GET",
        &format!("/agent/policy?mac={PC1}&context=pxe"),
        &[&auth],
        b"",
    );
    let body = String::from_utf8_lossy(&body);
    assert_eq!(status, 403, "{body}");
    assert!(!body.contains("LAB00001"), "{body}");
    // The machine's own next script asks for the password.
    assert!(boot_script(&server, &script_path(PC1)).contains("login"));
}
