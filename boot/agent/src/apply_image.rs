//! `apply_image`: a raw disk image streamed onto a block device, hashed while it is written,
//! flushed, then read back from the device and hashed again. The stream resumes with
//! `Range` from the offset already written when the connection breaks.
//!
//! The image goes straight to the disk even when the option downloads content first: the
//! boot environment runs from RAM and could not hold a disk image. The hash of the stream
//! fails the step on a mismatch, and the read-back proves the disk holds what was verified.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::console::say;
use crate::download::{self, Backoff, Expect, Sink, Source, TransferError};
use crate::hash::{self, Sha256Digest};
use crate::progress::Progress;

/// The device being written, from offset 0.
struct Device<'a> {
    file: &'a mut File,
    path: &'a Path,
    written: u64,
}

impl Sink for Device<'_> {
    fn written(&self) -> u64 {
        self.written
    }

    fn write(&mut self, buf: &[u8]) -> io::Result<()> {
        self.file.write_all(buf)?;
        self.written += buf.len() as u64;
        Ok(())
    }

    fn reset(&mut self) -> io::Result<()> {
        self.file.seek(SeekFrom::Start(0))?;
        self.written = 0;
        Ok(())
    }

    fn path(&self) -> &Path {
        self.path
    }
}

/// Writes the image from `source` onto `target` (a block device, or an existing regular
/// file in tests); with `expect.sha256`, fails on a hash mismatch of the stream or of the
/// bytes read back. Returns the SHA-256 of the stream.
pub fn apply_image(
    source: &mut dyn Source,
    target: &Path,
    expect: &Expect<'_>,
    backoff: &Backoff,
) -> Result<Sha256Digest, TransferError> {
    let write_err = |source| TransferError::Write {
        file: expect.file.to_owned(),
        path: target.to_owned(),
        source,
    };
    // Never create the target: a missing /dev/vda means a missing driver, and a regular
    // file created in /dev would swallow the image.
    let mut file = match OpenOptions::new().read(true).write(true).open(target) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(TransferError::NoTarget {
                file: expect.file.to_owned(),
                target: target.to_owned(),
            })
        }
        Err(e) => return Err(write_err(e)),
    };
    if crate::platform::is_disk(target, &file.metadata().map_err(write_err)?) {
        let capacity = file.seek(SeekFrom::End(0)).map_err(write_err)?;
        if capacity < expect.size {
            return Err(TransferError::TooSmall {
                file: expect.file.to_owned(),
                target: target.to_owned(),
                capacity,
                size: expect.size,
            });
        }
        file.seek(SeekFrom::Start(0)).map_err(write_err)?;
    }
    let mut hasher = Sha256::new();
    let mut progress = Progress::new(
        format!("{} -> {}", expect.file, target.display()),
        expect.size,
        0,
    );
    let mut device = Device {
        file: &mut file,
        path: target,
        written: 0,
    };
    download::transfer(
        source,
        &mut device,
        &mut hasher,
        expect,
        backoff,
        &mut progress,
    )?;
    say(progress.summary(expect.size));
    let digest: Sha256Digest = hasher.finalize().into();
    expect.check(&digest)?;
    if expect.sha256.is_none() {
        say(format!(
            "{}: SHA-256 not verified (direct_access): {}",
            expect.file,
            hash::to_hex(&digest)
        ));
    }
    file.sync_all().map_err(write_err)?;
    if let Some(expected) = expect.sha256 {
        say(format!(
            "{}: reading {} back to verify it",
            expect.file,
            target.display()
        ));
        let actual = read_back(&mut file, expect.size).map_err(write_err)?;
        if actual != expected {
            return Err(TransferError::ReadBack {
                file: expect.file.to_owned(),
                target: target.to_owned(),
                expected: hash::to_hex(&expected),
                actual: hash::to_hex(&actual),
            });
        }
        say(format!(
            "{}: {} verified, SHA-256 {}",
            expect.file,
            target.display(),
            hash::to_hex(&actual)
        ));
    }
    Ok(digest)
}

/// The SHA-256 of the first `size` bytes of the device, read from the device rather than
/// from the page cache the write left behind.
fn read_back(file: &mut File, size: u64) -> io::Result<Sha256Digest> {
    crate::platform::forget_cached(file);
    file.seek(SeekFrom::Start(0))?;
    let mut hasher = Sha256::new();
    let n = hash::update_from(&mut hasher, (&mut *file).take(size))?;
    if n != size {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("only {n} of {size} bytes could be read back"),
        ));
    }
    Ok(hasher.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::download::{HttpSource, LocalSource};
    use crate::fake_server::{range_reply, FakeServer};
    use crate::http::{Client, Url};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    fn quick() -> Backoff {
        Backoff {
            attempts: 3,
            first: Duration::from_millis(10),
            max: Duration::from_millis(10),
            total: Duration::from_secs(5),
        }
    }

    fn image(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 31 % 251) as u8).collect()
    }

    #[test]
    fn writes_an_image_onto_a_device_and_reads_it_back() {
        let img = image(3 << 20);
        let i = img.clone();
        let cuts = Arc::new(AtomicUsize::new(0));
        let c = cuts.clone();
        let srv = FakeServer::start(move |req| {
            let r = range_reply(req, &i);
            if c.fetch_add(1, Ordering::SeqCst) == 0 {
                r.cut_after(1_234_567)
            } else {
                r
            }
        });
        let dir = tempfile::tempdir().unwrap();
        let dev = dir.path().join("vda");
        // A "disk" larger than the image, with old data past the image's end.
        std::fs::write(&dev, vec![0xEEu8; (4 << 20) + 10]).unwrap();
        let client = Client::default();
        let mut src = HttpSource {
            client: &client,
            url: Url::parse(&srv.url("/content/abc")).unwrap(),
        };
        let sha: Sha256Digest = Sha256::digest(&img).into();
        let expect = Expect {
            file: "disk.img",
            size: img.len() as u64,
            sha256: Some(sha),
        };
        assert_eq!(apply_image(&mut src, &dev, &expect, &quick()).unwrap(), sha);
        let disk = std::fs::read(&dev).unwrap();
        assert_eq!(&disk[..img.len()], &img[..]);
        assert!(disk[img.len()..].iter().all(|b| *b == 0xEE));
        let ranges: Vec<_> = srv.requests().iter().map(|r| r.range_from()).collect();
        assert_eq!(ranges, [None, Some(1_234_567)]);
    }

    #[test]
    fn a_wrong_image_fails_naming_the_file_and_both_hashes() {
        let dir = tempfile::tempdir().unwrap();
        let src_path = dir.path().join("disk.img");
        let img = image(100_000);
        std::fs::write(&src_path, &img).unwrap();
        let dev = dir.path().join("vda");
        std::fs::write(&dev, b"").unwrap();
        let mut src = LocalSource { path: src_path };
        let expect = Expect {
            file: "disk.img",
            size: img.len() as u64,
            sha256: Some([7; 32]),
        };
        let err = apply_image(&mut src, &dev, &expect, &quick()).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("disk.img"), "{msg}");
        assert!(msg.contains(&hash::to_hex(&[7; 32])), "{msg}");
        assert!(msg.contains(&hash::to_hex(&Sha256::digest(&img))), "{msg}");
    }

    #[test]
    fn a_missing_device_is_not_created() {
        let dir = tempfile::tempdir().unwrap();
        let src_path = dir.path().join("disk.img");
        std::fs::write(&src_path, b"x").unwrap();
        let dev = dir.path().join("vda");
        let mut src = LocalSource { path: src_path };
        let expect = Expect {
            file: "disk.img",
            size: 1,
            sha256: None,
        };
        let err = apply_image(&mut src, &dev, &expect, &quick()).unwrap_err();
        assert!(matches!(err, TransferError::NoTarget { .. }), "{err}");
        assert!(!dev.exists());
    }
}
