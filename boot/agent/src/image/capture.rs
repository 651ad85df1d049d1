//! Capture: a block device, partition or file becomes an image directory (docs/image-format.md):
//! `image.ndimg` and `chunk-NNNNNN.zst`, ready for `netdeploy package create --from DIR`.
//!
//! Only the used ranges of a known filesystem are read ([`super::used_blocks`]); within
//! them, blocks of zeros are listed as zero ranges instead of being compressed. One thread
//! reads while this one compresses, so the disk and the CPU work at once.

use std::fs::File;
use std::io::{self, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use netdeploy_wire::image::{chunk_file, push_extent, Chunk, Extent, Index, Part, INDEX_FILE};
use sha2::{Digest, Sha256};

use super::used_blocks::{self, HEAD};
use super::ImageError;
use crate::console::say;
use crate::hash::Sha256Digest;
use crate::platform;
use crate::progress::Progress;

/// Granularity of the zero test: a block of this many bytes that holds only zeros is not sent.
pub const ZERO_BLOCK: u64 = 4096;

/// Read size within a used range.
const READ_BUFFER: u64 = 1 << 20;

/// How an image is cut and compressed.
#[derive(Debug, Clone)]
pub struct CaptureOptions {
    /// Uncompressed bytes per chunk (at most `netdeploy_wire::image::MAX_CHUNK`).
    pub chunk_size: u64,
    /// zstd level (3 is zstd's own default).
    pub level: i32,
}

impl Default for CaptureOptions {
    fn default() -> CaptureOptions {
        CaptureOptions {
            chunk_size: 4 << 20,
            level: 3,
        }
    }
}

/// What a capture wrote.
#[derive(Debug, Clone)]
pub struct Captured {
    pub index: Index,
    /// SHA-256 of `image.ndimg`, the hash an apply starts from.
    pub index_sha256: Sha256Digest,
    pub index_len: u64,
}

/// Uncompressed data of one chunk with the ranges it came from.
struct Batch {
    data: Vec<u8>,
    extents: Vec<Extent>,
}

/// One part of what is captured: where it lies on the source (and the target) and the
/// ranges of it to read, in the source's offsets.
#[derive(Debug, Clone)]
pub struct Region {
    pub part: Part,
    pub used: Vec<Extent>,
}

/// What is done with each file of the image once it is written: nothing for a capture to a
/// directory; an upload (that may remove the file) for a capture to the server.
pub type Sink<'a> = &'a mut dyn FnMut(&Path) -> Result<(), String>;

/// Captures `source` into the directory `out` (created if missing; the index and chunks of
/// an earlier capture there are removed first, so that none of them joins the new package).
pub fn capture(source: &Path, out: &Path, opts: &CaptureOptions) -> Result<Captured, ImageError> {
    let read_err = |e| ImageError::Read {
        path: source.to_owned(),
        source: e,
    };
    let mut file = File::open(source).map_err(read_err)?;
    let size = file.seek(SeekFrom::End(0)).map_err(read_err)?;
    let region = region_of(source, &file, 0, size, out)?;
    capture_regions(source, size, vec![region], out, opts, &mut |_| Ok(()))
}

/// The region of the filesystem (or raw bytes) on `device` (`size` bytes), lying at `offset`
/// of the whole source: its used ranges from [`used_blocks`], moved to that offset. `scratch`
/// is a directory for partclone's map.
pub fn region_of(
    device: &Path,
    file: &File,
    offset: u64,
    size: u64,
    scratch: &Path,
) -> Result<Region, ImageError> {
    let mut head = vec![0u8; HEAD.min(size as usize)];
    platform::read_exact_at(file, &mut head, 0).map_err(|e| ImageError::Read {
        path: device.to_owned(),
        source: e,
    })?;
    std::fs::create_dir_all(scratch).map_err(|e| ImageError::Out {
        path: scratch.to_owned(),
        source: e,
    })?;
    let (filesystem, used) =
        used_blocks::used_extents(device, used_blocks::detect(&head), size, scratch);
    let used_bytes: u64 = used.iter().map(|e| e.len).sum();
    say(format!(
        "{}: {} filesystem, {} of {} bytes used",
        device.display(),
        filesystem.name(),
        used_bytes,
        size
    ));
    Ok(Region {
        part: Part {
            filesystem,
            offset,
            size,
            used: used_bytes,
        },
        used: used
            .into_iter()
            .map(|e| Extent {
                offset: e.offset + offset,
                len: e.len,
            })
            .collect(),
    })
}

/// Captures the `regions` of `source` (`size` bytes; regions in order, not overlapping) into
/// `out`, handing each chunk file, then the index, to `sink` as soon as it is written.
pub fn capture_regions(
    source: &Path,
    size: u64,
    regions: Vec<Region>,
    out: &Path,
    opts: &CaptureOptions,
    sink: Sink<'_>,
) -> Result<Captured, ImageError> {
    let read_err = |e| ImageError::Read {
        path: source.to_owned(),
        source: e,
    };
    let out_err = |p: &Path| {
        let p = p.to_owned();
        move |e| ImageError::Out { path: p, source: e }
    };
    let chunk_size = opts
        .chunk_size
        .clamp(ZERO_BLOCK, netdeploy_wire::image::MAX_CHUNK);
    std::fs::create_dir_all(out).map_err(out_err(out))?;
    for entry in std::fs::read_dir(out).map_err(out_err(out))? {
        let entry = entry.map_err(out_err(out))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == INDEX_FILE || (name.starts_with("chunk-") && name.ends_with(".zst")) {
            std::fs::remove_file(entry.path()).map_err(out_err(&entry.path()))?;
        }
    }
    let file = File::open(source).map_err(read_err)?;
    let mut used = Vec::new();
    for r in &regions {
        for e in &r.used {
            push_extent(&mut used, *e);
        }
    }
    let used_bytes: u64 = used.iter().map(|e| e.len).sum();
    let parts: Vec<Part> = regions.into_iter().map(|r| r.part).collect();

    let mut chunks = Vec::new();
    let mut progress = Progress::new(format!("capture {}", source.display()), used_bytes, 0);
    let zeros = std::thread::scope(|scope| -> Result<Vec<Extent>, ImageError> {
        let (tx, rx) = mpsc::sync_channel::<Batch>(2);
        let reader = scope.spawn(|| read_used(&file, &used, chunk_size, tx));
        let mut done = 0u64;
        for batch in rx {
            let i = chunks.len();
            let compressed = zstd::bulk::compress(&batch.data, opts.level)
                .map_err(|e| ImageError::Compress { source: e })?;
            let path = out.join(chunk_file(i));
            std::fs::write(&path, &compressed).map_err(out_err(&path))?;
            sink(&path).map_err(ImageError::Sink)?;
            done += batch.data.len() as u64;
            progress.update(done);
            chunks.push(Chunk {
                sha256: Sha256::digest(&compressed).into(),
                compressed_len: compressed.len() as u64,
                uncompressed_len: batch.data.len() as u64,
                extents: batch.extents,
            });
        }
        reader
            .join()
            .expect("the capture reader does not panic")
            .map_err(read_err)
    })?;
    let index = Index {
        size,
        parts,
        chunks,
        zeros,
    };
    let bytes = index.encode();
    let index_path: PathBuf = out.join(INDEX_FILE);
    std::fs::write(&index_path, &bytes).map_err(out_err(&index_path))?;
    sink(&index_path).map_err(ImageError::Sink)?;
    say(format!(
        "{}: {} chunks, {} bytes of data compressed to {}, {} bytes of zeros not sent",
        progress.summary(used_bytes),
        index.chunks.len(),
        index.data_bytes(),
        index.compressed_bytes(),
        index.zeros.iter().map(|e| e.len).sum::<u64>()
    ));
    Ok(Captured {
        index_sha256: Sha256::digest(&bytes).into(),
        index_len: bytes.len() as u64,
        index,
    })
}

/// Reads the used ranges, sends their non-zero blocks in batches of `chunk_size` bytes and
/// returns the zero ranges.
fn read_used(
    file: &File,
    used: &[Extent],
    chunk_size: u64,
    tx: mpsc::SyncSender<Batch>,
) -> io::Result<Vec<Extent>> {
    let mut zeros = Vec::new();
    let mut batch = Batch {
        data: Vec::with_capacity(chunk_size as usize),
        extents: Vec::new(),
    };
    let mut buf = vec![0u8; READ_BUFFER as usize];
    for e in used {
        let mut at = e.offset;
        while at < e.end() {
            let n = READ_BUFFER.min(e.end() - at) as usize;
            platform::read_exact_at(file, &mut buf[..n], at)?;
            let mut i = 0usize;
            while i < n {
                // Blocks end on ZERO_BLOCK boundaries of the device, so that zero ranges
                // stay aligned for the device's zero-out.
                let pos = at + i as u64;
                let block_end = ((pos / ZERO_BLOCK + 1) * ZERO_BLOCK).min(at + n as u64);
                let len = (block_end - pos) as usize;
                let block = &buf[i..i + len];
                let range = Extent {
                    offset: pos,
                    len: len as u64,
                };
                if is_zero(block) {
                    push_extent(&mut zeros, range);
                } else {
                    batch.data.extend_from_slice(block);
                    push_extent(&mut batch.extents, range);
                    if batch.data.len() as u64 >= chunk_size {
                        let full = std::mem::replace(
                            &mut batch,
                            Batch {
                                data: Vec::with_capacity(chunk_size as usize),
                                extents: Vec::new(),
                            },
                        );
                        if tx.send(full).is_err() {
                            // The compressing side stopped on an error it reports itself.
                            return Ok(zeros);
                        }
                    }
                }
                i += len;
            }
            at += n as u64;
        }
    }
    if !batch.data.is_empty() {
        let _ = tx.send(batch);
    }
    Ok(zeros)
}

fn is_zero(block: &[u8]) -> bool {
    let (words, rest) = block.split_at(block.len() / 16 * 16);
    words
        .chunks_exact(16)
        .all(|w| u128::from_ne_bytes(w.try_into().expect("16 bytes")) == 0)
        && rest.iter().all(|b| *b == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_test_sees_a_single_set_byte_anywhere() {
        for len in [1usize, 15, 16, 17, 4096] {
            let mut b = vec![0u8; len];
            assert!(is_zero(&b));
            for i in [0, len / 2, len - 1] {
                b[i] = 1;
                assert!(!is_zero(&b), "len {len} byte {i}");
                b[i] = 0;
            }
        }
    }
}
