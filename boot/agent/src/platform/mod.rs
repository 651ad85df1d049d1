//! What differs between the Linux boot environment and Windows PE, behind one small interface.
//! Everything else in the agent (configuration, policy, downloads, verification, status, the
//! steps) is the same code on both.
//!
//! Each platform module has the same items:
//! - [`SHELL`] and [`shell`]: the command interpreter of `run_command` (`/bin/sh -c`,
//!   `cmd.exe /c`), and [`signal`], the signal that ended a command (Unix only);
//! - [`identity`]: the machine's MACs and SMBIOS UUID (sysfs, or `GetAdaptersAddresses` and
//!   `GetSystemFirmwareTable('RSMB')`);
//! - [`Input`], [`stdin`], [`wait_readable`] and [`read`]: the console, read with a deadline
//!   and never past a line;
//! - [`EchoOff`]: the console's echo off while a password is typed;
//! - [`is_disk`] and [`forget_cached`]: what `apply_image` needs of a disk;
//! - [`force_recv_buffer`]: a multicast receiver's socket buffer beyond the system's cap;
//! - [`flush_disks`], [`drain_console`] and [`power`]: the end of a task sequence.

#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub use unix::*;

#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub use windows::*;
