//! Re-imaging machines that send a real SMBIOS UUID, without firmware: the loop guard is kept
//! under the MAC and UUID together, `pxe clear` finds it by device, collection, MAC or UUID and
//! says what it cleared, `explain --mac` reaches the server's verdict, and a UUID shared by two
//! MACs never merges two machines.

use std::time::Duration;

use crate::deployments::{small_image, write_site};
use crate::harness::{boot_script, cli, cli_ok, loopback_config, random_smbios_uuid, Server};

const PC1_MAC: &str = "52:54:00:0e:01:01";

fn script_for(server: &Server, mac: &str, uuid: &str) -> String {
    boot_script(
        server,
        &format!(
            "/boot.ipxe?mac={}&arch=0&uuid={uuid}",
            mac.replace(':', "-")
        ),
    )
}

#[test]
fn machine_declared_by_mac_that_sends_a_uuid_is_guarded_explained_and_cleared_by_device() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (k, i) = small_image(dir.path());
    let site = write_site(dir.path(), &k, &i, PC1_MAC, "52:54:00:0e:01:02", "");
    cli_ok(&data, &["site", "apply", site.to_str().unwrap()]);
    let server = Server::start(dir.path(), &loopback_config(dir.path(), "proxy", ""));
    let uuid = random_smbios_uuid();

    assert!(script_for(&server, PC1_MAC, &uuid).contains("netdeploy.deployment=LAB00001"));
    let again = script_for(&server, PC1_MAC, &uuid);
    assert!(!again.contains("netdeploy.deployment=LAB00001"), "{again}");
    let guards = server.cli_reads(&data, &["pxe", "guards"]);
    assert!(
        guards.contains(&format!("uuid:{uuid} mac:{PC1_MAC} LAB00001")),
        "{guards}"
    );

    // explain by MAC alone looks at the UUID this MAC was last seen with, as the server does.
    let explained = server.cli_reads(&data, &["explain", "--mac", PC1_MAC, "--arch", "0"]);
    assert!(
        explained.contains(&format!("was last seen with uuid {uuid}")),
        "{explained}"
    );
    assert!(explained.contains("decision: no deployment"), "{explained}");
    assert!(explained.contains("loop guard"), "{explained}");
    let with_uuid = server.cli_reads(
        &data,
        &["explain", "--mac", PC1_MAC, "--uuid", &uuid, "--arch", "0"],
    );
    assert!(with_uuid.contains("decision: no deployment"), "{with_uuid}");

    let cleared = server.cli_changes(&data, &["pxe", "clear", "--device", "pc1"]);
    assert!(
        cleared.contains("PXE loop guard cleared for device pc1: 1 machine(s)"),
        "{cleared}"
    );
    assert!(
        cleared.contains(&format!(
            "uuid:{uuid} mac:{PC1_MAC}  set by deployment LAB00001"
        )),
        "{cleared}"
    );
    let nothing = cli_ok(&data, &["pxe", "clear", "--device", "pc1"]);
    assert!(
        nothing.contains("nothing cleared for device pc1: no machine is under the loop guard"),
        "{nothing}"
    );
    assert!(script_for(&server, PC1_MAC, &uuid).contains("netdeploy.deployment=LAB00001"));

    // The same by collection.
    let cleared = server.cli_changes(&data, &["pxe", "clear", "--collection", "lab"]);
    assert!(cleared.contains("1 machine(s)"), "{cleared}");
    assert!(script_for(&server, PC1_MAC, &uuid).contains("netdeploy.deployment=LAB00001"));
}

#[test]
fn pxe_clear_names_one_unknown_machine_by_mac_or_uuid_and_needs_a_selector() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (k, i) = small_image(dir.path());
    // Unknown computers get a required deployment here.
    let site = write_site(dir.path(), &k, &i, PC1_MAC, "52:54:00:0e:01:02", "")
        .to_str()
        .unwrap()
        .to_owned();
    let text = std::fs::read_to_string(&site)
        .unwrap()
        .replace("purpose = \"available\"", "purpose = \"required\"");
    std::fs::write(&site, text).unwrap();
    cli_ok(&data, &["site", "apply", &site]);
    let server = Server::start(dir.path(), &loopback_config(dir.path(), "proxy", ""));
    let (u1, u2) = (random_smbios_uuid(), random_smbios_uuid());
    let (m1, m2) = ("52:54:00:0e:02:01", "52:54:00:0e:02:02");
    for (m, u) in [(m1, &u1), (m2, &u2)] {
        assert!(script_for(&server, m, u).contains("netdeploy.deployment=LAB00002"));
        assert!(!script_for(&server, m, u).contains("netdeploy.deployment=LAB00002"));
    }
    let by_mac = server.cli_changes(&data, &["pxe", "clear", "--mac", m1]);
    assert!(by_mac.contains(&format!("uuid:{u1} mac:{m1}  set by deployment LAB00002")));
    assert!(by_mac.contains("1 machine(s)"), "{by_mac}");
    let by_uuid = server.cli_changes(&data, &["pxe", "clear", "--uuid", &u2]);
    assert!(by_uuid.contains(&format!("uuid:{u2} mac:{m2}  set by deployment LAB00002")));
    for (m, u) in [(m1, &u1), (m2, &u2)] {
        assert!(script_for(&server, m, u).contains("netdeploy.deployment=LAB00002"));
    }
    // Both ran again and are guarded again; the Unknown Computers collection holds both.
    let all = server.cli_changes(
        &data,
        &["pxe", "clear", "--collection", "unknown_computers"],
    );
    assert!(all.contains("2 machine(s)"), "{all}");
    for (m, u) in [(m1, &u1), (m2, &u2)] {
        assert!(script_for(&server, m, u).contains("netdeploy.deployment=LAB00002"));
    }
    let none = cli_ok(&data, &["pxe", "clear", "--mac", "52:54:00:0e:02:09"]);
    assert!(none.contains("nothing cleared for mac 52:54:00:0e:02:09: none of the 2 machine(s) under the loop guard"), "{none}");

    let (ok, out) = cli(&data, &["pxe", "clear"]);
    assert!(!ok && out.contains("--device"), "{out}");
    let help = cli_ok(&data, &["pxe", "clear", "--help"]);
    assert!(
        help.contains("Exactly one of --device, --collection, --mac or --uuid"),
        "{help}"
    );
}

#[test]
fn a_uuid_sent_from_two_macs_is_a_duplicate_and_each_machine_keeps_its_own_guard() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (k, i) = small_image(dir.path());
    let ignored = random_smbios_uuid();
    let site = write_site(
        dir.path(),
        &k,
        &i,
        PC1_MAC,
        "52:54:00:0e:01:02",
        &format!("ignored_uuids = [\"{ignored}\"]"),
    );
    cli_ok(&data, &["site", "apply", site.to_str().unwrap()]);
    let server = Server::start(dir.path(), &loopback_config(dir.path(), "proxy", ""));
    let shared = random_smbios_uuid();
    let twin = "52:54:00:0e:03:01";

    assert!(script_for(&server, PC1_MAC, &shared).contains("netdeploy.deployment=LAB00001"));
    // Another board with the same UUID: not pc1, an unknown computer with its menu.
    let menu = script_for(&server, twin, &shared);
    assert!(menu.contains("item LAB00002"), "{menu}");
    server
        .wait_for_log(
            &["SMBIOS UUID not used to identify this machine", "duplicate"],
            Duration::from_secs(5),
        )
        .expect("duplicate UUID warned in the log");
    let explained = server.cli_reads(&data, &["explain", "--mac", twin, "--uuid", &shared]);
    assert!(
        explained.contains("matched:  unknown computer"),
        "{explained}"
    );
    assert!(
        explained.contains("a duplicate UUID, seen with MACs"),
        "{explained}"
    );
    assert!(
        explained.contains("warning:  docs/identity.md"),
        "{explained}"
    );
    // pc1 keeps its guard; clearing it touches nothing of the twin.
    assert!(!script_for(&server, PC1_MAC, &shared).contains("netdeploy.deployment=LAB00001"));
    let cleared = server.cli_changes(&data, &["pxe", "clear", "--device", "pc1"]);
    assert!(cleared.contains("1 machine(s)"), "{cleared}");
    assert!(!cleared.contains(twin), "{cleared}");

    // A UUID the site lists is not used either: another MAC sending it is not pc1.
    let listed = server.cli_reads(
        &data,
        &["explain", "--mac", "52:54:00:0e:04:01", "--uuid", &ignored],
    );
    assert!(
        listed.contains("listed in the site's ignored_uuids"),
        "{listed}"
    );
}
