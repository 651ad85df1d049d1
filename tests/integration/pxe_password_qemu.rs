//! The PXE password typed at a real firmware's console (QEMU in the lab network): a UEFI
//! machine (OVMF, whose serial console iPXE's EFI console reads) PXE-boots, iPXE shows
//! netdeploy's `login` prompt, a wrong password is typed and refused, then the right one, and
//! the deployment runs to the agent's result line.

use std::time::Duration;

use crate::harness::{cli_ok, random_smbios_uuid, Server};
use crate::lab::{apply_one_deployment_site, lab_dhcp_config, vm_turn, wait_for_serial, Lab};

const MAC: &str = "52:54:00:9a:0e:01";
const PASSWORD: &str = "lab pxe secret";

#[test]
fn uefi_machine_asks_the_pxe_password_refuses_a_wrong_one_and_deploys_with_the_right_one() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    apply_one_deployment_site(
        dir.path(),
        "pc1",
        &format!("macs = [\"{MAC}\"]"),
        "echo hello behind the PXE password",
    );
    let mut hash = std::process::Command::new(crate::harness::binary())
        .args(["pxe", "password-hash"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(
        &mut hash.stdin.take().unwrap(),
        format!("{PASSWORD}\n").as_bytes(),
    )
    .unwrap();
    let hash = hash.wait_with_output().unwrap();
    assert!(hash.status.success());
    let config = format!(
        "{}{}",
        lab_dhcp_config(&data),
        String::from_utf8(hash.stdout).unwrap()
    );
    let lab = Lab::up();
    let server = Server::start_in(dir.path(), &config, &lab.exec_prefix());
    let _turn = vm_turn();
    lab.tap("tap0");
    let serial = dir.path().join("serial-pxe-password.log");
    let console = dir.path().join("console.in");
    let mut vm = lab
        .boot_vm_command("uefi", MAC, "tap0", &serial, 420)
        .args(["--expect", "NETDEPLOY-AGENT-RESULT", "--smbios-uuid"])
        .arg(random_smbios_uuid())
        .arg("--serial-input")
        .arg(&console)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run lab/boot-vm.sh");
    // iPXE's login form: Enter moves from the user name to the password field, the password
    // is shown as stars, Enter sends it.
    let type_in = |keys: &str| {
        let mut console = std::fs::OpenOptions::new()
            .write(true)
            .open(&console)
            .unwrap();
        std::io::Write::write_all(&mut console, keys.as_bytes()).unwrap();
    };
    let first = wait_for_serial(&serial, "Password:", 1, &mut vm);
    if first {
        type_in("\nnot the password\n");
    }
    let refused = first
        && server
            .wait_for_log(
                &["wrong PXE password; nothing recorded", MAC],
                Duration::from_secs(60),
            )
            .is_some();
    let second = refused && wait_for_serial(&serial, "Password:", 2, &mut vm);
    if second {
        type_in(&format!("\n{PASSWORD}\n"));
    }
    let out = vm.wait_with_output().unwrap();
    let serial = std::fs::read_to_string(&serial).unwrap_or_default();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        first && refused && second,
        "prompt {first}, wrong password refused {refused}, asked again {second}:\n{report}\n{serial}\n{}",
        server.log()
    );
    assert!(
        serial.contains("wrong PXE password, 2 tries left"),
        "{serial}"
    );
    assert!(out.status.success(), "{report}\n{serial}\n{}", server.log());
    assert!(
        serial.contains("NETDEPLOY-AGENT-RESULT success deployment=LAB00001"),
        "{serial}"
    );
    assert!(
        !serial.contains(PASSWORD) && !serial.contains("not the password"),
        "what is typed is not shown:\n{serial}"
    );
    server
        .wait_for_log(&["PXE password accepted", MAC], Duration::from_secs(5))
        .expect("the server logs the accepted password");
    assert_eq!(
        server
            .log()
            .matches("wrong PXE password; nothing recorded")
            .count(),
        1
    );
    let status: serde_json::Value =
        serde_json::from_str(&cli_ok(&data, &["status", "--json"])).unwrap();
    let d = status["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["deployment"] == "LAB00001")
        .unwrap_or_else(|| panic!("{status}"));
    assert_eq!(d["counts"]["compliant"], 1, "{status}");
}
