//! Filesystem-aware images (docs/image-format.md): [`capture`] writes only the used blocks of
//! a filesystem as independently checked zstd chunks, [`apply`] lays them onto a device,
//! checking each chunk before any of its bytes is written and resuming a cut apply at the
//! chunk where it stopped. [`used_blocks`] tells the filesystem and its used ranges.

pub mod apply;
pub mod capture;
pub mod cli;
pub mod used_blocks;

use std::io;
use std::path::PathBuf;

use netdeploy_wire::image::FormatError;

pub use apply::{apply, Applied, ApplyOptions, ImageRef, Store};
pub use capture::{capture, capture_regions, region_of, CaptureOptions, Captured, Region};

use crate::download::TransferError;

/// Why a capture or an apply failed. Each names the image, the chunk or the path at fault.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{image}: {source}")]
    Format { image: String, source: FormatError },
    /// The index could not be fetched or did not match its SHA-256.
    #[error(transparent)]
    Transfer(TransferError),
    /// Chunk `index` could not be fetched or did not match its SHA-256; nothing of it was
    /// written. The message names the chunk.
    #[error("{source}")]
    Chunk { index: usize, source: TransferError },
    #[error("{image} chunk {index}: its verified bytes do not decompress to the {expected} bytes the index says")]
    Decompress {
        image: String,
        index: usize,
        expected: u64,
    },
    #[error("{image}: the target {target} does not exist")]
    NoTarget { image: String, target: PathBuf },
    #[error("{image}: {target} has {capacity} bytes, the image needs {size}")]
    TooSmall {
        image: String,
        target: PathBuf,
        capacity: u64,
        size: u64,
    },
    #[error("{image}: cannot write {target}: {source}")]
    Write {
        image: String,
        target: PathBuf,
        source: io::Error,
    },
    #[error("the journal {path} cannot be written: {source}")]
    Journal { path: PathBuf, source: io::Error },
    #[error("an image from the server needs the SHA-256 of its index")]
    IndexHashNeeded,
    #[error("bad content URL: {0}")]
    Url(String),
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot write the image to {path}: {source}")]
    Out { path: PathBuf, source: io::Error },
    #[error("cannot compress a chunk: {source}")]
    Compress { source: io::Error },
    /// A file of the image could not be handed on (uploaded to the server).
    #[error("{0}")]
    Sink(String),
}

#[cfg(test)]
mod tests;
