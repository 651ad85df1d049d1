//! A reboot in the middle of a task sequence on real firmware (QEMU in the lab network, a
//! random SMBIOS UUID): the machine runs step 1 and restarts at the reboot step; it PXE-boots
//! again, is offered the same deployment past the loop guard and continues at step 3; the run
//! succeeds, and on its next boot the machine gets no offer.

use std::time::Duration;

use crate::harness::{random_smbios_uuid, Server};
use crate::lab::{apply_one_deployment_site_with_steps, lab_dhcp_config, Lab};

const MAC: &str = "52:54:00:0d:0c:01";
const RESULT: &str = "NETDEPLOY-AGENT-RESULT (success|failure|restarting)";

#[test]
fn bios_machine_restarts_mid_sequence_pxe_boots_again_continues_and_then_gets_no_offer() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    apply_one_deployment_site_with_steps(
        dir.path(),
        "pc1",
        &format!("macs = [\"{MAC}\"]"),
        r#"{ name = "first", action = "write_file", value = "one", target = "/tmp/one" },
           { name = "restart", action = "reboot" },
           { name = "second", action = "run_command", command = "test ! -e /tmp/one && echo second-step-ran" }"#,
    );
    let lab = Lab::up();
    let server = Server::start_in(dir.path(), &lab_dhcp_config(&data), &lab.exec_prefix());
    let uuid = random_smbios_uuid();
    let machine = ["--smbios-uuid", uuid.as_str(), "--expect", RESULT];

    // Step 1, then the restart: with -no-reboot the guest's reboot ends QEMU.
    let (ok, serial, report) = lab.boot_vm("bios", MAC, "tap0", dir.path(), &machine);
    assert!(ok, "first boot: {report}\n{serial}\n{}", server.log());
    assert!(
        serial.contains("NETDEPLOY-AGENT-RESULT restarting deployment=LAB00001 next_step=3"),
        "{serial}"
    );

    // PXE again: offered past the loop guard, the run goes on at step 3 in a fresh boot
    // environment (where /tmp/one never was).
    let (ok, serial, report) = lab.boot_vm("bios", MAC, "tap1", dir.path(), &machine);
    assert!(ok, "second boot: {report}\n{serial}\n{}", server.log());
    assert!(serial.contains("netdeploy.deployment=LAB00001"), "{serial}");
    assert!(
        serial.contains("continuing after a restart at step 3/3"),
        "{serial}"
    );
    assert!(!serial.contains("step 1/3"), "step 1 ran again:\n{serial}");
    assert!(serial.contains("second-step-ran"), "{serial}");
    assert!(
        serial.contains("NETDEPLOY-AGENT-RESULT success deployment=LAB00001"),
        "{serial}"
    );

    // The run ended: the loop guard holds, no offer, the firmware goes on to the disk.
    let args = [
        "--smbios-uuid",
        uuid.as_str(),
        "--expect",
        "Booting from Hard Disk",
    ];
    let (ok, serial, report) = lab.boot_vm_timeout("bios", MAC, "tap2", dir.path(), &args, 120);
    assert!(ok, "third boot: {report}\n{serial}\n{}", server.log());
    assert!(serial.contains("Nothing to boot"), "{serial}");
    server
        .wait_for_log(&["no boot offer", MAC, "rule 7"], Duration::from_secs(2))
        .unwrap_or_else(|| panic!("loop guard not logged:\n{}", server.log()));
}
