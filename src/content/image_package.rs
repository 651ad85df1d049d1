//! Image packages (docs/image-format.md): a package whose files include image indexes
//! (`*.ndimg`) is checked when it is imported, so that a machine never starts an apply that
//! cannot finish: each index must decode, and every chunk it names must be a file of the
//! same package with the SHA-256 and size the index gives it.

use std::collections::HashSet;
use std::io;

use netdeploy_wire::image::{FormatError, Index};

use crate::catalog::model::ContentFile;

/// An image index found in a package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSummary {
    /// The index's path in the package.
    pub index: String,
    pub chunks: usize,
    /// Bytes the chunks carry decompressed, and as stored.
    pub data_bytes: u64,
    pub compressed_bytes: u64,
}

/// Why a package's image cannot be applied.
#[derive(Debug, thiserror::Error)]
pub enum ImagePackageError {
    #[error("{index}: {source}")]
    Format { index: String, source: FormatError },
    #[error(
        "{index}: chunk {chunk} (SHA-256 {sha256}, {size} bytes) is not a file of the package"
    )]
    MissingChunk {
        index: String,
        chunk: usize,
        sha256: String,
        size: u64,
    },
    #[error("{index}: cannot read it from the content library: {source}")]
    Read { index: String, source: io::Error },
}

/// Checks every image index among `files`, reading each with `read`; returns what they hold
/// (nothing for a package without an index).
pub fn check(
    files: &[ContentFile],
    read: impl Fn(&ContentFile) -> io::Result<Vec<u8>>,
) -> Result<Vec<ImageSummary>, ImagePackageError> {
    let present: HashSet<(&str, u64)> = files.iter().map(|f| (f.sha256.as_str(), f.size)).collect();
    let mut found = Vec::new();
    for f in files.iter().filter(|f| f.path.ends_with(".ndimg")) {
        let bytes = read(f).map_err(|source| ImagePackageError::Read {
            index: f.path.clone(),
            source,
        })?;
        let index = Index::decode(&bytes).map_err(|source| ImagePackageError::Format {
            index: f.path.clone(),
            source,
        })?;
        for (i, c) in index.chunks.iter().enumerate() {
            let sha256 = netdeploy_wire::hex::encode(&c.sha256);
            if !present.contains(&(sha256.as_str(), c.compressed_len)) {
                return Err(ImagePackageError::MissingChunk {
                    index: f.path.clone(),
                    chunk: i,
                    sha256,
                    size: c.compressed_len,
                });
            }
        }
        found.push(ImageSummary {
            index: f.path.clone(),
            chunks: index.chunks.len(),
            data_bytes: index.data_bytes(),
            compressed_bytes: index.compressed_bytes(),
        });
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use netdeploy_wire::image::{Chunk, Extent, Filesystem, Part};

    fn file(path: &str, sha: [u8; 32], size: u64) -> ContentFile {
        ContentFile {
            path: path.into(),
            size,
            sha256: netdeploy_wire::hex::encode(&sha),
        }
    }

    fn index() -> Vec<u8> {
        Index {
            size: 8192,
            parts: vec![Part {
                filesystem: Filesystem::Ext,
                offset: 0,
                size: 8192,
                used: 4096,
            }],
            chunks: (0..2u8)
                .map(|i| Chunk {
                    sha256: [i; 32],
                    compressed_len: 100 + u64::from(i),
                    uncompressed_len: 2048,
                    extents: vec![Extent {
                        offset: u64::from(i) * 2048,
                        len: 2048,
                    }],
                })
                .collect(),
            zeros: vec![],
        }
        .encode()
    }

    #[test]
    fn an_image_package_with_every_chunk_passes() {
        let files = [
            file("image.ndimg", [9; 32], 0),
            file("chunk-000000.zst", [0; 32], 100),
            file("chunk-000001.zst", [1; 32], 101),
        ];
        let got = check(&files, |_| Ok(index())).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].chunks, got[0].data_bytes), (2, 4096));
    }

    #[test]
    fn a_missing_or_resized_chunk_is_named() {
        let files = [
            file("image.ndimg", [9; 32], 0),
            file("chunk-000000.zst", [0; 32], 100),
            file("chunk-000001.zst", [1; 32], 999),
        ];
        let err = check(&files, |_| Ok(index())).unwrap_err();
        assert!(
            matches!(err, ImagePackageError::MissingChunk { chunk: 1, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("chunk 1"), "{err}");
    }

    #[test]
    fn a_damaged_index_is_refused_and_other_packages_are_not_read() {
        let files = [file("image.ndimg", [9; 32], 0)];
        let mut bad = index();
        bad[40] ^= 1;
        assert!(matches!(
            check(&files, |_| Ok(bad.clone())),
            Err(ImagePackageError::Format { .. })
        ));
        let plain = [file("tools/setup.sh", [1; 32], 5)];
        assert_eq!(
            check(&plain, |_| panic!("not an image")).unwrap(),
            Vec::new()
        );
    }
}
