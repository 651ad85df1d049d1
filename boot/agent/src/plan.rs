//! From a policy to the steps the agent runs: each step's references resolved against the
//! policy's packages, its fields checked, and the content to fetch before the first step
//! (`download_all`). A step that cannot run becomes [`Op::Fail`] with the reason, so the
//! steps before it still run and the failure is reported at the step, naming it.
//!
//! Content comes from the server, or from a full media's `content` directory, where each
//! file is named by its SHA-256 (docs/media.md) and the policy's URLs are ignored.

use std::path::{Component, Path, PathBuf};

use crate::hash::Sha256Digest;
use crate::http::Url;
use crate::policy::{ContentOption, PolicyFile, RunPolicy, Step, StepAction};
use crate::power::EndAction;
use netdeploy_wire::disk::{DiskChoice, DiskLayout, Filesystem};

/// The task sequence to run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub option: ContentOption,
    pub steps: Vec<PlannedStep>,
    /// Files to download before the first step: every package's files for `download_all`.
    pub predownload: Vec<FileRef>,
    /// What to do after the sequence, from its last step.
    pub end: Option<EndAction>,
    /// The values of the steps marked secret: masked in every line printed or reported.
    pub secrets: Vec<String>,
    /// The 0-based step to start at: the one after a `reboot` step in the middle of the
    /// sequence, when this run continues after that restart.
    pub resume_at: usize,
}

impl Plan {
    /// `text` with every secret of the task sequence masked.
    pub fn mask(&self, text: &str) -> String {
        netdeploy_wire::policy::mask_secrets(text, &self.secrets)
    }
}

#[derive(Debug, Clone)]
pub struct PlannedStep {
    pub name: String,
    /// The action as the policy names it.
    pub action: String,
    pub op: Op,
}

/// What a step does.
#[derive(Debug, Clone)]
pub enum Op {
    /// `apply_image` and `apply_os`: an image (netdeploy's `.ndimg`, a WIM in Windows PE, or
    /// raw) onto a block device or, for a WIM, a directory.
    ApplyImage { file: FileRef, target: PathBuf },
    /// `apply_image` without a target: onto partition `partition` of the disk `disk` picks,
    /// or onto that whole disk.
    ApplyImageToDisk {
        file: FileRef,
        disk: DiskChoice,
        partition: Option<u32>,
    },
    /// `partition_disk`: `layout` onto the disk `disk` picks.
    PartitionDisk {
        disk: DiskChoice,
        layout: DiskLayout,
    },
    /// `format`: `filesystem` on partition `partition` of the disk `disk` picks.
    Format {
        disk: DiskChoice,
        partition: u32,
        filesystem: Filesystem,
    },
    /// `bcdboot`: the applied Windows made bootable (Windows PE).
    Bcdboot,
    /// `/bin/sh -c command`, in the package's directory when it names one.
    RunCommand {
        command: String,
        package: Option<PackageRef>,
    },
    /// Every file of a package into the package cache.
    InstallPackage(PackageRef),
    /// A file of a package to `target`.
    WriteFile { file: FileRef, target: PathBuf },
    /// Text to `target`.
    WriteText { text: String, target: PathBuf },
    SetVariable {
        name: String,
        value: String,
        /// Shown as a mask on the console.
        secret: bool,
    },
    /// The disk `disk` picks, or its partition `partition`, to the server as package `package`.
    CaptureImage {
        package: String,
        disk: netdeploy_wire::disk::DiskChoice,
        partition: Option<u32>,
    },
    /// `poweroff` or `reboot` as the last step: done after the status is reported.
    End(EndAction),
    /// `reboot` in the middle of the sequence: reported as `rebooting`, then the machine
    /// restarts and the next run continues at the next step.
    Restart,
    /// The step cannot run; the reason says why.
    Fail(String),
}

/// A package and its files.
#[derive(Debug, Clone)]
pub struct PackageRef {
    pub id: String,
    pub files: Vec<FileRef>,
}

/// Where a task sequence's content comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContentFrom {
    /// The server: file URLs without a host are relative to it.
    Server(Url),
    /// A full media's content directory, `<media>/netdeploy/content`.
    Media(PathBuf),
}

/// Where one file's bytes are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Url(Url),
    /// `<content directory>/<sha256 lowercase hex>` on a full media.
    Media(PathBuf),
}

/// A file of a package, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRef {
    pub package: String,
    /// Relative path in the package, without `..`.
    pub path: String,
    pub size: u64,
    /// `None` when the option does not verify (`direct_access` from a server).
    pub sha256: Option<Sha256Digest>,
    pub origin: Origin,
}

impl FileRef {
    /// Where the file lives in the package cache under `cache`.
    pub fn cache_path(&self, cache: &Path) -> PathBuf {
        cache.join(&self.package).join(&self.path)
    }
}

impl Op {
    /// One line for the console, e.g. `apply_image disk.img -> /dev/vda`.
    pub fn describe(&self, action: &str) -> String {
        match self {
            Op::ApplyImage { file, target } | Op::WriteFile { file, target } => {
                format!("{action} {} -> {}", file.path, target.display())
            }
            Op::ApplyImageToDisk {
                file,
                disk,
                partition,
            } => match partition {
                Some(n) => format!(
                    "{action} {} -> partition {n} of {}",
                    file.path,
                    disk.describe()
                ),
                None => format!("{action} {} -> disk {}", file.path, disk.describe()),
            },
            Op::PartitionDisk { disk, layout } => format!(
                "{action} {} ({} partitions) -> disk {}",
                layout.table,
                layout.partitions.len(),
                disk.describe()
            ),
            Op::Format {
                disk,
                partition,
                filesystem,
            } => format!(
                "{action} {filesystem} -> partition {partition} of {}",
                disk.describe()
            ),
            Op::Bcdboot => action.to_owned(),
            Op::RunCommand { command, .. } => format!("{action}: {command}"),
            Op::InstallPackage(p) => format!("{action} {} ({} files)", p.id, p.files.len()),
            Op::WriteText { text, target } => {
                format!(
                    "{action} ({} bytes of text) -> {}",
                    text.len(),
                    target.display()
                )
            }
            Op::SetVariable {
                name, secret: true, ..
            } => format!("{action} {name}={}", netdeploy_wire::policy::MASK),
            Op::SetVariable { name, value, .. } => format!("{action} {name}={value}"),
            Op::CaptureImage {
                package,
                disk,
                partition,
            } => format!(
                "{action} {}{} -> package {package}",
                disk.describe(),
                partition.map_or(String::new(), |n| format!(" partition {n}"))
            ),
            Op::End(a) => a.as_str().to_owned(),
            Op::Restart => format!("{action}: the task sequence continues after the restart"),
            Op::Fail(_) => action.to_owned(),
        }
    }
}

/// Plans `policy` with content `from` a server or a full media. Errs only when content to
/// download before the first step cannot be resolved.
pub fn plan(policy: &RunPolicy, from: &ContentFrom) -> Result<Plan, String> {
    let n = policy.steps.len();
    if policy.resume_at > n {
        return Err(format!(
            "the policy continues at step {} after a restart, but the task sequence has {n} \
             steps",
            policy.resume_at + 1
        ));
    }
    let steps = policy
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| PlannedStep {
            name: s.name.clone(),
            action: s.action.to_string(),
            op: plan_step(policy, from, s, i + 1 == n).unwrap_or_else(Op::Fail),
        })
        .collect();
    let end = match policy.steps.last().map(|s| &s.action) {
        Some(StepAction::Poweroff) => Some(EndAction::Poweroff),
        Some(StepAction::Reboot) => Some(EndAction::Reboot),
        _ => None,
    };
    let predownload = if policy.option == ContentOption::DownloadAll {
        let mut all = Vec::new();
        for (id, files) in &policy.packages {
            for f in files {
                all.push(file_ref(policy, from, id, f)?);
            }
        }
        all
    } else {
        Vec::new()
    };
    let secrets = policy
        .steps
        .iter()
        .filter(|s| s.secret)
        .filter_map(|s| s.value.clone())
        .filter(|v| !v.is_empty())
        .collect();
    Ok(Plan {
        option: policy.option.clone(),
        steps,
        predownload,
        end,
        secrets,
        resume_at: policy.resume_at,
    })
}

fn plan_step(policy: &RunPolicy, from: &ContentFrom, s: &Step, last: bool) -> Result<Op, String> {
    let need = |field: &Option<String>, name: &str| -> Result<String, String> {
        field
            .clone()
            .filter(|v| !v.is_empty())
            .ok_or_else(|| format!("a {} step needs {name}", s.action))
    };
    let target = || -> Result<PathBuf, String> {
        let t = need(&s.target, "a target")?;
        if !netdeploy_wire::policy::is_absolute_target(&t) {
            return Err(format!("the target {t:?} is not an absolute path"));
        }
        if !Path::new(&t).is_absolute() {
            return Err(format!(
                "the target {t:?} is not an absolute path on {}",
                crate::platform::NAME
            ));
        }
        Ok(PathBuf::from(t))
    };
    let disk = || s.disk.clone().unwrap_or_default();
    match &s.action {
        StepAction::ApplyImage if s.target.is_none() => {
            if s.partition == Some(0) {
                return Err("partitions are numbered from 1".into());
            }
            Ok(Op::ApplyImageToDisk {
                file: step_file(policy, from, s)?,
                disk: disk(),
                partition: s.partition,
            })
        }
        StepAction::PartitionDisk => {
            let layout = s
                .layout
                .clone()
                .ok_or("a partition_disk step needs a layout")?;
            layout.check().map_err(|e| e.to_string())?;
            Ok(Op::PartitionDisk {
                disk: disk(),
                layout,
            })
        }
        StepAction::Format => {
            let partition = s
                .partition
                .filter(|n| *n > 0)
                .ok_or("a format step needs a partition (its number on the disk, from 1)")?;
            let filesystem = match s.filesystem.clone() {
                Some(Filesystem::Unknown(f)) => {
                    return Err(format!(
                        "the filesystem {f:?} is unknown to this boot image (fat32, ext4, \
                         swap, ntfs)"
                    ))
                }
                Some(f) => f,
                None => return Err("a format step needs a filesystem".into()),
            };
            Ok(Op::Format {
                disk: disk(),
                partition,
                filesystem,
            })
        }
        StepAction::Bcdboot => Ok(Op::Bcdboot),
        StepAction::ApplyImage | StepAction::ApplyOs => Ok(Op::ApplyImage {
            file: step_file(policy, from, s)?,
            target: target()?,
        }),
        StepAction::RunCommand => Ok(Op::RunCommand {
            command: need(&s.command, "a command")?,
            package: match &s.package {
                Some(id) => Some(package(policy, from, id)?),
                None => None,
            },
        }),
        StepAction::InstallPackage => Ok(Op::InstallPackage(package(
            policy,
            from,
            &need(&s.package, "a package")?,
        )?)),
        StepAction::WriteFile => match (&s.package, &s.value) {
            (Some(_), _) => Ok(Op::WriteFile {
                file: step_file(policy, from, s)?,
                target: target()?,
            }),
            (None, Some(text)) => Ok(Op::WriteText {
                text: text.clone(),
                target: target()?,
            }),
            (None, None) => Err("a write_file step needs a package and file, or a value".into()),
        },
        StepAction::SetVariable => {
            let name = need(&s.variable, "a variable")?;
            if !is_variable_name(&name) {
                return Err(format!(
                    "{name:?} is not a variable name (letters, digits and _, not starting with a digit)"
                ));
            }
            Ok(Op::SetVariable {
                name,
                value: s.value.clone().unwrap_or_default(),
                secret: s.secret,
            })
        }
        StepAction::Poweroff if !last => Err(
            "a poweroff step must be the last step: use reboot to restart the machine and \
             continue the task sequence"
                .into(),
        ),
        StepAction::Poweroff => Ok(Op::End(EndAction::Poweroff)),
        // docs/site-file.md: a reboot before the last step restarts the machine, and its next
        // run continues at the step after it.
        StepAction::Reboot if !last => Ok(Op::Restart),
        StepAction::Reboot => Ok(Op::End(EndAction::Reboot)),
        StepAction::CaptureImage => {
            let package = need(&s.package, "a package (the id of the new package)")?;
            if !is_plain_relative(&package) || package.contains('/') {
                return Err(format!("package id {package:?} cannot be a directory name"));
            }
            Ok(Op::CaptureImage {
                package,
                disk: s.disk.clone().unwrap_or_default(),
                partition: s.partition,
            })
        }
        StepAction::Unknown(other) => Err(format!(
            "the step action {other:?} is unknown to this boot image: rebuild it with the \
             server's netdeploy"
        )),
    }
}

/// The file a step names; a package with a single file needs no `file`.
fn step_file(policy: &RunPolicy, from: &ContentFrom, s: &Step) -> Result<FileRef, String> {
    let id = s
        .package
        .as_deref()
        .filter(|p| !p.is_empty())
        .ok_or_else(|| format!("a {} step needs a package", s.action))?;
    let files = policy
        .packages
        .get(id)
        .ok_or_else(|| format!("package {id:?} is not in the policy"))?;
    let f = match s.file.as_deref() {
        Some(name) => files
            .iter()
            .find(|f| f.path == name)
            .ok_or_else(|| format!("package {id:?} has no file {name:?}"))?,
        None if files.len() == 1 => &files[0],
        None => {
            return Err(format!(
                "a {} step needs a file of package {id:?}",
                s.action
            ))
        }
    };
    file_ref(policy, from, id, f)
}

fn package(policy: &RunPolicy, from: &ContentFrom, id: &str) -> Result<PackageRef, String> {
    let files = policy
        .packages
        .get(id)
        .ok_or_else(|| format!("package {id:?} is not in the policy"))?;
    Ok(PackageRef {
        id: id.to_owned(),
        files: files
            .iter()
            .map(|f| file_ref(policy, from, id, f))
            .collect::<Result<_, _>>()?,
    })
}

fn file_ref(
    policy: &RunPolicy,
    from: &ContentFrom,
    id: &str,
    f: &PolicyFile,
) -> Result<FileRef, String> {
    if !is_plain_relative(id) || id.contains('/') {
        return Err(format!("package id {id:?} cannot be a directory name"));
    }
    if !is_plain_relative(&f.path) {
        return Err(format!(
            "file {:?} of package {id:?} is not a relative path inside the package",
            f.path
        ));
    }
    let (sha256, origin) = match from {
        ContentFrom::Server(server) => {
            let sha256 = if policy.option.verifies() {
                Some(f.sha256.0)
            } else {
                None
            };
            let url = match &f.url {
                Some(u) => server.join(u),
                None => server.join(&format!("/content/{}", f.sha256)),
            }
            .map_err(|e| format!("file {:?} of package {id:?}: {e}", f.path))?;
            (sha256, Origin::Url(url))
        }
        // A media file is found by its hash, so it is always checked against it, whatever
        // the option: reading it from the medium costs what hashing it costs.
        ContentFrom::Media(dir) => (
            Some(f.sha256.0),
            Origin::Media(dir.join(f.sha256.to_string())),
        ),
    };
    Ok(FileRef {
        package: id.to_owned(),
        path: f.path.clone(),
        size: f.size,
        sha256,
        origin,
    })
}

/// A non-empty relative path with only normal components (no `..`, no root).
fn is_plain_relative(p: &str) -> bool {
    !p.is_empty()
        && !p.contains('\0')
        && Path::new(p)
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
        && Path::new(p)
            .components()
            .any(|c| matches!(c, Component::Normal(_)))
}

/// Letters, digits and `_`, not starting with a digit: a name a shell can expand.
pub fn is_variable_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash;
    use crate::policy::{self, Policy};

    const SHA: &str = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

    fn policy(option: &str, steps: &str) -> RunPolicy {
        let json = format!(
            r#"{{"action":"run","deployment":{{"id":"LAB00001","option":"{option}"}},
                "steps":{steps},
                "packages":{{
                  "disk":[{{"path":"disk.img","size":5,"sha256":"{SHA}","url":"http://10.77.0.1:8080/content/{SHA}"}}],
                  "tools":[{{"path":"etc/motd","size":5,"sha256":"{SHA}"}},
                           {{"path":"bin/x","size":5,"sha256":"{SHA}","url":"/content/x"}}],
                  "bad":[{{"path":"../escape","size":1,"sha256":"{SHA}"}}]
                }}}}"#
        );
        match policy::parse(json.as_bytes()).unwrap() {
            Policy::Run(p) => p,
            other => unreachable!("{other:?}"),
        }
    }

    fn server() -> ContentFrom {
        ContentFrom::Server(Url::parse("http://10.77.0.1:8080").unwrap())
    }

    fn url(f: &FileRef) -> &Url {
        match &f.origin {
            Origin::Url(u) => u,
            other => panic!("expected a URL, got {other:?}"),
        }
    }

    fn ops(option: &str, steps: &str) -> Vec<Op> {
        plan(&policy(option, steps), &server())
            .unwrap()
            .steps
            .into_iter()
            .map(|s| s.op)
            .collect()
    }

    fn fail_reason(op: &Op) -> &str {
        match op {
            Op::Fail(r) => r,
            other => panic!("expected a failing step, got {other:?}"),
        }
    }

    #[test]
    fn plans_the_steps_of_the_contract() {
        let p = plan(
            &policy(
                "download_on_demand",
                r#"[{"name":"write the disk","action":"apply_image","package":"disk","file":"disk.img","target":"/dev/vda"},
                    {"name":"hello","action":"run_command","command":"echo hello"},
                    {"name":"set","action":"set_variable","variable":"OSDComputerName","value":"pc1"},
                    {"name":"motd","action":"write_file","package":"tools","file":"etc/motd","target":"/tmp/motd"},
                    {"name":"note","action":"write_file","value":"text","target":"/tmp/note"},
                    {"name":"tools","action":"install_package","package":"tools"},
                    {"name":"off","action":"poweroff"}]"#,
            ),
            &server(),
        )
        .unwrap();
        assert_eq!(p.end, Some(EndAction::Poweroff));
        assert!(p.predownload.is_empty());
        let d: Vec<String> = p.steps.iter().map(|s| s.op.describe(&s.action)).collect();
        assert_eq!(
            d,
            [
                "apply_image disk.img -> /dev/vda",
                "run_command: echo hello",
                "set_variable OSDComputerName=pc1",
                "write_file etc/motd -> /tmp/motd",
                "write_file (4 bytes of text) -> /tmp/note",
                "install_package tools (2 files)",
                "poweroff",
            ]
        );
        let Op::WriteFile { file, .. } = &p.steps[3].op else {
            panic!()
        };
        assert_eq!(
            url(file).to_string(),
            format!("http://10.77.0.1:8080/content/{SHA}")
        );
        assert_eq!(file.sha256, hash::parse_hex(SHA));
        assert_eq!(
            file.cache_path(Path::new("/var/lib/netdeploy/packages")),
            Path::new("/var/lib/netdeploy/packages/tools/etc/motd")
        );
        let Op::InstallPackage(tools) = &p.steps[5].op else {
            panic!()
        };
        assert_eq!(url(&tools.files[1]).path(), "/content/x");
    }

    #[test]
    fn apply_os_is_apply_image_and_a_single_file_needs_no_name() {
        let o = ops(
            "download_on_demand",
            r#"[{"name":"os","action":"apply_os","package":"disk","target":"/dev/sda"}]"#,
        );
        assert!(matches!(&o[0], Op::ApplyImage { file, .. } if file.path == "disk.img"));
    }

    #[test]
    fn unsupported_unknown_and_incomplete_steps_fail_with_a_reason() {
        let o = ops(
            "download_on_demand",
            r#"[{"name":"p","action":"format","filesystem":"ext4"},
                {"name":"u","action":"format_c"},
                {"name":"i","action":"apply_os","package":"disk"},
                {"name":"m","action":"apply_image","package":"nope","target":"/dev/vda"},
                {"name":"f","action":"write_file","package":"tools","target":"/tmp/x"},
                {"name":"r","action":"run_command"},
                {"name":"v","action":"set_variable","variable":"1x","value":"y"},
                {"name":"rel","action":"write_file","value":"t","target":"tmp/x"},
                {"name":"b","action":"poweroff"},
                {"name":"esc","action":"install_package","package":"bad"},
                {"name":"h","action":"install_package"},
                {"name":"end","action":"run_command","command":"true"}]"#,
        );
        let reasons: Vec<&str> = o[..11].iter().map(fail_reason).collect();
        assert!(reasons[0].contains("format step needs a partition"));
        assert!(reasons[1].contains("step action \"format_c\" is unknown"));
        assert!(reasons[2].contains("needs a target"));
        assert!(reasons[3].contains("package \"nope\" is not in the policy"));
        assert!(reasons[4].contains("needs a file of package \"tools\""));
        assert!(reasons[5].contains("needs a command"));
        assert!(reasons[6].contains("not a variable name"));
        assert!(reasons[7].contains("not an absolute path"));
        assert!(
            reasons[8].contains("must be the last step"),
            "{}",
            reasons[8]
        );
        assert!(reasons[9].contains("not a relative path inside the package"));
        assert!(reasons[10].contains("needs a package"));
        assert!(matches!(o[11], Op::RunCommand { .. }));
    }

    #[test]
    fn disk_steps_are_planned_with_their_disk_layout_partition_and_filesystem() {
        let o = ops(
            "download_on_demand",
            r#"[{"name":"p","action":"partition_disk","disk":{"path":"/dev/vdb"},
                 "layout":{"table":"gpt","partitions":[{"role":"esp","size":"512MiB"},{"role":"linux","size":"rest"}]}},
                {"name":"f","action":"format","partition":1,"filesystem":"fat32"},
                {"name":"a","action":"apply_image","package":"disk","partition":2},
                {"name":"w","action":"apply_image","package":"disk"},
                {"name":"b","action":"bcdboot"},
                {"name":"bad","action":"partition_disk","layout":{"table":"mbr","partitions":[{"role":"msr","size":"16MiB"}]}},
                {"name":"nofs","action":"format","partition":1,"filesystem":"xfs"},
                {"name":"zero","action":"apply_image","package":"disk","partition":0}]"#,
        );
        let d: Vec<String> = o[..5].iter().map(|op| op.describe("x")).collect();
        assert_eq!(
            d,
            [
                "x gpt (2 partitions) -> disk /dev/vdb",
                "x fat32 -> partition 1 of non-removable",
                "x disk.img -> partition 2 of non-removable",
                "x disk.img -> disk non-removable",
                "x",
            ]
        );
        assert!(matches!(o[4], Op::Bcdboot));
        assert!(
            fail_reason(&o[5]).contains("partition 1: a msr partition exists only on a GPT disk"),
            "{:?}",
            o[5]
        );
        assert!(fail_reason(&o[6]).contains("\"xfs\" is unknown"));
        assert!(fail_reason(&o[7]).contains("numbered from 1"));
    }

    #[test]
    fn a_reboot_before_the_last_step_restarts_and_the_plan_keeps_where_to_resume() {
        let mut p = policy(
            "download_on_demand",
            r#"[{"name":"one","action":"write_file","value":"1","target":"/tmp/1"},
                {"name":"restart","action":"reboot"},
                {"name":"two","action":"write_file","value":"2","target":"/tmp/2"},
                {"name":"end","action":"reboot"}]"#,
        );
        p.packages.remove("bad");
        let planned = plan(&p, &server()).unwrap();
        assert!(matches!(planned.steps[1].op, Op::Restart));
        assert!(matches!(planned.steps[3].op, Op::End(EndAction::Reboot)));
        assert_eq!(planned.end, Some(EndAction::Reboot));
        assert_eq!(planned.resume_at, 0);
        p.resume_at = 2;
        assert_eq!(plan(&p, &server()).unwrap().resume_at, 2);
        p.resume_at = 5;
        let err = plan(&p, &server()).unwrap_err();
        assert!(
            err.contains("continues at step 6") && err.contains("has 4 steps"),
            "{err}"
        );
    }

    #[test]
    fn direct_access_carries_no_hashes() {
        let o = ops(
            "direct_access",
            r#"[{"name":"h","action":"install_package","package":"tools"}]"#,
        );
        let Op::InstallPackage(p) = &o[0] else {
            panic!("{o:?}")
        };
        assert_eq!(p.files[0].sha256, None);
    }

    #[test]
    fn download_all_fetches_every_package_first() {
        let mut p = policy("download_all", r#"[{"name":"r","action":"reboot"}]"#);
        p.packages.remove("bad");
        let plan = plan(&p, &server()).unwrap();
        let names: Vec<_> = plan.predownload.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(names, ["disk.img", "etc/motd", "bin/x"]);
        assert_eq!(plan.end, Some(EndAction::Reboot));
        let err = super::plan(&policy("download_all", "[]"), &server()).unwrap_err();
        assert!(err.contains("escape"), "{err}");
    }

    #[test]
    fn full_media_content_is_found_by_its_hash_and_always_verified() {
        let p = policy(
            "direct_access",
            r#"[{"name":"motd","action":"write_file","package":"tools","file":"etc/motd","target":"/tmp/motd"}]"#,
        );
        let media = ContentFrom::Media(PathBuf::from("/netdeploy/content"));
        let plan = plan(&p, &media).unwrap();
        let Op::WriteFile { file, .. } = &plan.steps[0].op else {
            panic!("{:?}", plan.steps[0].op)
        };
        assert_eq!(
            file.origin,
            Origin::Media(PathBuf::from(format!("/netdeploy/content/{SHA}")))
        );
        assert_eq!(file.sha256, hash::parse_hex(SHA));
    }

    #[test]
    fn variable_names() {
        assert!(is_variable_name("OSDComputerName"));
        assert!(is_variable_name("_x1"));
        assert!(!is_variable_name("1x"));
        assert!(!is_variable_name("a-b"));
        assert!(!is_variable_name(""));
    }
}
