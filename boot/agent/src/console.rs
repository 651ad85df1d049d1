//! What the agent prints on the console: plain lines prefixed `netdeploy-agent:` on stderr,
//! and the one `NETDEPLOY-AGENT-RESULT` line on stdout that the QEMU tests look for.

use std::fmt::Display;

/// Prints one line on stderr.
pub fn say(msg: impl Display) {
    eprintln!("netdeploy-agent: {msg}");
}

/// `NETDEPLOY-AGENT-RESULT success deployment=ID`.
pub fn success_line(deployment: &str) -> String {
    format!(
        "NETDEPLOY-AGENT-RESULT success deployment={}",
        word(deployment)
    )
}

/// `NETDEPLOY-AGENT-RESULT failure deployment=ID step="NAME" reason="WHY"`; `step` is empty
/// when the failure came before the first step.
pub fn failure_line(deployment: &str, step: &str, reason: &str) -> String {
    format!(
        "NETDEPLOY-AGENT-RESULT failure deployment={} step=\"{}\" reason=\"{}\"",
        word(deployment),
        quoted(step),
        quoted(reason)
    )
}

/// `NETDEPLOY-AGENT-RESULT restarting deployment=ID next_step=N`: a `reboot` step in the
/// middle of the task sequence; the run continues at step `N` (1-based) after the restart.
pub fn restarting_line(deployment: &str, next_step: usize) -> String {
    format!(
        "NETDEPLOY-AGENT-RESULT restarting deployment={} next_step={next_step}",
        word(deployment)
    )
}

/// `NETDEPLOY-AGENT-RESULT no-deployment reason="WHY"`.
pub fn no_deployment_line(reason: &str) -> String {
    format!(
        "NETDEPLOY-AGENT-RESULT no-deployment reason=\"{}\"",
        quoted(reason)
    )
}

/// A value that must stay one word: `none` when empty, other characters than
/// `[A-Za-z0-9._-]` replaced.
fn word(s: &str) -> String {
    if s.is_empty() {
        return "none".into();
    }
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// A value inside double quotes on one line: `"` becomes `'`, control characters a space.
fn quoted(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '"' => '\'',
            c if c.is_control() => ' ',
            c => c,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_lines_stay_on_one_line() {
        assert_eq!(
            success_line("LAB00001"),
            "NETDEPLOY-AGENT-RESULT success deployment=LAB00001"
        );
        assert_eq!(
            failure_line("LAB00001", "write the disk", "bad \"hash\"\nof disk.img"),
            "NETDEPLOY-AGENT-RESULT failure deployment=LAB00001 step=\"write the disk\" \
             reason=\"bad 'hash' of disk.img\""
        );
        assert_eq!(
            failure_line("", "", "x"),
            "NETDEPLOY-AGENT-RESULT failure deployment=none step=\"\" reason=\"x\""
        );
        assert_eq!(
            no_deployment_line("nothing (rule 8)"),
            "NETDEPLOY-AGENT-RESULT no-deployment reason=\"nothing (rule 8)\""
        );
        assert_eq!(
            restarting_line("LAB00001", 3),
            "NETDEPLOY-AGENT-RESULT restarting deployment=LAB00001 next_step=3"
        );
        assert_eq!(
            success_line("a b"),
            "NETDEPLOY-AGENT-RESULT success deployment=a_b"
        );
    }
}
