//! Building media from small fake inputs, and running the checking tools.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Fails (never skips) when a checking tool is missing, naming its Debian package.
pub fn require_tool(binary: &str, package: &str) -> PathBuf {
    for dir in ["/usr/bin", "/usr/sbin", "/bin", "/sbin", "/usr/local/bin"] {
        let p = Path::new(dir).join(binary);
        if p.exists() {
            return p;
        }
    }
    panic!("checking tool `{binary}` is missing: apt-get install -y {package} (see media-builder/packages.txt)");
}

/// A workspace with a fake kernel and initrd (content is never executed by these tests).
pub struct Inputs {
    pub dir: tempfile::TempDir,
}

impl Inputs {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let pattern = |seed: u8, len: usize| -> Vec<u8> {
            (0..len)
                .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[3] ^ seed)
                .collect()
        };
        std::fs::write(dir.path().join("vmlinuz"), pattern(1, 700_000)).unwrap();
        std::fs::write(dir.path().join("initrd.img"), pattern(2, 300_000)).unwrap();
        Inputs { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// `netdeploy-media build` of the fake inputs, with a password but no salt for it.
pub fn command(inputs: &Inputs, format: &str, output: &Path, epoch: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_netdeploy-media"));
    c.env("SOURCE_DATE_EPOCH", epoch)
        .env_remove("NETDEPLOY_MEDIA_PASSWORD_SALT")
        .arg("build")
        .arg("--kernel")
        .arg(inputs.path("vmlinuz"))
        .arg("--initrd")
        .arg(inputs.path("initrd.img"))
        .args(["--cmdline", "console=ttyS0 quiet"])
        .args(["--server-url", "http://192.0.2.10:8080"])
        .args(["--preferred-deployment", "42", "--password", "hunter2"])
        .args(["--format", format])
        .arg("--output")
        .arg(output);
    c
}

/// Runs `netdeploy-media build` with the fake inputs, a fixed password salt (two builds of
/// the same inputs give the same bytes) and extra arguments.
pub fn build(inputs: &Inputs, format: &str, output: &Path, epoch: &str, extra: &[&str]) -> Output {
    command(inputs, format, output, epoch)
        .args(["--password-salt", "00112233445566778899aabbccddeeff"])
        .args(extra)
        .output()
        .unwrap()
}

/// Builds and fails the test with the tool's stderr (e.g. a missing bootloader package).
pub fn build_ok(inputs: &Inputs, format: &str, name: &str) -> PathBuf {
    let out = inputs.path(name);
    let o = build(inputs, format, &out, "1700000000", &[]);
    assert!(
        o.status.success(),
        "netdeploy-media failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

/// Runs a tool; returns stdout and stderr together.
pub fn run(tool: &Path, args: &[&str]) -> (bool, String) {
    let o = Command::new(tool).args(args).output().unwrap();
    let mut text = String::from_utf8_lossy(&o.stdout).into_owned();
    text += &String::from_utf8_lossy(&o.stderr);
    (o.status.success(), text)
}

/// Copies `len` bytes at `offset` of `image` into a new file.
pub fn extract(image: &Path, offset: u64, len: u64, to: &Path) {
    let bytes = std::fs::read(image).unwrap();
    std::fs::write(to, &bytes[offset as usize..(offset + len) as usize]).unwrap();
}

/// `fsck.fat -n` (check only) must find nothing to repair.
pub fn assert_fat_clean(image: &Path) {
    let fsck = require_tool("fsck.fat", "dosfstools");
    let (ok, text) = run(&fsck, &["-n", image.to_str().unwrap()]);
    assert!(ok, "fsck.fat -n {}:\n{text}", image.display());
}
