//! Capture and apply of real filesystems made by mkfs.ext4, mkfs.fat and mkntfs, checked by
//! their own tools and read back file by file with debugfs, mtools and ntfscat; tampered chunks, cut
//! downloads and raw images.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use netdeploy_wire::image::{chunk_file, Filesystem, Index, INDEX_FILE};
use proptest::prelude::*;

use super::*;
use crate::download::Backoff;
use crate::fake_server::{range_reply, FakeServer, Reply};
use crate::hash;
use crate::http::{Client, Url};

fn quick() -> Backoff {
    Backoff {
        attempts: 2,
        first: Duration::from_millis(10),
        max: Duration::from_millis(10),
        total: Duration::from_secs(5),
    }
}

fn run(cmd: &mut Command) -> std::process::Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Deterministic bytes that zstd cannot squeeze to nothing.
fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// The files put into the test filesystems: text from /usr/share, binary noise, a file of
/// zeros, one in a subdirectory.
fn tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files = vec![
        ("noise.bin".to_owned(), noise(3 << 20, 1)),
        ("zeros.bin".to_owned(), vec![0u8; 1 << 20]),
        ("sub/small.txt".to_owned(), b"netdeploy\n".to_vec()),
        ("sub/more-noise".to_owned(), noise(700_001, 2)),
    ];
    for (i, src) in [
        "/usr/share/common-licenses/GPL-3",
        "/usr/share/common-licenses/Apache-2.0",
    ]
    .iter()
    .enumerate()
    {
        if let Ok(b) = std::fs::read(src) {
            files.push((format!("text{i}.txt"), b));
        }
    }
    for (name, data) in &files {
        let p = dir.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }
    files
}

/// An ext4 filesystem of `mib` MiB in a file, holding [`tree`].
fn ext4(dir: &Path, mib: u64) -> (PathBuf, Vec<(String, Vec<u8>)>) {
    let root = dir.join("root");
    let files = tree(&root);
    let img = dir.join("ext4.img");
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-b", "4096", "-d"])
        .arg(&root)
        .arg(&img)
        .arg(format!("{mib}M")));
    (img, files)
}

/// A target file of `size` bytes of old data (0xEE), as a disk that held something before.
fn old_disk(path: &Path, size: u64) {
    std::fs::write(path, vec![0xEEu8; size as usize]).unwrap();
}

fn assert_ext4_holds(img: &Path, files: &[(String, Vec<u8>)]) {
    run(Command::new("e2fsck").arg("-fn").arg(img));
    for (name, data) in files {
        let out = run(Command::new("debugfs")
            .arg("-R")
            .arg(format!("cat /{name}"))
            .arg(img));
        assert!(out.stdout == *data, "{name} differs after apply");
    }
}

fn dir_ref(c: &Captured) -> ImageRef<'static> {
    ImageRef {
        name: INDEX_FILE,
        index_size: c.index_len,
        index_sha256: Some(c.index_sha256),
    }
}

fn small_chunks() -> CaptureOptions {
    CaptureOptions {
        chunk_size: 256 << 10,
        level: 3,
    }
}

fn opts(journal: PathBuf) -> ApplyOptions {
    ApplyOptions {
        journal,
        journal_every: 0,
        backoff: quick(),
    }
}

#[test]
fn an_ext4_filesystem_is_captured_by_its_used_blocks_and_applied_fsck_clean() {
    let dir = tempfile::tempdir().unwrap();
    let (img, files) = ext4(dir.path(), 64);
    let out = dir.path().join("image");
    let c = capture(&img, &out, &small_chunks()).unwrap();
    assert_eq!(c.index.parts[0].filesystem, Filesystem::Ext);
    let used = c.index.parts[0].used;
    assert!(used < c.index.size / 2, "only used blocks: {used}");
    // The 1 MiB file of zeros is not sent, and the rest is compressed.
    assert!(c.index.data_bytes() + (1 << 20) <= used);
    assert!(c.index.compressed_bytes() < c.index.data_bytes());
    assert_eq!(
        Index::decode(&std::fs::read(out.join(INDEX_FILE)).unwrap()).unwrap(),
        c.index
    );

    let target = dir.path().join("vda");
    old_disk(&target, c.index.size + 8192);
    let done = apply(
        &Store::Dir(out.clone()),
        &dir_ref(&c),
        &target,
        &opts(dir.path().join("journal")),
    )
    .unwrap();
    assert_eq!(done.resumed_at, 0);
    assert_eq!(done.written, c.index.data_bytes());
    assert_ext4_holds(&target, &files);
    assert!(!dir.path().join("journal").exists());
}

#[test]
fn a_tampered_chunk_is_named_and_none_of_its_bytes_are_written() {
    let dir = tempfile::tempdir().unwrap();
    let (img, _) = ext4(dir.path(), 32);
    let out = dir.path().join("image");
    let c = capture(&img, &out, &small_chunks()).unwrap();
    assert!(c.index.chunks.len() > 4);
    let bad = 3;
    let path = out.join(chunk_file(bad));
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();

    let target = dir.path().join("vda");
    old_disk(&target, c.index.size);
    let err = apply(
        &Store::Dir(out),
        &dir_ref(&c),
        &target,
        &opts(dir.path().join("journal")),
    )
    .unwrap_err();
    assert!(matches!(err, ImageError::Chunk { index: 3, .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("chunk 3") && msg.contains("SHA-256"), "{msg}");
    let disk = std::fs::read(&target).unwrap();
    for e in &c.index.chunks[bad].extents {
        let r = e.offset as usize..e.end() as usize;
        assert!(disk[r].iter().all(|b| *b == 0xEE), "chunk 3 was written");
    }
    // The chunks before it were written.
    let first = c.index.chunks[0].extents[0];
    assert!(disk[first.offset as usize..first.end() as usize]
        .iter()
        .any(|b| *b != 0xEE));
}

/// Serves the files of a captured image directory by SHA-256, as the server's content library.
fn content_by_hash(out: &Path) -> HashMap<String, Vec<u8>> {
    std::fs::read_dir(out)
        .unwrap()
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .map(|b| (hash::to_hex(&sha2::Sha256::digest(&b)), b))
        .collect()
}

use sha2::Digest;

#[test]
fn a_cut_apply_resumes_at_the_chunk_where_it_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let (img, files) = ext4(dir.path(), 32);
    let out = dir.path().join("image");
    let c = capture(&img, &out, &small_chunks()).unwrap();
    let n = c.index.chunks.len();
    assert!(n > 6, "{n} chunks");
    let cut = n / 2;
    let cut_sha = hash::to_hex(&c.index.chunks[cut].sha256);
    let content = Arc::new(content_by_hash(&out));
    let serve = |broken: Option<String>| {
        let content = content.clone();
        FakeServer::start(move |req| {
            let sha = req.route().trim_start_matches("/content/");
            match content.get(sha) {
                // The server goes away in the middle of this chunk and answers no byte more.
                Some(b) if Some(sha) == broken.as_deref() => {
                    let cut = if req.range_from().is_some() { 0 } else { 100 };
                    range_reply(req, b).cut_after(cut)
                }
                Some(b) => range_reply(req, b),
                None => Reply::new(404),
            }
        })
    };
    let target = dir.path().join("vda");
    old_disk(&target, c.index.size);
    let journal = dir.path().join("journal");
    let client = Client::default();
    let image = ImageRef {
        name: "disk.ndimg",
        index_size: c.index_len,
        index_sha256: Some(c.index_sha256),
    };

    let first = serve(Some(cut_sha.clone()));
    let store = Store::Http {
        client: &client,
        base: Url::parse(&first.url("/")).unwrap(),
    };
    let err = apply(&store, &image, &target, &opts(journal.clone())).unwrap_err();
    assert!(
        matches!(err, ImageError::Chunk { index, .. } if index == cut),
        "{err}"
    );
    assert!(err.to_string().contains(&format!("chunk {cut}")), "{err}");
    assert_eq!(
        std::fs::read_to_string(&journal).unwrap().trim(),
        format!("{} {cut}", hash::to_hex(&c.index_sha256))
    );

    let second = serve(None);
    let store = Store::Http {
        client: &client,
        base: Url::parse(&second.url("/")).unwrap(),
    };
    let done = apply(&store, &image, &target, &opts(journal.clone())).unwrap();
    assert_eq!(done.resumed_at, cut);
    let asked: Vec<String> = second
        .requests()
        .iter()
        .map(|r| r.route().trim_start_matches("/content/").to_owned())
        .collect();
    for (i, chunk) in c.index.chunks.iter().enumerate() {
        let sha = hash::to_hex(&chunk.sha256);
        assert_eq!(
            asked.contains(&sha),
            i >= cut,
            "chunk {i} fetched again: {}",
            i >= cut
        );
    }
    assert_ext4_holds(&target, &files);
    assert!(!journal.exists());
}

#[test]
fn a_journal_of_another_image_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let (img, files) = ext4(dir.path(), 16);
    let out = dir.path().join("image");
    let c = capture(&img, &out, &small_chunks()).unwrap();
    let journal = dir.path().join("journal");
    std::fs::write(&journal, format!("{} 5\n", hash::to_hex(&[1; 32]))).unwrap();
    let target = dir.path().join("vda");
    old_disk(&target, c.index.size);
    let done = apply(&Store::Dir(out), &dir_ref(&c), &target, &opts(journal)).unwrap();
    assert_eq!(done.resumed_at, 0);
    assert_ext4_holds(&target, &files);
}

#[test]
fn a_fat_filesystem_is_captured_by_its_used_blocks_and_applied_fsck_clean() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let files = tree(&root);
    let img = dir.path().join("esp.img");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
    run(Command::new("mkfs.fat").args(["-F", "32"]).arg(&img));
    for entry in std::fs::read_dir(&root).unwrap() {
        run(Command::new("mcopy")
            .arg("-s")
            .arg("-i")
            .arg(&img)
            .arg(entry.unwrap().path())
            .arg("::/"));
    }
    let out = dir.path().join("image");
    let c = capture(&img, &out, &small_chunks()).unwrap();
    assert_eq!(c.index.parts[0].filesystem, Filesystem::Fat);
    assert!(c.index.parts[0].used < c.index.size / 2);
    let target = dir.path().join("esp-copy.img");
    old_disk(&target, c.index.size);
    apply(
        &Store::Dir(out),
        &dir_ref(&c),
        &target,
        &opts(dir.path().join("journal")),
    )
    .unwrap();
    run(Command::new("fsck.fat").arg("-n").arg(&target));
    for (name, data) in &files {
        let out = run(Command::new("mtype")
            .arg("-i")
            .arg(&target)
            .arg(format!("::/{name}")));
        assert!(out.stdout == *data, "{name} differs after apply");
    }
}

#[test]
fn what_partclone_cannot_map_is_captured_raw_and_applied_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    // An ext superblock magic on bytes that are no filesystem.
    let mut data = noise(300_000, 5);
    data[1080..1082].copy_from_slice(&[0x53, 0xEF]);
    data[100_000..200_000].fill(0);
    let src = dir.path().join("src");
    std::fs::write(&src, &data).unwrap();
    let out = dir.path().join("image");
    let c = capture(&src, &out, &small_chunks()).unwrap();
    assert_eq!(c.index.parts[0].filesystem, Filesystem::Raw);
    assert_eq!(c.index.parts[0].used, data.len() as u64);
    assert!(c.index.zeros.iter().map(|e| e.len).sum::<u64>() >= 90_000);
    let target = dir.path().join("vda");
    old_disk(&target, data.len() as u64);
    apply(
        &Store::Dir(out),
        &dir_ref(&c),
        &target,
        &opts(dir.path().join("journal")),
    )
    .unwrap();
    assert!(std::fs::read(&target).unwrap() == data);
}

#[test]
fn a_capture_into_a_used_directory_leaves_no_chunk_of_the_earlier_one() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big");
    std::fs::write(&big, noise(2 << 20, 6)).unwrap();
    let out = dir.path().join("image");
    let first = capture(&big, &out, &small_chunks()).unwrap();
    let small = dir.path().join("small");
    std::fs::write(&small, noise(10_000, 7)).unwrap();
    let second = capture(&small, &out, &small_chunks()).unwrap();
    assert!(first.index.chunks.len() > second.index.chunks.len());
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut want: Vec<String> = (0..second.index.chunks.len()).map(chunk_file).collect();
    want.push(INDEX_FILE.to_owned());
    want.sort();
    assert_eq!(names, want);
}

#[test]
fn an_ntfs_filesystem_is_captured_by_its_used_blocks_and_applied_file_for_file() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let files: Vec<(String, Vec<u8>)> = tree(&root)
        .into_iter()
        .filter(|(name, _)| !name.contains('/'))
        .collect();
    let img = dir.path().join("ntfs.img");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(48 << 20)
        .unwrap();
    run(Command::new("mkntfs").args(["-F", "-Q", "-q"]).arg(&img));
    for (name, _) in &files {
        run(Command::new("ntfscp")
            .arg("-f")
            .arg(&img)
            .arg(root.join(name))
            .arg(name));
    }
    let out = dir.path().join("image");
    let c = capture(&img, &out, &small_chunks()).unwrap();
    assert_eq!(c.index.parts[0].filesystem, Filesystem::Ntfs);
    assert!(c.index.parts[0].used < c.index.size / 2);
    let target = dir.path().join("ntfs-copy.img");
    old_disk(&target, c.index.size);
    apply(
        &Store::Dir(out),
        &dir_ref(&c),
        &target,
        &opts(dir.path().join("journal")),
    )
    .unwrap();
    run(Command::new("ntfsfix").arg("-n").arg(&target));
    for (name, data) in &files {
        let out = run(Command::new("ntfscat").arg(&target).arg(name));
        assert!(out.stdout == *data, "{name} differs after apply");
    }
}

#[test]
fn a_target_smaller_than_the_image_is_refused_before_any_write() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::write(&src, noise(100_000, 3)).unwrap();
    let out = dir.path().join("image");
    let c = capture(&src, &out, &CaptureOptions::default()).unwrap();
    let target = dir.path().join("vda");
    old_disk(&target, 99_999);
    let err = apply(
        &Store::Dir(out),
        &dir_ref(&c),
        &target,
        &opts(dir.path().join("journal")),
    )
    .unwrap_err();
    assert!(matches!(err, ImageError::TooSmall { .. }), "{err}");
    assert!(std::fs::read(&target).unwrap().iter().all(|b| *b == 0xEE));
}

#[test]
fn an_index_of_a_newer_version_is_refused_naming_the_version() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::write(&src, noise(10_000, 4)).unwrap();
    let out = dir.path().join("image");
    let c = capture(&src, &out, &CaptureOptions::default()).unwrap();
    let mut b = std::fs::read(out.join(INDEX_FILE)).unwrap();
    b[8] = 2;
    std::fs::write(out.join(INDEX_FILE), &b).unwrap();
    let target = dir.path().join("vda");
    old_disk(&target, c.index.size);
    let image = ImageRef {
        index_sha256: None,
        ..dir_ref(&c)
    };
    let err = apply(
        &Store::Dir(out),
        &image,
        &target,
        &opts(dir.path().join("journal")),
    )
    .unwrap_err();
    assert!(err.to_string().contains("version 2"), "{err}");
}

/// A raw source made of runs of noise and zeros.
fn runs() -> impl Strategy<Value = Vec<(bool, usize)>> {
    prop::collection::vec((any::<bool>(), 1usize..20_000), 1..12)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn a_raw_image_round_trips_over_old_data(runs in runs(), chunk in 4096u64..40_000) {
        let dir = tempfile::tempdir().unwrap();
        let mut data = Vec::new();
        for (k, (zero, len)) in runs.iter().enumerate() {
            if *zero {
                data.extend(std::iter::repeat_n(0u8, *len));
            } else {
                data.extend(noise(*len, k as u64));
            }
        }
        let src = dir.path().join("src");
        std::fs::write(&src, &data).unwrap();
        let out = dir.path().join("image");
        let c = capture(&src, &out, &CaptureOptions { chunk_size: chunk, level: 1 }).unwrap();
        prop_assert_eq!(c.index.parts[0].filesystem, Filesystem::Raw);
        let target = dir.path().join("vda");
        old_disk(&target, data.len() as u64);
        apply(&Store::Dir(out), &dir_ref(&c), &target, &opts(dir.path().join("j"))).unwrap();
        prop_assert!(std::fs::read(&target).unwrap() == data);
    }

    #[test]
    fn any_flipped_or_cut_byte_of_an_image_fails_the_apply_before_it_lands(
        runs in runs(), file in any::<prop::sample::Index>(),
        at in any::<prop::sample::Index>(), bit in 0u8..8, cut in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut data = Vec::new();
        for (k, (zero, len)) in runs.iter().enumerate() {
            if *zero {
                data.extend(std::iter::repeat_n(0u8, *len));
            } else {
                data.extend(noise(*len, k as u64));
            }
        }
        data.extend(noise(5000, 99));
        let src = dir.path().join("src");
        std::fs::write(&src, &data).unwrap();
        let out = dir.path().join("image");
        let c = capture(&src, &out, &CaptureOptions { chunk_size: 8192, level: 1 }).unwrap();
        let mut names: Vec<String> = (0..c.index.chunks.len()).map(chunk_file).collect();
        names.push(INDEX_FILE.to_owned());
        let k = file.index(names.len());
        let path = out.join(&names[k]);
        let mut b = std::fs::read(&path).unwrap();
        let i = at.index(b.len());
        if cut {
            b.truncate(i);
        } else {
            b[i] ^= 1 << bit;
        }
        std::fs::write(&path, &b).unwrap();
        let target = dir.path().join("vda");
        old_disk(&target, data.len() as u64);
        let err = apply(&Store::Dir(out), &dir_ref(&c), &target, &opts(dir.path().join("j")));
        prop_assert!(err.is_err());
        let disk = std::fs::read(&target).unwrap();
        if k < c.index.chunks.len() {
            prop_assert!(
                matches!(err, Err(ImageError::Chunk { index, .. }) if index == k),
                "chunk {} damaged", k
            );
            for e in &c.index.chunks[k].extents {
                prop_assert!(disk[e.offset as usize..e.end() as usize].iter().all(|b| *b == 0xEE));
            }
        } else {
            prop_assert!(disk.iter().all(|b| *b == 0xEE), "a bad index wrote");
        }
    }
}
