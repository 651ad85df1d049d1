//! Images through the real server (docs/image-format.md): a captured ext4 filesystem is
//! imported as a package with `netdeploy package create`, its index and chunks are served by
//! hash from the content library, and the agent's apply lays it onto another file, which
//! e2fsck finds clean and debugfs reads back file by file. A chunk tampered with in the
//! library fails the apply naming it, and the apply run again resumes at that chunk; an apply
//! cut when its server is killed resumes, against the server started again, where it stopped.

use std::path::Path;
use std::process::Command;

use netdeploy_agent::http::{Client, Url};
use netdeploy_agent::image::{self, ApplyOptions, ImageError, ImageRef, Store};
use netdeploy_wire::image::{chunk_file, INDEX_FILE};

use crate::harness::{cli_ok, loopback_config, Server};

fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().expect("run");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// An ext4 filesystem of 48 MiB holding text from /usr/share and 2 MiB of noise.
fn ext4(dir: &Path) -> (std::path::PathBuf, Vec<(String, Vec<u8>)>) {
    let root = dir.join("root");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let noise: Vec<u8> = (0..2 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect();
    let mut files = vec![
        ("noise.bin".to_owned(), noise),
        ("etc/hostname".to_owned(), b"imaged\n".to_vec()),
    ];
    if let Ok(gpl) = std::fs::read("/usr/share/common-licenses/GPL-3") {
        files.push(("GPL-3".to_owned(), gpl));
    }
    for (name, data) in &files {
        std::fs::write(root.join(name), data).unwrap();
    }
    let img = dir.join("ext4.img");
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-b", "4096", "-d"])
        .arg(&root)
        .arg(&img)
        .arg("48M"));
    (img, files)
}

fn assert_ext4_holds(img: &Path, files: &[(String, Vec<u8>)]) {
    run(Command::new("e2fsck").arg("-fn").arg(img));
    for (name, data) in files {
        let got = run(Command::new("debugfs")
            .arg("-R")
            .arg(format!("cat /{name}"))
            .arg(img));
        assert!(got == *data, "{name} differs after apply");
    }
}

#[test]
fn a_captured_image_package_is_applied_from_the_server_and_a_tampered_chunk_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let (img, files) = ext4(dir.path());
    let pkg = dir.path().join("pkg");
    let captured = image::capture(
        &img,
        &pkg,
        &image::CaptureOptions {
            chunk_size: 512 << 10,
            level: 3,
        },
    )
    .unwrap();
    assert!(captured.index.chunks.len() > 3);
    let data = dir.path().join("data");
    let out = cli_ok(
        &data,
        &[
            "package",
            "create",
            "--id",
            "disk",
            "--from",
            pkg.to_str().unwrap(),
        ],
    );
    let files_in_package = captured.index.chunks.len() + 1;
    assert!(out.contains(&format!("{files_in_package} files")), "{out}");
    assert!(
        out.contains(&format!(
            "image image.ndimg: {} chunks",
            captured.index.chunks.len()
        )),
        "{out}"
    );

    // A package missing a chunk is refused, naming it.
    let partial = dir.path().join("partial");
    std::fs::create_dir_all(&partial).unwrap();
    std::fs::copy(pkg.join(INDEX_FILE), partial.join(INDEX_FILE)).unwrap();
    std::fs::copy(pkg.join(chunk_file(0)), partial.join(chunk_file(0))).unwrap();
    let (ok, out) = crate::harness::cli(
        &data,
        &[
            "package",
            "create",
            "--id",
            "partial",
            "--from",
            partial.to_str().unwrap(),
        ],
    );
    assert!(!ok && out.contains("chunk 1"), "{out}");
    let server = Server::start(dir.path(), &loopback_config(dir.path(), "proxy", ""));

    let client = Client::default();
    let store = Store::Http {
        client: &client,
        base: Url::parse(&server.url()).unwrap(),
    };
    let image_ref = ImageRef {
        name: INDEX_FILE,
        index_size: captured.index_len,
        index_sha256: Some(captured.index_sha256),
    };
    let journal = dir.path().join("journal");
    let opts = ApplyOptions {
        journal_every: 0,
        ..ApplyOptions::new(journal.clone())
    };
    let target = dir.path().join("vda");
    std::fs::write(&target, vec![0xEEu8; captured.index.size as usize]).unwrap();
    let done = image::apply(&store, &image_ref, &target, &opts).unwrap();
    assert_eq!(done.resumed_at, 0);
    assert_ext4_holds(&target, &files);

    // Chunk 2 changes in the content library behind the server's back (same size).
    let bad = 2;
    let sha = netdeploy_wire::hex::encode(&captured.index.chunks[bad].sha256);
    let stored = data.join("content").join(&sha[..2]).join(&sha);
    let good = std::fs::read(&stored).unwrap();
    let mut tampered = good.clone();
    tampered[good.len() / 3] ^= 0x01;
    std::fs::write(&stored, &tampered).unwrap();
    std::fs::write(&target, vec![0xEEu8; captured.index.size as usize]).unwrap();
    let err = image::apply(&store, &image_ref, &target, &opts).unwrap_err();
    assert!(matches!(err, ImageError::Chunk { index: 2, .. }), "{err}");
    assert!(err.to_string().contains("chunk 2"), "{err}");
    let disk = std::fs::read(&target).unwrap();
    for e in &captured.index.chunks[bad].extents {
        assert!(
            disk[e.offset as usize..e.end() as usize]
                .iter()
                .all(|b| *b == 0xEE),
            "a byte of the tampered chunk was written"
        );
    }

    // Repaired, the same apply resumes at the chunk that failed.
    std::fs::write(&stored, &good).unwrap();
    let done = image::apply(&store, &image_ref, &target, &opts).unwrap();
    assert_eq!(done.resumed_at, bad);
    assert_ext4_holds(&target, &files);
    assert!(pkg.join(chunk_file(bad)).exists());
}

/// A server killed (SIGKILL, by its PID) while a machine applies an image, then started again
/// on the same data directory at another port: the apply, run again against it, resumes at the
/// chunk where its download stopped (its journal), not at chunk 0. The download stops at a
/// known chunk because that chunk's file is out of the library when the server is asked for it.
#[test]
fn an_apply_cut_by_a_killed_server_resumes_at_the_chunk_where_it_stopped_on_the_restarted_server() {
    let dir = tempfile::tempdir().unwrap();
    let (img, files) = ext4(dir.path());
    let pkg = dir.path().join("pkg");
    let captured = image::capture(
        &img,
        &pkg,
        &image::CaptureOptions {
            chunk_size: 512 << 10,
            level: 3,
        },
    )
    .unwrap();
    assert!(captured.index.chunks.len() > 3);
    let data = dir.path().join("data");
    cli_ok(
        &data,
        &[
            "package",
            "create",
            "--id",
            "disk",
            "--from",
            pkg.to_str().unwrap(),
        ],
    );
    let image_ref = ImageRef {
        name: INDEX_FILE,
        index_size: captured.index_len,
        index_sha256: Some(captured.index_sha256),
    };
    let opts = ApplyOptions {
        journal_every: 0,
        ..ApplyOptions::new(dir.path().join("journal"))
    };
    let target = dir.path().join("vda");
    std::fs::write(&target, vec![0xEEu8; captured.index.size as usize]).unwrap();
    let client = Client::default();

    let stop = 2;
    let sha = netdeploy_wire::hex::encode(&captured.index.chunks[stop].sha256);
    let stored = data.join("content").join(&sha[..2]).join(&sha);
    let aside = dir.path().join("aside");
    std::fs::rename(&stored, &aside).unwrap();
    let mut first = Server::start(dir.path(), &loopback_config(dir.path(), "proxy", ""));
    let store = Store::Http {
        client: &client,
        base: Url::parse(&first.url()).unwrap(),
    };
    let err = image::apply(&store, &image_ref, &target, &opts).unwrap_err();
    assert!(
        matches!(err, ImageError::Chunk { index, .. } if index == stop),
        "{err}"
    );
    let pid = first.pid();
    first.crash();
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "server {pid} still runs"
    );
    std::fs::rename(&aside, &stored).unwrap();

    let second = Server::start(dir.path(), &loopback_config(dir.path(), "proxy", ""));
    let store = Store::Http {
        client: &client,
        base: Url::parse(&second.url()).unwrap(),
    };
    let done = image::apply(&store, &image_ref, &target, &opts).unwrap();
    assert_eq!(done.resumed_at, stop);
    assert_ext4_holds(&target, &files);
}
