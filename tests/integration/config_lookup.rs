//! Every command finds the server's configuration as `serve` does (`--config`, then
//! NETDEPLOY_CONFIG, then /etc/netdeploy/netdeploy.toml), and the offline commands work on a
//! host where the served interfaces do not exist.

use std::path::Path;
use std::process::Command;

use crate::deployments::write_site;
use crate::harness::{binary, loopback_config};

/// An interface name that no test host has.
const ABSENT_INTERFACE: &str = "ndabsent0";

/// Runs `netdeploy` with only NETDEPLOY_CONFIG (when given) to locate the data.
fn run_with_config(config: Option<&Path>, args: &[&str]) -> (bool, String) {
    let mut cmd = Command::new(binary());
    cmd.args(args)
        .env_remove("NETDEPLOY_DATA_DIR")
        .env_remove("NETDEPLOY_CONFIG")
        .env("NO_COLOR", "1");
    if let Some(c) = config {
        cmd.env("NETDEPLOY_CONFIG", c);
    }
    let out = cmd.output().expect("run netdeploy");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn ok(config: &Path, args: &[&str]) -> String {
    let (ok, out) = run_with_config(Some(config), args);
    assert!(ok, "netdeploy {args:?} failed:\n{out}");
    out
}

#[test]
fn offline_commands_take_the_data_directory_from_netdeploy_config_without_its_interfaces() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("server-data");
    let config = dir.path().join("netdeploy.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\ninterfaces = [{ABSENT_INTERFACE:?}]\ndata_dir = {:?}\n",
            data.display().to_string()
        ),
    )
    .unwrap();
    let kernel = dir.path().join("vmlinuz");
    let initrd = dir.path().join("initrd.img");
    std::fs::write(&kernel, b"kernel bytes").unwrap();
    std::fs::write(&initrd, b"initrd bytes").unwrap();
    let site = write_site(
        dir.path(),
        &kernel,
        &initrd,
        "52:54:00:0c:01:01",
        "52:54:00:0c:01:02",
        "",
    );

    let applied = ok(&config, &["site", "apply", site.to_str().unwrap()]);
    assert!(
        applied.contains("created  deployment LAB00001"),
        "{applied}"
    );
    assert!(
        applied.contains(&format!("new catalog at {}", data.display())),
        "a new catalog says where it is: {applied}"
    );
    assert!(data.join("netdeploy.db").is_file());

    let shown = ok(&config, &["site", "show"]);
    assert!(shown.contains("\"pc1\""), "{shown}");
    let listed = ok(&config, &["deployment", "list"]);
    assert!(listed.contains("LAB00001"), "{listed}");
    let explained = ok(&config, &["explain", "--mac", "52:54:00:0c:01:01"]);
    assert!(explained.contains("LAB00001"), "{explained}");
    let status = ok(&config, &["status"]);
    assert!(status.contains("LAB00001"), "{status}");
    let cleared = ok(&config, &["pxe", "clear", "--device", "pc1"]);
    assert!(cleared.contains("pc1"), "{cleared}");
    let out = dir.path().join("export");
    ok(
        &config,
        &[
            "deployment",
            "export",
            "LAB00001",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert!(out.join("policy.json").is_file());

    // The commands that serve do need the interfaces, and say which field is wrong.
    let (checked, msg) = run_with_config(Some(&config), &["check"]);
    assert!(!checked, "{msg}");
    assert!(
        msg.contains("server.interfaces") && msg.contains(ABSENT_INTERFACE),
        "{msg}"
    );
}

#[test]
fn a_data_directory_with_no_catalog_is_refused_by_name_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("wrong-dir");
    for args in [
        &["explain", "--mac", "52:54:00:0c:02:01"][..],
        &["status"][..],
        &["pxe", "clear", "--device", "pc1"][..],
        &["deployment", "list"][..],
        &["site", "show"][..],
    ] {
        let mut all = vec!["--data-dir", empty.to_str().unwrap()];
        all.extend_from_slice(args);
        let (ok, out) = run_with_config(None, &all);
        assert!(!ok, "{args:?} answered from an empty catalog:\n{out}");
        let expected = format!("no catalog at {}", empty.join("netdeploy.db").display());
        assert!(out.contains(&expected), "{args:?}: {out}");
        assert!(!empty.exists(), "{args:?} created {}", empty.display());
    }
}

#[test]
fn serve_without_any_configuration_says_where_it_looked() {
    if Path::new(netdeploy::config::DEFAULT_CONFIG_PATH).exists() {
        eprintln!("skipped: this host has its own netdeploy configuration");
        return;
    }
    let (ok, out) = run_with_config(None, &["serve"]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("no configuration") && out.contains("NETDEPLOY_CONFIG"),
        "{out}"
    );
}

#[test]
fn check_says_which_boot_image_machines_get() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("netdeploy.toml");
    let kernel = dir.path().join("vmlinuz");
    let initrd = dir.path().join("initrd.img");
    std::fs::write(&kernel, b"kernel bytes").unwrap();
    std::fs::write(&initrd, b"initrd bytes").unwrap();
    let fallback = format!(
        "[boot.image]\nkernel = {:?}\ncmdline = \"console=ttyS0\"\n",
        kernel.display().to_string()
    );
    std::fs::write(&config, loopback_config(dir.path(), "proxy", &fallback)).unwrap();

    let before = ok(&config, &["check"]);
    assert!(
        before.contains("for every PXE machine (no catalog yet)"),
        "{before}"
    );
    let site = write_site(
        dir.path(),
        &kernel,
        &initrd,
        "52:54:00:0c:03:01",
        "52:54:00:0c:03:02",
        "",
    );
    ok(&config, &["site", "apply", site.to_str().unwrap()]);
    let after = ok(&config, &["check"]);
    assert!(
        after.contains("each deployment's own") && after.contains("linux-x64"),
        "{after}"
    );
    assert!(
        after.contains("not used: the catalog declares deployments"),
        "{after}"
    );
}
