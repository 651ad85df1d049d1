//! Booting the media in QEMU (docs/media.md: every image is checked by booting it, BIOS
//! and UEFI): SeaBIOS and OVMF, from a CD and from a USB stick, with the Linux test boot
//! image (`boot/linux-image`), whose `/init` prints `NETDEPLOY-BOOT-OK ... cmdline=...`
//! on the serial console, finds the medium by its variables file and starts the agent, which
//! says where its configuration came from: the test waits for that line. No network (`-nic none`), software emulation,
//! bounded time; the QEMU process is killed through its handle if it outlives that.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::harness::{require_tool, Inputs};

const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";
const BOOT_TIMEOUT: Duration = Duration::from_secs(300);

/// Two cores: one guest at a time keeps each boot well inside its time limit.
static ONE_GUEST: Mutex<()> = Mutex::new(());

/// Builds (or reuses, it is cached) the Linux test boot image under `target/lab-image`.
fn lab_image() -> &'static (PathBuf, PathBuf) {
    static IMAGE: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .unwrap()
            .to_path_buf();
        let out = root.join("target/lab-image");
        let status = Command::new("bash")
            .arg(root.join("boot/linux-image/build.sh"))
            .arg(&out)
            .status()
            .expect("running boot/linux-image/build.sh");
        assert!(
            status.success(),
            "boot/linux-image/build.sh failed (needs busybox-static, cpio)"
        );
        (out.join("vmlinuz"), out.join("initrd.img"))
    })
}

#[derive(Clone, Copy, PartialEq)]
pub enum Firmware {
    SeaBios,
    Ovmf,
}

#[derive(Clone, Copy)]
pub enum Attach {
    Cdrom,
    UsbStick,
}

fn build_lab_media(dir: &Path, format: &str) -> PathBuf {
    let (kernel, initrd) = lab_image();
    let out = dir.join(format!("lab.{format}"));
    let o = Command::new(env!("CARGO_BIN_EXE_netdeploy-media"))
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .args([
            "build",
            "--cmdline",
            "console=ttyS0",
            "--server-url",
            "http://192.0.2.10:8080",
        ])
        .arg("--kernel")
        .arg(kernel)
        .arg("--initrd")
        .arg(initrd)
        .args(["--format", format])
        .arg("--output")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    out
}

/// Boots `image` and returns the marker line the guest printed, once the agent started from
/// the medium's variables file.
fn boot(image: &Path, firmware: Firmware, attach: Attach) -> String {
    boot_until(
        image,
        firmware,
        attach,
        "NETDEPLOY-BOOT-OK and agent reading /netdeploy/variables",
        |text| {
            let agent = text.lines().any(|l| {
                l.contains("netdeploy-agent: configuration:")
                    && l.contains("variables file /netdeploy/variables")
            });
            text.lines()
                .find(|l| l.contains("NETDEPLOY-BOOT-OK"))
                .filter(|_| agent)
                .map(|l| l.trim().to_string())
        },
    )
}

/// Boots `image` until `found` picks a result out of the serial console so far (`what` names
/// it for the failure message), within the boot time limit.
pub fn boot_until(
    image: &Path,
    firmware: Firmware,
    attach: Attach,
    what: &str,
    found: impl Fn(&str) -> Option<String>,
) -> String {
    let qemu = require_tool("qemu-system-x86_64", "qemu-system-x86");
    let _guest = ONE_GUEST.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("serial.log");
    let mut cmd = Command::new(qemu);
    cmd.args([
        "-accel",
        "tcg",
        "-m",
        "512",
        "-nographic",
        "-no-reboot",
        "-nic",
        "none",
    ]);
    // A random SMBIOS UUID, as real hardware has one (QEMU's own is all zeros).
    let uuid = std::fs::read_to_string("/proc/sys/kernel/random/uuid").unwrap();
    cmd.arg("-smbios")
        .arg(format!("type=1,uuid={}", uuid.trim()));
    if firmware == Firmware::Ovmf {
        assert!(
            Path::new(OVMF_CODE).exists(),
            "{OVMF_CODE} is missing: apt-get install -y ovmf"
        );
        let vars = dir.path().join("vars.fd");
        std::fs::copy(OVMF_VARS, &vars).unwrap();
        cmd.arg("-drive")
            .arg(format!("if=pflash,format=raw,readonly=on,file={OVMF_CODE}"));
        cmd.arg("-drive")
            .arg(format!("if=pflash,format=raw,file={}", vars.display()));
    }
    match attach {
        Attach::Cdrom => {
            cmd.arg("-drive").arg(format!(
                "media=cdrom,if=ide,readonly=on,format=raw,file={}",
                image.display()
            ));
        }
        Attach::UsbStick => {
            cmd.arg("-drive").arg(format!(
                "if=none,id=stick,format=raw,snapshot=on,file={}",
                image.display()
            ));
            cmd.args([
                "-device",
                "qemu-xhci",
                "-device",
                "usb-storage,drive=stick,bootindex=0",
            ]);
        }
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let marker = loop {
        let text = String::from_utf8_lossy(&std::fs::read(&log).unwrap_or_default()).into_owned();
        if let Some(m) = found(&text) {
            break Some(m);
        }
        let exited = child.try_wait().unwrap().is_some();
        if exited || start.elapsed() > BOOT_TIMEOUT {
            break None;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let _ = child.kill();
    let _ = child.wait();
    match marker {
        Some(line) => line,
        None => {
            let text =
                String::from_utf8_lossy(&std::fs::read(&log).unwrap_or_default()).into_owned();
            let tail: String = text
                .chars()
                .rev()
                .take(3000)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            panic!(
                "no {what} from {} in {:?}; serial console:\n{tail}",
                image.display(),
                start.elapsed()
            );
        }
    }
}

fn assert_booted_with_hint(line: &str) {
    assert!(
        line.contains("console=ttyS0") && line.contains("netdeploy.vars=/netdeploy/variables"),
        "{line}"
    );
}

#[test]
fn iso_boots_from_cd_under_seabios() {
    let inputs = Inputs::new();
    let iso = build_lab_media(inputs.dir.path(), "iso");
    assert_booted_with_hint(&boot(&iso, Firmware::SeaBios, Attach::Cdrom));
}

#[test]
fn iso_boots_from_cd_under_ovmf() {
    let inputs = Inputs::new();
    let iso = build_lab_media(inputs.dir.path(), "iso");
    assert_booted_with_hint(&boot(&iso, Firmware::Ovmf, Attach::Cdrom));
}

#[test]
fn iso_written_to_a_usb_stick_boots_under_seabios() {
    let inputs = Inputs::new();
    let iso = build_lab_media(inputs.dir.path(), "iso");
    assert_booted_with_hint(&boot(&iso, Firmware::SeaBios, Attach::UsbStick));
}

#[test]
fn iso_written_to_a_usb_stick_boots_under_ovmf() {
    let inputs = Inputs::new();
    let iso = build_lab_media(inputs.dir.path(), "iso");
    assert_booted_with_hint(&boot(&iso, Firmware::Ovmf, Attach::UsbStick));
}

#[test]
fn usb_image_boots_under_ovmf() {
    let inputs = Inputs::new();
    let img = build_lab_media(inputs.dir.path(), "usb");
    assert_booted_with_hint(&boot(&img, Firmware::Ovmf, Attach::UsbStick));
}

#[test]
fn usb_image_boots_under_seabios() {
    let inputs = Inputs::new();
    let img = build_lab_media(inputs.dir.path(), "usb");
    assert_booted_with_hint(&boot(&img, Firmware::SeaBios, Attach::UsbStick));
}
