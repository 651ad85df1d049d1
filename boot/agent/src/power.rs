//! Powering off or restarting at the end of a task sequence whose last step says so.

use std::process::Command;

use crate::console::say;

/// What happens after the last step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndAction {
    Poweroff,
    Reboot,
}

impl EndAction {
    pub fn as_str(self) -> &'static str {
        match self {
            EndAction::Poweroff => "poweroff",
            EndAction::Reboot => "reboot",
        }
    }
}

/// Syncs the disks and powers off or restarts, through reboot(2), else busybox's
/// `poweroff -f` / `reboot -f`. Returns only when both failed, or at once when `really` is
/// false (a test run), after saying what it would have done.
pub fn perform(action: EndAction, really: bool) {
    if !really {
        say(format!(
            "would {} now (running under --root: power actions are only printed)",
            action.as_str()
        ));
        return;
    }
    say(format!("{}: syncing disks", action.as_str()));
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
    // A serial console sends slower than the agent writes: what is still queued in the
    // terminal (the result line) would be lost with the power. Not a terminal: no wait.
    for fd in [1, 2] {
        // SAFETY: tcdrain(3) on the process's own stdout and stderr.
        unsafe { libc::tcdrain(fd) };
    }
    let cmd = match action {
        EndAction::Poweroff => libc::RB_POWER_OFF,
        EndAction::Reboot => libc::RB_AUTOBOOT,
    };
    // SAFETY: reboot(2) with a valid command; it returns only on failure (no CAP_SYS_BOOT).
    let rc = unsafe { libc::reboot(cmd) };
    if rc != 0 {
        say(format!(
            "reboot(2) for {} failed: {}; trying busybox",
            action.as_str(),
            std::io::Error::last_os_error()
        ));
    }
    match Command::new(action.as_str()).arg("-f").status() {
        Ok(s) if s.success() => {
            // `-f` acts at once; if it returned, give it a moment before giving up.
            std::thread::sleep(std::time::Duration::from_secs(5));
        }
        Ok(s) => say(format!("{} -f failed: {s}", action.as_str())),
        Err(e) => say(format!("cannot run {} -f: {e}", action.as_str())),
    }
    say(format!("could not {}; leaving it to init", action.as_str()));
}
