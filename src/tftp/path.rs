//! Where a requested file name lives under the TFTP root, or why it is refused.
//!
//! docs/network-boot.md: Windows-style paths (`\boot\x64\file`) and case-insensitive names are
//! accepted, and nothing outside the root is ever served. The rules, in order:
//! 1. `\` and `/` both separate components; a leading separator is relative to the root (GRUB
//!    asks for `/grub/x86_64-efi/...`, Windows Deployment Services clients for `\boot\...`);
//!    empty and `.` components are skipped.
//! 2. A `..` component or a NUL byte refuses the request outright: no normalisation is
//!    attempted, so there is nothing to get wrong.
//! 3. Each component is looked up in its directory: the exact name if it exists, else the one
//!    entry whose name matches without regard to case. Two or more such entries (`A.efi` and
//!    `a.EFI` but no `a.efi`) are ambiguous and the file is not found.
//! 4. The result is canonicalised (every symlink resolved) and must still be under the
//!    canonical root, so a symlink inside the root may point to another file inside it but
//!    never out of it.
//! 5. It must be a regular file.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Why a requested name is not served. [`PathError::Refused`] maps to TFTP error 2 (access
/// violation), the others to error 1 (file not found).
#[derive(Debug, thiserror::Error)]
pub enum PathError {
    #[error("refused: {0}")]
    Refused(&'static str),
    #[error("not found")]
    NotFound,
    #[error("not found: more than one name matches {0:?} without regard to case")]
    Ambiguous(String),
    #[error("not a regular file")]
    NotAFile,
    #[error("cannot read: {0}")]
    Io(#[from] io::Error),
}

impl PathError {
    /// Whether this is a refusal (as opposed to a file that is not there).
    pub fn is_refusal(&self) -> bool {
        matches!(self, PathError::Refused(_))
    }
}

/// The name a request is looked up by among the provided and generated files ([`super::Provided`]):
/// the components of rules 1 and 2 joined by `/` (case kept), so that `\grub\grub.cfg`
/// and `/grub/grub.cfg` are one file. `None` for a name rule 2 refuses.
pub fn provided_name(requested: &str) -> Option<String> {
    let components: Vec<&str> = requested
        .split(['/', '\\'])
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    if requested.contains('\0') || components.contains(&"..") {
        return None;
    }
    Some(components.join("/"))
}

/// The canonical TFTP root that requests are resolved against.
#[derive(Debug, Clone)]
pub struct Root {
    canonical: PathBuf,
}

impl Root {
    /// Canonicalises `root` once; it must be a directory.
    pub fn new(root: &Path) -> io::Result<Root> {
        let canonical = fs::canonicalize(root)?;
        if !fs::metadata(&canonical)?.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("TFTP root {} is not a directory", root.display()),
            ));
        }
        Ok(Root { canonical })
    }

    /// The canonical root directory.
    pub fn path(&self) -> &Path {
        &self.canonical
    }

    /// Resolves a requested file name to the canonical path of a regular file under the root.
    pub fn resolve(&self, requested: &str) -> Result<PathBuf, PathError> {
        if requested.contains('\0') {
            return Err(PathError::Refused("NUL byte in the file name"));
        }
        let components = || {
            requested
                .split(['/', '\\'])
                .filter(|c| !c.is_empty() && *c != ".")
        };
        if components().any(|c| c == "..") {
            return Err(PathError::Refused("`..` in the file name"));
        }
        let mut path = self.canonical.clone();
        for name in components() {
            path = lookup(&path, name)?;
        }
        if path == self.canonical {
            return Err(PathError::NotAFile);
        }
        let canonical = fs::canonicalize(&path).map_err(not_found_or_io)?;
        if !canonical.starts_with(&self.canonical) {
            return Err(PathError::Refused(
                "the file resolves outside the TFTP root",
            ));
        }
        if !fs::metadata(&canonical).map_err(not_found_or_io)?.is_file() {
            return Err(PathError::NotAFile);
        }
        Ok(canonical)
    }
}

/// `dir/name`, preferring the exact name, else the unique entry matching without regard to case.
fn lookup(dir: &Path, name: &str) -> Result<PathBuf, PathError> {
    let exact = dir.join(name);
    match fs::symlink_metadata(&exact) {
        Ok(_) => return Ok(exact),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => return Err(PathError::NotFound),
        Err(e) => return Err(PathError::Io(e)),
    }
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => return Err(not_found_or_io(e)),
    };
    let wanted = name.to_lowercase();
    let mut found = None;
    for entry in entries {
        let entry = entry?;
        let file_name = entry.file_name();
        // A name that is not UTF-8 cannot match a request, which is UTF-8.
        let Some(candidate) = file_name.to_str() else {
            continue;
        };
        if candidate.to_lowercase() == wanted {
            if found.is_some() {
                return Err(PathError::Ambiguous(name.to_owned()));
            }
            found = Some(entry.path());
        }
    }
    found.ok_or(PathError::NotFound)
}

fn not_found_or_io(e: io::Error) -> PathError {
    if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENOTDIR) {
        PathError::NotFound
    } else {
        PathError::Io(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn provided_names_follow_the_same_separators_and_refusals_as_the_root() {
        assert_eq!(
            provided_name("/grub/grub.cfg").as_deref(),
            Some("grub/grub.cfg")
        );
        assert_eq!(
            provided_name("\\grub\\.\\grub.cfg").as_deref(),
            Some("grub/grub.cfg")
        );
        assert_eq!(provided_name("ShimX64.EFI").as_deref(), Some("ShimX64.EFI"));
        assert_eq!(provided_name("netdeploy/../etc/passwd"), None);
        assert_eq!(provided_name("grub.cfg\0"), None);
    }

    struct Fixture {
        _dir: tempfile::TempDir,
        outside: tempfile::TempDir,
        root: Root,
    }

    /// root/boot/x64/wdsmgfw.efi, root/Boot.SDI, root/grub/grub.cfg and a file outside the root.
    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("boot/x64")).unwrap();
        fs::create_dir_all(dir.path().join("grub")).unwrap();
        fs::write(dir.path().join("boot/x64/wdsmgfw.efi"), b"efi").unwrap();
        fs::write(dir.path().join("Boot.SDI"), b"sdi").unwrap();
        fs::write(dir.path().join("grub/grub.cfg"), b"cfg").unwrap();
        fs::write(outside.path().join("secret"), b"secret").unwrap();
        let root = Root::new(dir.path()).unwrap();
        Fixture {
            _dir: dir,
            outside,
            root,
        }
    }

    fn served(f: &Fixture, name: &str) -> Vec<u8> {
        fs::read(f.root.resolve(name).unwrap()).unwrap()
    }

    #[test]
    fn plain_relative_name_is_served() {
        let f = fixture();
        assert_eq!(served(&f, "grub/grub.cfg"), b"cfg");
    }

    #[test]
    fn leading_slash_is_relative_to_the_root() {
        let f = fixture();
        assert_eq!(served(&f, "/grub/grub.cfg"), b"cfg");
        assert_eq!(served(&f, "//grub//./grub.cfg"), b"cfg");
    }

    #[test]
    fn windows_separators_and_leading_backslash_are_accepted() {
        let f = fixture();
        assert_eq!(served(&f, "\\boot\\x64\\wdsmgfw.efi"), b"efi");
        assert_eq!(served(&f, "boot\\x64/wdsmgfw.efi"), b"efi");
    }

    #[test]
    fn names_match_without_regard_to_case() {
        let f = fixture();
        assert_eq!(served(&f, "\\BOOT\\X64\\WdsMgFw.EFI"), b"efi");
        assert_eq!(served(&f, "boot.sdi"), b"sdi");
    }

    #[test]
    fn exact_name_wins_over_other_case() {
        let f = fixture();
        let root = f.root.path();
        fs::write(root.join("boot.sdi"), b"lower").unwrap();
        assert_eq!(served(&f, "boot.sdi"), b"lower");
        assert_eq!(served(&f, "Boot.SDI"), b"sdi");
        assert!(matches!(
            f.root.resolve("BOOT.SDI"),
            Err(PathError::Ambiguous(_))
        ));
    }

    #[test]
    fn missing_file_and_missing_directory_are_not_found() {
        let f = fixture();
        for name in [
            "grub/grub.cfg-01-52-54-00-12-34-56",
            "nope/file",
            "grub/grub.cfg/x",
        ] {
            assert!(
                matches!(f.root.resolve(name), Err(PathError::NotFound)),
                "{name}"
            );
        }
    }

    #[test]
    fn parent_components_are_refused() {
        let f = fixture();
        for name in [
            "../secret",
            "grub/../grub/grub.cfg",
            "\\..\\..\\etc\\passwd",
            "a/..",
        ] {
            assert!(f.root.resolve(name).unwrap_err().is_refusal(), "{name}");
        }
    }

    #[test]
    fn nul_byte_is_refused() {
        let f = fixture();
        assert!(f
            .root
            .resolve("grub/grub.cfg\0.png")
            .unwrap_err()
            .is_refusal());
    }

    #[test]
    fn absolute_host_path_stays_inside_the_root() {
        let f = fixture();
        assert!(matches!(
            f.root.resolve("/etc/passwd"),
            Err(PathError::NotFound)
        ));
    }

    #[test]
    fn symlink_to_a_file_outside_the_root_is_refused() {
        let f = fixture();
        symlink(
            f.outside.path().join("secret"),
            f.root.path().join("escape"),
        )
        .unwrap();
        assert!(f.root.resolve("escape").unwrap_err().is_refusal());
        assert!(f.root.resolve("ESCAPE").unwrap_err().is_refusal());
    }

    #[test]
    fn symlinked_directory_outside_the_root_is_refused() {
        let f = fixture();
        symlink(f.outside.path(), f.root.path().join("out")).unwrap();
        assert!(f.root.resolve("out/secret").unwrap_err().is_refusal());
        assert!(f.root.resolve("OUT\\SECRET").unwrap_err().is_refusal());
    }

    #[test]
    fn symlink_inside_the_root_is_followed() {
        let f = fixture();
        symlink("boot/x64/wdsmgfw.efi", f.root.path().join("bootx64.efi")).unwrap();
        symlink("grub", f.root.path().join("grub2")).unwrap();
        assert_eq!(served(&f, "bootx64.efi"), b"efi");
        assert_eq!(served(&f, "/GRUB2/grub.cfg"), b"cfg");
    }

    #[test]
    fn directories_and_empty_names_are_not_files() {
        let f = fixture();
        for name in ["", "/", "boot", "\\boot\\x64\\"] {
            assert!(
                matches!(f.root.resolve(name), Err(PathError::NotAFile)),
                "{name:?}"
            );
        }
    }

    #[test]
    fn root_reached_through_a_symlink_still_serves() {
        let f = fixture();
        let link_dir = tempfile::tempdir().unwrap();
        let link = link_dir.path().join("tftp");
        symlink(f.root.path(), &link).unwrap();
        let root = Root::new(&link).unwrap();
        assert_eq!(
            fs::read(root.resolve("grub/grub.cfg").unwrap()).unwrap(),
            b"cfg"
        );
    }
}
