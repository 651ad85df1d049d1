//! The content library: files stored once by SHA-256 under `<data_dir>/content/`
//! (docs/content.md). A file is hashed once, when it is imported; serving it later never hashes
//! it again.
//!
//! Import writes to a temporary file in the library, syncs it, then renames it to its hash, so
//! a crash never leaves a half-written file under a hash name.

pub mod image_package;
pub mod upstream;

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::catalog::model::ContentFile;

/// Why content could not be imported or found.
#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot write to the content library {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("{0:?} is not a SHA-256 in lowercase hex")]
    BadHash(String),
    #[error(
        "{path} in the content library has changed: sha256 {got}, {got_size} bytes, where \
         {sha256}, {size} bytes were imported"
    )]
    Changed {
        path: PathBuf,
        sha256: String,
        size: u64,
        got: String,
        got_size: u64,
    },
}

/// Copies `input` (at `from`) to `output` (at `to`) in 1 MiB pieces, hashing what passes and
/// calling `progress` with the bytes so far; the SHA-256 in lowercase hex and the size.
fn copy_hashed(
    input: &mut File,
    from: &Path,
    output: &mut File,
    to: &Path,
    progress: &mut dyn FnMut(u64),
) -> Result<(String, u64), ContentError> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = input.read(&mut buf).map_err(|e| ContentError::Read {
            path: from.to_owned(),
            source: e,
        })?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        output
            .write_all(&buf[..n])
            .map_err(|e| ContentError::Write {
                path: to.to_owned(),
                source: e,
            })?;
        size += n as u64;
        progress(size);
    }
    Ok((hex(&hasher.finalize()), size))
}

/// The library directory.
#[derive(Debug, Clone)]
pub struct Library {
    root: PathBuf,
}

pub use netdeploy_wire::hex::{decode as unhex, encode as hex};

/// Standard base64 with padding (RFC 4648 section 4), for `Repr-Digest`.
pub fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for c in bytes.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= c.len() {
                out.push(char::from(A[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl Library {
    /// The library under `data_dir`.
    pub fn new(data_dir: &Path) -> Library {
        Library {
            root: data_dir.join("content"),
        }
    }

    /// Where the file with this hash is (or would be) stored.
    pub fn path_of(&self, sha256: &str) -> Result<PathBuf, ContentError> {
        if !is_sha256(sha256) {
            return Err(ContentError::BadHash(sha256.into()));
        }
        Ok(self.root.join(&sha256[..2]).join(sha256))
    }

    /// The directory of files being imported or fetched.
    pub fn temp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// A new temporary file name in [`Library::temp_dir`] (created with the directory).
    pub fn temp_path(&self, what: &str) -> PathBuf {
        let dir = self.temp_dir();
        let _ = std::fs::create_dir_all(&dir);
        dir.join(format!("{what}-{}-{}", std::process::id(), unique()))
    }

    /// Moves a file whose SHA-256 the caller checked into the library under that hash (an
    /// identical file already there is kept and `tmp` removed), durably.
    pub fn adopt(&self, tmp: &Path, sha256: &str) -> Result<(), ContentError> {
        let dest = self.path_of(sha256)?;
        let write_err = |p: &Path| {
            let p = p.to_owned();
            move |e| ContentError::Write { path: p, source: e }
        };
        if dest.is_file() {
            let _ = std::fs::remove_file(tmp);
            return Ok(());
        }
        let dir = dest.parent().expect("hash paths have a parent");
        std::fs::create_dir_all(dir).map_err(write_err(dir))?;
        std::fs::rename(tmp, &dest).map_err(write_err(&dest))?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(write_err(dir))
    }

    /// True when the file with this hash is in the library.
    pub fn has(&self, sha256: &str) -> bool {
        self.path_of(sha256).map(|p| p.is_file()).unwrap_or(false)
    }

    /// Hashes `source` while copying it into the library; an identical file already there is
    /// kept and the copy discarded. `path` is the name the file has inside its package.
    pub fn import(&self, source: &Path, path: &str) -> Result<ContentFile, ContentError> {
        self.import_with_progress(source, path, &mut |_| {})
    }

    /// [`Library::import`], calling `progress` with the bytes read so far after every read.
    pub fn import_with_progress(
        &self,
        source: &Path,
        path: &str,
        progress: &mut dyn FnMut(u64),
    ) -> Result<ContentFile, ContentError> {
        let read_err = |e| ContentError::Read {
            path: source.to_owned(),
            source: e,
        };
        let write_err = |p: &Path| {
            let p = p.to_owned();
            move |e| ContentError::Write { path: p, source: e }
        };
        let tmp_dir = self.root.join("tmp");
        std::fs::create_dir_all(&tmp_dir).map_err(write_err(&tmp_dir))?;
        let mut input = File::open(source).map_err(read_err)?;
        let tmp = tmp_dir.join(format!("import-{}-{}", std::process::id(), unique()));
        let mut out = File::create(&tmp).map_err(write_err(&tmp))?;
        // A failure from here on (the source cannot be read, the disk is full) removes the
        // temporary file: nothing half-imported stays behind.
        let stored = (|| {
            let (sha256, size) = copy_hashed(&mut input, source, &mut out, &tmp, progress)?;
            out.sync_all().map_err(write_err(&tmp))?;
            let dest = self.path_of(&sha256)?;
            if dest.is_file() {
                let _ = std::fs::remove_file(&tmp);
            } else {
                let dir = dest.parent().expect("hash paths have a parent");
                std::fs::create_dir_all(dir).map_err(write_err(dir))?;
                std::fs::rename(&tmp, &dest).map_err(write_err(&dest))?;
                File::open(dir)
                    .and_then(|d| d.sync_all())
                    .map_err(write_err(dir))?;
            }
            Ok((sha256, size))
        })();
        let (sha256, size) = stored.inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })?;
        Ok(ContentFile {
            path: path.to_owned(),
            size,
            sha256,
        })
    }

    /// Copies the library's copy of `file` to `to`, checking its hash and size on the way, so
    /// what leaves the library (full media) is what was imported; a changed file is refused and
    /// `to` removed.
    pub fn export(&self, file: &ContentFile, to: &Path) -> Result<(), ContentError> {
        let from = self.path_of(&file.sha256)?;
        let mut input = File::open(&from).map_err(|e| ContentError::Read {
            path: from.clone(),
            source: e,
        })?;
        let write_err = |e| ContentError::Write {
            path: to.to_owned(),
            source: e,
        };
        let mut out = File::create(to).map_err(write_err)?;
        let (got, got_size) = copy_hashed(&mut input, &from, &mut out, to, &mut |_| {})?;
        out.sync_all().map_err(write_err)?;
        if got != file.sha256 || got_size != file.size {
            let _ = std::fs::remove_file(to);
            return Err(ContentError::Changed {
                path: from,
                sha256: file.sha256.clone(),
                size: file.size,
                got,
                got_size,
            });
        }
        Ok(())
    }
}

/// A file the library holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub sha256: String,
    pub size: u64,
}

impl Library {
    /// Every file stored under its hash, in hash order.
    pub fn stored(&self) -> io::Result<Vec<Stored>> {
        let mut out = Vec::new();
        let dirs = match std::fs::read_dir(&self.root) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e),
        };
        for dir in dirs {
            let dir = dir?;
            let name = dir.file_name().to_string_lossy().into_owned();
            if name.len() != 2 || !dir.file_type()?.is_dir() {
                continue;
            }
            for f in std::fs::read_dir(dir.path())? {
                let f = f?;
                let sha256 = f.file_name().to_string_lossy().into_owned();
                if is_sha256(&sha256) && sha256.starts_with(&name) {
                    out.push(Stored {
                        sha256,
                        size: f.metadata()?.len(),
                    });
                }
            }
        }
        out.sort_by(|a, b| a.sha256.cmp(&b.sha256));
        Ok(out)
    }

    /// Removes the file with this hash from the library.
    pub fn remove(&self, sha256: &str) -> Result<(), ContentError> {
        let path = self.path_of(sha256)?;
        std::fs::remove_file(&path).map_err(|e| ContentError::Write { path, source: e })
    }
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_files_are_stored_once_under_their_hash() {
        let dir = tempfile::tempdir().unwrap();
        let lib = Library::new(dir.path());
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        std::fs::write(&a, b"abc").unwrap();
        std::fs::write(&b, b"abc").unwrap();
        let fa = lib.import(&a, "x/a").unwrap();
        let fb = lib.import(&b, "y/b").unwrap();
        assert_eq!(
            fa.sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(fa.sha256, fb.sha256);
        assert_eq!(fa.size, 3);
        assert_eq!(
            std::fs::read(lib.path_of(&fa.sha256).unwrap()).unwrap(),
            b"abc"
        );
        let stored: Vec<_> = walk(&dir.path().join("content"));
        assert_eq!(stored.len(), 1, "{stored:?}");
    }

    fn walk(p: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(p).unwrap() {
            let e = e.unwrap().path();
            if e.is_dir() {
                out.extend(walk(&e));
            } else {
                out.push(e);
            }
        }
        out
    }

    #[test]
    fn export_copies_what_was_imported_and_refuses_a_changed_file() {
        let dir = tempfile::tempdir().unwrap();
        let lib = Library::new(&dir.path().join("data"));
        let src = dir.path().join("disk.img");
        std::fs::write(&src, b"the image").unwrap();
        let f = lib.import(&src, "disk.img").unwrap();
        let out = dir.path().join("out");
        lib.export(&f, &out).unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), b"the image");

        std::fs::write(lib.path_of(&f.sha256).unwrap(), b"the imagE").unwrap();
        let err = lib.export(&f, &out).unwrap_err().to_string();
        assert!(err.contains("has changed"), "{err}");
        assert!(!out.exists(), "a changed file is not left behind");
    }

    #[test]
    fn a_failed_import_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let lib = Library::new(dir.path());
        // A directory opens but cannot be read: the copy fails after the temporary file exists.
        let err = lib.import(dir.path(), "x").unwrap_err().to_string();
        assert!(err.contains("cannot read"), "{err}");
        let left: Vec<_> = std::fs::read_dir(dir.path().join("content/tmp"))
            .unwrap()
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn the_library_lists_and_removes_what_it_stores() {
        let dir = tempfile::tempdir().unwrap();
        let lib = Library::new(dir.path());
        let a = dir.path().join("a");
        std::fs::write(&a, b"abc").unwrap();
        let f = lib.import(&a, "a").unwrap();
        assert_eq!(
            lib.stored().unwrap(),
            vec![Stored {
                sha256: f.sha256.clone(),
                size: 3
            }]
        );
        lib.remove(&f.sha256).unwrap();
        assert!(lib.stored().unwrap().is_empty());
        assert!(!lib.has(&f.sha256));
    }

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(i.as_bytes()), o);
        }
        assert_eq!(unhex("00ff10"), Some(vec![0, 255, 16]));
    }

    #[test]
    fn hashes_are_checked_before_they_become_paths() {
        let lib = Library::new(Path::new("/tmp"));
        assert!(lib.path_of("../../etc/passwd").is_err());
        assert!(lib.path_of(&"A".repeat(64)).is_err());
    }
}
