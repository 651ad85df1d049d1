//! Powering off or restarting at the end of a task sequence whose last step says so.

use crate::console::say;
use crate::platform;

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

/// Syncs the disks and powers off or restarts ([`crate::platform::power`]). Returns only
/// when that failed, or at once when `really` is false (a test run), after saying what it
/// would have done.
pub fn perform(action: EndAction, really: bool) {
    if !really {
        say(format!(
            "would {} now (running under --root: power actions are only printed)",
            action.as_str()
        ));
        return;
    }
    say(format!("{}: syncing disks", action.as_str()));
    platform::flush_disks();
    platform::drain_console();
    for line in platform::power(action) {
        say(line);
    }
    say(format!("could not {}; leaving it to init", action.as_str()));
}
