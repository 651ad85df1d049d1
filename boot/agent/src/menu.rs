//! The menu of boot media without a preferred deployment (docs/selection-rules.md rule 6): the
//! server lists the visible candidates, the agent shows them on the console and asks which
//! one to run; the server then answers the policy of the one chosen, as it does for a
//! medium's preferred deployment (rule 3). With no answer before the timeout, nothing runs
//! and the machine is left as it was.
//!
//! [`show`] and [`pick`] are pure; [`ask`] reads lines until a valid choice or the end of
//! the input; [`ask_on_console`] reads the console with a deadline.

use std::io::{self, Write};
use std::time::{Duration, Instant};

use crate::platform;
use crate::policy::{MenuEntry, Purpose};

/// How long the menu waits when the kernel command line does not say
/// (`netdeploy.menu_timeout=SECONDS`).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// The prompt, after the agent's usual prefix.
pub const PROMPT: &str = "netdeploy-agent: choose a deployment (number or id): ";

/// The menu as printed: one numbered line per entry with its id, name and purpose.
pub fn show(entries: &[MenuEntry]) -> String {
    let mut s = String::from("netdeploy-agent: deployments for this machine:\n");
    for (i, e) in entries.iter().enumerate() {
        let purpose = match &e.purpose {
            Purpose::Required => "required",
            Purpose::Available => "available",
            Purpose::Unknown(p) => p,
        };
        s += &format!(
            "netdeploy-agent:   {}) {}  {}  ({purpose})\n",
            i + 1,
            e.id,
            e.name
        );
    }
    s
}

/// The entry a typed line names: its number in the menu or its id (in any case).
pub fn pick<'a>(entries: &'a [MenuEntry], line: &str) -> Option<&'a MenuEntry> {
    let answer = line.trim();
    if let Ok(n) = answer.parse::<usize>() {
        return n.checked_sub(1).and_then(|i| entries.get(i));
    }
    entries.iter().find(|e| e.id.eq_ignore_ascii_case(answer))
}

/// Shows the menu on `out` and asks until a line names an entry; `None` when `next_line`
/// has no more (the end of the input, or the timeout).
pub fn ask<'a>(
    entries: &'a [MenuEntry],
    next_line: &mut dyn FnMut() -> Option<String>,
    out: &mut dyn Write,
) -> Option<&'a MenuEntry> {
    let _ = write!(out, "{}", show(entries));
    loop {
        let _ = write!(out, "{PROMPT}").and_then(|_| out.flush());
        let line = next_line()?;
        match pick(entries, &line) {
            Some(e) => {
                let _ = writeln!(out, "netdeploy-agent: chosen: {} {}", e.id, e.name);
                return Some(e);
            }
            None => {
                let _ = writeln!(
                    out,
                    "netdeploy-agent: {:?} is not in the menu: type 1 to {} or an id",
                    line.trim(),
                    entries.len()
                );
            }
        }
    }
}

/// Asks on stdin and stderr; no choice when `timeout` passes first.
pub fn ask_on_console(entries: &[MenuEntry], timeout: Duration) -> Option<&MenuEntry> {
    let deadline = Instant::now() + timeout;
    let mut pending = Vec::new();
    let mut err = io::stderr().lock();
    let _ = writeln!(
        err,
        "netdeploy-agent: the menu waits {} s; then nothing runs",
        timeout.as_secs()
    );
    ask(
        entries,
        &mut || read_line_until(platform::stdin(), &mut pending, deadline),
        &mut err,
    )
}

/// One line from `fd`, waiting no later than `deadline`; `None` at the deadline or at the end
/// of the input. Bytes after the line stay in `pending` for the next call.
pub fn read_line_until(
    input: platform::Input,
    pending: &mut Vec<u8>,
    deadline: Instant,
) -> Option<String> {
    loop {
        if let Some(end) = pending.iter().position(|&b| b == b'\n' || b == b'\r') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            // A terminal sends CR LF or CR alone for Enter: one line either way.
            if line == b"\n" || line == b"\r" {
                continue;
            }
            return Some(String::from_utf8_lossy(&line[..end]).into_owned());
        }
        let left = deadline.checked_duration_since(Instant::now())?;
        match platform::wait_readable(input, left) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return None,
            Ok(false) => continue,
            Ok(true) => {}
        }
        let mut buf = [0u8; 256];
        let got = match platform::read(input, &mut buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) | Ok(0) => {
                // The end of the input: a last line without its line end still counts.
                if pending.is_empty() {
                    return None;
                }
                let line = String::from_utf8_lossy(pending).into_owned();
                pending.clear();
                return Some(line);
            }
            Ok(n) => n,
        };
        pending.extend_from_slice(&buf[..got]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries() -> Vec<MenuEntry> {
        vec![
            MenuEntry {
                id: "LAB00002".into(),
                name: "Windows 11".into(),
                purpose: Purpose::Available,
            },
            MenuEntry {
                id: "LAB00003".into(),
                name: "Ubuntu".into(),
                purpose: Purpose::Required,
            },
        ]
    }

    #[test]
    fn lists_every_entry_with_id_name_and_purpose() {
        let text = show(&entries());
        assert!(
            text.contains("1) LAB00002  Windows 11  (available)\n"),
            "{text}"
        );
        assert!(text.contains("2) LAB00003  Ubuntu  (required)\n"), "{text}");
    }

    #[test]
    fn a_number_or_an_id_picks_and_anything_else_asks_again() {
        let e = entries();
        let mut lines = vec!["9", "nonsense", " 2 "].into_iter().map(String::from);
        let mut out = Vec::new();
        let chosen = ask(&e, &mut || lines.next(), &mut out).unwrap();
        assert_eq!(chosen.id, "LAB00003");
        let out = String::from_utf8(out).unwrap();
        assert_eq!(out.matches(PROMPT).count(), 3);
        assert!(out.contains("\"9\" is not in the menu"), "{out}");
        assert_eq!(pick(&e, "lab00002").unwrap().id, "LAB00002");
        assert!(pick(&e, "0").is_none());
    }

    #[test]
    fn no_answer_chooses_nothing() {
        let e = entries();
        assert!(ask(&e, &mut || None, &mut Vec::new()).is_none());
    }

    #[cfg(unix)]
    #[test]
    fn the_console_reader_splits_lines_and_gives_up_at_the_deadline() {
        let mut fds = [0; 2];
        // SAFETY: a fresh pipe; both ends closed below.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        let typed = b"2\r\nLAB00002\n";
        // SAFETY: writes the bytes given into the pipe.
        unsafe { libc::write(fds[1], typed.as_ptr().cast(), typed.len()) };
        let mut pending = Vec::new();
        let later = Instant::now() + Duration::from_secs(30);
        assert_eq!(
            read_line_until(fds[0], &mut pending, later).as_deref(),
            Some("2")
        );
        assert_eq!(
            read_line_until(fds[0], &mut pending, later).as_deref(),
            Some("LAB00002")
        );
        // The writer is still open and silent: the deadline ends the wait.
        assert_eq!(read_line_until(fds[0], &mut pending, Instant::now()), None);
        // SAFETY: closes the pipe opened above.
        unsafe {
            libc::close(fds[1]);
            libc::close(fds[0]);
        }
    }
}
