//! Integration tests: the real `netdeploy` binary on real sockets, real clients against it.
//! One test binary with a module per area, so the suite links once.

mod admin_api;
mod agent_qemu;
mod config_lookup;
mod content;
mod contract;
mod credentials;
mod deploy_qemu;
mod deployments;
mod dhcp;
mod dhcp_clients;
mod docs_reference;
mod docs_site_file;
mod harness;
mod http;
mod http_limits;
mod imaging;
mod ipv6;
mod lab;
mod layers;
mod media_command;
mod media_qemu;
mod monitoring;
mod pcap;
mod pxe_password;
mod pxe_password_qemu;
mod pxe_qemu;
mod reimage;
mod reimage_qemu;
mod secure_boot;
mod secure_boot_qemu;
mod site_scale;
mod tftp;
mod tls;
mod wake;
mod winpe_wine;
