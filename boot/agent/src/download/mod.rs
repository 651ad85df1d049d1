//! Downloads that resume and verify (docs/content.md): a file is written to `.<name>.part`
//! next to its destination while it is hashed; a broken connection is retried with
//! `Range: bytes=<part length>-`; the SHA-256 is compared with the policy's and only a match
//! is renamed into place. A mismatch deletes the part file, so nothing half-written is left.
//!
//! The rules are in [`decide`] and [`backoff`]; [`transfer`] is the loop shared with
//! writing an image onto a disk (`crate::apply_image`).

pub mod backoff;
pub mod decide;
pub mod source;

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use sha2::{Digest, Sha256};

pub use backoff::Backoff;
use decide::{Action, Fatal, Start};
pub use source::{HttpSource, LocalSource, Source};

use crate::console::say;
use crate::hash::{self, Sha256Digest};
use crate::progress::Progress;

/// Size of the copy buffer: large writes for disks, few syscalls for the hash.
pub const COPY_BUFFER: usize = 2 << 20;

/// Why a file could not be fetched or written. Each names the file as the policy does.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error("{file}: not found at {from}")]
    NotFound { file: String, from: String },
    #[error("{file}: {from} has {actual} bytes, the policy says {expected}")]
    Size {
        file: String,
        from: String,
        actual: u64,
        expected: u64,
    },
    #[error("{file}: {from} answered HTTP {status}")]
    Status {
        file: String,
        from: String,
        status: u16,
    },
    #[error("{file}: gave up after {attempts} failed attempts in a row from {from}: {last}")]
    GaveUp {
        file: String,
        from: String,
        attempts: u32,
        last: String,
    },
    #[error("{file}: cannot write {path}: {source}")]
    Write {
        file: String,
        path: PathBuf,
        source: io::Error,
    },
    #[error("{file}: SHA-256 mismatch: expected {expected}, got {actual}")]
    HashMismatch {
        file: String,
        expected: String,
        actual: String,
    },
    #[error(
        "{file}: written to {target}, but it reads back with SHA-256 {actual}, expected {expected}"
    )]
    ReadBack {
        file: String,
        target: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("{file}: the target {target} does not exist")]
    NoTarget { file: String, target: PathBuf },
    #[error("{file}: {target} has {capacity} bytes, the image has {size}")]
    TooSmall {
        file: String,
        target: PathBuf,
        capacity: u64,
        size: u64,
    },
}

impl TransferError {
    /// The file the error is about.
    pub fn file(&self) -> &str {
        match self {
            TransferError::NotFound { file, .. }
            | TransferError::Size { file, .. }
            | TransferError::Status { file, .. }
            | TransferError::GaveUp { file, .. }
            | TransferError::Write { file, .. }
            | TransferError::HashMismatch { file, .. }
            | TransferError::ReadBack { file, .. }
            | TransferError::NoTarget { file, .. }
            | TransferError::TooSmall { file, .. } => file,
        }
    }
}

/// What the policy says about a file.
#[derive(Debug, Clone)]
pub struct Expect<'a> {
    /// The file's name in messages (its path in the package).
    pub file: &'a str,
    pub size: u64,
    /// `None` when the deployment option does not verify (`direct_access`).
    pub sha256: Option<Sha256Digest>,
}

impl Expect<'_> {
    /// Fails unless `actual` is the expected hash (always passes when nothing is expected).
    pub fn check(&self, actual: &Sha256Digest) -> Result<(), TransferError> {
        match &self.sha256 {
            Some(exp) if exp != actual => Err(TransferError::HashMismatch {
                file: self.file.to_owned(),
                expected: hash::to_hex(exp),
                actual: hash::to_hex(actual),
            }),
            _ => Ok(()),
        }
    }
}

/// Where bytes of a transfer are written.
pub trait Sink {
    /// Bytes written so far.
    fn written(&self) -> u64;
    /// Appends.
    fn write(&mut self, buf: &[u8]) -> io::Result<()>;
    /// Back to zero bytes written.
    fn reset(&mut self) -> io::Result<()>;
    /// Where, for messages.
    fn path(&self) -> &Path;
}

/// Copies the file from `source` into `sink` until it has `expect.size` bytes, resuming
/// after broken connections as [`decide`] says and waiting as `backoff` says. `hasher` must
/// cover the bytes already in the sink; on return it covers all of them.
pub fn transfer(
    source: &mut dyn Source,
    sink: &mut dyn Sink,
    hasher: &mut Sha256,
    expect: &Expect<'_>,
    backoff: &Backoff,
    progress: &mut Progress,
) -> Result<(), TransferError> {
    let file = expect.file;
    let from = source.describe();
    let mut buf = vec![0u8; COPY_BUFFER.min(expect.size.max(1) as usize)];
    let mut failures = 0u32;
    let mut failing_since = Instant::now();
    let write_err = |sink: &dyn Sink, source| TransferError::Write {
        file: file.to_owned(),
        path: sink.path().to_owned(),
        source,
    };
    let discard = |sink: &mut dyn Sink, hasher: &mut Sha256| {
        *hasher = Sha256::new();
        sink.reset().map_err(|e| write_err(sink, e))
    };
    loop {
        let before = sink.written();
        if before == expect.size {
            return Ok(());
        }
        let failure = match source.open(before) {
            Err(e) => e,
            Ok((reply, mut body)) => match decide::on_reply(before, reply, expect.size) {
                Action::Fail(f) => {
                    return Err(match f {
                        Fatal::NotFound => TransferError::NotFound {
                            file: file.to_owned(),
                            from,
                        },
                        Fatal::Size { server } => TransferError::Size {
                            file: file.to_owned(),
                            from,
                            actual: server,
                            expected: expect.size,
                        },
                        Fatal::Status(status) => TransferError::Status {
                            file: file.to_owned(),
                            from,
                            status,
                        },
                    });
                }
                Action::Retry(why) => why,
                Action::DiscardAndRetry(why) => {
                    discard(sink, hasher)?;
                    why
                }
                action => {
                    if action == Action::StartOver {
                        say(format!(
                            "{file}: the server sent the whole file, starting over"
                        ));
                        discard(sink, hasher)?;
                        progress.restart(0);
                    }
                    match copy(&mut *body, sink, hasher, expect.size, progress, &mut buf) {
                        Ok(()) if sink.written() == expect.size => return Ok(()),
                        Ok(()) => format!(
                            "the connection closed at byte {} of {}",
                            sink.written(),
                            expect.size
                        ),
                        Err(CopyError::Read(e)) => format!(
                            "the connection broke at byte {} of {}: {e}",
                            sink.written(),
                            expect.size
                        ),
                        Err(CopyError::TooLong) => {
                            discard(sink, hasher)?;
                            format!("the server sent more than {} bytes", expect.size)
                        }
                        Err(CopyError::Write(e)) => return Err(write_err(sink, e)),
                    }
                }
            },
        };
        if sink.written() > before {
            failures = 0;
            failing_since = Instant::now();
        }
        failures += 1;
        match backoff.delay(failures, failing_since.elapsed()) {
            Some(d) => {
                say(format!(
                    "{file}: {failure}; retrying from byte {} in {:.1} s",
                    sink.written(),
                    d.as_secs_f64()
                ));
                std::thread::sleep(d);
            }
            None => {
                return Err(TransferError::GaveUp {
                    file: file.to_owned(),
                    from,
                    attempts: failures,
                    last: failure,
                })
            }
        }
    }
}

enum CopyError {
    Read(io::Error),
    Write(io::Error),
    TooLong,
}

/// Copies `body` to its end, in buffer-sized writes.
fn copy(
    body: &mut dyn Read,
    sink: &mut dyn Sink,
    hasher: &mut Sha256,
    expected: u64,
    progress: &mut Progress,
    buf: &mut [u8],
) -> Result<(), CopyError> {
    loop {
        let (n, err) = fill(body, buf, hasher);
        if n > 0 {
            if sink.written() + n as u64 > expected {
                return Err(CopyError::TooLong);
            }
            sink.write(&buf[..n]).map_err(CopyError::Write)?;
            progress.update(sink.written());
        }
        if let Some(e) = err {
            return Err(CopyError::Read(e));
        }
        if n < buf.len() {
            return Ok(());
        }
    }
}

/// Reads until `buf` is full or the body ends, hashing each read while its bytes are still
/// in the CPU cache (the buffer is larger than the cache, for large writes). Also returns
/// the error that stopped it, with the bytes read before it: they are good and worth keeping.
fn fill(body: &mut dyn Read, buf: &mut [u8], hasher: &mut Sha256) -> (usize, Option<io::Error>) {
    let mut n = 0;
    while n < buf.len() {
        let end = (n + hash::HASH_BUFFER).min(buf.len());
        match body.read(&mut buf[n..end]) {
            Ok(0) => break,
            Ok(k) => {
                hasher.update(&buf[n..n + k]);
                n += k;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (n, Some(e)),
        }
    }
    (n, None)
}

/// Reads the whole file from `source` and checks its size and SHA-256 without keeping the
/// bytes: content that is already local (a full media) verified before the first step.
pub fn verify_source(
    source: &mut dyn Source,
    expect: &Expect<'_>,
    backoff: &Backoff,
) -> Result<Sha256Digest, TransferError> {
    let mut sink = Discard {
        written: 0,
        path: PathBuf::from(source.describe()),
    };
    let mut hasher = Sha256::new();
    let mut progress = Progress::new(expect.file, expect.size, 0);
    transfer(
        source,
        &mut sink,
        &mut hasher,
        expect,
        backoff,
        &mut progress,
    )?;
    let digest = hasher.finalize().into();
    expect.check(&digest)?;
    say(format!(
        "{}, SHA-256 verified",
        progress.summary(sink.written)
    ));
    Ok(digest)
}

/// A sink that only counts.
struct Discard {
    written: u64,
    path: PathBuf,
}

impl Sink for Discard {
    fn written(&self) -> u64 {
        self.written
    }

    fn write(&mut self, buf: &[u8]) -> io::Result<()> {
        self.written += buf.len() as u64;
        Ok(())
    }

    fn reset(&mut self) -> io::Result<()> {
        self.written = 0;
        Ok(())
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

/// The temporary file of `dest`: `.<name>.part` in the same directory, so the final rename
/// stays on one file system.
pub fn part_path(dest: &Path) -> PathBuf {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "download".into());
    dest.with_file_name(format!(".{name}.part"))
}

/// A part file.
struct PartFile {
    file: File,
    path: PathBuf,
    len: u64,
}

impl Sink for PartFile {
    fn written(&self) -> u64 {
        self.len
    }

    fn write(&mut self, buf: &[u8]) -> io::Result<()> {
        self.file.write_all(buf)?;
        self.len += buf.len() as u64;
        Ok(())
    }

    fn reset(&mut self) -> io::Result<()> {
        self.file.set_len(0)?;
        self.file.seek(SeekFrom::Start(0))?;
        self.len = 0;
        Ok(())
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

/// Fetches a file from `source` to `dest` through its part file, resuming a part file left
/// by an earlier attempt (its bytes are hashed first, so the hash covers the whole file).
/// Returns the SHA-256 of what was written. On any error the part file is deleted and `dest`
/// is untouched.
pub fn fetch_file(
    source: &mut dyn Source,
    dest: &Path,
    expect: &Expect<'_>,
    backoff: &Backoff,
) -> Result<Sha256Digest, TransferError> {
    let part = part_path(dest);
    let write_err = |path: &Path, source| TransferError::Write {
        file: expect.file.to_owned(),
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = dest.parent() {
        std::fs::create_dir_all(dir).map_err(|e| write_err(dir, e))?;
    }
    let result =
        fetch_into_part(source, &part, expect, backoff).and_then(|(file, digest, summary)| {
            expect.check(&digest)?;
            say(format!(
                "{summary}, {}",
                if expect.sha256.is_some() {
                    "SHA-256 verified"
                } else {
                    "SHA-256 not verified"
                }
            ));
            file.sync_all().map_err(|e| write_err(&part, e))?;
            std::fs::rename(&part, dest).map_err(|e| write_err(dest, e))?;
            if let Some(dir) = dest.parent() {
                // The rename is durable once the directory is synced; a failure here loses
                // nothing that the next attempt cannot redo.
                let _ = File::open(dir).and_then(|d| d.sync_all());
            }
            Ok(digest)
        });
    if result.is_err() {
        let _ = std::fs::remove_file(&part);
    }
    result
}

fn fetch_into_part(
    source: &mut dyn Source,
    part: &Path,
    expect: &Expect<'_>,
    backoff: &Backoff,
) -> Result<(File, Sha256Digest, String), TransferError> {
    let write_err = |source| TransferError::Write {
        file: expect.file.to_owned(),
        path: part.to_owned(),
        source,
    };
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(part)
        .map_err(write_err)?;
    let existing = file.metadata().map_err(write_err)?.len();
    let mut hasher = Sha256::new();
    let mut len = 0;
    match decide::start(existing, expect.size) {
        Start::Fresh => {}
        Start::Discard => file.set_len(0).map_err(write_err)?,
        Start::Resume(_) | Start::Complete => {
            file.seek(SeekFrom::Start(0)).map_err(write_err)?;
            match hash::update_from(&mut hasher, (&mut file).take(existing)) {
                Ok(read) if read == existing => {
                    say(format!(
                        "{}: resuming from byte {existing} of an earlier attempt",
                        expect.file
                    ));
                    len = existing;
                }
                _ => {
                    hasher = Sha256::new();
                    file.set_len(0).map_err(write_err)?;
                }
            }
        }
    }
    file.seek(SeekFrom::Start(len)).map_err(write_err)?;
    let mut sink = PartFile {
        file,
        path: part.to_owned(),
        len,
    };
    let mut progress = Progress::new(expect.file, expect.size, len);
    transfer(
        source,
        &mut sink,
        &mut hasher,
        expect,
        backoff,
        &mut progress,
    )?;
    let summary = progress.summary(sink.len);
    Ok((sink.file, hasher.finalize().into(), summary))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake_server::{range_reply, FakeServer, Reply as R};
    use crate::http::{Client, Url};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    fn quick() -> Backoff {
        Backoff {
            attempts: 4,
            first: Duration::from_millis(10),
            max: Duration::from_millis(40),
            total: Duration::from_secs(5),
        }
    }

    fn data(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 % 253) as u8).collect()
    }

    fn sha(d: &[u8]) -> Sha256Digest {
        Sha256::digest(d).into()
    }

    fn fetch(srv: &FakeServer, dest: &Path, d: &[u8]) -> Result<Sha256Digest, TransferError> {
        let client = Client::default();
        let mut src = HttpSource {
            client: &client,
            url: Url::parse(&srv.url("/content/x")).unwrap(),
        };
        let expect = Expect {
            file: "disk.img",
            size: d.len() as u64,
            sha256: Some(sha(d)),
        };
        fetch_file(&mut src, dest, &expect, &quick())
    }

    #[test]
    fn downloads_and_verifies_then_renames_into_place() {
        let d = data(300_000);
        let dd = d.clone();
        let srv = FakeServer::start(move |req| range_reply(req, &dd));
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("pkg/disk.img");
        assert_eq!(fetch(&srv, &dest, &d).unwrap(), sha(&d));
        assert_eq!(std::fs::read(&dest).unwrap(), d);
        assert!(!part_path(&dest).exists());
    }

    #[test]
    fn a_hash_mismatch_leaves_no_file_in_place() {
        let d = data(100_000);
        let mut altered = d.clone();
        altered[5000] ^= 1;
        let srv = FakeServer::start(move |req| range_reply(req, &altered));
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("disk.img");
        let err = fetch(&srv, &dest, &d).unwrap_err();
        match &err {
            TransferError::HashMismatch {
                file,
                expected,
                actual,
            } => {
                assert_eq!(file, "disk.img");
                assert_eq!(expected, &hash::to_hex(&sha(&d)));
                assert_ne!(expected, actual);
            }
            e => panic!("unexpected error {e}"),
        }
        assert!(err.to_string().contains("disk.img"));
        assert!(!dest.exists());
        assert!(!part_path(&dest).exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn resumes_after_a_cut_with_the_right_bytes_and_hash() {
        let d = data(3 << 20);
        let dd = d.clone();
        let cuts = Arc::new(AtomicUsize::new(0));
        let c = cuts.clone();
        // The first two answers break off; the second is a 206 after the first cut.
        let srv = FakeServer::start(move |req| {
            let reply = range_reply(req, &dd);
            match c.fetch_add(1, Ordering::SeqCst) {
                0 => reply.cut_after(1_000_000),
                1 => reply.cut_after(500_000),
                _ => reply,
            }
        });
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("disk.img");
        assert_eq!(fetch(&srv, &dest, &d).unwrap(), sha(&d));
        assert_eq!(std::fs::read(&dest).unwrap(), d);
        let ranges: Vec<_> = srv.requests().iter().map(|r| r.range_from()).collect();
        assert_eq!(ranges, [None, Some(1_000_000), Some(1_500_000)]);
    }

    #[test]
    fn resumes_a_part_file_left_by_an_earlier_attempt() {
        let d = data(200_000);
        let dd = d.clone();
        let srv = FakeServer::start(move |req| range_reply(req, &dd));
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("disk.img");
        std::fs::write(part_path(&dest), &d[..123_456]).unwrap();
        assert_eq!(fetch(&srv, &dest, &d).unwrap(), sha(&d));
        assert_eq!(std::fs::read(&dest).unwrap(), d);
        assert_eq!(srv.requests()[0].range_from(), Some(123_456));
    }

    #[test]
    fn a_200_to_a_range_request_starts_over() {
        let d = data(50_000);
        let dd = d.clone();
        let srv = FakeServer::start(move |_| R::new(200).body(dd.clone()));
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("f");
        std::fs::write(part_path(&dest), b"garbage that is not the start").unwrap();
        assert_eq!(fetch(&srv, &dest, &d).unwrap(), sha(&d));
        assert_eq!(std::fs::read(&dest).unwrap(), d);
    }

    #[test]
    fn a_416_discards_the_part_and_starts_over() {
        let d = data(50_000);
        let dd = d.clone();
        let srv = FakeServer::start(move |req| {
            if req.range_from().is_some() {
                R::new(416)
            } else {
                R::new(200).body(dd.clone())
            }
        });
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("f");
        std::fs::write(part_path(&dest), &d[..10]).unwrap();
        assert_eq!(fetch(&srv, &dest, &d).unwrap(), sha(&d));
        let ranges: Vec<_> = srv.requests().iter().map(|r| r.range_from()).collect();
        assert_eq!(ranges, [Some(10), None]);
    }

    #[test]
    fn a_longer_part_file_starts_over() {
        let d = data(1000);
        let dd = d.clone();
        let srv = FakeServer::start(move |req| range_reply(req, &dd));
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("f");
        std::fs::write(part_path(&dest), data(2000)).unwrap();
        assert_eq!(fetch(&srv, &dest, &d).unwrap(), sha(&d));
        assert_eq!(srv.requests()[0].range_from(), None);
    }

    #[test]
    fn gives_up_on_a_server_that_keeps_breaking_off() {
        let d = data(10_000);
        let dd = d.clone();
        let srv = FakeServer::start(move |_| R::new(200).body(dd.clone()).cut_after(0));
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("f");
        match fetch(&srv, &dest, &d) {
            Err(TransferError::GaveUp { attempts, .. }) => assert_eq!(attempts, 4),
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(srv.requests().len(), 4);
        assert!(!part_path(&dest).exists());
    }

    #[test]
    fn a_missing_file_or_another_size_fails_at_once() {
        let srv = FakeServer::start(|_| R::new(404));
        let dir = tempfile::tempdir().unwrap();
        let d = data(10);
        let err = fetch(&srv, &dir.path().join("f"), &d).unwrap_err();
        assert!(matches!(err, TransferError::NotFound { .. }), "{err}");
        let srv = FakeServer::start(|_| R::new(200).body(vec![0; 11]));
        let err = fetch(&srv, &dir.path().join("f"), &d).unwrap_err();
        assert!(
            matches!(err, TransferError::Size { actual: 11, .. }),
            "{err}"
        );
        assert_eq!(srv.requests().len(), 1);
    }

    #[test]
    fn chunked_content_is_verified_too() {
        let d = data(70_000);
        let dd = d.clone();
        let srv = FakeServer::start(move |_| R::new(200).body(dd.clone()).chunked(&[1000, 30_000]));
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("f");
        assert_eq!(fetch(&srv, &dest, &d).unwrap(), sha(&d));
    }

    #[test]
    fn copies_a_local_file_with_verification() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("cache");
        let d = data(5000);
        std::fs::write(&src, &d).unwrap();
        let mut source = LocalSource { path: src };
        let dest = dir.path().join("out/motd");
        let expect = Expect {
            file: "etc/motd",
            size: 5000,
            sha256: Some(sha(&d)),
        };
        fetch_file(&mut source, &dest, &expect, &quick()).unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), d);
        let wrong = Expect {
            sha256: Some([0; 32]),
            ..expect
        };
        let err = fetch_file(&mut source, &dir.path().join("out/x"), &wrong, &quick());
        assert!(matches!(err, Err(TransferError::HashMismatch { .. })));
    }

    #[test]
    fn verifies_a_local_file_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("content");
        let d = data(300_000);
        std::fs::write(&path, &d).unwrap();
        let mut source = LocalSource { path: path.clone() };
        let expect = Expect {
            file: "disk.img",
            size: d.len() as u64,
            sha256: Some(sha(&d)),
        };
        assert_eq!(
            verify_source(&mut source, &expect, &quick()).unwrap(),
            sha(&d)
        );
        let mut altered = d.clone();
        altered[299_999] ^= 1;
        std::fs::write(&path, &altered).unwrap();
        let err = verify_source(&mut source, &expect, &quick()).unwrap_err();
        assert!(matches!(err, TransferError::HashMismatch { .. }), "{err}");
        std::fs::write(&path, &d[..10]).unwrap();
        let err = verify_source(&mut source, &expect, &quick()).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "disk.img: {} has 10 bytes, the policy says 300000",
                path.display()
            )
        );
        std::fs::remove_file(&path).unwrap();
        let err = verify_source(&mut source, &expect, &quick()).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("disk.img: not found at {}", path.display())
        );
    }

    #[test]
    fn part_files_are_hidden_next_to_the_destination() {
        assert_eq!(
            part_path(Path::new("/var/lib/netdeploy/packages/disk/disk.img")),
            Path::new("/var/lib/netdeploy/packages/disk/.disk.img.part")
        );
    }
}
