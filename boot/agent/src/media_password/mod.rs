//! The media password (docs/media-variables.md): the media builder stores an argon2id hash in the PHC
//! string format as `SMSTSMediaPassword` in the variables file (the scheme is
//! `netdeploy_wire::password`). The agent asks for the password on the console before it
//! contacts a server or runs anything.
//!
//! [`prompt`] asks on the console.

pub mod prompt;

pub use netdeploy_wire::password::{FormatError, MediaPassword};

/// Attempts before the agent gives up.
pub const ATTEMPTS: usize = 3;

/// A line typed on the console without its line end (`\n` or `\r\n`); other white space
/// belongs to the password.
pub fn typed(line: &str) -> &str {
    let line = line.strip_suffix('\n').unwrap_or(line);
    line.strip_suffix('\r').unwrap_or(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_typed_line_loses_only_its_line_end() {
        assert_eq!(typed("pw\r\n"), "pw");
        assert_eq!(typed("pw\n"), "pw");
        assert_eq!(typed(" pw "), " pw ");
        assert_eq!(typed(""), "");
    }
}
