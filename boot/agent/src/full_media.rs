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

#[cfg(test)]
mod tests {
    use super::*;

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
