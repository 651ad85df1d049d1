//! The netdeploy image format (docs/image-format.md): an index that lists the filesystems of
//! the image, the zstd chunks that carry their used blocks, each with the SHA-256 of its
//! compressed bytes, and the ranges that hold only zeros. The chunks are separate files, so
//! that each is fetched, checked and decompressed on its own; the index is anchored by its
//! own SHA-256 (the package file's hash) and carries a trailing SHA-256 of its bytes.
//!
//! Pure code: encoding, decoding with every check a reader needs before it writes a byte,
//! and the packing of extents into chunks. Compression and I/O live in the agent.

use sha2::{Digest, Sha256};

/// The first eight bytes of an index.
pub const MAGIC: [u8; 8] = *b"NDIMAGE\n";

/// The version this code writes and the only one it reads.
pub const VERSION: u16 = 1;

/// Largest uncompressed chunk a reader accepts: it holds one chunk in memory.
pub const MAX_CHUNK: u64 = 64 << 20;

/// Largest compressed chunk a reader accepts: zstd's worst case for [`MAX_CHUNK`] bytes with
/// room to spare.
pub const MAX_COMPRESSED: u64 = MAX_CHUNK + (MAX_CHUNK >> 7) + (1 << 20);

/// The conventional file name of the index inside an image package.
pub const INDEX_FILE: &str = "image.ndimg";

/// The file name of chunk `i` inside an image package.
pub fn chunk_file(i: usize) -> String {
    format!("chunk-{i:06}.zst")
}

const HEADER_LEN: usize = 32;
const PART_LEN: usize = 32;
const CHUNK_HEAD_LEN: usize = 56;
const EXTENT_LEN: usize = 16;
const TRAILER_LEN: usize = 32;

/// What a part of the image holds; it says how its used blocks were found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filesystem {
    /// Not a filesystem netdeploy knows: every block was captured (zeros skipped).
    Raw,
    /// ext2, ext3 or ext4.
    Ext,
    /// FAT12, FAT16 or FAT32 (an EFI system partition).
    Fat,
    Ntfs,
}

impl Filesystem {
    fn code(self) -> u8 {
        match self {
            Filesystem::Raw => 0,
            Filesystem::Ext => 1,
            Filesystem::Fat => 2,
            Filesystem::Ntfs => 3,
        }
    }

    fn from_code(c: u8) -> Option<Filesystem> {
        Some(match c {
            0 => Filesystem::Raw,
            1 => Filesystem::Ext,
            2 => Filesystem::Fat,
            3 => Filesystem::Ntfs,
            _ => return None,
        })
    }

    /// The name in messages.
    pub fn name(self) -> &'static str {
        match self {
            Filesystem::Raw => "raw",
            Filesystem::Ext => "ext",
            Filesystem::Fat => "fat",
            Filesystem::Ntfs => "ntfs",
        }
    }
}

/// A byte range of the target: `len` bytes from `offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Extent {
    pub offset: u64,
    pub len: u64,
}

impl Extent {
    pub fn end(&self) -> u64 {
        self.offset + self.len
    }
}

/// One filesystem (or raw range) of the image, where it lies on the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub filesystem: Filesystem,
    pub offset: u64,
    pub size: u64,
    /// Bytes its filesystem uses (all of it for raw), zeros included.
    pub used: u64,
}

/// One chunk: the data of its extents, in order, compressed as one zstd frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// SHA-256 of the compressed bytes, as stored and served.
    pub sha256: [u8; 32],
    pub compressed_len: u64,
    /// The sum of the extents' lengths.
    pub uncompressed_len: u64,
    pub extents: Vec<Extent>,
}

/// The index of an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Index {
    /// Bytes the target must have.
    pub size: u64,
    pub parts: Vec<Part>,
    pub chunks: Vec<Chunk>,
    /// Used ranges that hold only zeros: zeroed on the target, never sent.
    pub zeros: Vec<Extent>,
}

/// Why bytes are not a valid index.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("not a netdeploy image index (its first bytes are not {:?})", String::from_utf8_lossy(&MAGIC).trim_end())]
    Magic,
    #[error(
        "image format version {found} is not supported (this netdeploy reads version {VERSION})"
    )]
    Version { found: u16 },
    #[error("the index is cut short: {len} bytes")]
    Truncated { len: usize },
    #[error("the index's SHA-256 trailer does not match its bytes: it is damaged")]
    Trailer,
    #[error("the index is malformed: {0}")]
    Malformed(String),
}

/// Why a chunk's bytes are refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    #[error("chunk {index} has {actual} bytes, the index says {expected}")]
    Length {
        index: usize,
        actual: u64,
        expected: u64,
    },
    #[error("chunk {index} has SHA-256 {actual}, the index says {expected}")]
    Hash {
        index: usize,
        expected: String,
        actual: String,
    },
}

impl Chunk {
    /// Checks compressed bytes against the index before anything of them is used.
    pub fn verify(&self, index: usize, bytes: &[u8]) -> Result<(), ChunkError> {
        if bytes.len() as u64 != self.compressed_len {
            return Err(ChunkError::Length {
                index,
                actual: bytes.len() as u64,
                expected: self.compressed_len,
            });
        }
        let actual: [u8; 32] = Sha256::digest(bytes).into();
        if actual != self.sha256 {
            return Err(ChunkError::Hash {
                index,
                expected: crate::hex::encode(&self.sha256),
                actual: crate::hex::encode(&actual),
            });
        }
        Ok(())
    }
}

impl Index {
    /// The index's bytes: header, parts, chunks with their extents, zero ranges, trailer.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(
            HEADER_LEN
                + self.parts.len() * PART_LEN
                + self
                    .chunks
                    .iter()
                    .map(|c| CHUNK_HEAD_LEN + c.extents.len() * EXTENT_LEN)
                    .sum::<usize>()
                + self.zeros.len() * EXTENT_LEN
                + TRAILER_LEN,
        );
        b.extend_from_slice(&MAGIC);
        b.extend_from_slice(&VERSION.to_le_bytes());
        b.extend_from_slice(&0u16.to_le_bytes());
        b.extend_from_slice(&(self.parts.len() as u32).to_le_bytes());
        b.extend_from_slice(&(self.chunks.len() as u32).to_le_bytes());
        b.extend_from_slice(&(self.zeros.len() as u32).to_le_bytes());
        b.extend_from_slice(&self.size.to_le_bytes());
        for p in &self.parts {
            b.push(p.filesystem.code());
            b.extend_from_slice(&[0; 7]);
            b.extend_from_slice(&p.offset.to_le_bytes());
            b.extend_from_slice(&p.size.to_le_bytes());
            b.extend_from_slice(&p.used.to_le_bytes());
        }
        for c in &self.chunks {
            b.extend_from_slice(&c.sha256);
            b.extend_from_slice(&c.compressed_len.to_le_bytes());
            b.extend_from_slice(&c.uncompressed_len.to_le_bytes());
            b.extend_from_slice(&(c.extents.len() as u32).to_le_bytes());
            b.extend_from_slice(&0u32.to_le_bytes());
            for e in &c.extents {
                put_extent(&mut b, e);
            }
        }
        for e in &self.zeros {
            put_extent(&mut b, e);
        }
        let trailer: [u8; 32] = Sha256::digest(&b).into();
        b.extend_from_slice(&trailer);
        b
    }

    /// Reads and checks an index: magic, then version (a newer image says so rather than
    /// look damaged), then the trailer, then every count, range and length. An index that
    /// decodes can be applied without any write landing outside `size` or twice on a byte.
    pub fn decode(bytes: &[u8]) -> Result<Index, FormatError> {
        if bytes.len() < MAGIC.len() || bytes[..MAGIC.len()] != MAGIC {
            return Err(FormatError::Magic);
        }
        if bytes.len() < HEADER_LEN + TRAILER_LEN {
            return Err(FormatError::Truncated { len: bytes.len() });
        }
        let version = u16::from_le_bytes([bytes[8], bytes[9]]);
        if version != VERSION {
            return Err(FormatError::Version { found: version });
        }
        let (body, trailer) = bytes.split_at(bytes.len() - TRAILER_LEN);
        if Sha256::digest(body).as_slice() != trailer {
            return Err(FormatError::Trailer);
        }
        let mut r = Reader { b: body, at: 10 };
        let bad = |m: String| FormatError::Malformed(m);
        if r.u16()? != 0 {
            return Err(bad("reserved header bytes are not zero".into()));
        }
        let n_parts = r.u32()? as usize;
        let n_chunks = r.u32()? as usize;
        let n_zeros = r.u32()? as usize;
        let size = r.u64()?;
        // Counts are checked against the bytes left before anything is allocated for them.
        r.room(n_parts, PART_LEN)?;
        let mut parts = Vec::with_capacity(n_parts);
        for i in 0..n_parts {
            let code = r.u8()?;
            let filesystem = Filesystem::from_code(code)
                .ok_or_else(|| bad(format!("part {i} has unknown filesystem code {code}")))?;
            if r.take(7)?.iter().any(|b| *b != 0) {
                return Err(bad(format!("part {i}: reserved bytes are not zero")));
            }
            let p = Part {
                filesystem,
                offset: r.u64()?,
                size: r.u64()?,
                used: r.u64()?,
            };
            if p.offset.checked_add(p.size).is_none_or(|end| end > size) || p.used > p.size {
                return Err(bad(format!("part {i} does not fit the image")));
            }
            parts.push(p);
        }
        r.room(n_chunks, CHUNK_HEAD_LEN)?;
        let mut chunks = Vec::with_capacity(n_chunks);
        let mut all = Vec::new();
        for i in 0..n_chunks {
            let sha256: [u8; 32] = r.take(32)?.try_into().expect("32 bytes");
            let compressed_len = r.u64()?;
            let uncompressed_len = r.u64()?;
            let n_ext = r.u32()? as usize;
            if r.u32()? != 0 {
                return Err(bad(format!("chunk {i}: reserved bytes are not zero")));
            }
            if uncompressed_len == 0 || uncompressed_len > MAX_CHUNK {
                return Err(bad(format!(
                    "chunk {i} holds {uncompressed_len} bytes (1 to {MAX_CHUNK})"
                )));
            }
            if compressed_len == 0 || compressed_len > MAX_COMPRESSED {
                return Err(bad(format!(
                    "chunk {i} is stored in {compressed_len} bytes (1 to {MAX_COMPRESSED})"
                )));
            }
            r.room(n_ext, EXTENT_LEN)?;
            let mut extents = Vec::with_capacity(n_ext);
            for _ in 0..n_ext {
                extents.push(r.extent()?);
            }
            let sum = extents
                .iter()
                .try_fold(0u64, |sum, e| sum.checked_add(e.len));
            if sum != Some(uncompressed_len) {
                return Err(bad(format!(
                    "chunk {i}: its extents do not add up to its {uncompressed_len} bytes"
                )));
            }
            all.extend_from_slice(&extents);
            chunks.push(Chunk {
                sha256,
                compressed_len,
                uncompressed_len,
                extents,
            });
        }
        r.room(n_zeros, EXTENT_LEN)?;
        let mut zeros = Vec::with_capacity(n_zeros);
        for _ in 0..n_zeros {
            zeros.push(r.extent()?);
        }
        if r.at != body.len() {
            return Err(bad(format!(
                "{} bytes after the last zero range",
                body.len() - r.at
            )));
        }
        all.extend_from_slice(&zeros);
        all.sort_unstable();
        for (k, e) in all.iter().enumerate() {
            if e.len == 0 || e.offset.checked_add(e.len).is_none_or(|end| end > size) {
                return Err(bad(format!(
                    "range {}+{} is empty or beyond the image's {size} bytes",
                    e.offset, e.len
                )));
            }
            if k > 0 && all[k - 1].end() > e.offset {
                return Err(bad(format!("range at byte {} is written twice", e.offset)));
            }
        }
        Ok(Index {
            size,
            parts,
            chunks,
            zeros,
        })
    }

    /// Bytes the chunks carry once decompressed.
    pub fn data_bytes(&self) -> u64 {
        self.chunks.iter().map(|c| c.uncompressed_len).sum()
    }

    /// Bytes of all chunks as stored.
    pub fn compressed_bytes(&self) -> u64 {
        self.chunks.iter().map(|c| c.compressed_len).sum()
    }
}

fn put_extent(b: &mut Vec<u8>, e: &Extent) {
    b.extend_from_slice(&e.offset.to_le_bytes());
    b.extend_from_slice(&e.len.to_le_bytes());
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], FormatError> {
        let s = self
            .b
            .get(self.at..self.at + n)
            .ok_or(FormatError::Truncated { len: self.b.len() })?;
        self.at += n;
        Ok(s)
    }

    fn room(&self, count: usize, each: usize) -> Result<(), FormatError> {
        match count.checked_mul(each) {
            Some(n) if n <= self.b.len() - self.at => Ok(()),
            _ => Err(FormatError::Malformed(format!(
                "{count} entries of {each} bytes do not fit the {} bytes left",
                self.b.len() - self.at
            ))),
        }
    }

    fn u8(&mut self) -> Result<u8, FormatError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, FormatError> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().expect("2")))
    }

    fn u32(&mut self) -> Result<u32, FormatError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4")))
    }

    fn u64(&mut self) -> Result<u64, FormatError> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8")))
    }

    fn extent(&mut self) -> Result<Extent, FormatError> {
        Ok(Extent {
            offset: self.u64()?,
            len: self.u64()?,
        })
    }
}

/// Appends `e` to `list`, merging it into the last extent when they touch.
pub fn push_extent(list: &mut Vec<Extent>, e: Extent) {
    if e.len == 0 {
        return;
    }
    match list.last_mut() {
        Some(last) if last.end() == e.offset => last.len += e.len,
        _ => list.push(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A valid index from disjoint, sorted ranges cut out of `lens` (even: data, odd: gap).
    fn index_from(lens: &[(u64, u64, bool)], per_chunk: usize) -> Index {
        let mut at = 0;
        let mut data = Vec::new();
        let mut zeros = Vec::new();
        for &(gap, len, zero) in lens {
            at += gap;
            let e = Extent { offset: at, len };
            if zero {
                zeros.push(e);
            } else {
                data.push(e);
            }
            at += len;
        }
        let chunks = data
            .chunks(per_chunk.max(1))
            .enumerate()
            .map(|(i, ex)| Chunk {
                sha256: [i as u8; 32],
                compressed_len: 17 + i as u64,
                uncompressed_len: ex.iter().map(|e| e.len).sum(),
                extents: ex.to_vec(),
            })
            .collect();
        Index {
            size: at + 4096,
            parts: vec![Part {
                filesystem: Filesystem::Ext,
                offset: 0,
                size: at + 4096,
                used: at / 2,
            }],
            chunks,
            zeros,
        }
    }

    fn ranges() -> impl Strategy<Value = Vec<(u64, u64, bool)>> {
        prop::collection::vec((0u64..10_000, 1u64..100_000, any::<bool>()), 0..40)
    }

    proptest! {
        #[test]
        fn an_index_round_trips(lens in ranges(), per_chunk in 1usize..6) {
            let idx = index_from(&lens, per_chunk);
            prop_assert_eq!(Index::decode(&idx.encode()).unwrap(), idx);
        }

        #[test]
        fn any_flipped_byte_of_an_index_is_detected(
            lens in ranges(), at in any::<prop::sample::Index>(), bit in 0u8..8
        ) {
            let mut b = index_from(&lens, 3).encode();
            let i = at.index(b.len());
            b[i] ^= 1 << bit;
            prop_assert!(Index::decode(&b).is_err());
        }

        #[test]
        fn any_truncated_index_is_refused(lens in ranges(), at in any::<prop::sample::Index>()) {
            let b = index_from(&lens, 3).encode();
            let cut = at.index(b.len());
            prop_assert!(Index::decode(&b[..cut]).is_err());
        }

        #[test]
        fn random_bytes_never_panic_the_decoder(b in prop::collection::vec(any::<u8>(), 0..400)) {
            let _ = Index::decode(&b);
        }

        #[test]
        fn random_fields_under_a_good_trailer_never_panic_the_decoder(
            counts in prop::collection::vec(0u32..4, 3),
            rest in prop::collection::vec(any::<u8>(), 0..600),
        ) {
            // A well-formed header with small counts, random entries, and the right trailer:
            // only the field checks stand between these bytes and the writes.
            let mut b = MAGIC.to_vec();
            b.extend_from_slice(&VERSION.to_le_bytes());
            b.extend_from_slice(&[0, 0]);
            for c in &counts {
                b.extend_from_slice(&c.to_le_bytes());
            }
            b.extend_from_slice(&rest);
            let trailer: [u8; 32] = Sha256::digest(&b).into();
            b.extend_from_slice(&trailer);
            if let Ok(idx) = Index::decode(&b) {
                prop_assert_eq!(Index::decode(&idx.encode()).unwrap(), idx);
            }
        }

        #[test]
        fn any_flipped_or_cut_byte_of_a_chunk_is_refused(
            data in prop::collection::vec(any::<u8>(), 1..2000),
            at in any::<prop::sample::Index>(), bit in 0u8..8
        ) {
            let c = Chunk {
                sha256: Sha256::digest(&data).into(),
                compressed_len: data.len() as u64,
                uncompressed_len: 1,
                extents: vec![Extent { offset: 0, len: 1 }],
            };
            prop_assert!(c.verify(3, &data).is_ok());
            let mut flipped = data.clone();
            flipped[at.index(data.len())] ^= 1 << bit;
            prop_assert!(c.verify(3, &flipped).is_err());
            let err = c.verify(3, &data[..at.index(data.len())]).unwrap_err();
            prop_assert!(err.to_string().contains("chunk 3"));
        }
    }

    #[test]
    fn a_newer_version_is_named_not_called_damaged() {
        let mut b = index_from(&[(0, 10, false)], 1).encode();
        b[8..10].copy_from_slice(&2u16.to_le_bytes());
        let err = Index::decode(&b).unwrap_err();
        assert_eq!(err, FormatError::Version { found: 2 });
        assert!(err.to_string().contains("version 2"), "{err}");
    }

    #[test]
    fn overlapping_ranges_are_refused_even_with_a_good_trailer() {
        let mut idx = index_from(&[(0, 100, false), (0, 100, true)], 1);
        idx.zeros[0].offset = 50;
        let err = Index::decode(&idx.encode()).unwrap_err();
        assert!(err.to_string().contains("written twice"), "{err}");
    }

    #[test]
    fn extents_whose_lengths_overflow_are_refused_without_a_panic() {
        let mut idx = index_from(&[(0, 100, false), (0, 100, false)], 2);
        idx.chunks[0].extents[0].len = u64::MAX - 50;
        idx.chunks[0].extents[1].len = 150;
        assert!(matches!(
            Index::decode(&idx.encode()),
            Err(FormatError::Malformed(_))
        ));
    }

    #[test]
    fn a_chunk_larger_than_a_reader_holds_is_refused() {
        let mut idx = index_from(&[(0, 100, false)], 1);
        idx.chunks[0].compressed_len = MAX_COMPRESSED + 1;
        let err = Index::decode(&idx.encode()).unwrap_err();
        assert!(err.to_string().contains("stored in"), "{err}");
    }

    #[test]
    fn a_range_beyond_the_image_is_refused() {
        let mut idx = index_from(&[(0, 100, false)], 1);
        idx.size = 99;
        idx.parts.clear();
        assert!(matches!(
            Index::decode(&idx.encode()),
            Err(FormatError::Malformed(_))
        ));
    }

    #[test]
    fn touching_extents_merge() {
        let mut l = Vec::new();
        push_extent(&mut l, Extent { offset: 0, len: 5 });
        push_extent(&mut l, Extent { offset: 5, len: 5 });
        push_extent(&mut l, Extent { offset: 11, len: 0 });
        push_extent(&mut l, Extent { offset: 12, len: 1 });
        assert_eq!(
            l,
            [Extent { offset: 0, len: 10 }, Extent { offset: 12, len: 1 }]
        );
    }
}
