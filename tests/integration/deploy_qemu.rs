//! Deployments decide what real firmware boots (QEMU in the lab network): an unknown computer
//! gets the menu and leaves to its local disk, a machine nothing targets gets no offer. The
//! required deployment that runs once until `pxe clear` is in `reimage_qemu`.

use std::time::Duration;

use crate::deployments::write_site;
use crate::harness::{cli_ok, Server};
use crate::lab::{boot_image, Lab};

const PC1: &str = "52:54:00:0d:02:01";
const SRV1: &str = "52:54:00:0d:02:02";
const UNKNOWN: &str = "52:54:00:0d:02:03";

fn config(dir: &std::path::Path, mode: &str) -> String {
    let range = if mode == "dhcp" {
        "range = [\"10.77.0.100\", \"10.77.0.199\"]\n"
    } else {
        ""
    };
    format!(
        "[server]\ninterfaces = [\"ndbr0\"]\ndata_dir = {data:?}\n\
         [dhcp]\nmode = {mode:?}\n{range}\
         [tftp]\nroot = \"/usr/lib/ipxe\"\n[boot]\nmenu_timeout_seconds = 3\n",
        data = dir.join("data").display().to_string(),
    )
}

fn setup(mode: &str) -> (tempfile::TempDir, Lab, Server) {
    let dir = tempfile::tempdir().unwrap();
    let (kernel, initrd) = boot_image();
    let site = write_site(dir.path(), kernel, initrd, PC1, SRV1, "");
    cli_ok(
        &dir.path().join("data"),
        &["site", "apply", site.to_str().unwrap()],
    );
    let mut lab = Lab::up();
    if mode == "proxy" {
        lab.start_peer_dhcp();
    }
    let server = Server::start_in(dir.path(), &config(dir.path(), mode), &lab.exec_prefix());
    (dir, lab, server)
}

#[test]
fn unknown_machine_gets_the_menu_and_a_machine_nothing_targets_gets_no_offer() {
    let (dir, lab, server) = setup("proxy");
    // Unknown computer, only an available deployment: the menu times out to the local disk.
    let (ok, serial, report) = lab.boot_vm_timeout(
        "bios",
        UNKNOWN,
        "tap0",
        dir.path(),
        &["--expect", "leaving to the local disk"],
        180,
    );
    assert!(ok, "no menu timeout: {report}\n{serial}\n{}", server.log());
    assert!(
        serial.contains("LAB00002"),
        "the menu lists LAB00002:\n{serial}"
    );
    assert!(!serial.contains("NETDEPLOY-BOOT-OK"), "{serial}");
    server
        .wait_for_log(&["menu (rule 6)", UNKNOWN], Duration::from_secs(2))
        .expect("menu logged");

    // srv1 is known but no deployment targets it: netdeploy sends it nothing at all.
    let (ok, serial, _) = lab.boot_vm_timeout("bios", SRV1, "tap1", dir.path(), &[], 120);
    assert!(!ok, "{serial}");
    server
        .wait_for_log(&["no boot offer", SRV1, "rule 8"], Duration::from_secs(2))
        .unwrap_or_else(|| panic!("no-candidate not logged:\n{}", server.log()));
    assert!(
        !server
            .log()
            .lines()
            .any(|l| l.contains("PXE boot reply") && l.contains(SRV1)),
        "srv1 got a boot reply:\n{}",
        server.log()
    );
}
