//! The Secure Boot chain without firmware: over loopback, a real TFTP client (tftp-hpa) gets
//! shim, GRUB, the GRUB configuration every machine reads and the per-machine one made from the
//! decision, and the kernel it names; `explain` says which chain a firmware boots through.

use std::path::Path;
use std::process::Command;

use crate::deployments::{small_image, write_site};
use crate::harness::{binary, cli_ok, loopback_config, Server};

const PC1: &str = "52:54:00:5b:01:01";

/// A configuration on loopback with efi-x64 on the shim chain; stand-ins for the signed files.
pub(crate) fn shim_config(dir: &Path) -> String {
    let (shim, grub) = (
        dir.join("shimx64.efi.signed"),
        dir.join("grubnet.efi.signed"),
    );
    std::fs::write(&shim, b"signed shim stand-in").unwrap();
    std::fs::write(&grub, b"signed grub stand-in").unwrap();
    loopback_config(
        dir,
        "proxy",
        &format!(
            "[boot.chain]\nefi-x64 = \"shim\"\n[boot.shim]\nshim = {:?}\ngrub = {:?}\n",
            shim.display().to_string(),
            grub.display().to_string()
        ),
    )
}

/// `tftp-hpa` fetches `name` in binary mode; `None` when the server refused it. (tftp-hpa reads
/// a name with a `:` as HOST:FILE, so MACs go in with dashes here; GRUB sends colons.)
pub(crate) fn tftp_get(server: &Server, dir: &Path, name: &str) -> Option<Vec<u8>> {
    let a = server.tftp_addr();
    let out = dir.join("fetched");
    let _ = std::fs::remove_file(&out);
    let run = Command::new("tftp")
        .args(["-m", "binary", &a.ip().to_string(), &a.port().to_string()])
        .args(["-c", "get", name])
        .arg(&out)
        .output()
        .expect("run tftp (tftp-hpa)");
    let said =
        String::from_utf8_lossy(&run.stdout).into_owned() + &String::from_utf8_lossy(&run.stderr);
    if said.contains("Error code") {
        return None;
    }
    std::fs::read(&out).ok()
}

fn text(bytes: Option<Vec<u8>>) -> String {
    String::from_utf8(bytes.expect("served")).unwrap()
}

#[test]
fn tftp_serves_the_shim_chain_and_a_grub_configuration_made_from_the_machines_decision() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (kernel, initrd) = small_image(dir.path());
    let site = write_site(dir.path(), &kernel, &initrd, PC1, "52:54:00:5b:01:02", "");
    cli_ok(&data, &["site", "apply", site.to_str().unwrap()]);
    let server = Server::start(dir.path(), &shim_config(dir.path()));

    assert_eq!(
        tftp_get(&server, dir.path(), "shimx64.efi").unwrap(),
        b"signed shim stand-in"
    );
    // shim asks for its second stage by this name, from its own directory.
    assert_eq!(
        tftp_get(&server, dir.path(), "grubx64.efi").unwrap(),
        b"signed grub stand-in"
    );
    let netboot = text(tftp_get(&server, dir.path(), "/grub/grub.cfg"));
    assert!(
        netboot.contains("configfile \"/netdeploy/boot.grub?mac=${net_default_mac}"),
        "{netboot}"
    );

    // A machine that did not ask this server for a network boot lately starts nothing.
    let unproven = text(tftp_get(
        &server,
        dir.path(),
        &format!(
            "/netdeploy/boot.grub?mac={}&uuid=&arch=7",
            PC1.replace(':', "-")
        ),
    ));
    assert!(unproven.contains("has not asked this server"), "{unproven}");

    // pc1 has a required deployment (rule 5): once it has asked DHCP, its configuration boots
    // it, with the same command line as the iPXE script, its run token included.
    crate::harness::dhcp_discover(&server, PC1, None);
    crate::harness::dhcp_discover(&server, "52:54:00:5b:01:09", None);
    let cfg = text(tftp_get(
        &server,
        dir.path(),
        &format!(
            "/netdeploy/boot.grub?mac={}&uuid=&arch=7",
            PC1.replace(':', "-")
        ),
    ));
    let kernel_sha = crate::lab::sha256(b"kernel bytes");
    let initrd_sha = crate::lab::sha256(b"initrd bytes");
    assert!(
        cfg.contains(&format!(
            "if linux /netdeploy/content/{kernel_sha} 'console=ttyS0' 'quiet' 'netdeploy.server={}' \
             'netdeploy.deployment=LAB00001' 'netdeploy.context=pxe' 'netdeploy.mac={PC1}' \
             'netdeploy.token=",
            server.url()
        )),
        "{cfg}"
    );
    assert!(
        cfg.contains(&format!("if initrd /netdeploy/content/{initrd_sha}; then")),
        "{cfg}"
    );
    assert_eq!(
        tftp_get(
            &server,
            dir.path(),
            &format!("/netdeploy/content/{kernel_sha}")
        )
        .unwrap(),
        b"kernel bytes"
    );
    // Content the catalog does not reference is not served.
    let other = crate::lab::sha256(b"not in the catalog");
    assert_eq!(
        tftp_get(&server, dir.path(), &format!("/netdeploy/content/{other}")),
        None
    );
    // The start was recorded as the iPXE script records it: the loop guard of rule 7 holds, so
    // the next configuration of pc1 leaves to the next boot device.
    let again = text(tftp_get(
        &server,
        dir.path(),
        &format!(
            "/netdeploy/boot.grub?mac={}&uuid=&arch=7",
            PC1.replace(':', "-")
        ),
    ));
    assert!(again.contains("nothing to boot for"), "{again}");
    assert!(again.contains("exit 1"), "{again}");

    // An unknown computer gets the menu of the available deployment (rule 6).
    let menu = text(tftp_get(
        &server,
        dir.path(),
        "/netdeploy/boot.grub?mac=52-54-00-5b-01-09&uuid=&arch=7",
    ));
    assert!(
        menu.contains("menuentry 'LAB00002 Say hello' --id 'LAB00002'"),
        "{menu}"
    );
    assert!(menu.contains("set default=local"), "{menu}");
}

#[test]
fn explain_says_which_chain_each_firmware_boots_through() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("netdeploy.toml");
    std::fs::write(&config, shim_config(dir.path())).unwrap();
    let data = dir.path().join("data");
    let (kernel, initrd) = small_image(dir.path());
    let site = write_site(dir.path(), &kernel, &initrd, PC1, "52:54:00:5b:01:02", "");
    cli_ok(&data, &["site", "apply", site.to_str().unwrap()]);
    let explain = |arch: &str| {
        let out = Command::new(binary())
            .arg("--config")
            .arg(&config)
            .args(["explain", "--mac", PC1, "--arch", arch])
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let uefi = explain("7");
    assert!(
        uefi.contains("chain:    shim (boot.chain efi-x64 = \"shim\")"),
        "{uefi}"
    );
    let bios = explain("0");
    assert!(
        bios.contains("chain:    ipxe (boot.chain bios, the default)"),
        "{bios}"
    );
}

#[test]
fn the_admin_apis_explain_names_the_chain_as_the_command_line_does() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (kernel, initrd) = small_image(dir.path());
    let site = write_site(dir.path(), &kernel, &initrd, PC1, "52:54:00:5b:01:02", "");
    cli_ok(&data, &["site", "apply", site.to_str().unwrap()]);
    let token = "explain-token-0123456789";
    let config =
        shim_config(dir.path()).replace("[http]\n", &format!("[http]\nadmin_token = {token:?}\n"));
    let server = Server::start(dir.path(), &config);
    let explain = |arch: u16| {
        let (status, body) = crate::harness::http_request(
            server.http_addr(),
            "GET",
            &format!("/api/v1/explain?mac={PC1}&arch={arch}"),
            &[&format!("Authorization: Bearer {token}")],
            b"",
        );
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        v["text"].as_str().unwrap().to_owned()
    };
    assert!(
        explain(7).contains("chain:    shim (boot.chain efi-x64 = \"shim\")"),
        "{}",
        explain(7)
    );
    assert!(
        explain(0).contains("chain:    ipxe (boot.chain bios, the default)"),
        "{}",
        explain(0)
    );
}

#[test]
fn grub_configuration_hands_the_agent_the_https_url_and_the_pin_while_https_is_on() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (kernel, initrd) = small_image(dir.path());
    let site = write_site(dir.path(), &kernel, &initrd, PC1, "52:54:00:5b:01:02", "");
    cli_ok(&data, &["site", "apply", site.to_str().unwrap()]);
    let config =
        shim_config(dir.path()).replace("[boot.chain]", "[http.tls]\nport = 0\n[boot.chain]");
    let server = Server::start(dir.path(), &config);
    crate::harness::dhcp_discover(&server, PC1, None);
    let cfg = text(tftp_get(
        &server,
        dir.path(),
        &format!(
            "/netdeploy/boot.grub?mac={}&uuid=&arch=7",
            PC1.replace(':', "-")
        ),
    ));
    let https = server.ready["https_url"].as_str().unwrap();
    let pin = server.ready["tls_pin"].as_str().unwrap();
    assert!(
        cfg.contains(&format!(
            "'netdeploy.server={https}' 'netdeploy.pin={pin}' 'netdeploy.deployment=LAB00001'"
        )),
        "{cfg}"
    );
    // GRUB itself still loads the kernel by hash, over TFTP.
    assert!(cfg.contains("if linux /netdeploy/content/"), "{cfg}");
}
