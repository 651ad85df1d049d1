//! The Linux boot environment: sysfs, termios, poll(2) and reboot(2).

use std::fs::{File, Metadata};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, ExitStatus};
use std::time::Duration;

use crate::identity::Identity;
use crate::power::EndAction;

/// The boot environment, as named in errors.
pub const NAME: &str = "Linux";

/// The interpreter of `run_command`, as named in errors.
pub const SHELL: &str = "/bin/sh";

/// `/bin/sh -c command`.
pub fn shell(command: &str) -> Command {
    let mut cmd = Command::new(SHELL);
    cmd.arg("-c").arg(command);
    cmd
}

/// The signal that killed a command, if one did.
pub fn signal(status: &ExitStatus) -> Option<i32> {
    status.signal()
}

/// The identity from the sysfs under `root` (`/` in the boot environment).
pub fn identity(root: &Path) -> Identity {
    crate::identity::read(root)
}

/// A console to read from: a file descriptor.
pub type Input = std::os::fd::RawFd;

/// The process's standard input.
pub fn stdin() -> Input {
    0
}

/// Waits until `input` has something to read (or its end), at most `wait`; `false` when the
/// time passed first.
pub fn wait_readable(input: Input, wait: Duration) -> io::Result<bool> {
    let mut p = libc::pollfd {
        fd: input,
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = wait.as_millis().clamp(1, i32::MAX as u128) as i32;
    // SAFETY: one valid pollfd for the duration of the call.
    let n = unsafe { libc::poll(&mut p, 1, ms) };
    match n {
        n if n < 0 => Err(io::Error::last_os_error()),
        0 => Ok(false),
        _ => Ok(true),
    }
}

/// Gives `socket` a receive buffer of `bytes`, beyond the system's cap (net.core.rmem_max,
/// 208 KiB on a stock kernel) where the process may (root, as in the boot environment):
/// SO_RCVBUFFORCE on Linux, else SO_RCVBUF as capped.
pub fn force_recv_buffer(socket: &socket2::Socket, bytes: usize) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let size = bytes.min(i32::MAX as usize / 2) as libc::c_int;
        // SAFETY: a valid socket and an int option value of its own length.
        let r = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                (&size as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r == 0 {
            return Ok(());
        }
    }
    socket.set_recv_buffer_size(bytes)
}

/// What one read(2) returns: 0 at the end of the input.
pub fn read(input: Input, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: reads into a buffer of the length given.
    let got = unsafe { libc::read(input, buf.as_mut_ptr().cast(), buf.len()) };
    if got < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(got as usize)
}

/// Terminal echo off on stdin until dropped; does nothing when stdin is not a terminal.
pub struct EchoOff(Option<libc::termios>);

impl EchoOff {
    /// Turns the echo off.
    pub fn off() -> EchoOff {
        // SAFETY: tcgetattr and tcsetattr only read and write the termios value passed.
        unsafe {
            if libc::isatty(0) != 1 {
                return EchoOff(None);
            }
            let mut saved: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(0, &mut saved) != 0 {
                return EchoOff(None);
            }
            let mut quiet = saved;
            quiet.c_lflag &= !libc::ECHO;
            if libc::tcsetattr(0, libc::TCSANOW, &quiet) != 0 {
                return EchoOff(None);
            }
            EchoOff(Some(saved))
        }
    }

    /// True when the echo really is off.
    pub fn active(&self) -> bool {
        self.0.is_some()
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        if let Some(saved) = &self.0 {
            // SAFETY: restores the settings read in `off`.
            unsafe {
                libc::tcsetattr(0, libc::TCSANOW, saved);
            }
        }
    }
}

/// True for a block device: a whole disk or a partition.
pub fn is_disk(_path: &Path, meta: &Metadata) -> bool {
    meta.file_type().is_block_device()
}

/// Drops the clean cached pages of `file`, so that a read-back reads the device.
pub fn forget_cached(file: &File) {
    // SAFETY: the descriptor is open for the life of `file`; the call only drops clean
    // cached pages and fails harmlessly where unsupported.
    unsafe {
        libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED);
    }
}

/// Writes all of `buf` at `offset` of `file`.
pub fn write_all_at(file: &File, buf: &[u8], offset: u64) -> io::Result<()> {
    std::os::unix::fs::FileExt::write_all_at(file, buf, offset)
}

/// Fills `buf` from `offset` of `file`.
pub fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
}

/// `BLKZEROOUT`, `_IO(0x12, 127)`: the device zeroes a range itself (a discard or a write
/// of zeros it does without the data crossing the bus).
const BLKZEROOUT: libc::c_ulong = 0x127f;

/// Zeroes `len` bytes at `offset` without writing them: `BLKZEROOUT` on a block device, a
/// punched hole in a regular file. `false` when that cannot be done; the caller writes zeros.
pub fn zero_in_place(file: &File, offset: u64, len: u64) -> bool {
    let Ok(meta) = file.metadata() else {
        return false;
    };
    if meta.file_type().is_block_device() {
        let range: [u64; 2] = [offset, len];
        // SAFETY: the descriptor is open for the life of `file` and the ioctl reads two u64
        // from a pointer to a live array; the kernel refuses unaligned ranges.
        unsafe { libc::ioctl(file.as_raw_fd(), BLKZEROOUT as _, range.as_ptr()) == 0 }
    } else {
        // SAFETY: as above; fallocate takes plain integers.
        unsafe {
            libc::fallocate(
                file.as_raw_fd(),
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                offset as libc::off_t,
                len as libc::off_t,
            ) == 0
        }
    }
}

/// Writes every file system's dirty data to its disk.
pub fn flush_disks() {
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
}

/// Waits until the console sent what is queued for it. A serial console sends slower than
/// the agent writes: what is still queued (the result line) would be lost with the power.
pub fn drain_console() {
    for fd in [1, 2] {
        // SAFETY: tcdrain(3) on the process's own stdout and stderr; not a terminal: no wait.
        unsafe { libc::tcdrain(fd) };
    }
}

/// Powers off or restarts through reboot(2), else busybox's `poweroff -f` / `reboot -f`.
/// Returns only when both failed, with what was tried.
pub fn power(action: EndAction) -> Vec<String> {
    let mut tried = Vec::new();
    let cmd = match action {
        EndAction::Poweroff => libc::RB_POWER_OFF,
        EndAction::Reboot => libc::RB_AUTOBOOT,
    };
    // SAFETY: reboot(2) with a valid command; it returns only on failure (no CAP_SYS_BOOT).
    if unsafe { libc::reboot(cmd) } != 0 {
        tried.push(format!("reboot(2) failed: {}", io::Error::last_os_error()));
    }
    match Command::new(action.as_str()).arg("-f").status() {
        Ok(s) if s.success() => {
            // `-f` acts at once; if it returned, give it a moment before giving up.
            std::thread::sleep(Duration::from_secs(5));
            tried.push(format!("{} -f returned", action.as_str()));
        }
        Ok(s) => tried.push(format!("{} -f failed: {s}", action.as_str())),
        Err(e) => tried.push(format!("cannot run {} -f: {e}", action.as_str())),
    }
    tried
}

/// The variables file when nothing names another one: the boot medium's, copied by the
/// initramfs.
pub const DEFAULT_VARIABLES: &str = "/etc/netdeploy/variables";

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn a_receive_buffer_is_forced_past_the_kernels_cap_as_root() {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).unwrap();
        let cap: usize = std::fs::read_to_string("/proc/sys/net/core/rmem_max")
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0);
        let want = 32 << 20;
        force_recv_buffer(&s, want).unwrap();
        let got = s.recv_buffer_size().unwrap();
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            // The kernel doubles what it is given, for its bookkeeping.
            assert!(got >= want, "asked {want} bytes as root, got {got}");
        } else {
            assert!(got <= 2 * cap.max(want), "got {got} past the cap {cap}");
        }
    }
}
