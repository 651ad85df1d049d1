//! What `--help` tells a user who has only the installed binary.

use std::path::Path;
use std::process::Command;

#[test]
fn help_ends_with_the_media_how_to_page_which_exists() {
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs");
    for args in [&["--help"][..], &["build", "--help"]] {
        let o = Command::new(env!("CARGO_BIN_EXE_netdeploy-media"))
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success());
        let text = String::from_utf8(o.stdout).unwrap();
        let last = text.lines().rev().find(|l| !l.trim().is_empty()).unwrap();
        assert_eq!(
            last, "Reference: docs/media.md (installed in /usr/share/doc/netdeploy/docs/)",
            "netdeploy-media {args:?}"
        );
        assert!(docs.join("media.md").is_file());
    }
}
