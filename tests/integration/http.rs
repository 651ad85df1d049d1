//! The HTTP side of the boot path against the real server: iPXE scripts, boot files, metrics.

use crate::harness::{boot_script, http_get, http_get_status, loopback_config, Server};

#[test]
fn ipxe_not_started_by_netdeploy_is_asked_who_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &loopback_config(dir.path(), "proxy", ""));
    let script = http_get(server.http_addr(), "/boot.ipxe");
    assert!(script.starts_with("#!ipxe"), "{script}");
    assert!(
        script.contains(&format!(
            "chain {}/boot.ipxe?mac=${{mac:hexhyp}}&uuid=${{uuid}}",
            server.url()
        )),
        "{script}"
    );
}

#[test]
fn per_machine_script_boots_the_configured_image_with_the_server_url() {
    let dir = tempfile::tempdir().unwrap();
    let kernel = dir.path().join("vmlinuz");
    let initrd = dir.path().join("initrd.img");
    std::fs::write(&kernel, vec![0x4b; 100_000]).unwrap();
    std::fs::write(&initrd, b"initrd bytes").unwrap();
    let extra = format!(
        "[boot.image]\nkernel = {:?}\ninitrd = {:?}\ncmdline = \"console=ttyS0\"\n",
        kernel.display().to_string(),
        initrd.display().to_string()
    );
    let config = loopback_config(dir.path(), "proxy", "") + &extra;
    let server = Server::start(dir.path(), &config);
    let script = boot_script(&server, "/boot.ipxe?mac=52-54-00-12-34-56&arch=7");
    let url = server.url();
    assert!(script.contains(&format!("kernel {url}/image/kernel initrd=initrd.img console=ttyS0 netdeploy.server={url} netdeploy.mac=52:54:00:12:34:56")), "{script}");
    assert!(
        script.contains(&format!("initrd --name initrd.img {url}/image/initrd")),
        "{script}"
    );
    let (status, body) = http_get_status(server.http_addr(), "/image/kernel");
    assert_eq!(status, 200);
    assert_eq!(body, std::fs::read(&kernel).unwrap());
    let (status, _) = http_get_status(server.http_addr(), "/boot.ipxe?mac=not-a-mac");
    assert_eq!(status, 400);
}

#[test]
fn tftp_root_over_http_follows_the_same_path_rules() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &loopback_config(dir.path(), "proxy", ""));
    let (status, body) = http_get_status(server.http_addr(), "/tftp/SNPONLY.EFI");
    assert_eq!(status, 200);
    assert_eq!(body, b"snponly.efi stand-in");
    std::fs::write(dir.path().join("secret"), b"outside").unwrap();
    let (status, _) = http_get_status(server.http_addr(), "/tftp/..%2Fsecret");
    assert_eq!(status, 404);
    let (status, _) = http_get_status(server.http_addr(), "/tftp/%2E%2E/secret");
    assert_ne!(status, 200);
}

#[test]
fn metrics_are_in_prometheus_text_format() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &loopback_config(dir.path(), "proxy", ""));
    let body = http_get(server.http_addr(), "/metrics");
    assert!(
        body.contains(
            "# TYPE netdeploy_dhcp_offers_total counter\nnetdeploy_dhcp_offers_total 0\n"
        ),
        "{body}"
    );
    assert!(
        body.contains("netdeploy_tftp_transfers_started_total"),
        "{body}"
    );
}
