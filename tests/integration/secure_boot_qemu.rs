//! Secure Boot enforced (QEMU q35 with OVMF's Secure Boot firmware and Microsoft's keys
//! enrolled): a machine PXE-boots through Debian's signed shim, the signed network GRUB and
//! Debian's signed kernel, and the agent runs its deployment. The control, the same machine
//! offered iPXE's unsigned `snponly.efi`, shows that the firmware really enforces Secure Boot.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::harness::{cli_ok, Server};
use crate::lab::{boot_image, disk_image, sha256, vm_turn, Lab};

const MAC: &str = "52:54:00:5b:00:01";

fn site(dir: &Path) -> String {
    let (kernel, initrd) = boot_image();
    let pkg = dir.join("disk");
    std::fs::create_dir_all(&pkg).unwrap();
    std::fs::write(pkg.join("disk.img"), disk_image(1)).unwrap();
    format!(
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
cmdline = "console=ttyS0 quiet"
[[package]]
id = "disk"
from = {pkg:?}
[[task_sequence]]
id = "image"
name = "Apply the lab disk image"
boot_image = "linux-x64"
steps = [
  {{ name = "write the disk", action = "apply_image", package = "disk", file = "disk.img", target = "/dev/vda" }},
  {{ name = "done", action = "poweroff" }},
]
[[deployment]]
id = "LAB00001"
task_sequence = "image"
collection = "lab"
purpose = "required"
available_to = "media_pxe"
accept_high_risk = true
"#,
        kernel = kernel.display().to_string(),
        initrd = initrd.display().to_string(),
        pkg = pkg.display().to_string(),
    )
}

/// The lab's full-DHCP configuration, with the UEFI x64 chain given.
fn config(data: &Path, chain: &str) -> String {
    format!(
        "[server]\ninterfaces = [\"ndbr0\"]\ndata_dir = {:?}\n[dhcp]\nmode = \"dhcp\"\n\
         range = [\"10.77.0.100\", \"10.77.0.199\"]\n[tftp]\nroot = \"/usr/lib/ipxe\"\n\
         [boot.chain]\nefi-x64 = {chain:?}\n",
        data.display().to_string()
    )
}

fn random_uuid() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/uuid")
        .unwrap()
        .trim()
        .to_owned()
}

fn clean(serial: &str) -> String {
    serial.replace('\r', "\n")
}

#[test]
fn secure_boot_machine_runs_its_deployment_through_shim_grub_and_the_signed_kernel_and_refuses_unsigned_ipxe(
) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let site_path = dir.path().join("site.toml");
    std::fs::write(&site_path, site(dir.path())).unwrap();
    cli_ok(&data, &["site", "apply", site_path.to_str().unwrap()]);
    let disk = dir.path().join("vda.img");
    std::fs::write(&disk, vec![0u8; 2 * 1024 * 1024]).unwrap();
    let disk = disk.to_str().unwrap().to_owned();
    let uuid = random_uuid();
    let lab = Lab::up();

    // Control: the iPXE chain's unsigned snponly.efi is refused by the firmware.
    {
        let server = Server::start_in(dir.path(), &config(&data, "ipxe"), &lab.exec_prefix());
        let (ok, serial, report) = lab.boot_vm_timeout(
            "uefi-secureboot",
            MAC,
            "tap0",
            dir.path(),
            &[
                "--smbios-uuid",
                &uuid,
                "--disk",
                &disk,
                "--expect",
                // OVMF names its PXE boot option BootNNNN by the devices present.
                "failed to load Boot[0-9A-F]{4} \"UEFI PXEv4 .*: Access Denied",
            ],
            180,
        );
        let serial = clean(&serial);
        assert!(
            ok,
            "the unsigned iPXE was not refused ({report})\nserial:\n{serial}\nnetdeploy:\n{}",
            server.log()
        );
        assert!(serial.contains("NBP filename is snponly.efi"), "{serial}");
        assert!(!serial.contains("iPXE"), "iPXE ran:\n{serial}");
    }

    // The shim chain: shim, GRUB and the kernel are accepted and the agent runs.
    let server = Server::start_in(dir.path(), &config(&data, "shim"), &lab.exec_prefix());
    let serial_path = dir.path().join("serial-tap0-shim.log");
    let (ok, first_agent_line) = {
        let _turn = vm_turn();
        let mut vm = lab
            .boot_vm_command("uefi-secureboot", MAC, "tap0", &serial_path, 400)
            .args(["--smbios-uuid", &uuid, "--disk", &disk])
            .args(["--expect", "NETDEPLOY-AGENT-RESULT"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let started = Instant::now();
        let mut first = None;
        let out = loop {
            if first.is_none()
                && std::fs::read_to_string(&serial_path)
                    .unwrap_or_default()
                    .contains("netdeploy-agent: version")
            {
                first = Some(started.elapsed());
            }
            if let Some(status) = vm.try_wait().unwrap() {
                break status;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        (out.success(), first)
    };
    let serial = clean(&std::fs::read_to_string(&serial_path).unwrap_or_default());
    assert!(
        ok,
        "the Secure Boot machine did not finish its deployment\nserial:\n{serial}\nnetdeploy:\n{}",
        server.log()
    );
    // Over the chain: shim from TFTP, then GRUB, then the per-machine configuration and the
    // kernel GRUB asked for by name below netdeploy/.
    assert!(serial.contains("NBP filename is shimx64.efi"), "{serial}");
    assert!(serial.contains("Welcome to GRUB!"), "{serial}");
    assert!(
        serial.contains(
            "netdeploy: deployment LAB00001 (Apply the lab disk image) on 52:54:00:5b:00:01"
        ),
        "{serial}"
    );
    let boot_ok = serial
        .lines()
        .find(|l| l.contains("NETDEPLOY-BOOT-OK"))
        .expect("the boot image's marker line");
    for param in [
        "netdeploy.server=http://10.77.0.1:8080",
        "netdeploy.deployment=LAB00001",
        "netdeploy.context=pxe",
        "netdeploy.mac=52:54:00:5b:00:01",
    ] {
        assert!(boot_ok.contains(param), "{param} missing: {boot_ok}");
    }
    assert!(
        serial.contains("NETDEPLOY-AGENT-RESULT success deployment=LAB00001"),
        "{serial}"
    );
    let (kernel, _) = boot_image();
    let kernel_sha = sha256(&std::fs::read(kernel).unwrap());
    server
        .wait_for_log(
            &["TFTP transfer ended", "file=grubx64.efi", "completed"],
            Duration::from_secs(2),
        )
        .expect("GRUB went over TFTP");
    server
        .wait_for_log(
            &["GRUB configuration served", MAC, "LAB00001"],
            Duration::from_secs(2),
        )
        .expect("the per-machine GRUB configuration was served");
    server
        .wait_for_log(
            &[
                "TFTP transfer ended",
                &format!("file=/netdeploy/content/{kernel_sha}"),
                "completed",
            ],
            Duration::from_secs(2),
        )
        .expect("the signed kernel went over TFTP");
    std::thread::sleep(Duration::from_secs(1));
    let status: serde_json::Value =
        serde_json::from_str(&cli_ok(&data, &["status", "--json"])).unwrap();
    let d = status["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["deployment"] == "LAB00001")
        .unwrap();
    assert_eq!(d["counts"]["compliant"], 1, "{status}");
    let first = first_agent_line.expect("the agent's first line");
    eprintln!(
        "secure boot (shim, GRUB, signed kernel): QEMU start to the agent's first line {:.1} s",
        first.as_secs_f64()
    );
}
