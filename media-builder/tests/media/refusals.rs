//! Inputs the builder refuses before it writes anything, and what a failed build leaves.

use std::process::Command;

use crate::harness::Inputs;

/// Runs `netdeploy-media build` on the fake inputs with `args` in place of the harness's
/// command line and password; returns its error output, failing the test if it built.
fn refused(inputs: &Inputs, output: &std::path::Path, args: &[&str]) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_netdeploy-media"));
    cmd.env("SOURCE_DATE_EPOCH", "1700000000")
        .env_remove("NETDEPLOY_MEDIA_PASSWORD")
        .arg("build")
        .arg("--kernel")
        .arg(inputs.path("vmlinuz"))
        .arg("--initrd")
        .arg(inputs.path("initrd.img"))
        .args(["--server-url", "http://192.0.2.10:8080"])
        .arg("--output")
        .arg(output)
        .args(args);
    let o = cmd.output().unwrap();
    assert!(!o.status.success(), "built {}", output.display());
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn an_empty_password_is_refused() {
    let inputs = Inputs::new();
    let out = inputs.path("media.iso");
    let e = refused(&inputs, &out, &["--password", ""]);
    assert!(e.contains("password is empty"), "{e}");
    assert!(!out.exists());
}

#[test]
fn an_empty_kernel_is_refused() {
    let inputs = Inputs::new();
    std::fs::write(inputs.path("vmlinuz"), b"").unwrap();
    let out = inputs.path("media.iso");
    let e = refused(&inputs, &out, &[]);
    assert!(e.contains("is empty (0 bytes)"), "{e}");
    assert!(!out.exists());
}

#[test]
fn a_command_line_with_a_line_break_is_refused() {
    let inputs = Inputs::new();
    let out = inputs.path("media.iso");
    let e = refused(
        &inputs,
        &out,
        &["--cmdline", "quiet\n  APPEND init=/bin/sh"],
    );
    assert!(
        e.contains("--cmdline contains the control character"),
        "{e}"
    );
    assert!(!out.exists());
}

#[test]
fn an_output_that_is_an_input_is_refused_and_the_input_is_kept() {
    let inputs = Inputs::new();
    let kernel = std::fs::read(inputs.path("vmlinuz")).unwrap();
    let initrd = std::fs::read(inputs.path("initrd.img")).unwrap();
    // The same name; a hard link; a symbolic link.
    std::fs::hard_link(inputs.path("initrd.img"), inputs.path("linked.iso")).unwrap();
    std::os::unix::fs::symlink(inputs.path("vmlinuz"), inputs.path("symlinked.iso")).unwrap();
    for out in ["vmlinuz", "linked.iso", "symlinked.iso"] {
        let e = refused(&inputs, &inputs.path(out), &[]);
        assert!(e.contains("would overwrite it"), "{out}: {e}");
    }
    assert_eq!(std::fs::read(inputs.path("vmlinuz")).unwrap(), kernel);
    assert_eq!(std::fs::read(inputs.path("initrd.img")).unwrap(), initrd);
}

#[test]
fn a_failed_write_leaves_no_partial_file() {
    let inputs = Inputs::new();
    // The output is a directory: the image is written to media.partial, and the rename fails.
    let out = inputs.path("media.iso");
    std::fs::create_dir(&out).unwrap();
    let e = refused(&inputs, &out, &[]);
    assert!(e.contains("renaming to"), "{e}");
    assert!(!inputs.path("media.partial").exists());
}

#[test]
fn an_https_server_without_a_pin_is_refused() {
    let inputs = Inputs::new();
    let out = inputs.path("media.iso");
    let build = |extra: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_netdeploy-media"))
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .env_remove("NETDEPLOY_MEDIA_PASSWORD")
            .arg("build")
            .arg("--kernel")
            .arg(inputs.path("vmlinuz"))
            .arg("--initrd")
            .arg(inputs.path("initrd.img"))
            .args(["--server-url", "https://192.0.2.10:8443"])
            .arg("--output")
            .arg(&out)
            .args(extra)
            .output()
            .unwrap();
        assert!(!o.status.success(), "built {}", out.display());
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    let e = build(&[]);
    assert!(e.contains("--server-pin is missing"), "{e}");
    assert!(!out.exists());
    let e = build(&["--server-pin", "sha256:12"]);
    assert!(e.contains("--server-pin"), "{e}");
    assert!(e.contains("64 hex digits"), "{e}");
    assert!(!out.exists());
}
