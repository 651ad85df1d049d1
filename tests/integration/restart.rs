//! A task sequence that restarts the machine in the middle (docs/site-file.md `reboot`), with
//! the real server and the real agent (run in this process with `--root`, so its restart is
//! only printed): the first run reports `rebooting` at its reboot step, the machine's next
//! PXE decision offers the same deployment again past the loop guard, the policy continues at
//! the step after the reboot, and once the run succeeded the loop guard holds as before.

use std::path::{Path, PathBuf};

use crate::deployments::small_image;
use crate::harness::{boot_script, cli_ok, loopback_config, random_smbios_uuid, Server};
use crate::pxe_password::{password_config, PASSWORD, TYPED};

const MAC: &str = "52:54:00:0e:07:01";

fn write_site(dir: &Path, first: &Path, second: &Path) -> PathBuf {
    let (kernel, initrd) = small_image(dir);
    let site = format!(
        r#"site_code = "LAB"
[[device]]
name = "pc1"
macs = ["{MAC}"]
[[collection]]
id = "lab"
members = ["pc1"]
[[boot_image]]
id = "linux-x64"
arch = "x64"
kernel = {kernel:?}
initrd = {initrd:?}
[[task_sequence]]
id = "restart"
name = "Write, restart, write"
boot_image = "linux-x64"
steps = [
  {{ name = "first", action = "write_file", value = "one", target = {first:?} }},
  {{ name = "restart", action = "reboot" }},
  {{ name = "second", action = "write_file", value = "two", target = {second:?} }},
]
[[deployment]]
id = "LAB00001"
task_sequence = "restart"
collection = "lab"
purpose = "required"
available_to = "media_pxe"
"#,
        kernel = kernel.display().to_string(),
        initrd = initrd.display().to_string(),
        first = first.display().to_string(),
        second = second.display().to_string(),
    );
    let path = dir.join("site.toml");
    std::fs::write(&path, site).unwrap();
    path
}

/// The machine's boot script, as iPXE asks for it after the DHCP exchange, with the PXE
/// password typed at the prompt when `typed` is given.
fn script(server: &Server, uuid: &str, typed: Option<&str>) -> String {
    boot_script(
        server,
        &format!(
            "/boot.ipxe?mac={}&arch=7&uuid={uuid}{}",
            MAC.replace(':', "-"),
            typed.map_or(String::new(), |t| format!("&pxe_tries=0&pxe_password={t}"))
        ),
    )
}

/// Runs the agent as the boot image would with the kernel line of `script`, on a machine
/// root with this MAC and UUID; returns its exit code.
fn run_agent(dir: &Path, script: &str, uuid: &str) -> i32 {
    let line = script
        .lines()
        .find(|l| l.contains("netdeploy.server="))
        .unwrap_or_else(|| panic!("no kernel line in:\n{script}"));
    let root = dir.join("root");
    let nic = root.join("sys/class/net/ens3");
    std::fs::create_dir_all(&nic).unwrap();
    std::fs::write(nic.join("address"), format!("{MAC}\n")).unwrap();
    let dmi = root.join("sys/class/dmi/id");
    std::fs::create_dir_all(&dmi).unwrap();
    std::fs::write(dmi.join("product_uuid"), format!("{uuid}\n")).unwrap();
    std::fs::create_dir_all(root.join("proc")).unwrap();
    std::fs::write(root.join("proc/cmdline"), format!("{line}\n")).unwrap();
    netdeploy_agent::agent::run(&netdeploy_agent::cli::RunFlags {
        root: Some(root),
        ..Default::default()
    })
}

#[test]
fn a_reboot_mid_sequence_is_offered_again_without_the_pxe_password_continues_at_the_next_step_and_then_the_guard_holds(
) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (first, second) = (dir.path().join("first"), dir.path().join("second"));
    let site = write_site(dir.path(), &first, &second);
    cli_ok(&data, &["site", "apply", site.to_str().unwrap()]);
    let boot = password_config(PASSWORD);
    let server = Server::start(dir.path(), &loopback_config(dir.path(), "proxy", &boot));
    let uuid = random_smbios_uuid();

    // First boot: the PXE password is asked; once typed, step 1 runs, the reboot step
    // reports `rebooting` and restarts.
    assert!(script(&server, &uuid, None).contains("login"));
    let s = script(&server, &uuid, Some(TYPED));
    assert!(s.contains("netdeploy.deployment=LAB00001"), "{s}");
    assert_eq!(run_agent(dir.path(), &s, &uuid), 0);
    assert_eq!(std::fs::read_to_string(&first).unwrap(), "one");
    assert!(!second.exists());
    server.settled();
    let status = server.cli_reads(&data, &["status", "--machines"]);
    assert!(
        status.contains("rebooting  (restarting: the task sequence continues at step 3)"),
        "{status}"
    );
    let explained = server.cli_reads(
        &data,
        &["explain", "--mac", MAC, "--uuid", &uuid, "--arch", "7"],
    );
    assert!(
        explained.contains("continuing after a restart (rule 7)")
            && explained.contains("it continues at step 3"),
        "{explained}"
    );

    // Second boot: offered again past the loop guard, without asking the password again (it
    // was typed when the run started); the run starts at step 3.
    std::fs::remove_file(&first).unwrap();
    let s = script(&server, &uuid, None);
    assert!(
        s.contains("netdeploy.deployment=LAB00001"),
        "not offered again after the restart:\n{s}\n{}",
        server.log()
    );
    assert_eq!(run_agent(dir.path(), &s, &uuid), 0);
    assert!(!first.exists(), "step 1 ran again after the restart");
    assert_eq!(std::fs::read_to_string(&second).unwrap(), "two");
    server.settled();
    let status = server.cli_reads(&data, &["status", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&status).unwrap();
    let d = v["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["deployment"] == "LAB00001")
        .unwrap();
    assert_eq!(d["counts"]["compliant"], 1, "{status}");

    // Third boot: the run ended, so the loop guard holds again: no deployment.
    let s = script(&server, &uuid, Some(TYPED));
    assert!(!s.contains("netdeploy.deployment=LAB00001"), "{s}");
    let explained = server.cli_reads(
        &data,
        &["explain", "--mac", MAC, "--uuid", &uuid, "--arch", "7"],
    );
    assert!(explained.contains("loop guard"), "{explained}");
}
