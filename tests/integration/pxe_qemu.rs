//! Real firmware: QEMU machines (SeaBIOS with its iPXE ROM, OVMF with its own PXE stack)
//! network-boot from netdeploy in an isolated lab network, to the marker line the test boot
//! image prints. Each test checks what the guest printed and what netdeploy logged.

use std::time::Duration;

use crate::harness::Server;
use crate::lab::{boot_image, Lab};

fn config(dir: &std::path::Path, mode: &str) -> String {
    let (kernel, initrd) = boot_image();
    let range = if mode == "dhcp" {
        "range = [\"10.77.0.100\", \"10.77.0.199\"]\n"
    } else {
        ""
    };
    format!(
        "[server]\ninterfaces = [\"ndbr0\"]\ndata_dir = {data:?}\n\
         [dhcp]\nmode = {mode:?}\n{range}\
         [tftp]\nroot = \"/usr/lib/ipxe\"\n\
         [boot.image]\nkernel = {kernel:?}\ninitrd = {initrd:?}\ncmdline = \"console=ttyS0 quiet\"\n",
        data = dir.join("data").display().to_string(),
        kernel = kernel.display().to_string(),
        initrd = initrd.display().to_string(),
    )
}

fn pxe_boot(firmware: &str, mode: &str, mac: &str, arch: u16) {
    let dir = tempfile::tempdir().unwrap();
    let mut lab = Lab::up();
    if mode == "proxy" {
        lab.start_peer_dhcp();
    }
    let server = Server::start_in(dir.path(), &config(dir.path(), mode), &lab.exec_prefix());
    let (ok, serial, report) = lab.boot_vm(firmware, mac, "tap0", dir.path(), &[]);
    assert!(
        ok,
        "{firmware} machine did not reach the boot image ({report})\nserial:\n{serial}\nnetdeploy:\n{}",
        server.log()
    );
    let marker = serial
        .lines()
        .find(|l| l.contains("NETDEPLOY-BOOT-OK"))
        .expect("marker line");
    assert!(marker.contains(&format!("mac={mac}")), "{marker}");
    assert!(
        marker.contains("netdeploy.server=http://10.77.0.1:8080"),
        "{marker}"
    );
    // netdeploy logged the firmware's architecture for this machine.
    let line = server
        .wait_for_log(
            &["PXE boot reply", mac, &format!("arch={arch} ")],
            Duration::from_secs(2),
        )
        .unwrap_or_else(|| panic!("no PXE reply logged with arch={arch}:\n{}", server.log()));
    assert!(line.contains(&format!("mode=\"{mode}\"")), "{line}");
    server
        .wait_for_log(&["iPXE script served", mac], Duration::from_secs(2))
        .expect("the iPXE script was fetched");
}

#[test]
fn bios_machine_pxe_boots_with_netdeploy_as_dhcp_server() {
    pxe_boot("bios", "dhcp", "52:54:00:0d:00:01", 0);
}

#[test]
fn uefi_machine_pxe_boots_with_netdeploy_as_dhcp_server() {
    pxe_boot("uefi", "dhcp", "52:54:00:0d:00:02", 7);
}

#[test]
fn bios_machine_pxe_boots_through_proxy_dhcp_beside_a_site_dhcp_server() {
    pxe_boot("bios", "proxy", "52:54:00:0d:00:03", 0);
}

#[test]
fn uefi_machine_pxe_boots_through_proxy_dhcp_beside_a_site_dhcp_server() {
    pxe_boot("uefi", "proxy", "52:54:00:0d:00:04", 7);
}

/// UEFI HTTP boot: OVMF with its PXE turned off asks as `HTTPClient` (option 93 = 16), gets a
/// URL, and loads the first stage over HTTP; no TFTP is involved.
#[test]
fn uefi_machine_http_boots_with_no_tftp() {
    let mac = "52:54:00:0d:00:05";
    let dir = tempfile::tempdir().unwrap();
    let lab = Lab::up();
    let server = Server::start_in(dir.path(), &config(dir.path(), "dhcp"), &lab.exec_prefix());
    let (ok, serial, report) = lab.boot_vm(
        "uefi",
        mac,
        "tap0",
        dir.path(),
        &["--http-boot", "--timeout", "60"],
    );
    assert!(
        ok,
        "the HTTP-boot machine did not reach the boot image ({report})\nserial:\n{serial}\nnetdeploy:\n{}",
        server.log()
    );
    let marker = serial
        .lines()
        .find(|l| l.contains("NETDEPLOY-BOOT-OK"))
        .expect("marker line");
    assert!(marker.contains(&format!("mac={mac}")), "{marker}");
    let log = server.log();
    let reply = server
        .wait_for_log(&["PXE boot reply", mac, "arch=16 "], Duration::from_secs(2))
        .unwrap_or_else(|| panic!("no HTTP boot reply logged with arch=16:\n{log}"));
    assert!(
        reply.contains("http://10.77.0.1:8080/"),
        "the offer carries a URL: {reply}"
    );
    assert!(
        !log.contains("TFTP transfer") && !log.contains("TFTP request"),
        "no TFTP is involved:\n{log}"
    );
    server
        .wait_for_log(&["iPXE script served", mac], Duration::from_secs(2))
        .expect("the iPXE script was fetched");
}

/// IPv6-only provisioning network: OVMF with its IPv4 PXE off gets its address from the
/// site's DHCPv6 server and its boot file URL (option 59) from netdeploy's proxy ADVERTISE and
/// port 4011 REPLY, and loads iPXE over TFTP on IPv6; iPXE takes its address from SLAAC and
/// its script URL from netdeploy's REPLY to its Information-Request; the boot image is told
/// the IPv6 server.
#[test]
fn uefi_machine_pxe_boots_over_ipv6_beside_a_site_dhcpv6_server() {
    let mac = "52:54:00:0d:00:06";
    let dir = tempfile::tempdir().unwrap();
    let mut lab = Lab::up();
    lab.start_peer_dhcp6();
    let config = format!(
        "{}[ipv6]\nenabled = true\naddress = \"fd77::1\"\n",
        config(dir.path(), "proxy")
    );
    let server = Server::start_in(dir.path(), &config, &lab.exec_prefix());
    assert_eq!(server.ready["ipv6"]["address"], "fd77::1");
    let (ok, serial, report) = lab.boot_vm(
        "uefi",
        mac,
        "tap0",
        dir.path(),
        &["--pxe-ipv6", "--timeout", "150"],
    );
    let log = server.log();
    let context = format!("serial:\n{serial}\nnetdeploy:\n{log}");
    assert!(
        ok,
        "the IPv6 machine did not reach the boot image ({report})\n{context}"
    );
    assert!(
        serial.contains("Start PXE over IPv6") && !serial.contains("HTTP Boot"),
        "the firmware booted through PXE over IPv6\n{context}"
    );
    let marker = serial
        .lines()
        .find(|l| l.contains("NETDEPLOY-BOOT-OK"))
        .expect("marker line");
    assert!(marker.contains(&format!("mac={mac}")), "{marker}");
    assert!(
        marker.contains("netdeploy.server=http://[fd77::1]:8080"),
        "the script came over IPv6: {marker}"
    );
    let firmware = server
        .wait_for_log(
            &[
                "PXE boot reply (DHCPv6)",
                mac,
                "reply=Reply",
                "arch=7 ",
                "ipxe=false",
            ],
            Duration::from_secs(2),
        )
        .unwrap_or_else(|| panic!("no port 4011 REPLY to the firmware\n{context}"));
    assert!(
        firmware.contains("tftp://[fd77::1]/snponly.efi"),
        "{firmware}"
    );
    server
        .wait_for_log(
            &[
                "client=[fd77::",
                "file=snponly.efi",
                "outcome=\"completed\"",
            ],
            Duration::from_secs(2),
        )
        .unwrap_or_else(|| panic!("iPXE was not sent over TFTP on IPv6\n{context}"));
    server
        .wait_for_log(
            &[
                "PXE boot reply (DHCPv6)",
                mac,
                "ipxe=true",
                "http://[fd77::1]:8080/boot.ipxe",
            ],
            Duration::from_secs(2),
        )
        .unwrap_or_else(|| panic!("no DHCPv6 reply to iPXE\n{context}"));
    server
        .wait_for_log(&["iPXE script served", mac], Duration::from_secs(2))
        .expect("the iPXE script was fetched");
}
