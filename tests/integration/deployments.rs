//! Deployments on the boot path, without firmware: the site file and CLI, the decision as the
//! DHCP answer and the iPXE script see it, and durability of the catalog and loop guard.

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::time::Duration;

use crate::harness::{boot_script, cli, cli_ok, http_get, loopback_config, Server};
use crate::pcap::requests_to;

/// MAC of the SeaBIOS iPXE DISCOVER in the captures.
const CAPTURED_BIOS_MAC: &str = "52:54:00:0d:01:01";

/// A site with a known machine `pc1` under a required deployment, `srv1` known but targeted by
/// nothing, and an available deployment for unknown computers.
pub fn write_site(
    dir: &Path,
    kernel: &Path,
    initrd: &Path,
    pc1_mac: &str,
    srv1_mac: &str,
    extra: &str,
) -> std::path::PathBuf {
    let site = format!(
        r#"site_code = "LAB"
[settings]
default_size = 2
max_size = 3
{extra}
[[device]]
name = "pc1"
macs = ["{pc1_mac}"]
[[device]]
name = "srv1"
macs = ["{srv1_mac}"]
server = true

[[collection]]
id = "lab"
members = ["pc1"]

[[boot_image]]
id = "linux-x64"
arch = "x64"
kernel = {kernel:?}
initrd = {initrd:?}
cmdline = "console=ttyS0 quiet"

[[task_sequence]]
id = "hello"
name = "Say hello"
boot_image = "linux-x64"
steps = [{{ name = "hello", action = "run_command", command = "echo hello" }}]

[[deployment]]
id = "LAB00001"
task_sequence = "hello"
collection = "lab"
purpose = "required"
available_to = "media_pxe"

[[deployment]]
id = "LAB00002"
task_sequence = "hello"
collection = "unknown_computers"
purpose = "available"
available_to = "clients_media_pxe"
"#,
        kernel = kernel.display().to_string(),
        initrd = initrd.display().to_string(),
    );
    let path = dir.join("site.toml");
    std::fs::write(&path, site).unwrap();
    path
}

pub fn small_image(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let k = dir.join("vmlinuz");
    let i = dir.join("initrd.img");
    std::fs::write(&k, b"kernel bytes").unwrap();
    std::fs::write(&i, b"initrd bytes").unwrap();
    (k, i)
}

pub fn captured_discover_from(mac: &str) -> Vec<u8> {
    let mut d = requests_to("bios-ipxe-rom_proxy.pcap", 67)[0].clone();
    let m: netdeploy_wire::Mac = mac.parse().unwrap();
    d[28..34].copy_from_slice(&m.0);
    d
}

pub fn offered(to: SocketAddr, req: &[u8]) -> bool {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(1000)))
        .unwrap();
    s.send_to(req, to).unwrap();
    let mut buf = [0u8; 1500];
    s.recv_from(&mut buf).is_ok()
}

#[test]
fn site_file_applies_idempotently_and_reports_what_changed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (k, i) = small_image(dir.path());
    let site = write_site(
        dir.path(),
        &k,
        &i,
        "52:54:00:0d:01:01",
        "52:54:00:0d:01:02",
        "",
    );
    let first = cli_ok(&data, &["site", "apply", site.to_str().unwrap()]);
    assert!(first.contains("created  deployment LAB00001"), "{first}");
    assert!(first.contains("created  device pc1"), "{first}");
    let again = cli_ok(&data, &["site", "apply", site.to_str().unwrap()]);
    assert!(again.contains("no change"), "{again}");
    // Remove a deployment from the file: it is removed from the catalog.
    let text = std::fs::read_to_string(&site).unwrap();
    let cut = text.find("[[deployment]]\nid = \"LAB00002\"").unwrap();
    std::fs::write(&site, &text[..cut]).unwrap();
    let third = cli_ok(&data, &["site", "apply", site.to_str().unwrap()]);
    assert!(third.contains("removed  deployment LAB00002"), "{third}");
    let list = cli_ok(&data, &["deployment", "list"]);
    assert!(
        list.contains("LAB00001") && !list.contains("LAB00002"),
        "{list}"
    );
    // The boot image files went into the content library by hash.
    let show = cli_ok(&data, &["boot-image", "show", "linux-x64"]);
    assert!(show.contains("\"sha256\""), "{show}");
}

#[test]
fn a_bad_site_file_names_the_problem_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (k, i) = small_image(dir.path());
    let site = write_site(
        dir.path(),
        &k,
        &i,
        "52:54:00:0d:01:01",
        "52:54:00:0d:01:02",
        "",
    );
    let text = std::fs::read_to_string(&site)
        .unwrap()
        .replace("purpose = \"available\"", "purpose = \"sometimes\"");
    std::fs::write(&site, text).unwrap();
    let (ok, out) = cli(&data, &["site", "apply", site.to_str().unwrap()]);
    assert!(!ok);
    assert!(out.contains("line") && out.contains("sometimes"), "{out}");
    assert!(!cli_ok(&data, &["deployment", "list"]).contains("LAB"));
}

#[test]
fn high_risk_deployments_are_refused_warned_or_accepted_with_an_audit_record() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (k, i) = small_image(dir.path());
    let site = write_site(
        dir.path(),
        &k,
        &i,
        "52:54:00:0d:01:01",
        "52:54:00:0d:01:02",
        "",
    );
    std::fs::create_dir_all(dir.path().join("os")).unwrap();
    std::fs::write(dir.path().join("os/disk.img"), b"image").unwrap();
    let text = std::fs::read_to_string(&site).unwrap()
        + "\n[[package]]\nid = \"os\"\nfrom = \"os\"\n\
           [[task_sequence]]\nid = \"install\"\nname = \"Install\"\nboot_image = \"linux-x64\"\nsteps = [{ name = \"image\", action = \"apply_image\", package = \"os\", target = \"/dev/vda\" }]\n\
           [[collection]]\nid = \"servers\"\nmembers = [\"srv1\"]\n";
    std::fs::write(&site, text).unwrap();
    cli_ok(&data, &["site", "apply", site.to_str().unwrap()]);
    // Refused outright: a built-in collection other than Unknown Computers.
    let (ok, out) = cli(
        &data,
        &[
            "deployment",
            "create",
            "--task-sequence",
            "install",
            "--collection",
            "all_systems",
            "--purpose",
            "required",
        ],
    );
    assert!(
        !ok && out.contains("built-in collection all_systems"),
        "{out}"
    );
    // Warned: a collection holding a server needs acceptance.
    let (ok, out) = cli(
        &data,
        &[
            "deployment",
            "create",
            "--task-sequence",
            "install",
            "--collection",
            "servers",
            "--purpose",
            "required",
        ],
    );
    assert!(!ok && out.contains("servers"), "{out}");
    let out = cli_ok(
        &data,
        &[
            "deployment",
            "create",
            "--task-sequence",
            "install",
            "--collection",
            "servers",
            "--purpose",
            "required",
            "--accept-high-risk",
        ],
    );
    assert!(out.contains("deployment LAB00003 created"), "{out}");
    assert!(out.contains("audit status message"), "{out}");
    // download_all is refused for PXE/media deployments.
    let (ok, out) = cli(
        &data,
        &[
            "deployment",
            "create",
            "--task-sequence",
            "hello",
            "--collection",
            "lab",
            "--option",
            "download-all",
        ],
    );
    assert!(!ok && out.contains("download_all"), "{out}");
}

#[test]
fn explain_cites_the_rule_for_every_deployment() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (k, i) = small_image(dir.path());
    let site = write_site(
        dir.path(),
        &k,
        &i,
        "52:54:00:0d:01:01",
        "52:54:00:0d:01:02",
        "",
    );
    cli_ok(&data, &["site", "apply", site.to_str().unwrap()]);
    let out = cli_ok(
        &data,
        &["explain", "--mac", "52:54:00:0d:01:01", "--arch", "0"],
    );
    assert!(
        out.contains("run LAB00001 unattended") && out.contains("rule 5"),
        "{out}"
    );
    assert!(out.contains("LAB00002") && out.contains("rule 1"), "{out}");
    let out = cli_ok(
        &data,
        &["explain", "--mac", "52:54:00:77:77:77", "--arch", "7"],
    );
    assert!(out.contains("menu of LAB00002"), "{out}");
    let out = cli_ok(
        &data,
        &[
            "explain",
            "--mac",
            "52:54:00:0d:01:02",
            "--arch",
            "0",
            "--json",
        ],
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["action"]["action"], "no_deployment", "{out}");
}

#[test]
fn dhcp_offers_only_to_machines_with_a_candidate_and_scripts_follow_the_decision() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (k, i) = small_image(dir.path());
    let site = write_site(
        dir.path(),
        &k,
        &i,
        CAPTURED_BIOS_MAC,
        "52:54:00:0d:01:02",
        "",
    );
    cli_ok(&data, &["site", "apply", site.to_str().unwrap()]);
    let server = Server::start(
        dir.path(),
        &loopback_config(dir.path(), "proxy", "")
            .replace("[http]", "[boot]\nmenu_timeout_seconds = 5\n[http]"),
    );
    // Known, targeted by a required deployment: offered, and its script runs LAB00001.
    assert!(offered(
        server.dhcp_addr(),
        &captured_discover_from(CAPTURED_BIOS_MAC)
    ));
    let script = boot_script(&server, "/boot.ipxe?mac=52-54-00-0d-01-01&arch=0");
    assert!(script.contains("netdeploy.deployment=LAB00001"), "{script}");
    assert!(
        script.contains(&format!("kernel {}/content/", server.url())),
        "{script}"
    );
    // Booted again: the loop guard holds it back, at DHCP already (rule 7).
    assert!(!offered(
        server.dhcp_addr(),
        &captured_discover_from(CAPTURED_BIOS_MAC)
    ));
    server
        .wait_for_log(&["no boot offer", "rule 7"], Duration::from_secs(5))
        .expect("loop guard logged");
    // Known but targeted by nothing: no offer (rule 8).
    assert!(!offered(
        server.dhcp_addr(),
        &captured_discover_from("52:54:00:0d:01:02")
    ));
    server
        .wait_for_log(&["no boot offer", "rule 8"], Duration::from_secs(5))
        .expect("no candidate logged");
    // Unknown computer with an available deployment: a menu that defaults to the local disk.
    assert!(offered(
        server.dhcp_addr(),
        &captured_discover_from("52:54:00:77:77:77")
    ));
    let menu = boot_script(&server, "/boot.ipxe?mac=52-54-00-77-77-77&arch=0");
    assert!(menu.contains("item LAB00002 LAB00002 Say hello"), "{menu}");
    assert!(
        menu.contains("choose --timeout 5000 --default local"),
        "{menu}"
    );
    // Picking it boots it.
    let picked = boot_script(
        &server,
        "/boot.ipxe?mac=52-54-00-77-77-77&arch=0&deployment=LAB00002",
    );
    assert!(picked.contains("netdeploy.deployment=LAB00002"), "{picked}");
    // After `pxe clear` the required deployment runs again, once the server has noticed the
    // other process's change (it polls the store's version).
    assert!(server
        .cli_changes(&data, &["pxe", "clear", "--device", "pc1"])
        .contains("1 machine"));
    assert!(offered(
        server.dhcp_addr(),
        &captured_discover_from(CAPTURED_BIOS_MAC)
    ));
    assert_eq!(server.counter("dhcp_ignored_no_deployment"), 2);
}

#[test]
fn catalog_and_loop_guard_survive_restarts_and_kill_9_mid_write() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (k, i) = small_image(dir.path());
    let site = write_site(
        dir.path(),
        &k,
        &i,
        CAPTURED_BIOS_MAC,
        "52:54:00:0d:01:02",
        "",
    );
    cli_ok(&data, &["site", "apply", site.to_str().unwrap()]);
    let config = loopback_config(dir.path(), "proxy", "");
    for round in 0..5u64 {
        let mut server = Server::start(dir.path(), &config);
        let (http, dhcp) = (server.http_addr(), server.dhcp_addr());
        // Writers: every script request for an unknown machine picking LAB00002 writes a
        // status message; the known machine's writes the loop guard.
        let writer = std::thread::spawn(move || {
            for n in 0..40 {
                let path =
                    format!("/boot.ipxe?mac=52-54-00-66-00-{n:02x}&arch=0&deployment=LAB00002");
                let mac = format!("52-54-00-66-00-{n:02x}");
                if std::panic::catch_unwind(|| {
                    crate::harness::dhcp_discover_at(dhcp, &mac, None);
                    crate::harness::http_get_status(http, &path)
                })
                .is_err()
                {
                    break;
                }
            }
        });
        if round == 0 {
            boot_script(&server, "/boot.ipxe?mac=52-54-00-0d-01-01&arch=0");
        }
        std::thread::sleep(Duration::from_millis(20 + round * 15));
        server.crash();
        let _ = writer.join();
    }
    let guards = cli_ok(&data, &["pxe", "guards"]);
    assert!(
        guards.contains("mac:52:54:00:0d:01:01 LAB00001"),
        "{guards}"
    );
    let list = cli_ok(&data, &["deployment", "list"]);
    assert!(
        list.contains("LAB00001") && list.contains("LAB00002"),
        "{list}"
    );
    let again = cli_ok(&data, &["site", "apply", site.to_str().unwrap()]);
    assert!(again.contains("no change"), "{again}");
}

#[test]
fn every_object_can_be_created_listed_shown_and_deleted_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (k, i) = small_image(dir.path());
    let content = dir.path().join("pkg");
    std::fs::create_dir_all(content.join("sub")).unwrap();
    std::fs::write(content.join("a.bin"), b"same bytes").unwrap();
    std::fs::write(content.join("sub/b.bin"), b"same bytes").unwrap();
    let d = data.as_path();
    cli_ok(
        d,
        &[
            "device",
            "create",
            "--name",
            "pc9",
            "--mac",
            "52:54:00:0d:09:09",
        ],
    );
    cli_ok(
        d,
        &["collection", "create", "--id", "nine", "--member", "pc9"],
    );
    cli_ok(
        d,
        &[
            "boot-image",
            "create",
            "--id",
            "bi",
            "--arch",
            "x64",
            "--kernel",
            k.to_str().unwrap(),
            "--initrd",
            i.to_str().unwrap(),
        ],
    );
    let out = cli_ok(
        d,
        &[
            "package",
            "create",
            "--id",
            "tools",
            "--from",
            content.to_str().unwrap(),
        ],
    );
    assert!(out.contains("2 files"), "{out}");
    cli_ok(
        d,
        &[
            "task-sequence",
            "create",
            "--id",
            "ts",
            "--boot-image",
            "bi",
            "--step",
            "run_command:hello:echo hi",
            "--step",
            "install_package:tools:tools",
        ],
    );
    let out = cli_ok(
        d,
        &[
            "deployment",
            "create",
            "--task-sequence",
            "ts",
            "--collection",
            "nine",
            "--purpose",
            "required",
            "--site-code",
            "ABC",
            "--save-template",
            "lab-default",
        ],
    );
    assert!(out.contains("deployment ABC00001 created"), "{out}");
    // A template keeps the settings but not the schedule.
    let out = cli_ok(
        d,
        &[
            "deployment",
            "create",
            "--task-sequence",
            "ts",
            "--template",
            "lab-default",
            "--site-code",
            "ABC",
        ],
    );
    assert!(out.contains("deployment ABC00002 created"), "{out}");
    let show = cli_ok(d, &["deployment", "show", "ABC00002"]);
    assert!(
        show.contains("\"collection\": \"nine\"") && show.contains("\"purpose\": \"required\""),
        "{show}"
    );
    let list = cli_ok(d, &["package", "list"]);
    assert!(list.contains("tools") && list.contains("2 files"), "{list}");
    // Identical files are stored once.
    let stored: Vec<_> = walk(&data.join("content"))
        .into_iter()
        .filter(|p| !p.parent().unwrap().ends_with("content/tmp"))
        .collect();
    assert_eq!(
        stored.len(),
        3,
        "kernel, initrd and one copy of the package bytes: {stored:?}"
    );
    // Referenced objects cannot be deleted; unreferenced ones can.
    let (ok, out) = cli(d, &["collection", "delete", "nine"]);
    assert!(!ok && out.contains("still used"), "{out}");
    cli_ok(d, &["deployment", "delete", "ABC00001"]);
    cli_ok(d, &["deployment", "delete", "ABC00002"]);
    cli_ok(d, &["collection", "delete", "nine"]);
    assert!(!cli_ok(d, &["collection", "list"]).contains("nine"));
    let explain = cli_ok(d, &["explain", "--mac", "52:54:00:0d:09:09"]);
    assert!(explain.contains("nothing is deployed"), "{explain}");
}

fn walk(p: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(p).unwrap() {
        let e = e.unwrap().path();
        if e.is_dir() {
            out.extend(walk(&e));
        } else {
            out.push(e);
        }
    }
    out
}

#[test]
fn a_machine_outside_the_pilot_collection_of_a_pre_production_image_gets_no_offer() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (k, i) = small_image(dir.path());
    let site = write_site(
        dir.path(),
        &k,
        &i,
        CAPTURED_BIOS_MAC,
        "52:54:00:0d:07:02",
        "pre_production_collection = \"pilot\"",
    );
    // LAB00001 boots a pre-production image; pc1 is in the pilot collection, pc2 is not.
    let text = std::fs::read_to_string(&site)
        .unwrap()
        .replace("members = [\"pc1\"]", "members = [\"pc1\", \"pc2\"]")
        .replace(
            "cmdline = \"console=ttyS0 quiet\"",
            "cmdline = \"console=ttyS0 quiet\"\npre_production = true",
        )
        + "\n[[device]]\nname = \"pc2\"\nmacs = [\"52:54:00:0d:07:03\"]\n\
           [[collection]]\nid = \"pilot\"\nmembers = [\"pc1\"]\n";
    std::fs::write(&site, text).unwrap();
    cli_ok(&data, &["site", "apply", site.to_str().unwrap()]);
    let server = Server::start(dir.path(), &loopback_config(dir.path(), "proxy", ""));
    assert!(offered(
        server.dhcp_addr(),
        &captured_discover_from(CAPTURED_BIOS_MAC)
    ));
    assert!(!offered(
        server.dhcp_addr(),
        &captured_discover_from("52:54:00:0d:07:03")
    ));
    server
        .wait_for_log(
            &["no boot offer", "docs/status.md", "pre-production"],
            Duration::from_secs(5),
        )
        .expect("the refusal is logged with its reason");
    assert_eq!(server.counter("dhcp_ignored_no_deployment"), 1);
    let why = cli_ok(&data, &["explain", "--mac", "52:54:00:0d:07:03"]);
    assert!(why.contains("pre-production"), "{why}");
}

#[test]
fn pre_production_boot_image_goes_only_to_the_pilot_collection_until_promoted() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (k, i) = small_image(dir.path());
    let next = dir.path().join("vmlinuz-next");
    std::fs::write(&next, b"the next kernel").unwrap();
    let site = write_site(
        dir.path(),
        &k,
        &i,
        "52:54:00:0d:06:01",
        "52:54:00:0d:06:02",
        "pre_production_collection = \"pilot\"",
    );
    let text = std::fs::read_to_string(&site).unwrap()
        .replace("members = [\"pc1\"]", "members = [\"pc1\", \"pc2\"]")
        + &format!(
            "\n[[device]]\nname = \"pc2\"\nmacs = [\"52:54:00:0d:06:03\"]\n[[collection]]\nid = \"pilot\"\nmembers = [\"pc1\"]\n\
             [[boot_image]]\nid = \"linux-x64-next\"\narch = \"x64\"\nkernel = {:?}\npre_production = true\nreplaces = \"linux-x64\"\n",
            next.display().to_string()
        );
    std::fs::write(&site, text).unwrap();
    cli_ok(&data, &["site", "apply", site.to_str().unwrap()]);
    let server = Server::start(dir.path(), &loopback_config(dir.path(), "proxy", ""));
    let kernel_of = |mac: &str| -> Vec<u8> {
        let script = boot_script(&server, &format!("/boot.ipxe?mac={mac}&arch=0"));
        let url = script
            .lines()
            .find(|l| l.starts_with("kernel "))
            .unwrap()
            .split_whitespace()
            .nth(1)
            .unwrap()
            .to_owned();
        crate::harness::http_get_status(
            server.http_addr(),
            url.strip_prefix(&server.url()).unwrap(),
        )
        .1
    };
    assert_eq!(
        kernel_of("52-54-00-0d-06-01"),
        b"the next kernel",
        "the pilot machine gets the pre-production image"
    );
    assert_eq!(
        kernel_of("52-54-00-0d-06-03"),
        b"kernel bytes",
        "others keep the production image"
    );
    server
        .wait_for_log(
            &["pre-production boot image served", "52:54:00:0d:06:01"],
            Duration::from_secs(2),
        )
        .expect("logged");
    let status: serde_json::Value =
        serde_json::from_str(&http_get(server.http_addr(), "/status.json")).unwrap();
    let pre = &status["overview"]["pre_production"];
    assert!(
        pre.as_array()
            .unwrap()
            .iter()
            .any(|d| d["collection"] == "pilot" && d["deployment"] == "LAB00001"),
        "{pre}"
    );
    // Promote: everyone gets the new files.
    let out = server.cli_changes(&data, &["boot-image", "promote", "linux-x64-next"]);
    assert!(out.contains("promoted"), "{out}");
    server.cli_changes(&data, &["pxe", "clear", "--collection", "lab"]);
    assert_eq!(kernel_of("52-54-00-0d-06-03"), b"the next kernel");
    assert!(!cli_ok(&data, &["boot-image", "list"]).contains("linux-x64-next"));
}

#[test]
fn ipxe_syntax_in_site_text_is_refused_at_apply_time_and_never_reaches_a_script() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (k, i) = small_image(dir.path());
    let site = write_site(
        dir.path(),
        &k,
        &i,
        "52:54:00:0d:05:01",
        "52:54:00:0d:05:02",
        "",
    );
    let good = std::fs::read_to_string(&site).unwrap();
    std::fs::write(
        &site,
        good.replace("console=ttyS0 quiet", "console=ttyS0 || shell"),
    )
    .unwrap();
    let (ok, out) = cli(&data, &["site", "apply", site.to_str().unwrap()]);
    assert!(
        !ok && out.contains("boot_image \"linux-x64\".cmdline") && out.contains("\"||\""),
        "{out}"
    );
    assert!(cli_ok(&data, &["deployment", "list"]).trim().is_empty());

    // A name is free text: it is shown, never run.
    std::fs::write(&site, good.replace("Say hello", "hello || shell")).unwrap();
    cli_ok(&data, &["site", "apply", site.to_str().unwrap()]);
    let server = Server::start(dir.path(), &loopback_config(dir.path(), "proxy", ""));
    let script = boot_script(&server, "/boot.ipxe?mac=52-54-00-0d-05-01&arch=0");
    assert!(script.contains("kernel http://"), "{script}");
    assert!(!script.contains("|| shell"), "{script}");

    // A catalog stored before the apply-time check: the script generator refuses the line itself.
    let store = netdeploy::store::Store::open(&data.join("netdeploy.db")).unwrap();
    let mut image: serde_json::Value = store.get("boot_image", "linux-x64").unwrap().unwrap();
    image["cmdline"] = "console=ttyS0 ${net0/ip} || shell".into();
    store.put("boot_image", "linux-x64", &image, 0).unwrap();
    cli_ok(&data, &["pxe", "clear", "--device", "pc1"]);
    let script = boot_script(&server, "/boot.ipxe?mac=52-54-00-0d-05-01&arch=0");
    assert!(
        script.contains("nothing to boot")
            && !script.contains("\nkernel ")
            && !script.contains("${"),
        "{script}"
    );
}

/// Runs `netdeploy serve` and returns its error output once it has exited; fails the test if it
/// is still running after `limit` (it should refuse to start).
fn serve_refused(dir: &Path, config: &str) -> String {
    let path = dir.join("netdeploy.toml");
    std::fs::write(&path, config).unwrap();
    let mut child = std::process::Command::new(crate::harness::binary())
        .args(["serve", "--config", path.to_str().unwrap()])
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let limit = std::time::Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("netdeploy serve kept running");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_damaged_or_empty_database_stops_the_server_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (k, i) = small_image(dir.path());
    let site = write_site(
        dir.path(),
        &k,
        &i,
        "52:54:00:0d:06:01",
        "52:54:00:0d:06:02",
        "",
    );
    cli_ok(&data, &["site", "apply", site.to_str().unwrap()]);
    // Enough status messages that the file has pages in its middle.
    let store = netdeploy::store::Store::open(&data.join("netdeploy.db")).unwrap();
    for n in 0..300 {
        store
            .add_status(&netdeploy::store::StatusMessage {
                seq: 0,
                at: n,
                source: "server".into(),
                kind: "pxe-offer".into(),
                identity: Some(format!("mac:52:54:00:0d:06:{:02x}", n % 256)),
                device: None,
                deployment: Some("LAB00001".into()),
                body: serde_json::json!({ "padding": "x".repeat(300) }),
            })
            .unwrap();
    }
    drop(store);
    let db = data.join("netdeploy.db");
    let mut bytes = std::fs::read(&db).unwrap();
    let middle = bytes.len() / 2 / 4096 * 4096;
    bytes[middle..middle + 4096].fill(0xA5);
    std::fs::write(&db, &bytes).unwrap();
    let config = loopback_config(dir.path(), "proxy", "");
    let err = serve_refused(dir.path(), &config);
    assert!(
        err.contains("netdeploy.db is damaged (SQLite's quick_check found:"),
        "{err}"
    );

    std::fs::write(&db, b"").unwrap();
    let err = serve_refused(dir.path(), &config);
    assert!(
        err.contains("netdeploy.db is an empty file (0 bytes)"),
        "{err}"
    );
    let (ok, out) = cli(&data, &["deployment", "list"]);
    assert!(!ok && out.contains("empty file (0 bytes)"), "{out}");
}

#[test]
fn a_read_only_data_directory_is_named_with_what_was_tried() {
    // A read-only bind mount in a mount namespace of its own: it goes away with the command.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let d = data.display().to_string();
    // A command that creates objects: one that only reads refuses a directory with no catalog
    // before it tries to open anything.
    let site = dir.path().join("site.toml");
    std::fs::write(&site, "site_code = \"LAB\"\n").unwrap();
    let out = std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(format!(
            "mount --bind -o ro '{d}' '{d}' && exec '{}' --data-dir '{d}' site apply '{}'",
            crate::harness::binary(),
            site.display()
        ))
        .output()
        .expect("unshare (Debian package util-linux)");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains(&format!(
            "database {d}/netdeploy.db cannot be opened for writing"
        )) && err.contains("creating a file there failed: Read-only file system"),
        "{err}"
    );
}

#[test]
fn a_site_file_that_changes_only_settings_reports_the_change_and_bad_files_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (k, i) = small_image(dir.path());
    let site = write_site(
        dir.path(),
        &k,
        &i,
        "52:54:00:0d:07:01",
        "52:54:00:0d:07:02",
        "",
    );
    cli_ok(&data, &["site", "apply", site.to_str().unwrap()]);
    let text = std::fs::read_to_string(&site).unwrap();
    std::fs::write(&site, text.replace("max_size = 3", "max_size = 5")).unwrap();
    let out = cli_ok(&data, &["site", "apply", site.to_str().unwrap()]);
    assert!(out.contains("changed  settings site"), "{out}");
    assert!(!out.contains("no change"), "{out}");
    let before = cli_ok(&data, &["site", "show"]);

    // max_size below default_size, and a file that is not UTF-8: refused, nothing applied.
    std::fs::write(&site, text.replace("max_size = 3", "max_size = 1")).unwrap();
    let (ok, out) = cli(&data, &["site", "apply", site.to_str().unwrap()]);
    assert!(
        !ok && out.contains("settings.max_size: 1 is smaller"),
        "{out}"
    );
    let mut bytes = text.replace("Say hello", "Say h\u{e9}llo").into_bytes();
    let at = bytes.iter().position(|&b| b == 0xc3).unwrap();
    bytes[at] = 0xff;
    std::fs::write(&site, &bytes).unwrap();
    let (ok, out) = cli(&data, &["site", "apply", site.to_str().unwrap()]);
    let line = text[..at].matches('\n').count() + 1;
    assert!(
        !ok && out.contains(&format!(
            "not UTF-8: line {line}, column 14 (byte offset {at})"
        )),
        "{out}"
    );
    assert_eq!(cli_ok(&data, &["site", "show"]), before);
}

#[test]
fn a_site_applied_from_the_cli_while_serving_is_used_by_the_next_dhcp_answers() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (k, i) = small_image(dir.path());
    let srv1 = "52:54:00:0d:07:02";
    let site = write_site(dir.path(), &k, &i, "52:54:00:0d:07:01", srv1, "");
    cli_ok(&data, &["site", "apply", site.to_str().unwrap()]);
    let server = Server::start(
        dir.path(),
        &loopback_config(dir.path(), "proxy", "")
            .replace("[http]", "[boot]\nmenu_timeout_seconds = 5\n[http]"),
    );
    // srv1 is targeted by nothing: no offer (rule 8).
    assert!(!offered(server.dhcp_addr(), &captured_discover_from(srv1)));
    // Another process (the CLI) gives it a deployment while the server runs.
    let text = std::fs::read_to_string(&site).unwrap()
        + "\n[[collection]]\nid = \"servers\"\nmembers = [\"srv1\"]\n\
           [[deployment]]\nid = \"LAB00003\"\ntask_sequence = \"hello\"\ncollection = \"servers\"\n\
           purpose = \"available\"\navailable_to = \"media_pxe\"\n";
    std::fs::write(&site, text).unwrap();
    cli_ok(&data, &["site", "apply", site.to_str().unwrap()]);
    // The server polls the store's version; its next answers use the new catalog.
    let start = std::time::Instant::now();
    while !offered(server.dhcp_addr(), &captured_discover_from(srv1)) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the new site was not used within 10 s"
        );
    }
    let menu = http_get(
        server.http_addr(),
        "/boot.ipxe?mac=52-54-00-0d-07-02&arch=0",
    );
    assert!(menu.contains("item LAB00003"), "{menu}");
    assert!(server.counter("snapshot_reloads") >= 1);
}

#[test]
fn the_loop_guard_holds_for_many_machines_starting_at_once_while_their_records_queue() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (k, i) = small_image(dir.path());
    // Unknown computers get a required deployment here.
    let site = write_site(
        dir.path(),
        &k,
        &i,
        "52:54:00:0d:08:01",
        "52:54:00:0d:08:02",
        "",
    );
    let text = std::fs::read_to_string(&site)
        .unwrap()
        .replace("purpose = \"available\"", "purpose = \"required\"");
    std::fs::write(&site, text).unwrap();
    cli_ok(&data, &["site", "apply", site.to_str().unwrap()]);
    let server = Server::start(dir.path(), &loopback_config(dir.path(), "proxy", ""));
    let server = &server;
    // Each machine asks DHCP first, as a script request needs (docs/security.md).
    let script = |n: usize| {
        crate::harness::boot_script(
            server,
            &format!(
                "/boot.ipxe?mac=52-54-00-1d-{:02x}-{:02x}&arch=0",
                n / 256,
                n % 256
            ),
        )
    };
    const MACHINES: usize = 200;
    // Eight clients start 200 machines at once; each machine asks again right after its
    // start, before the store has necessarily caught up.
    std::thread::scope(|s| {
        for t in 0..8 {
            s.spawn(move || {
                for n in (t..MACHINES).step_by(8) {
                    let first = script(n);
                    assert!(first.contains("netdeploy.deployment=LAB00002"), "{first}");
                    let again = script(n);
                    assert!(
                        !again.contains("netdeploy.deployment=LAB00002"),
                        "machine {n} ran the required deployment twice: {again}"
                    );
                }
            });
        }
    });
    // At DHCP too (rule 7), and every guard reaches the store.
    assert!(!offered(
        server.dhcp_addr(),
        &captured_discover_from("52:54:00:1d:00:05")
    ));
    let guards = server.cli_reads(&data, &["pxe", "guards"]);
    assert_eq!(guards.matches("LAB00002").count(), MACHINES, "{guards}");
    assert_eq!(server.counter("store_queue_full"), 0);
}
