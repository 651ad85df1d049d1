//! The isolated lab network of `lab/` (network namespaces, a bridge, tap devices) for tests
//! that need real broadcast DHCP clients or QEMU machines. Needs root; everything it creates is
//! removed when the [`Lab`] is dropped.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    out
}

pub fn must(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn need_root() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "the lab tests create network namespaces and need root (run the README's test command as root)"
    );
}

/// QEMU under TCG takes a whole core: machines boot one at a time so that a slow CI machine
/// does not push every boot past its timeout.
pub fn vm_turn() -> std::sync::MutexGuard<'static, ()> {
    static ONE_VM_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    ONE_VM_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner())
}

/// One lab network: namespace `name` with the bridge (10.77.0.1/24), `name-peer` at 10.77.0.2.
pub struct Lab {
    pub name: String,
    peer_dhcp: bool,
    taps: std::sync::Mutex<Vec<String>>,
}

static NEXT: AtomicUsize = AtomicUsize::new(0);

impl Lab {
    pub fn up() -> Lab {
        need_root();
        let name = format!(
            "ndt{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        let lab = Lab {
            name,
            peer_dhcp: false,
            taps: Default::default(),
        };
        must(Command::new(repo().join("lab/net.sh")).args(["up", &lab.name]));
        lab
    }

    /// Starts the separate DHCP server (dnsmasq, addresses only) in the peer namespace.
    pub fn start_peer_dhcp(&mut self) {
        must(Command::new(repo().join("lab/dhcp-peer.sh")).args(["start", &self.name]));
        self.peer_dhcp = true;
    }

    /// Makes the lab an IPv6-only site: the peer namespace runs a stateful DHCPv6 server
    /// (addresses only, iPXE left to the boot server) and radvd with the "other
    /// configuration" flag, in place of the lab's flagless router advertisements.
    pub fn start_peer_dhcp6(&mut self) {
        must(Command::new(repo().join("lab/dhcp-peer.sh")).args(["start", &self.name, "--ipv6"]));
        self.peer_dhcp = true;
    }

    /// `lab/boot-vm.sh` for one machine on this lab's network, its serial console logged to
    /// `serial`; the caller adds media and options, and runs or spawns it (holding a
    /// [`vm_turn`] and having made the tap).
    pub fn boot_vm_command(
        &self,
        firmware: &str,
        mac: &str,
        tap: &str,
        serial: &Path,
        timeout: u32,
    ) -> Command {
        let mut c = Command::new(repo().join("lab/boot-vm.sh"));
        c.args(["--ns", &self.name, "--firmware", firmware, "--mac", mac])
            .args(["--tap", tap, "--serial-log"])
            .arg(serial)
            .args(["--timeout", &timeout.to_string()]);
        c
    }

    pub fn tap(&self, tap: &str) {
        must(Command::new(repo().join("lab/net.sh")).args(["tap", &self.name, tap]));
    }

    pub fn peer(&self) -> String {
        format!("{}-peer", self.name)
    }

    /// The command prefix that runs a program in the server namespace.
    pub fn exec_prefix(&self) -> [&str; 4] {
        ["ip", "netns", "exec", &self.name]
    }

    /// Boots a QEMU machine on a new tap; returns (success, serial log, boot-vm.sh output).
    pub fn boot_vm(
        &self,
        firmware: &str,
        mac: &str,
        tap: &str,
        dir: &Path,
        extra: &[&str],
    ) -> (bool, String, String) {
        self.boot_vm_timeout(firmware, mac, tap, dir, extra, 240)
    }

    /// Same, with a timeout in seconds; a tap made by an earlier boot is reused.
    pub fn boot_vm_timeout(
        &self,
        firmware: &str,
        mac: &str,
        tap: &str,
        dir: &Path,
        extra: &[&str],
        timeout: u32,
    ) -> (bool, String, String) {
        let _turn = vm_turn();
        {
            let mut taps = self.taps.lock().unwrap();
            if !taps.iter().any(|t| t == tap) {
                self.tap(tap);
                taps.push(tap.to_owned());
            }
        }
        let serial = dir.join(format!("serial-{tap}.log"));
        let out = run(self
            .boot_vm_command(firmware, mac, tap, &serial, timeout)
            .args(extra));
        let log = std::fs::read_to_string(&serial).unwrap_or_default();
        let report = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), log, report)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if self.peer_dhcp {
            let _ = run(Command::new(repo().join("lab/dhcp-peer.sh")).args(["stop", &self.name]));
        }
        let _ = run(Command::new(repo().join("lab/net.sh")).args(["down", &self.name]));
    }
}

/// The Linux test boot image (kernel, initrd), built once per test run and cached in target/.
pub fn boot_image() -> &'static (PathBuf, PathBuf) {
    static IMAGE: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let out = repo().join("target/lab-image");
        must(Command::new(repo().join("boot/linux-image/build.sh")).arg(&out));
        (out.join("vmlinuz"), out.join("initrd.img"))
    })
}

/// A netdeploy configuration for the lab network: the DHCP server on its bridge, with `data`
/// as the data directory and Debian's iPXE files as the TFTP root.
pub fn lab_dhcp_config(data: &Path) -> String {
    format!(
        "[server]\ninterfaces = [\"ndbr0\"]\ndata_dir = {:?}\n[dhcp]\nmode = \"dhcp\"\n\
         range = [\"10.77.0.100\", \"10.77.0.199\"]\n[tftp]\nroot = \"/usr/lib/ipxe\"\n",
        data.display().to_string()
    )
}

/// A disk image of `mib` MiB of random-looking bytes, the same on every run.
pub fn disk_image(mib: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..mib * 1024 * 1024)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// SHA-256 in lowercase hex.
pub fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    netdeploy::content::hex(&sha2::Sha256::digest(bytes))
}

/// Waits up to five minutes until `needle` appears `times` times in the serial log, as a person
/// at the console would; false when the machine stopped first.
pub fn wait_for_serial(
    serial: &Path,
    needle: &str,
    times: usize,
    vm: &mut std::process::Child,
) -> bool {
    for _ in 0..600 {
        let seen = std::fs::read_to_string(serial).unwrap_or_default();
        if seen.matches(needle).count() >= times {
            return true;
        }
        if vm.try_wait().unwrap().is_some() {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    false
}

/// Applies, to the data directory `dir/data`, a site with one device (`name`, known by
/// `identity`: a `macs = [...]` or `uuid = "..."` line) in collection `lab`, and a required
/// PXE deployment `LAB00001` of the lab boot image whose one step runs `command`.
pub fn apply_one_deployment_site(dir: &Path, name: &str, identity: &str, command: &str) {
    let step = format!("{{ name = \"hello\", action = \"run_command\", command = {command:?} }}");
    apply_one_deployment_site_with_steps(dir, name, identity, &step);
}

/// The same site, with the task sequence's `steps` as TOML inline tables separated by commas.
pub fn apply_one_deployment_site_with_steps(dir: &Path, name: &str, identity: &str, steps: &str) {
    let (kernel, initrd) = boot_image();
    let site = format!(
        r#"site_code = "LAB"
[[device]]
name = "{name}"
{identity}
[[collection]]
id = "lab"
members = ["{name}"]
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
steps = [{steps}]
[[deployment]]
id = "LAB00001"
task_sequence = "hello"
collection = "lab"
purpose = "required"
available_to = "media_pxe"
"#,
        kernel = kernel.display().to_string(),
        initrd = initrd.display().to_string(),
    );
    let site_path = dir.join("site.toml");
    std::fs::write(&site_path, site).unwrap();
    crate::harness::cli_ok(
        &dir.join("data"),
        &["site", "apply", site_path.to_str().unwrap()],
    );
}
