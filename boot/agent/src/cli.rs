//! The command line of `netdeploy-agent`. In the boot environment it runs with no arguments
//! and reads the kernel command line; the flags let tests and operators override each input.

use std::path::PathBuf;

/// Usage text of `--help`.
pub const USAGE: &str = "\
Usage: netdeploy-agent [run] [OPTIONS]
       netdeploy-agent verify FILE SHA256
       netdeploy-agent capture SOURCE DIR
       netdeploy-agent apply-image FROM SHA256 SIZE TARGET
       netdeploy-agent multicast-apply SERVER SHA256 SIZE TARGET GROUP:PORT [INTERFACE]

Runs the task sequence deployed to this machine: asks the netdeploy server for its policy
(full media: reads policy.json and content/<sha256> next to the variables file), runs the
steps, reports status, then powers off or reboots when the last step says so.

Configuration comes from the flags, else the kernel command line (netdeploy.server=,
netdeploy.deployment=, netdeploy.mac=, netdeploy.context=, netdeploy.vars=, netdeploy.pin=),
else the media variables file (SMSTSServerURL, SMSTSMediaType, SMSTSPreferredAdvertID,
SMSTSMediaPassword, NetdeployServerPin).
With SMSTSMediaPassword the password is read from stdin first (three attempts).

Options:
  --server URL          server URL, http://IP[:PORT] or https://IP[:PORT]
  --pin sha256:HEX      the pin of the server's HTTPS certificate (netdeploy.pin=,
                        NetdeployServerPin); an https:// server needs one
  --deployment ID       the deployment to ask for (PXE: the one the PXE script started;
                        media: SMSTSPreferredAdvertID)
  --context pxe|media   the boot context sent to the server
  --cmdline FILE        kernel command line to read (default /proc/cmdline)
  --vars FILE           media variables file (default /etc/netdeploy/variables if present)
  --root DIR            read /proc, /sys, /etc and keep downloads under DIR (tests);
                        power actions are then only printed
  --status-file FILE    also append each status message to FILE as a JSON line (full media
                        without a reachable server: instead of /var/lib/netdeploy/status.jsonl)
  -h, --help            this text
  -V, --version         the version

verify FILE SHA256      hashes FILE, compares with SHA256 and prints the rate in MB/s
                        (exit 0 on a match, 1 otherwise)

capture SOURCE DIR      captures the device, partition or file SOURCE into DIR as an image
                        (docs/image-format.md): only the used blocks of an ext, FAT or NTFS
                        filesystem, everything of anything else; prints the index's name,
                        SHA-256 and size, as `netdeploy package create --from DIR` will list it
apply-image FROM SHA256 SIZE TARGET
                        applies the image whose index has this SHA-256 and size onto the
                        existing device or file TARGET; FROM is the server (http://IP[:PORT])
                        or an image directory. Each chunk is checked before it is written; run
                        again after a failure, it resumes at the chunk where it stopped
multicast-apply SERVER SHA256 SIZE TARGET GROUP:PORT [INTERFACE]
                        the same from a multicast session (docs/multicast.md) on GROUP:PORT,
                        joined on the interface with the address INTERFACE: each chunk is
                        checked before it is written; without a session within 5 s, or when
                        it stalls or ends, the rest comes from SERVER (http://IP[:PORT]).
                        Says which path was used
";

/// What to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Run(RunFlags),
    Verify {
        file: PathBuf,
        sha256: String,
    },
    Capture {
        source: PathBuf,
        out: PathBuf,
    },
    ApplyImage {
        from: String,
        sha256: String,
        size: String,
        target: PathBuf,
    },
    MulticastApply {
        server: String,
        sha256: String,
        size: String,
        target: PathBuf,
        group: String,
        interface: Option<String>,
    },
    Help,
    Version,
}

/// Flags of `run`; each overrides what the kernel command line or variables file says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunFlags {
    pub server: Option<String>,
    pub pin: Option<String>,
    pub deployment: Option<String>,
    pub context: Option<String>,
    pub cmdline: Option<PathBuf>,
    pub vars: Option<PathBuf>,
    pub root: Option<PathBuf>,
    pub status_file: Option<PathBuf>,
}

/// A command line that cannot be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CliError {
    #[error("unknown argument {0:?} (see --help)")]
    Unknown(String),
    #[error("{0} needs a value (see --help)")]
    MissingValue(String),
    #[error("verify needs FILE and SHA256 (see --help)")]
    VerifyArgs,
    #[error("capture needs SOURCE and DIR (see --help)")]
    CaptureArgs,
    #[error("apply-image needs FROM, SHA256, SIZE and TARGET (see --help)")]
    ApplyImageArgs,
    #[error("multicast-apply needs SERVER, SHA256, SIZE, TARGET, GROUP:PORT and maybe INTERFACE (see --help)")]
    MulticastApplyArgs,
}

/// Parses the arguments after the program name. `--flag value` and `--flag=value` both work.
pub fn parse(args: &[String]) -> Result<Command, CliError> {
    let mut args = args.iter().map(String::as_str).peekable();
    match args.peek().copied() {
        Some("verify") => {
            args.next();
            let rest: Vec<&str> = args.collect();
            return match rest.as_slice() {
                [file, sha] => Ok(Command::Verify {
                    file: PathBuf::from(file),
                    sha256: (*sha).to_owned(),
                }),
                _ => Err(CliError::VerifyArgs),
            };
        }
        Some("capture") => {
            args.next();
            let rest: Vec<&str> = args.collect();
            return match rest.as_slice() {
                [source, out] => Ok(Command::Capture {
                    source: PathBuf::from(source),
                    out: PathBuf::from(out),
                }),
                _ => Err(CliError::CaptureArgs),
            };
        }
        Some("apply-image") => {
            args.next();
            let rest: Vec<&str> = args.collect();
            return match rest.as_slice() {
                [from, sha256, size, target] => Ok(Command::ApplyImage {
                    from: (*from).to_owned(),
                    sha256: (*sha256).to_owned(),
                    size: (*size).to_owned(),
                    target: PathBuf::from(target),
                }),
                _ => Err(CliError::ApplyImageArgs),
            };
        }
        Some("multicast-apply") => {
            args.next();
            let rest: Vec<&str> = args.collect();
            return match rest.as_slice() {
                [server, sha256, size, target, group, interface @ ..] if interface.len() <= 1 => {
                    Ok(Command::MulticastApply {
                        server: (*server).to_owned(),
                        sha256: (*sha256).to_owned(),
                        size: (*size).to_owned(),
                        target: PathBuf::from(target),
                        group: (*group).to_owned(),
                        interface: interface.first().map(|i| (*i).to_owned()),
                    })
                }
                _ => Err(CliError::MulticastApplyArgs),
            };
        }
        Some("run") => {
            args.next();
        }
        _ => {}
    }
    let mut f = RunFlags::default();
    while let Some(arg) = args.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n, Some(v.to_owned())),
            _ => (arg, None),
        };
        let slot = match name {
            "-h" | "--help" => return Ok(Command::Help),
            "-V" | "--version" => return Ok(Command::Version),
            "--server" => &mut f.server,
            "--pin" => &mut f.pin,
            "--deployment" => &mut f.deployment,
            "--context" => &mut f.context,
            _ => {
                let path = match name {
                    "--cmdline" => &mut f.cmdline,
                    "--vars" => &mut f.vars,
                    "--root" => &mut f.root,
                    "--status-file" => &mut f.status_file,
                    _ => return Err(CliError::Unknown(arg.to_owned())),
                };
                let v = value(name, inline, &mut args)?;
                *path = Some(PathBuf::from(v));
                continue;
            }
        };
        *slot = Some(value(name, inline, &mut args)?);
    }
    Ok(Command::Run(f))
}

fn value<'a>(
    name: &str,
    inline: Option<String>,
    args: &mut impl Iterator<Item = &'a str>,
) -> Result<String, CliError> {
    inline
        .or_else(|| args.next().map(str::to_owned))
        .filter(|v| !v.is_empty())
        .ok_or_else(|| CliError::MissingValue(name.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Command, CliError> {
        parse(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn no_arguments_run_from_the_kernel_command_line() {
        assert_eq!(p(&[]), Ok(Command::Run(RunFlags::default())));
        assert_eq!(p(&["run"]), Ok(Command::Run(RunFlags::default())));
    }

    #[test]
    fn reads_every_flag_in_both_forms() {
        let c = p(&[
            "--server",
            "http://127.0.0.1:1",
            "--deployment=LAB00001",
            "--context",
            "media",
            "--cmdline",
            "/c",
            "--vars=/v",
            "--root",
            "/r",
            "--status-file",
            "/s",
            "--pin=sha256:00",
        ])
        .unwrap();
        assert_eq!(
            c,
            Command::Run(RunFlags {
                server: Some("http://127.0.0.1:1".into()),
                deployment: Some("LAB00001".into()),
                context: Some("media".into()),
                cmdline: Some("/c".into()),
                vars: Some("/v".into()),
                root: Some("/r".into()),
                status_file: Some("/s".into()),
                pin: Some("sha256:00".into()),
            })
        );
    }

    #[test]
    fn multicast_apply_takes_the_apply_operands_a_group_and_maybe_an_interface() {
        let base = ["multicast-apply", "http://10.0.0.1", "ab", "12", "/dev/vda"];
        let with = |extra: &[&'static str]| {
            let mut a = base.to_vec();
            a.extend_from_slice(extra);
            p(&a)
        };
        assert_eq!(
            with(&["239.255.77.1:7400", "10.0.0.5"]),
            Ok(Command::MulticastApply {
                server: "http://10.0.0.1".into(),
                sha256: "ab".into(),
                size: "12".into(),
                target: "/dev/vda".into(),
                group: "239.255.77.1:7400".into(),
                interface: Some("10.0.0.5".into()),
            })
        );
        assert!(matches!(
            with(&["239.255.77.1:7400"]),
            Ok(Command::MulticastApply {
                interface: None,
                ..
            })
        ));
        assert_eq!(with(&[]), Err(CliError::MulticastApplyArgs));
        assert_eq!(with(&["g", "i", "x"]), Err(CliError::MulticastApplyArgs));
    }

    #[test]
    fn verify_takes_a_file_and_a_hash() {
        assert_eq!(
            p(&["verify", "/tmp/x", "ab"]),
            Ok(Command::Verify {
                file: "/tmp/x".into(),
                sha256: "ab".into()
            })
        );
        assert_eq!(p(&["verify", "/tmp/x"]), Err(CliError::VerifyArgs));
    }

    #[test]
    fn capture_and_apply_image_take_their_operands() {
        assert_eq!(
            p(&["capture", "/dev/vda1", "/tmp/img"]),
            Ok(Command::Capture {
                source: "/dev/vda1".into(),
                out: "/tmp/img".into()
            })
        );
        assert_eq!(p(&["capture", "/dev/vda1"]), Err(CliError::CaptureArgs));
        assert_eq!(
            p(&["apply-image", "http://10.0.0.1", "ab", "12", "/dev/vda"]),
            Ok(Command::ApplyImage {
                from: "http://10.0.0.1".into(),
                sha256: "ab".into(),
                size: "12".into(),
                target: "/dev/vda".into()
            })
        );
        assert_eq!(
            p(&["apply-image", "http://10.0.0.1", "ab", "12"]),
            Err(CliError::ApplyImageArgs)
        );
    }

    #[test]
    fn refuses_unknown_flags_and_missing_values() {
        assert_eq!(p(&["--nope"]), Err(CliError::Unknown("--nope".into())));
        assert_eq!(
            p(&["--server"]),
            Err(CliError::MissingValue("--server".into()))
        );
        assert_eq!(
            p(&["--root="]),
            Err(CliError::MissingValue("--root".into()))
        );
        assert_eq!(p(&["--help", "--nope"]), Ok(Command::Help));
    }
}
