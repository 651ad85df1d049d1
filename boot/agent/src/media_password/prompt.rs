//! Asking for the media password on the console: a prompt on stderr, one line from stdin,
//! [`ATTEMPTS`] tries. On a terminal the typed characters are not echoed. Tests pipe the
//! password into stdin.

use std::io::{self, BufRead, Write};

use super::{typed, MediaPassword, ATTEMPTS};
use crate::platform;

/// Why the password was refused.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("wrong media password")]
    Wrong,
    #[error("wrong media password: the console has no more input after {attempts} of {ATTEMPTS} attempts")]
    EndOfInput { attempts: usize },
    #[error("cannot read the media password from the console: {0}")]
    Read(io::Error),
}

/// The prompt, after the agent's usual prefix.
pub const PROMPT: &str = "netdeploy-agent: media password: ";

/// Asks up to [`ATTEMPTS`] times, reading lines from `input` and writing prompts to `out`;
/// `echoed` is false when the terminal does not echo, so the line end is written for it.
/// Returns the password accepted: full media open their sealed secrets with it.
pub fn ask(
    stored: &MediaPassword,
    input: &mut dyn BufRead,
    out: &mut dyn Write,
    echoed: bool,
) -> Result<String, Refused> {
    for attempt in 1..=ATTEMPTS {
        // A console that cannot be written to still gets its attempts.
        let _ = write!(out, "{PROMPT}").and_then(|_| out.flush());
        let mut line = String::new();
        let n = input.read_line(&mut line).map_err(Refused::Read)?;
        // The Enter key is not echoed with echo off, nor typed at the end of the input.
        if !echoed || n == 0 {
            let _ = writeln!(out);
        }
        if n == 0 {
            return Err(Refused::EndOfInput {
                attempts: attempt - 1,
            });
        }
        if stored.matches(typed(&line)) {
            let _ = writeln!(out, "netdeploy-agent: media password accepted");
            return Ok(typed(&line).to_owned());
        }
        let left = ATTEMPTS - attempt;
        if left > 0 {
            let _ = writeln!(
                out,
                "netdeploy-agent: wrong media password, {left} attempt{} left",
                if left == 1 { "" } else { "s" }
            );
        }
    }
    Err(Refused::Wrong)
}

/// Asks on the process's stdin and stderr, with echo off while stdin is a terminal.
pub fn ask_on_console(stored: &MediaPassword) -> Result<String, Refused> {
    let echo = platform::EchoOff::off();
    // The console read a byte at a time, never past the line: what is typed ahead (a menu
    // choice) stays in the terminal for the next reader. Std's stdin would buffer it away.
    let mut input = io::BufReader::with_capacity(1, Console(platform::stdin()));
    let mut err = io::stderr().lock();
    ask(stored, &mut input, &mut err, !echo.active())
}

/// The console, read through the platform's own calls: no buffer of std's in between.
struct Console(platform::Input);

impl io::Read for Console {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        platform::read(self.0, buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(password: &str) -> MediaPassword {
        let phc =
            netdeploy_wire::password::hash(password, &[1; netdeploy_wire::password::SALT_LEN]);
        MediaPassword::parse(&phc.unwrap()).unwrap()
    }

    fn run(typed: &str) -> (Result<String, Refused>, String) {
        let mut out = Vec::new();
        let r = ask(&stored("letmein"), &mut typed.as_bytes(), &mut out, true);
        (r, String::from_utf8(out).unwrap())
    }

    #[test]
    fn the_third_attempt_may_be_right() {
        let (r, out) = run("nope\r\nstill no\nletmein\n");
        assert_eq!(r.unwrap(), "letmein");
        assert_eq!(out.matches(PROMPT).count(), 3);
        assert!(out.contains("wrong media password, 2 attempts left\n"));
        assert!(out.contains("wrong media password, 1 attempt left\n"));
        assert!(out.ends_with("media password accepted\n"));
    }

    #[test]
    fn three_wrong_attempts_are_refused_and_a_fourth_line_is_not_read() {
        let (r, out) = run("a\nb\nc\nletmein\n");
        let e = r.unwrap_err();
        assert!(matches!(e, Refused::Wrong));
        assert_eq!(e.to_string(), "wrong media password");
        assert_eq!(out.matches(PROMPT).count(), 3);
    }

    #[test]
    fn the_end_of_input_stops_asking() {
        let (r, _) = run("a\n");
        let e = r.unwrap_err();
        assert!(matches!(e, Refused::EndOfInput { attempts: 1 }), "{e}");
        assert!(e.to_string().starts_with("wrong media password"), "{e}");
        let (r, _) = run("");
        assert!(matches!(r, Err(Refused::EndOfInput { attempts: 0 })));
        // A last line without a line end still counts.
        assert!(run("letmein").0.is_ok());
    }
}
