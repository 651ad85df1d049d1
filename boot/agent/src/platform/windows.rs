//! Windows PE: `cmd.exe`, the IP Helper and firmware-table APIs for the identity, the console
//! API, and `wpeutil` for the power actions. WinPE has each of these; the agent links no DLL
//! beyond the system's own (CI checks the import table).

use std::fs::{File, Metadata};
use std::io;
use std::os::windows::process::CommandExt;
use std::path::Path;
use std::process::{Command, ExitStatus};
use std::ptr;
use std::time::{Duration, Instant};

use netdeploy_wire::Mac;
use windows_sys::Win32::Foundation::{
    GetLastError, ERROR_BROKEN_PIPE, ERROR_BUFFER_OVERFLOW, ERROR_SUCCESS, HANDLE, WAIT_OBJECT_0,
};
use windows_sys::Win32::NetworkManagement::IpHelper::{
    GetAdaptersAddresses, GAA_FLAG_SKIP_ANYCAST, GAA_FLAG_SKIP_DNS_SERVER, GAA_FLAG_SKIP_MULTICAST,
    IP_ADAPTER_ADDRESSES_LH,
};
use windows_sys::Win32::Networking::WinSock::AF_UNSPEC;
use windows_sys::Win32::Storage::FileSystem::{
    GetFileType, ReadFile, FILE_TYPE_CHAR, FILE_TYPE_PIPE,
};
use windows_sys::Win32::System::Console::{
    GetConsoleMode, GetStdHandle, SetConsoleMode, CONSOLE_MODE, ENABLE_ECHO_INPUT, STD_INPUT_HANDLE,
};
use windows_sys::Win32::System::Pipes::PeekNamedPipe;
use windows_sys::Win32::System::SystemInformation::GetSystemFirmwareTable;
use windows_sys::Win32::System::Threading::WaitForSingleObject;

use crate::identity::Identity;
use crate::power::EndAction;

/// The boot environment, as named in errors.
pub const NAME: &str = "Windows PE";

/// The interpreter of `run_command`, as named in errors.
pub const SHELL: &str = "cmd.exe";

/// `cmd.exe /c command`, the command passed as typed: cmd.exe parses its own line, and
/// quoting it again would change what the task sequence author wrote.
pub fn shell(command: &str) -> Command {
    let mut cmd = Command::new(SHELL);
    cmd.arg("/c").raw_arg(command);
    cmd
}

/// Windows has no signals: a command's end is its exit code.
pub fn signal(_status: &ExitStatus) -> Option<i32> {
    None
}

/// The identity from the firmware's SMBIOS table and the network adapters. `_root` only
/// moves sysfs paths on Linux.
pub fn identity(_root: &Path) -> Identity {
    let mut macs = adapter_macs();
    macs.sort();
    Identity {
        uuid: firmware_uuid(),
        macs,
    }
}

/// The SMBIOS system UUID, through `GetSystemFirmwareTable('RSMB')`.
fn firmware_uuid() -> Option<netdeploy_wire::SmbiosUuid> {
    const RSMB: u32 = u32::from_be_bytes(*b"RSMB");
    // SAFETY: a null buffer of size 0 asks for the size only.
    let size = unsafe { GetSystemFirmwareTable(RSMB, 0, ptr::null_mut(), 0) };
    if size == 0 {
        return None;
    }
    let mut buf = vec![0u8; size as usize];
    // SAFETY: the buffer holds `size` bytes.
    let got = unsafe { GetSystemFirmwareTable(RSMB, 0, buf.as_mut_ptr(), size) };
    if got == 0 || got > size {
        return None;
    }
    crate::identity::uuid_from_raw_smbios(&buf[..got as usize])
}

/// `IF_TYPE_SOFTWARE_LOOPBACK` of ipifcons.h.
const LOOPBACK: u32 = 24;

/// `(adapter name, MAC)` of every adapter with a 6-byte, non-zero hardware address.
fn adapter_macs() -> Vec<(String, Mac)> {
    let mut size: u32 = 16 * 1024;
    for _ in 0..4 {
        // u64 cells: the list of structures needs 8-byte alignment.
        let mut buf = vec![0u64; (size as usize).div_ceil(8)];
        // SAFETY: the buffer holds `size` bytes; the call writes at most that and says how
        // much it needed otherwise.
        let rc = unsafe {
            GetAdaptersAddresses(
                AF_UNSPEC as u32,
                GAA_FLAG_SKIP_ANYCAST | GAA_FLAG_SKIP_MULTICAST | GAA_FLAG_SKIP_DNS_SERVER,
                ptr::null(),
                buf.as_mut_ptr().cast::<IP_ADAPTER_ADDRESSES_LH>(),
                &mut size,
            )
        };
        if rc == ERROR_BUFFER_OVERFLOW {
            continue;
        }
        if rc != ERROR_SUCCESS {
            return Vec::new();
        }
        let mut out = Vec::new();
        let mut p = buf.as_ptr().cast::<IP_ADAPTER_ADDRESSES_LH>();
        while !p.is_null() {
            // SAFETY: the API filled a linked list inside `buf`, which outlives the loop.
            let a = unsafe { &*p };
            if a.IfType != LOOPBACK && a.PhysicalAddressLength == 6 {
                let mut mac = [0u8; 6];
                mac.copy_from_slice(&a.PhysicalAddress[..6]);
                if mac != [0; 6] {
                    out.push((wide(a.FriendlyName), Mac(mac)));
                }
            }
            p = a.Next;
        }
        return out;
    }
    Vec::new()
}

/// A NUL-terminated UTF-16 string.
fn wide(p: *const u16) -> String {
    if p.is_null() {
        return String::new();
    }
    let mut len = 0;
    // SAFETY: the string ends with a NUL, as the API promises.
    while unsafe { *p.add(len) } != 0 {
        len += 1;
    }
    // SAFETY: `len` code units were just read.
    String::from_utf16_lossy(unsafe { std::slice::from_raw_parts(p, len) })
}

/// A console to read from: a handle of the process's own.
#[derive(Debug, Clone, Copy)]
pub struct Input(HANDLE);

/// The process's standard input.
pub fn stdin() -> Input {
    // SAFETY: no arguments beyond the constant; the handle is the process's own.
    Input(unsafe { GetStdHandle(STD_INPUT_HANDLE) })
}

/// Waits until `input` has something to read (or its end), at most `wait`; `false` when the
/// time passed first. A console is waited on; a pipe is peeked every 50 ms.
pub fn wait_readable(input: Input, wait: Duration) -> io::Result<bool> {
    // SAFETY: the handle is the process's own.
    match unsafe { GetFileType(input.0) } {
        FILE_TYPE_CHAR => {
            let ms = wait.as_millis().clamp(1, u32::MAX as u128 - 1) as u32;
            // SAFETY: waits on a valid handle.
            Ok(unsafe { WaitForSingleObject(input.0, ms) } == WAIT_OBJECT_0)
        }
        FILE_TYPE_PIPE => {
            let deadline = Instant::now() + wait;
            loop {
                let mut available = 0u32;
                // SAFETY: only the count of available bytes is asked for.
                let ok = unsafe {
                    PeekNamedPipe(
                        input.0,
                        ptr::null_mut(),
                        0,
                        ptr::null_mut(),
                        &mut available,
                        ptr::null_mut(),
                    )
                };
                // A broken pipe is the end of the input: readable, and `read` says 0.
                if ok == 0 || available > 0 {
                    return Ok(true);
                }
                if Instant::now() >= deadline {
                    return Ok(false);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        _ => Ok(true),
    }
}

/// Gives `socket` a receive buffer of `bytes` (Windows has no system-wide cap to get past).
pub fn force_recv_buffer(socket: &socket2::Socket, bytes: usize) -> io::Result<()> {
    socket.set_recv_buffer_size(bytes)
}

/// What one ReadFile returns: 0 at the end of the input.
pub fn read(input: Input, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0u32;
    let len = u32::try_from(buf.len()).unwrap_or(u32::MAX);
    // SAFETY: reads into a buffer of the length given.
    let ok = unsafe { ReadFile(input.0, buf.as_mut_ptr(), len, &mut got, ptr::null_mut()) };
    if ok == 0 {
        // SAFETY: reads the calling thread's last error.
        if unsafe { GetLastError() } == ERROR_BROKEN_PIPE {
            return Ok(0);
        }
        return Err(io::Error::last_os_error());
    }
    Ok(got as usize)
}

/// Console echo off on stdin until dropped; does nothing when stdin is not a console.
pub struct EchoOff(Option<CONSOLE_MODE>);

impl EchoOff {
    /// Turns the echo off.
    pub fn off() -> EchoOff {
        let h = stdin().0;
        let mut mode: CONSOLE_MODE = 0;
        // SAFETY: reads and writes the mode of the process's own console handle.
        unsafe {
            if GetConsoleMode(h, &mut mode) == 0 {
                return EchoOff(None);
            }
            if SetConsoleMode(h, mode & !ENABLE_ECHO_INPUT) == 0 {
                return EchoOff(None);
            }
        }
        EchoOff(Some(mode))
    }

    /// True when the echo really is off.
    pub fn active(&self) -> bool {
        self.0.is_some()
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        if let Some(mode) = self.0 {
            // SAFETY: restores the mode read in `off`.
            unsafe { SetConsoleMode(stdin().0, mode) };
        }
    }
}

/// True for a disk or volume opened by its device path (`\\.\PhysicalDrive0`, `\\.\C:`).
pub fn is_disk(path: &Path, _meta: &Metadata) -> bool {
    path.to_string_lossy().starts_with(r"\\.\")
}

/// Reads of a disk opened by its device path do not go through the file cache: nothing to
/// drop.
pub fn forget_cached(_file: &File) {}

/// Writes all of `buf` at `offset` of `file`.
pub fn write_all_at(file: &File, mut buf: &[u8], mut offset: u64) -> io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buf.is_empty() {
        match file.seek_write(buf, offset) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                buf = &buf[n..];
                offset += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Fills `buf` from `offset` of `file`.
pub fn read_exact_at(file: &File, mut buf: &mut [u8], mut offset: u64) -> io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buf.is_empty() {
        match file.seek_read(buf, offset) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => {
                buf = &mut buf[n..];
                offset += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Windows has no call that zeroes a disk range without writing it: the caller writes zeros.
pub fn zero_in_place(_file: &File, _offset: u64, _len: u64) -> bool {
    false
}

/// Each written file is flushed when it is closed (`sync_all`); Windows has no global sync.
pub fn flush_disks() {}

/// Console writes are synchronous on Windows: nothing is queued.
pub fn drain_console() {}

/// Powers off or restarts with WinPE's `wpeutil`, else `shutdown`. Returns only when both
/// failed, with what was tried.
pub fn power(action: EndAction) -> Vec<String> {
    let mut tried = Vec::new();
    let (wpeutil, shutdown) = match action {
        EndAction::Poweroff => ("shutdown", "/s"),
        EndAction::Reboot => ("reboot", "/r"),
    };
    for (program, args) in [
        ("wpeutil", vec![wpeutil]),
        ("shutdown", vec![shutdown, "/t", "0"]),
    ] {
        match Command::new(program).args(&args).status() {
            Ok(s) if s.success() => {
                std::thread::sleep(Duration::from_secs(10));
                tried.push(format!("{program} {} returned", args.join(" ")));
            }
            Ok(s) => tried.push(format!("{program} {} failed: {s}", args.join(" "))),
            Err(e) => tried.push(format!("cannot run {program}: {e}")),
        }
    }
    tried
}

/// The variables file when nothing names another one: the one the iPXE script injects
/// through wimboot, or the one a WinPE medium carries.
pub const DEFAULT_VARIABLES: &str = r"X:\Windows\System32\netdeploy.ini";
