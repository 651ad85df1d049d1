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

/// A point-to-point link between the server namespaces of two labs (a veth pair `ndlink0`,
/// made inside the namespaces, so it never exists on the host), as two servers' own network
/// between their buildings. Removed when dropped.
pub struct Link {
    ns: String,
}

impl Link {
    /// Links `a` (at `a_addr`, e.g. `10.78.0.1/30`) and `b` (at `b_addr`).
    pub fn between(a: &Lab, a_addr: &str, b: &Lab, b_addr: &str) -> Link {
        const DEV: &str = "ndlink0";
        must(Command::new("ip").args([
            "-n", &a.name, "link", "add", DEV, "type", "veth", "peer", "name", DEV, "netns",
            &b.name,
        ]));
        let link = Link { ns: a.name.clone() };
        for (ns, addr) in [(&a.name, a_addr), (&b.name, b_addr)] {
            must(Command::new("ip").args(["-n", ns, "addr", "add", addr, "dev", DEV]));
            must(Command::new("ip").args(["-n", ns, "link", "set", DEV, "up"]));
        }
        link
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        // Deleting one end removes the pair.
        let _ = run(Command::new("ip").args(["-n", &self.ns, "link", "del", "ndlink0"]));
    }
}

/// Sends the DHCP `request` from port 68 in namespace `ns` to `to` (the lab's broadcast address,
/// `10.77.0.255:67`), as a client there does; returns the first answer to it within 1.5 s.
pub fn dhcp_reply_in(ns: &str, to: &str, request: &[u8]) -> Option<Vec<u8>> {
    use std::os::fd::AsRawFd;
    let ns_file = std::fs::File::open(format!("/run/netns/{ns}"))
        .unwrap_or_else(|e| panic!("namespace {ns}: {e}"));
    let request = request.to_vec();
    let to = to.to_owned();
    // setns(2) moves only the calling thread: a thread of its own enters the namespace.
    std::thread::spawn(move || {
        // SAFETY: setns on a namespace file we hold open, for this thread only.
        let rc = unsafe { libc::setns(ns_file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
        let s = std::net::UdpSocket::bind("0.0.0.0:68").expect("bind port 68");
        s.set_broadcast(true).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_millis(1500)))
            .unwrap();
        s.send_to(&request, to.as_str()).unwrap();
        let mut buf = [0u8; 1500];
        // A reply (op 2) to this transaction (the same xid).
        while let Ok(n) = s.recv(&mut buf) {
            if n > 8 && buf[0] == 2 && buf[4..8] == request[4..8] {
                return Some(buf[..n].to_vec());
            }
        }
        None
    })
    .join()
    .unwrap()
}
