//! A full media (docs/media.md): the task sequence and its content on the medium, next to
//! the variables file, so it runs with no server:
//!
//! ```text
//! <media>/netdeploy/variables          SMSTSMediaType=FullMedia, ...
//! <media>/netdeploy/policy.json        the server's answer to GET /agent/policy for the
//!                                      deployment, byte for byte
//! <media>/netdeploy/content/<sha256>   each content file, named by its SHA-256 (lowercase)
//! ```
//!
//! On an ISO 9660 medium names stop at 30 characters (interchange level 2, no Rock Ridge), so
//! there a content file is named by the first [`ISO_NAME`] hex digits of its hash; [`content_file`]
//! finds either name. The whole hash is verified all the same.
//!
//! The URLs in `policy.json` point at the server that built the medium and are ignored.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::policy::{self, Policy};

/// The policy, in the directory of the variables file.
pub const POLICY_FILE: &str = "policy.json";

/// The content directory, in the directory of the variables file.
pub const CONTENT_DIR: &str = "content";

/// Length of a content file's name on an ISO 9660 medium.
pub const ISO_NAME: usize = 30;

/// The content file at `path` (`<content dir>/<sha256>`), or its ISO 9660 name (the first
/// [`ISO_NAME`] characters) when only that exists.
pub fn content_file(path: &Path) -> PathBuf {
    if path.exists() {
        return path.to_path_buf();
    }
    let short = path
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|n| n.len() > ISO_NAME)
        .map(|n| path.with_file_name(&n[..ISO_NAME]));
    match short {
        Some(s) if s.exists() => s,
        _ => path.to_path_buf(),
    }
}

/// Where a full media's files are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub policy: PathBuf,
    pub content: PathBuf,
}

impl Layout {
    /// The layout of the media directory `dir`, the one holding the variables file.
    pub fn of(dir: &Path) -> Layout {
        Layout {
            policy: dir.join(POLICY_FILE),
            content: dir.join(CONTENT_DIR),
        }
    }
}

/// The directory of the variables file where a run that restarted the machine mid-sequence
/// keeps where it continues, one file per machine.
pub const RESUME_DIR: &str = "resume";

/// The file that keeps where this machine's run continues: `<media>/netdeploy/resume/NAME.json`.
pub fn resume_file(dir: &Path, machine: &str) -> PathBuf {
    dir.join(RESUME_DIR).join(format!("{machine}.json"))
}

/// What the resume file holds.
#[derive(serde::Serialize, serde::Deserialize)]
struct Resume {
    deployment: String,
    resume_at: usize,
}

/// The step a run of `deployment` continues at after a restart: 0 when the file is missing,
/// unreadable or about another deployment (the run then starts from the first step).
pub fn read_resume(file: &Path, deployment: &str) -> usize {
    std::fs::read(file)
        .ok()
        .and_then(|b| serde_json::from_slice::<Resume>(&b).ok())
        .filter(|r| r.deployment == deployment)
        .map_or(0, |r| r.resume_at)
}

/// Keeps that `deployment` continues at `step`, through a part file so that a restart never
/// finds half of it.
pub fn write_resume(file: &Path, deployment: &str, step: usize) -> std::io::Result<()> {
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let body = serde_json::to_vec(&Resume {
        deployment: deployment.to_owned(),
        resume_at: step,
    })?;
    let part = file.with_extension("json.part");
    std::fs::write(&part, body)?;
    std::fs::File::open(&part)?.sync_all()?;
    std::fs::rename(&part, file)
}

/// Reads and parses the policy as the server's answer is parsed. The reason names the file.
pub fn read_policy(path: &Path, limit: usize) -> Result<Policy, String> {
    let mut body = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(limit as u64 + 1).read_to_end(&mut body))
        .map_err(|e| format!("cannot read the media's policy {}: {e}", path.display()))?;
    if body.len() > limit {
        return Err(format!(
            "the media's policy {} is larger than {limit} bytes",
            path.display()
        ));
    }
    policy::parse(&body).map_err(|e| format!("{}: {e}", path.display()))
}

/// Opens the secret values a full medium carries sealed under its password
/// ([`netdeploy_wire::seal`]), so the steps run with them. The key is derived once per salt.
/// Refused, naming the step, when there is no password or it does not open a value (an
/// altered medium): a secret is never run as something else.
pub fn open_sealed(
    steps: &mut [netdeploy_wire::policy::Step],
    password: Option<&str>,
) -> Result<usize, String> {
    use netdeploy_wire::seal::SealKey;
    let mut key: Option<SealKey> = None;
    let mut opened = 0;
    for s in steps.iter_mut() {
        let Some(sealed) = s.sealed.take() else {
            continue;
        };
        let name = s.name.clone();
        let refuse =
            |why: String| format!("step {name:?}: its secret value cannot be opened: {why}");
        let Some(password) = password else {
            return Err(refuse(
                "the medium has no password to open it with (rebuild the medium with a password)"
                    .into(),
            ));
        };
        let salt = SealKey::salt_of(&sealed).map_err(|e| refuse(e.to_string()))?;
        if key.as_ref().is_none_or(|k| k.salt() != salt.as_slice()) {
            key = Some(SealKey::derive(password, &salt).map_err(|e| refuse(e.to_string()))?);
        }
        let k = key.as_ref().expect("derived above");
        s.value = Some(k.open(&sealed).map_err(|e| refuse(e.to_string()))?);
        s.secret = true;
        opened += 1;
    }
    Ok(opened)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_with_the_media_password_and_are_refused_without_it() {
        use netdeploy_wire::policy::{Step, StepAction};
        use netdeploy_wire::seal::{SealKey, NONCE_LEN, SALT_LEN};
        let key = SealKey::derive("lab secret", &[5; SALT_LEN]).unwrap();
        let mut step = Step::new("join", StepAction::SetVariable);
        step.variable = Some("DomainPassword".into());
        step.secret = true;
        step.sealed = Some(key.seal("hunter2-long", [2; NONCE_LEN]));
        let plain = Step::new("hello", StepAction::RunCommand);
        let steps = vec![plain.clone(), step];

        let mut opened = steps.clone();
        assert_eq!(open_sealed(&mut opened, Some("lab secret")), Ok(1));
        assert_eq!(opened[1].value.as_deref(), Some("hunter2-long"));
        assert!(opened[1].secret && opened[1].sealed.is_none());
        assert_eq!(opened[0], plain);

        let e = open_sealed(&mut steps.clone(), None).unwrap_err();
        assert!(
            e.contains("step \"join\"") && e.contains("no password"),
            "{e}"
        );
        let e = open_sealed(&mut steps.clone(), Some("wrong")).unwrap_err();
        assert!(e.contains("does not open"), "{e}");
    }

    #[test]
    fn the_policy_and_content_sit_next_to_the_variables_file() {
        assert_eq!(
            Layout::of(Path::new("/netdeploy")),
            Layout {
                policy: PathBuf::from("/netdeploy/policy.json"),
                content: PathBuf::from("/netdeploy/content"),
            }
        );
    }

    #[test]
    fn reads_a_policy_and_names_the_file_when_it_cannot() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("policy.json");
        let err = read_policy(&p, 1000).unwrap_err();
        assert!(err.starts_with(&format!("cannot read the media's policy {}: ", p.display())));
        std::fs::write(&p, r#"{"action":"none","reason":"r"}"#).unwrap();
        assert!(matches!(
            read_policy(&p, 1000),
            Ok(Policy::Nothing { reason }) if reason == "r"
        ));
        assert!(read_policy(&p, 10)
            .unwrap_err()
            .contains("larger than 10 bytes"));
        std::fs::write(&p, "not json").unwrap();
        assert!(read_policy(&p, 1000)
            .unwrap_err()
            .starts_with(&p.display().to_string()));
    }

    #[test]
    fn content_is_found_by_its_whole_hash_or_its_iso_name() {
        let dir = tempfile::tempdir().unwrap();
        let hash = "ab".repeat(32);
        let full = dir.path().join(&hash);
        assert_eq!(content_file(&full), full, "neither exists: the full name");
        std::fs::write(dir.path().join(&hash[..ISO_NAME]), b"x").unwrap();
        assert_eq!(content_file(&full), dir.path().join(&hash[..ISO_NAME]));
        std::fs::write(&full, b"x").unwrap();
        assert_eq!(content_file(&full), full);
    }
}
