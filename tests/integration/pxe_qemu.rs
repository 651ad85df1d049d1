//! Real firmware: QEMU machines (SeaBIOS with its iPXE ROM, OVMF with its own PXE stack)
//! network-boot from netdeploy in an isolated lab network, to the marker line the test boot
//! image prints. Each test checks what the guest printed and what netdeploy logged.

use std::time::Duration;

use crate::harness::{random_smbios_uuid, Server};
use crate::lab::{apply_one_deployment_site, boot_image, Lab};

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
/// its script URL from netdeploy's REPLY to its Information-Request; the agent runs the
/// machine's required deployment against the IPv6 server. The device is declared by its
/// SMBIOS UUID, which only the DUID-UUID carries; booted again, the loop guard withholds the
/// DHCPv6 answer as it does the DHCPv4 one.
#[test]
fn uefi_machine_pxe_boots_over_ipv6_beside_a_site_dhcpv6_server_and_runs_its_deployment() {
    let mac = "52:54:00:0d:00:06";
    let uuid = random_smbios_uuid();
    let dir = tempfile::tempdir().unwrap();
    apply_one_deployment_site(
        dir.path(),
        "pc6",
        &format!("uuid = \"{uuid}\""),
        "echo hello over IPv6",
    );
    let mut lab = Lab::up();
    lab.start_peer_dhcp6();
    let config = format!(
        "[server]\ninterfaces = [\"ndbr0\"]\ndata_dir = {data:?}\n\
         [dhcp]\nmode = \"proxy\"\n[tftp]\nroot = \"/usr/lib/ipxe\"\n\
         [ipv6]\nenabled = true\naddress = \"fd77::1\"\n",
        data = dir.path().join("data").display().to_string(),
    );
    let server = Server::start_in(dir.path(), &config, &lab.exec_prefix());
    assert_eq!(server.ready["ipv6"]["address"], "fd77::1");
    let machine = ["--pxe-ipv6", "--smbios-uuid", uuid.as_str()];
    let mut args = machine.to_vec();
    args.extend(["--expect", "NETDEPLOY-AGENT-RESULT", "--timeout", "240"]);
    let mut attempt = 0;
    let (serial, context) = loop {
        attempt += 1;
        let started = std::time::Instant::now();
        let (ok, serial, report) = lab.boot_vm("uefi", mac, "tap0", dir.path(), &args);
        let log = server.log();
        let context = format!("serial:\n{serial}\nnetdeploy:\n{log}");
        assert!(
            ok,
            "the IPv6 machine did not run its deployment ({report})\n{context}"
        );
        if serial.contains("Start PXE over IPv6") && !serial.contains("HTTP Boot") {
            eprintln!(
                "IPv6 PXE: QEMU start to the agent's result in {:.0} s (boot {attempt})",
                started.elapsed().as_secs_f64()
            );
            break (serial, context);
        }
        // edk2 chooses among the ADVERTISEs it has at its first one-second timer tick after
        // the SOLICIT. When that tick comes before netdeploy's answer, it takes the site's
        // address-only offer, finds no boot file (PXE-E16) and goes on to its next boot
        // device, as a real machine does; this one then ran the deployment through UEFI HTTP
        // boot. Once, and said: the loop guard that run set is cleared and it boots again.
        assert!(
            attempt == 1 && serial.contains("PXE-E16"),
            "the firmware booted through PXE over IPv6\n{context}"
        );
        eprintln!(
            "IPv6 PXE: OVMF chose before netdeploy's ADVERTISE arrived (PXE-E16); \
             clearing the loop guard and booting again"
        );
        server.cli_changes_in_lab(
            &dir.path().join("data"),
            &["pxe", "clear", "--device", "pc6"],
        );
    };
    let marker = serial
        .lines()
        .find(|l| l.contains("NETDEPLOY-BOOT-OK"))
        .expect("marker line");
    assert!(
        marker.contains("netdeploy.server=http://[fd77::1]:8080")
            && marker.contains("netdeploy.deployment=LAB00001"),
        "the script came over IPv6 and chose the deployment: {marker}"
    );
    assert!(
        serial.contains("NETDEPLOY-AGENT-RESULT success deployment=LAB00001"),
        "the agent ran the deployment over IPv6\n{context}"
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
        firmware.contains("tftp://[fd77::1]/snponly.efi") && firmware.contains(&uuid),
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

    // Booted again: the loop guard (rule 7) withholds the DHCPv6 answer; OVMF goes on to its
    // next boot device (HTTP boot) and the boot image never starts.
    let mut args = machine.to_vec();
    args.extend(["--expect", "Start HTTP Boot", "--timeout", "120"]);
    let (ok, serial, report) = lab.boot_vm("uefi", mac, "tap1", dir.path(), &args);
    let log = server.log();
    assert!(
        ok,
        "the firmware did not go on ({report})\nserial:\n{serial}\nnetdeploy:\n{log}"
    );
    assert!(!serial.contains("NETDEPLOY-BOOT-OK"), "{serial}");
    server
        .wait_for_log(
            &["no boot offer (DHCPv6)", &uuid, "rule 7"],
            Duration::from_secs(2),
        )
        .unwrap_or_else(|| panic!("loop guard over DHCPv6 not logged:\n{log}"));
}
