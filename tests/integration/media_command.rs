//! `netdeploy media` runs the `netdeploy-media` installed beside its own executable (the
//! release build's `target/release/`, the Debian package's `/usr/bin`) before one on `PATH`.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use crate::harness::binary;

/// A stand-in builder that says which one it is and what it was given.
fn fake_builder(path: &Path, name: &str) {
    std::fs::write(path, format!("#!/bin/sh\necho {name} \"$@\"\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Runs `netdeploy media ARGS` from `netdeploy` with only `path_dir` (and the shell's
/// directories) on PATH. A file just written can be busy for a moment while another test's
/// child process still holds it (ETXTBSY), so that error is retried a bounded number of times.
fn media(netdeploy: &Path, path_dir: &Path, args: &[&str]) -> Output {
    for _ in 0..50 {
        match Command::new(netdeploy)
            .arg("media")
            .args(args)
            .env("PATH", format!("{}:/usr/bin:/bin", path_dir.display()))
            .output()
        {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) => {
                std::thread::sleep(Duration::from_millis(100))
            }
            r => return r.expect("run netdeploy media"),
        }
    }
    panic!("{} stayed busy", netdeploy.display());
}

#[test]
fn media_runs_the_builder_beside_netdeploy_before_the_one_on_path() {
    let dir = tempfile::tempdir().unwrap();
    let installed = dir.path().join("bin");
    let on_path = dir.path().join("path");
    std::fs::create_dir_all(&installed).unwrap();
    std::fs::create_dir_all(&on_path).unwrap();
    let netdeploy = installed.join("netdeploy");
    std::fs::copy(binary(), &netdeploy).unwrap();
    fake_builder(&installed.join("netdeploy-media"), "beside");
    fake_builder(&on_path.join("netdeploy-media"), "on-path");

    let out = media(&netdeploy, &on_path, &["build", "--format", "usb"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "beside build --format usb\n"
    );

    std::fs::remove_file(installed.join("netdeploy-media")).unwrap();
    let out = media(&netdeploy, &on_path, &["build"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "on-path build\n");

    std::fs::remove_file(on_path.join("netdeploy-media")).unwrap();
    let out = media(&netdeploy, &on_path, &["build"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("netdeploy-media") && err.contains("--release"),
        "the error says how to build the media builder: {err}"
    );
}
