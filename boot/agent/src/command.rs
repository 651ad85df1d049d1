//! `run_command`: `/bin/sh -c COMMAND` (`cmd.exe /c COMMAND` in Windows PE) with the task sequence variables in its environment,
//! output straight to the console; when the task sequence has secret values, the output goes
//! through the agent line by line with each secret masked.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::Stdio;

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("cannot start {shell}: {0}", shell = crate::platform::SHELL)]
    Spawn(std::io::Error),
    #[error("the command exited with code {0}")]
    Exit(i32),
    #[error("the command was killed by signal {0}")]
    Signal(i32),
}

impl CommandError {
    /// The code reported in the status message: the exit code, or 128 + the signal number
    /// as shells report it.
    pub fn code(&self) -> Option<i32> {
        match self {
            CommandError::Spawn(_) => None,
            CommandError::Exit(c) => Some(*c),
            CommandError::Signal(s) => Some(128 + s),
        }
    }
}

/// The environment a command adds to the agent's own: the variables set so far, then
/// `NETDEPLOY_SERVER` and `NETDEPLOY_DEPLOYMENT`, which a step cannot override.
pub fn environment(
    variables: &[(String, String)],
    server: &str,
    deployment: &str,
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = variables
        .iter()
        .filter(|(k, _)| k != "NETDEPLOY_SERVER" && k != "NETDEPLOY_DEPLOYMENT")
        .cloned()
        .collect();
    env.push(("NETDEPLOY_SERVER".into(), server.into()));
    env.push(("NETDEPLOY_DEPLOYMENT".into(), deployment.into()));
    env
}

/// Runs `command` with `env` added, in `cwd` when given; waits for it. With `secrets`, what the
/// command prints reaches the console with each of them masked.
pub fn run(
    command: &str,
    env: &[(String, String)],
    cwd: Option<&Path>,
    secrets: &[String],
) -> Result<(), CommandError> {
    let mut cmd = crate::platform::shell(command);
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    if let Some(d) = cwd {
        cmd.current_dir(d);
    }
    let status = if secrets.iter().all(String::is_empty) {
        cmd.status().map_err(CommandError::Spawn)?
    } else {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(CommandError::Spawn)?;
        let out = child.stdout.take().expect("piped");
        let err = child.stderr.take().expect("piped");
        std::thread::scope(|s| {
            s.spawn(|| copy_masked(out, &mut std::io::stdout(), secrets));
            s.spawn(|| copy_masked(err, &mut std::io::stderr(), secrets));
            child.wait()
        })
        .map_err(CommandError::Spawn)?
    };
    if status.success() {
        return Ok(());
    }
    match (status.code(), crate::platform::signal(&status)) {
        (Some(c), _) => Err(CommandError::Exit(c)),
        (None, Some(s)) => Err(CommandError::Signal(s)),
        (None, None) => Err(CommandError::Exit(-1)),
    }
}

/// Copies `from` to `to` a line at a time with every secret masked, until the end of `from`.
/// A console that cannot be written to does not stop the copy: the command must not block on
/// a full pipe.
fn copy_masked(from: impl Read, to: &mut dyn Write, secrets: &[String]) {
    let mut reader = BufReader::new(from);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let text = String::from_utf8_lossy(&line);
                let shown = netdeploy_wire::policy::mask_secrets(&text, secrets);
                let _ = to.write_all(shown.as_bytes()).and_then(|_| to.flush());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_copied_with_every_secret_masked() {
        let mut out = Vec::new();
        let secrets = vec!["hunter2-long".to_owned()];
        copy_masked(
            &b"one hunter2-long\ntwo\nlast without end hunter2-long"[..],
            &mut out,
            &secrets,
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "one ********\ntwo\nlast without end ********"
        );
        // The exit code is kept when the output is piped.
        let e = run("echo hunter2-long; exit 5", &[], None, &secrets).unwrap_err();
        assert_eq!(e.code(), Some(5));
    }

    #[test]
    fn exit_codes_are_reported() {
        assert!(run("true", &[], None, &[]).is_ok());
        let e = run("exit 3", &[], None, &[]).unwrap_err();
        assert!(matches!(e, CommandError::Exit(3)));
        assert_eq!(e.code(), Some(3));
        let e = run("kill -TERM $$", &[], None, &[]).unwrap_err();
        assert!(matches!(e, CommandError::Signal(15)), "{e}");
        assert_eq!(e.code(), Some(143));
    }

    #[test]
    fn variables_reach_the_command() {
        let dir = tempfile::tempdir().unwrap();
        let env = environment(
            &[
                ("OSDComputerName".into(), "pc1".into()),
                ("NETDEPLOY_SERVER".into(), "spoofed".into()),
            ],
            "http://10.77.0.1:8080",
            "LAB00001",
        );
        run(
            "printf '%s %s %s' \"$OSDComputerName\" \"$NETDEPLOY_SERVER\" \"$NETDEPLOY_DEPLOYMENT\" > out; \
             test \"$(pwd)\" = \"$EXPECT_DIR\"",
            &[
                env,
                vec![("EXPECT_DIR".into(), dir.path().display().to_string())],
            ]
            .concat(),
            Some(dir.path()),
            &[],
        )
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("out")).unwrap(),
            "pc1 http://10.77.0.1:8080 LAB00001"
        );
    }
}
