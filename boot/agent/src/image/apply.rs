//! Apply: an image (docs/image-format.md) onto a block device or partition, chunk by chunk.
//!
//! The index is fetched whole and checked against its SHA-256 first. Then each chunk is
//! fetched into memory, checked against the SHA-256 the index gives it, decompressed, and
//! only then written: a damaged or tampered chunk fails the apply naming its index, with
//! none of its bytes on the target. Zero ranges are zeroed by the device (or punched out of
//! a file), never sent. A journal beside the target records the next chunk once the chunks
//! before it are on stable storage, so a cut apply, run again, resumes where it stopped.

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use netdeploy_wire::image::{chunk_file, Chunk, Extent, Index, INDEX_FILE, MAX_COMPRESSED};
use sha2::{Digest, Sha256};

use super::ImageError;
use crate::console::say;
use crate::download::{self, Backoff, Expect, HttpSource, LocalSource, Sink, Source};
use crate::hash::{self, Sha256Digest};
use crate::http::{Client, Url};
use crate::platform;
use crate::progress::Progress;

/// Where the image's files are.
pub enum Store<'a> {
    /// The server's content library: `<base>/content/<sha256>` for the index and each chunk.
    Http { client: &'a Client, base: Url },
    /// A directory as capture wrote it (a test, an operator's copy).
    Dir(PathBuf),
    /// A full media's content directory: the index and each chunk named by their SHA-256
    /// (docs/media.md).
    Content(PathBuf),
}

impl Store<'_> {
    fn index_source(
        &self,
        sha256: Option<&Sha256Digest>,
    ) -> Result<Box<dyn Source + '_>, ImageError> {
        match self {
            Store::Http { client, base } => {
                let sha = sha256.ok_or(ImageError::IndexHashNeeded)?;
                Ok(Box::new(HttpSource {
                    client,
                    url: content_url(base, sha)?,
                }))
            }
            Store::Dir(dir) => Ok(Box::new(LocalSource {
                path: dir.join(INDEX_FILE),
            })),
            Store::Content(dir) => {
                let sha = sha256.ok_or(ImageError::IndexHashNeeded)?;
                Ok(Box::new(LocalSource {
                    path: crate::full_media::content_file(&dir.join(hash::to_hex(sha))),
                }))
            }
        }
    }

    fn chunk_source(
        &self,
        i: usize,
        sha256: &Sha256Digest,
    ) -> Result<Box<dyn Source + '_>, ImageError> {
        match self {
            Store::Http { client, base } => Ok(Box::new(HttpSource {
                client,
                url: content_url(base, sha256)?,
            })),
            Store::Dir(dir) => Ok(Box::new(LocalSource {
                path: dir.join(chunk_file(i)),
            })),
            Store::Content(dir) => Ok(Box::new(LocalSource {
                path: crate::full_media::content_file(&dir.join(hash::to_hex(sha256))),
            })),
        }
    }
}

fn content_url(base: &Url, sha256: &Sha256Digest) -> Result<Url, ImageError> {
    base.join(&format!("/content/{}", hash::to_hex(sha256)))
        .map_err(|e| ImageError::Url(e.to_string()))
}

/// Which image, as the policy names it.
#[derive(Debug, Clone)]
pub struct ImageRef<'a> {
    /// The index's name in messages (its path in the package).
    pub name: &'a str,
    /// The index's size and SHA-256; the SHA-256 may be absent only for a [`Store::Dir`].
    pub index_size: u64,
    pub index_sha256: Option<Sha256Digest>,
}

/// How an apply runs.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// The journal file (see the module documentation).
    pub journal: PathBuf,
    /// Data bytes written between two syncs of the target and journal updates: a resume
    /// redoes at most this much. 0 syncs after every chunk.
    pub journal_every: u64,
    pub backoff: Backoff,
}

impl ApplyOptions {
    /// Defaults with the journal at `journal`.
    pub fn new(journal: PathBuf) -> ApplyOptions {
        ApplyOptions {
            journal,
            journal_every: 64 << 20,
            backoff: Backoff::default(),
        }
    }
}

/// What an apply did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The chunk this run started at (0 unless resumed).
    pub resumed_at: usize,
    pub chunks: usize,
    /// Data bytes written by this run.
    pub written: u64,
    pub zeroed: u64,
}

/// Applies the image `image` from `store` onto `target`, an existing block device or file
/// at least as large as the image.
pub fn apply(
    store: &Store<'_>,
    image: &ImageRef<'_>,
    target: &Path,
    opts: &ApplyOptions,
) -> Result<Applied, ImageError> {
    let name = image.name;
    let (index, index_sha) = fetch_index(store, image, &opts.backoff)?;
    let target_file = open_target(name, target, index.size)?;
    let write_err = |source| ImageError::Write {
        image: name.to_owned(),
        target: target.to_owned(),
        source,
    };
    let journal = Journal {
        path: &opts.journal,
        image: hash::to_hex(&index_sha),
    };
    let start = journal.read().min(index.chunks.len());
    if start > 0 {
        say(format!(
            "{name}: resuming at chunk {start} of {} ({})",
            index.chunks.len(),
            opts.journal.display()
        ));
    }
    let zeroed = zero_ranges(&target_file, &index.zeros).map_err(write_err)?;
    let total: u64 = index.chunks[start..]
        .iter()
        .map(|c| c.uncompressed_len)
        .sum();
    let mut progress = Progress::new(format!("{name} -> {}", target.display()), total, 0);
    let mut written = 0u64;
    let mut since_sync = 0u64;
    for (i, chunk) in index.chunks.iter().enumerate().skip(start) {
        let compressed = fetch_chunk(store, name, i, chunk, &opts.backoff)?;
        write_chunk(name, i, chunk, &compressed, &target_file, target)?;
        written += chunk.uncompressed_len;
        since_sync += chunk.uncompressed_len;
        progress.update(written);
        if since_sync >= opts.journal_every && i + 1 < index.chunks.len() {
            target_file.sync_data().map_err(write_err)?;
            journal.write(i + 1)?;
            since_sync = 0;
        }
    }
    target_file.sync_all().map_err(write_err)?;
    journal.clear()?;
    say(format!(
        "{}: {} chunks, {} bytes zeroed, SHA-256 of every chunk verified",
        progress.summary(written),
        index.chunks.len() - start,
        zeroed
    ));
    Ok(Applied {
        resumed_at: start,
        chunks: index.chunks.len(),
        written,
        zeroed,
    })
}

/// Fetches the index whole, checked against the policy's SHA-256, and decodes it; returns it
/// with its SHA-256.
pub(crate) fn fetch_index(
    store: &Store<'_>,
    image: &ImageRef<'_>,
    backoff: &Backoff,
) -> Result<(Index, Sha256Digest), ImageError> {
    let name = image.name;
    let index_bytes = fetch(
        &mut *store.index_source(image.index_sha256.as_ref())?,
        &Expect {
            file: name,
            size: image.index_size,
            sha256: image.index_sha256,
        },
        backoff,
    )
    .map_err(ImageError::Transfer)?;
    let index = Index::decode(&index_bytes).map_err(|source| ImageError::Format {
        image: name.to_owned(),
        source,
    })?;
    Ok((index, Sha256::digest(&index_bytes).into()))
}

/// Fetches chunk `i` into memory, checked against its length and SHA-256.
pub(crate) fn fetch_chunk(
    store: &Store<'_>,
    name: &str,
    i: usize,
    chunk: &Chunk,
    backoff: &Backoff,
) -> Result<Vec<u8>, ImageError> {
    let label = format!("{name} chunk {i}");
    fetch(
        &mut *store.chunk_source(i, &chunk.sha256)?,
        &Expect {
            file: &label,
            size: chunk.compressed_len,
            sha256: Some(chunk.sha256),
        },
        backoff,
    )
    .map_err(|source| ImageError::Chunk { index: i, source })
}

/// Decompresses chunk `i`'s verified bytes and writes them to its extents; a chunk that does
/// not decompress to its length writes nothing.
pub(crate) fn write_chunk(
    name: &str,
    i: usize,
    chunk: &Chunk,
    compressed: &[u8],
    file: &File,
    target: &Path,
) -> Result<(), ImageError> {
    let data = zstd::bulk::decompress(compressed, chunk.uncompressed_len as usize)
        .ok()
        .filter(|d| d.len() as u64 == chunk.uncompressed_len)
        .ok_or_else(|| ImageError::Decompress {
            image: name.to_owned(),
            index: i,
            expected: chunk.uncompressed_len,
        })?;
    let mut at = 0usize;
    for e in &chunk.extents {
        let len = e.len as usize;
        platform::write_all_at(file, &data[at..at + len], e.offset).map_err(|source| {
            ImageError::Write {
                image: name.to_owned(),
                target: target.to_owned(),
                source,
            }
        })?;
        at += len;
    }
    Ok(())
}

/// Opens `target` for writing; never creates it (a missing /dev/vda means a missing driver).
pub(crate) fn open_target(name: &str, target: &Path, size: u64) -> Result<File, ImageError> {
    let write_err = |source| ImageError::Write {
        image: name.to_owned(),
        target: target.to_owned(),
        source,
    };
    let mut file = match OpenOptions::new().read(true).write(true).open(target) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(ImageError::NoTarget {
                image: name.to_owned(),
                target: target.to_owned(),
            })
        }
        Err(e) => return Err(write_err(e)),
    };
    let capacity = file.seek(SeekFrom::End(0)).map_err(write_err)?;
    if capacity < size {
        return Err(ImageError::TooSmall {
            image: name.to_owned(),
            target: target.to_owned(),
            capacity,
            size,
        });
    }
    Ok(file)
}

/// Fetches a whole file into memory, checked against `expect`.
fn fetch(
    source: &mut dyn Source,
    expect: &Expect<'_>,
    backoff: &Backoff,
) -> Result<Vec<u8>, download::TransferError> {
    let mut sink = Memory {
        // A chunk's size is bounded by the index; an index's, from the policy, is not.
        data: Vec::with_capacity(expect.size.min(MAX_COMPRESSED) as usize),
        path: PathBuf::from(source.describe()),
    };
    let mut hasher = Sha256::new();
    let mut progress = Progress::new(expect.file, expect.size, 0);
    download::transfer(
        source,
        &mut sink,
        &mut hasher,
        expect,
        backoff,
        &mut progress,
    )?;
    expect.check(&hasher.finalize().into())?;
    Ok(sink.data)
}

/// A download held in memory until it is verified.
struct Memory {
    data: Vec<u8>,
    path: PathBuf,
}

impl Sink for Memory {
    fn written(&self) -> u64 {
        self.data.len() as u64
    }

    fn write(&mut self, buf: &[u8]) -> io::Result<()> {
        self.data.extend_from_slice(buf);
        Ok(())
    }

    fn reset(&mut self) -> io::Result<()> {
        self.data.clear();
        Ok(())
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

/// Zeroes `ranges`; returns the bytes zeroed.
pub(crate) fn zero_ranges(file: &File, ranges: &[Extent]) -> io::Result<u64> {
    let mut zeroed = 0u64;
    for e in ranges {
        if !platform::zero_in_place(file, e.offset, e.len) {
            write_zeros(file, e)?;
        }
        zeroed += e.len;
    }
    Ok(zeroed)
}

fn write_zeros(file: &File, e: &Extent) -> io::Result<()> {
    let zeros = vec![0u8; (1u64 << 20).min(e.len) as usize];
    let mut at = e.offset;
    while at < e.end() {
        let n = (zeros.len() as u64).min(e.end() - at) as usize;
        platform::write_all_at(file, &zeros[..n], at)?;
        at += n as u64;
    }
    Ok(())
}

/// The resume point: `<index sha256> <next chunk>`, replaced atomically.
struct Journal<'a> {
    path: &'a Path,
    image: String,
}

impl Journal<'_> {
    /// The chunk to start at: 0 without a journal or with one of another image.
    fn read(&self) -> usize {
        let Ok(text) = std::fs::read_to_string(self.path) else {
            return 0;
        };
        let mut f = text.split_whitespace();
        match (f.next(), f.next().and_then(|n| n.parse().ok())) {
            (Some(image), Some(next)) if image == self.image => next,
            _ => 0,
        }
    }

    fn write(&self, next: usize) -> Result<(), ImageError> {
        let tmp = self.path.with_extension("tmp");
        let err = |source| ImageError::Journal {
            path: self.path.to_owned(),
            source,
        };
        std::fs::write(&tmp, format!("{} {next}\n", self.image)).map_err(err)?;
        File::open(&tmp).and_then(|f| f.sync_all()).map_err(err)?;
        std::fs::rename(&tmp, self.path).map_err(err)
    }

    fn clear(&self) -> Result<(), ImageError> {
        match std::fs::remove_file(self.path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(ImageError::Journal {
                path: self.path.to_owned(),
                source: e,
            }),
            _ => Ok(()),
        }
    }
}
