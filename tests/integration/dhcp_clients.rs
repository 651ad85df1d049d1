//! Real DHCP clients against netdeploy in `dhcp` mode, over a real broadcast link in the lab
//! network (netdeploy in the server namespace, the client in the peer namespace).

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use crate::harness::Server;
use crate::lab::{must, Lab};

fn config(dir: &std::path::Path) -> String {
    format!(
        "[server]\ninterfaces = [\"ndbr0\"]\ndata_dir = {:?}\n\
         [dhcp]\nmode = \"dhcp\"\nrange = [\"10.77.0.150\", \"10.77.0.160\"]\nrouter = \"10.77.0.1\"\n\
         [tftp]\nroot = {:?}\n",
        dir.join("data").display().to_string(),
        dir.display().to_string(),
    )
}

/// Runs busybox udhcpc once in the peer namespace; returns the address it was given.
fn udhcpc(lab: &Lab, dir: &std::path::Path) -> String {
    let script = dir.join("udhcpc.sh");
    // Prints what the server gave instead of configuring the interface.
    std::fs::write(&script, "#!/bin/sh\n[ \"$1\" = bound ] && echo \"lease ip=$ip mask=$subnet router=$router server=$serverid\"\nexit 0\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = must(
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &lab.peer(),
                "busybox",
                "udhcpc",
                "-i",
                "ndveth1",
                "-f",
                "-q",
                "-n",
                "-t",
                "5",
                "-T",
                "2",
                "-s",
            ])
            .arg(&script),
    );
    let line = out
        .lines()
        .find(|l| l.starts_with("lease "))
        .unwrap_or_else(|| panic!("udhcpc got no lease:\n{out}"));
    assert!(line.contains("mask=255.255.255.0"), "{line}");
    assert!(line.contains("router=10.77.0.1"), "{line}");
    assert!(line.contains("server=10.77.0.1"), "{line}");
    line.split_whitespace()
        .find_map(|w| w.strip_prefix("ip="))
        .unwrap()
        .to_owned()
}

#[test]
fn udhcpc_gets_a_lease_and_the_same_one_after_a_server_restart() {
    let dir = tempfile::tempdir().unwrap();
    let lab = Lab::up();
    let mut server = Server::start_in(dir.path(), &config(dir.path()), &lab.exec_prefix());
    let first = udhcpc(&lab, dir.path());
    assert!(first.starts_with("10.77.0.1"), "{first}");
    server.stop();
    drop(server);
    let server = Server::start_in(dir.path(), &config(dir.path()), &lab.exec_prefix());
    let second = udhcpc(&lab, dir.path());
    assert_eq!(
        first,
        second,
        "the lease changed across a restart:\n{}",
        server.log()
    );
}
