//! Running the planned steps, with content fetched as the deployment option says
//! (docs/deployment-checks.md): `download_on_demand` fetches what a step needs right before it runs,
//! `download_all` fetched everything before the first step, and both verify every file's
//! SHA-256 before use; `direct_access` streams from the server without verifying.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::apply_image::apply_image;
use crate::command;
use crate::console::say;
use crate::disk::{DiskError, Disks};
use crate::download::{self, Backoff, Expect, HttpSource, LocalSource, Source, TransferError};
use crate::http::Client;
use crate::multicast::{self, session::SessionServer};
use crate::plan::{FileRef, Op, Origin, PackageRef};

/// Why a step failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepFailure {
    /// The file the failure is about, as the policy names it.
    pub file: Option<String>,
    pub reason: String,
    /// Exit code of a failed command.
    pub code: Option<i32>,
}

impl StepFailure {
    /// A failure that is about no file.
    pub fn reason(reason: impl Into<String>) -> StepFailure {
        StepFailure {
            file: None,
            reason: reason.into(),
            code: None,
        }
    }
}

impl From<TransferError> for StepFailure {
    fn from(e: TransferError) -> StepFailure {
        StepFailure {
            file: Some(e.file().to_owned()),
            reason: e.to_string(),
            code: None,
        }
    }
}

/// The state of a running task sequence.
pub struct Runner {
    client: Client,
    backoff: Backoff,
    /// The package cache, `/var/lib/netdeploy/packages`.
    cache: PathBuf,
    server: String,
    deployment: String,
    /// Variables set by `set_variable` steps, in order.
    variables: Vec<(String, String)>,
    /// Cache files fetched (and verified) in this run.
    cached: HashSet<PathBuf>,
    /// The task sequence's secret values, masked in what commands print.
    secrets: Vec<String>,
    /// The disks of the disk steps, and what this run laid out on them.
    disks: Disks,
    /// Where `capture_image` reads disks and sends images.
    capture: Option<crate::capture_image::CaptureSetup>,
    /// Where to ask for multicast sessions, in a deployment with `multicast = true`.
    multicast: Option<SessionServer>,
    /// What the last step has to say in its status: the path an image took.
    note: Option<String>,
}

impl Runner {
    pub fn new(
        client: Client,
        backoff: Backoff,
        cache: PathBuf,
        server: &str,
        deployment: &str,
    ) -> Runner {
        let state = cache.parent().unwrap_or(&cache).to_owned();
        Runner {
            disks: Disks::new(PathBuf::from("/sys/block"), state),
            client,
            backoff,
            cache,
            server: server.to_owned(),
            deployment: deployment.to_owned(),
            variables: Vec::new(),
            cached: HashSet::new(),
            secrets: Vec::new(),
            capture: None,
            multicast: None,
            note: None,
        }
    }

    /// Images (`.ndimg`) from the server come by multicast when `server` has a session for
    /// them (docs/multicast.md).
    pub fn set_multicast(&mut self, server: SessionServer) {
        self.multicast = Some(server);
    }

    /// What the step that just ran has to say in its status (`path multicast: ...`), once.
    pub fn take_note(&mut self) -> Option<String> {
        self.note.take()
    }

    /// Where `capture_image` steps read disks and send images.
    pub fn set_capture(&mut self, setup: crate::capture_image::CaptureSetup) {
        self.capture = Some(setup);
    }

    /// The secret values to mask in what commands print.
    pub fn mask(&mut self, secrets: &[String]) {
        self.secrets = secrets.to_vec();
    }

    /// Lists disks under `sys_block` instead of `/sys/block` (a test machine root).
    pub fn disks_under(&mut self, sys_block: PathBuf) {
        self.disks.sys_block = sys_block;
    }

    /// Variables set so far.
    pub fn variables(&self) -> &[(String, String)] {
        &self.variables
    }

    /// Fetches files into the package cache before the first step (`download_all`). Files
    /// of a full media are only verified where they are: they are local already, and a disk
    /// image would not fit in the boot environment's memory.
    pub fn predownload(&mut self, files: &[FileRef]) -> Result<(), StepFailure> {
        for f in files {
            match &f.origin {
                Origin::Url(_) => {
                    self.cache_file(f)?;
                }
                Origin::Media(_) => {
                    download::verify_source(&mut *self.origin(f), &expect(f), &self.backoff)?;
                }
            }
        }
        Ok(())
    }

    /// Runs one step.
    pub fn run(&mut self, op: &Op) -> Result<(), StepFailure> {
        self.note = None;
        match op {
            Op::ApplyImage { file, target } => self.apply(file, target),
            Op::ApplyImageToDisk {
                file,
                disk,
                partition,
            } => {
                let target = self.disks.target(disk, *partition).map_err(disk_failure)?;
                self.apply(file, &target)?;
                if partition.is_some() {
                    if let Some(done) = self.disks.grow(&target).map_err(disk_failure)? {
                        say(format!("{}: {done}", target.display()));
                    }
                }
                Ok(())
            }
            Op::PartitionDisk { disk, layout } => {
                self.disks.partition(disk, layout).map_err(disk_failure)
            }
            Op::Format {
                disk,
                partition,
                filesystem,
            } => self
                .disks
                .format(disk, *partition, filesystem)
                .map_err(disk_failure),
            Op::Bcdboot => self.disks.bcdboot().map_err(disk_failure),
            Op::RunCommand { command, package } => {
                let cwd = match package {
                    Some(p) => Some(self.install(p)?),
                    None => None,
                };
                let env = command::environment(&self.variables, &self.server, &self.deployment);
                command::run(command, &env, cwd.as_deref(), &self.secrets).map_err(|e| {
                    StepFailure {
                        file: None,
                        reason: e.to_string(),
                        code: e.code(),
                    }
                })
            }
            Op::InstallPackage(p) => self.install(p).map(|_| ()),
            Op::WriteFile { file, target } => {
                let mut source = self.source(file);
                download::fetch_file(&mut *source, target, &expect(file), &self.backoff)?;
                Ok(())
            }
            Op::WriteText { text, target } => write_text(target, text.as_bytes()).map_err(|e| {
                StepFailure::reason(format!("cannot write {}: {e}", target.display()))
            }),
            Op::SetVariable { name, value, .. } => {
                self.variables.retain(|(k, _)| k != name);
                self.variables.push((name.clone(), value.clone()));
                Ok(())
            }
            Op::CaptureImage {
                package,
                disk,
                partition,
            } => {
                let setup = self
                    .capture
                    .as_ref()
                    .ok_or_else(|| StepFailure::reason("capture_image cannot run here"))?;
                let done = crate::capture_image::run(setup, package, disk, *partition)
                    .map_err(StepFailure::reason)?;
                crate::console::say(done);
                Ok(())
            }
            // The restart itself is the caller's: it reports first (`crate::agent`).
            Op::End(_) | Op::Restart => Ok(()),
            Op::Fail(reason) => Err(StepFailure::reason(reason.clone())),
        }
    }

    /// An image onto `target`: netdeploy's format (`.ndimg`, docs/image-format.md) chunk by
    /// chunk, each chunk verified before it is written and a cut apply resumed from the
    /// journal in the state directory; in Windows PE a WIM through `dism`; else raw.
    fn apply(&mut self, file: &FileRef, target: &Path) -> Result<(), StepFailure> {
        if file.path.ends_with(".ndimg") {
            let store = match &file.origin {
                // Chunks are fetched by hash from the content library the index came from.
                Origin::Url(url) => {
                    let text = url.to_string();
                    let base = match text.rfind("/content/") {
                        Some(i) => &text[..i],
                        None => &self.server,
                    };
                    crate::image::Store::Http {
                        client: &self.client,
                        base: crate::http::Url::parse(base).map_err(|e| {
                            StepFailure::reason(format!("{}: bad server URL: {e}", file.path))
                        })?,
                    }
                }
                Origin::Media(path) => {
                    crate::image::Store::Content(path.parent().unwrap_or(path).to_owned())
                }
            };
            let image = crate::image::ImageRef {
                name: &file.path,
                index_size: file.size,
                index_sha256: file.sha256,
            };
            let failure = |e: crate::image::ImageError| StepFailure {
                file: Some(file.path.clone()),
                reason: e.to_string(),
                code: None,
            };
            if let (Some(server), Origin::Url(_)) = (&self.multicast, &file.origin) {
                let why = match server.ask(&file.package, &file.path) {
                    Ok(session) => {
                        let o = multicast::session::options(&session, server.interface());
                        match multicast::apply(&store, &image, target, &o) {
                            Ok(r) => {
                                self.note = Some(multicast::session::path_note(&r, &o));
                                return Ok(());
                            }
                            // What failed may be the session's alone: the HTTP apply is
                            // tried, and fails the step if the cause is shared.
                            Err(e) => format!("the multicast apply failed: {e}"),
                        }
                    }
                    Err(why) => why,
                };
                say(format!("{}: path http: {why}", file.path));
                self.note = Some(format!("path http: {why}"));
            }
            let journal = self.disks.journal(target);
            if let Some(dir) = journal.parent() {
                std::fs::create_dir_all(dir).map_err(|e| {
                    StepFailure::reason(format!("cannot create {}: {e}", dir.display()))
                })?;
            }
            let opts = crate::image::ApplyOptions {
                backoff: self.backoff.clone(),
                ..crate::image::ApplyOptions::new(journal)
            };
            crate::image::apply(&store, &image, target, &opts).map_err(failure)?;
            return Ok(());
        }
        if crate::disk::is_wim(&file.path) {
            let local = self.cache_file(file)?;
            return self.disks.apply_wim(&local, target).map_err(disk_failure);
        }
        let mut source = self.source(file);
        apply_image(&mut *source, target, &expect(file), &self.backoff)?;
        Ok(())
    }

    /// Every file of the package in the cache; returns the package's directory.
    fn install(&mut self, p: &PackageRef) -> Result<PathBuf, StepFailure> {
        for f in &p.files {
            self.cache_file(f)?;
        }
        let dir = self.cache.join(&p.id);
        std::fs::create_dir_all(&dir)
            .map_err(|e| StepFailure::reason(format!("cannot create {}: {e}", dir.display())))?;
        Ok(dir)
    }

    fn cache_file(&mut self, f: &FileRef) -> Result<PathBuf, StepFailure> {
        let path = f.cache_path(&self.cache);
        if !self.cached.contains(&path) {
            download::fetch_file(&mut *self.origin(f), &path, &expect(f), &self.backoff)?;
            self.cached.insert(path.clone());
        }
        Ok(path)
    }

    /// The cached copy when this run fetched one, else where the policy says the file is.
    fn source(&self, f: &FileRef) -> Box<dyn Source + '_> {
        let path = f.cache_path(&self.cache);
        if self.cached.contains(&path) {
            Box::new(LocalSource { path })
        } else {
            self.origin(f)
        }
    }

    /// The server's copy, or the full media's.
    fn origin(&self, f: &FileRef) -> Box<dyn Source + '_> {
        match &f.origin {
            Origin::Url(url) => Box::new(HttpSource {
                client: &self.client,
                url: url.clone(),
            }),
            Origin::Media(path) => Box::new(LocalSource {
                path: crate::full_media::content_file(path),
            }),
        }
    }
}

fn disk_failure(e: DiskError) -> StepFailure {
    StepFailure::reason(e.to_string())
}

fn expect(f: &FileRef) -> Expect<'_> {
    Expect {
        file: &f.path,
        size: f.size,
        sha256: f.sha256,
    }
}

/// Writes `bytes` to `target` through its part file, so a reader never sees half of it.
fn write_text(target: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = target.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let part = download::part_path(target);
    let r = std::fs::File::create(&part)
        .and_then(|mut f| f.write_all(bytes).and_then(|_| f.sync_all()))
        .and_then(|_| std::fs::rename(&part, target));
    if r.is_err() {
        let _ = std::fs::remove_file(&part);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `len` bytes of xorshift noise from `seed`: data that does not compress.
    fn noise(mut x: u64, len: usize) -> Vec<u8> {
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }
    use crate::fake_server::{range_reply, FakeServer, Reply};
    use crate::hash::Sha256Digest;
    use crate::http::Url;
    use sha2::{Digest, Sha256};
    use std::time::Duration;

    fn runner(cache: &Path) -> Runner {
        Runner::new(
            Client::default(),
            Backoff {
                attempts: 2,
                first: Duration::from_millis(10),
                max: Duration::from_millis(10),
                total: Duration::from_secs(1),
            },
            cache.to_owned(),
            "http://10.77.0.1:8080",
            "LAB00001",
        )
    }

    fn file(srv: &FakeServer, path: &str, data: &[u8], sha: Option<Sha256Digest>) -> FileRef {
        FileRef {
            package: "tools".into(),
            path: path.into(),
            size: data.len() as u64,
            sha256: sha,
            origin: Origin::Url(Url::parse(&srv.url("/content/x")).unwrap()),
        }
    }

    #[test]
    fn variables_set_earlier_reach_later_commands() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = runner(dir.path());
        r.run(&Op::SetVariable {
            name: "OSDComputerName".into(),
            value: "pc0".into(),
            secret: false,
        })
        .unwrap();
        r.run(&Op::SetVariable {
            name: "OSDComputerName".into(),
            value: "pc1".into(),
            secret: false,
        })
        .unwrap();
        assert_eq!(r.variables(), [("OSDComputerName".into(), "pc1".into())]);
        let out = dir.path().join("out");
        r.run(&Op::RunCommand {
            command: format!(
                "echo \"$OSDComputerName $NETDEPLOY_DEPLOYMENT\" > {}",
                out.display()
            ),
            package: None,
        })
        .unwrap();
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "pc1 LAB00001\n");
        let err = r
            .run(&Op::RunCommand {
                command: "exit 7".into(),
                package: None,
            })
            .unwrap_err();
        assert_eq!(err.code, Some(7));
        assert_eq!(err.reason, "the command exited with code 7");
    }

    #[test]
    fn writes_text_and_package_files() {
        let data = b"welcome\n".to_vec();
        let d = data.clone();
        let srv = FakeServer::start(move |req| range_reply(req, &d));
        let dir = tempfile::tempdir().unwrap();
        let mut r = runner(&dir.path().join("cache"));
        let note = dir.path().join("etc/note");
        r.run(&Op::WriteText {
            text: "text".into(),
            target: note.clone(),
        })
        .unwrap();
        assert_eq!(std::fs::read_to_string(&note).unwrap(), "text");
        let sha: Sha256Digest = Sha256::digest(&data).into();
        let motd = dir.path().join("motd");
        r.run(&Op::WriteFile {
            file: file(&srv, "etc/motd", &data, Some(sha)),
            target: motd.clone(),
        })
        .unwrap();
        assert_eq!(std::fs::read(&motd).unwrap(), data);
        let err = r
            .run(&Op::WriteFile {
                file: file(&srv, "etc/motd", &data, Some([1; 32])),
                target: dir.path().join("bad"),
            })
            .unwrap_err();
        assert_eq!(err.file.as_deref(), Some("etc/motd"));
        assert!(err.reason.contains("SHA-256 mismatch"), "{}", err.reason);
        assert!(!dir.path().join("bad").exists());
    }

    #[test]
    fn install_package_fills_the_cache_once_and_later_steps_use_it() {
        let data = b"#!/bin/sh\necho tool\n".to_vec();
        let d = data.clone();
        let srv = FakeServer::start(move |req| range_reply(req, &d));
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("packages");
        let mut r = runner(&cache);
        let sha: Sha256Digest = Sha256::digest(&data).into();
        let pkg = PackageRef {
            id: "tools".into(),
            files: vec![file(&srv, "bin/tool", &data, Some(sha))],
        };
        r.run(&Op::InstallPackage(pkg.clone())).unwrap();
        assert_eq!(std::fs::read(cache.join("tools/bin/tool")).unwrap(), data);
        r.run(&Op::RunCommand {
            command: "test -f bin/tool".into(),
            package: Some(pkg.clone()),
        })
        .unwrap();
        r.run(&Op::WriteFile {
            file: pkg.files[0].clone(),
            target: dir.path().join("copy"),
        })
        .unwrap();
        assert_eq!(
            srv.requests().len(),
            1,
            "the cache is used after the first fetch"
        );
    }

    #[test]
    fn an_ndimg_on_a_full_media_is_applied_from_its_content_files_and_a_bad_chunk_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let data = noise(0x9E37_79B9u64, (1 << 20) + 4096);
        let src = dir.path().join("part.raw");
        std::fs::write(&src, &data).unwrap();
        let captured = crate::image::capture(
            &src,
            &dir.path().join("image"),
            &crate::image::CaptureOptions {
                chunk_size: 256 << 10,
                level: 3,
            },
        )
        .unwrap();
        assert!(captured.index.chunks.len() > 2);
        // A full media names each file by its SHA-256 (docs/media.md).
        let content = dir.path().join("content");
        std::fs::create_dir_all(&content).unwrap();
        let by_hash = |sha: &Sha256Digest| content.join(crate::hash::to_hex(sha));
        std::fs::copy(
            dir.path()
                .join("image")
                .join(netdeploy_wire::image::INDEX_FILE),
            by_hash(&captured.index_sha256),
        )
        .unwrap();
        for (i, c) in captured.index.chunks.iter().enumerate() {
            std::fs::copy(
                dir.path()
                    .join("image")
                    .join(netdeploy_wire::image::chunk_file(i)),
                by_hash(&c.sha256),
            )
            .unwrap();
        }
        let op = Op::ApplyImage {
            file: FileRef {
                package: "os".into(),
                path: "image.ndimg".into(),
                size: captured.index_len,
                sha256: Some(captured.index_sha256),
                origin: Origin::Media(by_hash(&captured.index_sha256)),
            },
            target: dir.path().join("vda2"),
        };
        std::fs::write(dir.path().join("vda2"), vec![0xEEu8; data.len()]).unwrap();
        let mut r = runner(&dir.path().join("state/packages"));
        r.run(&op).unwrap();
        assert!(std::fs::read(dir.path().join("vda2")).unwrap() == data);

        let bad = by_hash(&captured.index.chunks[1].sha256);
        let mut chunk = std::fs::read(&bad).unwrap();
        chunk[10] ^= 1;
        std::fs::write(&bad, chunk).unwrap();
        let err = r.run(&op).unwrap_err();
        assert_eq!(err.file.as_deref(), Some("image.ndimg"));
        assert!(err.reason.contains("image.ndimg chunk 1"), "{}", err.reason);
    }

    #[test]
    fn an_ndimg_of_a_multicast_deployment_asks_for_its_session_and_says_the_path_it_took() {
        let dir = tempfile::tempdir().unwrap();
        let data = noise(0x2545_F491u64, 1 << 20);
        let src = dir.path().join("part.raw");
        std::fs::write(&src, &data).unwrap();
        let image = dir.path().join("image");
        let captured = crate::image::capture(
            &src,
            &image,
            &crate::image::CaptureOptions {
                chunk_size: 256 << 10,
                level: 3,
            },
        )
        .unwrap();
        let mut files: Vec<(String, Vec<u8>)> = vec![(
            crate::hash::to_hex(&captured.index_sha256),
            std::fs::read(image.join(netdeploy_wire::image::INDEX_FILE)).unwrap(),
        )];
        for (i, c) in captured.index.chunks.iter().enumerate() {
            files.push((
                crate::hash::to_hex(&c.sha256),
                std::fs::read(image.join(netdeploy_wire::image::chunk_file(i))).unwrap(),
            ));
        }
        let index_hex = files[0].0.clone();
        // The first ask is refused; the next ones name a session nobody sends.
        let asked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let a = asked.clone();
        let fail_index = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let f = fail_index.clone();
        let srv = FakeServer::start(move |req| {
            if req.route() == "/agent/multicast" {
                if a.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                    return Reply::new(409).body(b"multicast is off on this server".to_vec());
                }
                return Reply::new(200).json(&serde_json::json!({
                    "session": 9, "group": "239.255.77.99:7499", "receiver": 2,
                    "index_sha256": index_hex,
                }));
            }
            let sha = req.route().trim_start_matches("/content/");
            if sha == files[0].0 && f.swap(false, std::sync::atomic::Ordering::SeqCst) {
                return Reply::new(404);
            }
            match files.iter().find(|(h, _)| h == sha) {
                Some((_, bytes)) => range_reply(req, bytes),
                None => Reply::new(404),
            }
        });
        let op = Op::ApplyImage {
            file: FileRef {
                package: "os".into(),
                path: "image.ndimg".into(),
                size: captured.index_len,
                sha256: Some(captured.index_sha256),
                origin: Origin::Url(
                    Url::parse(&srv.url(&format!(
                        "/content/{}",
                        crate::hash::to_hex(&captured.index_sha256)
                    )))
                    .unwrap(),
                ),
            },
            target: dir.path().join("vda2"),
        };
        let vda = dir.path().join("vda2");
        let mut r = runner(&dir.path().join("state/packages"));
        r.disks_under(dir.path().join("sys/block"));

        // Without multicast in the deployment, nothing is asked and nothing is said.
        std::fs::write(&vda, vec![0xEEu8; data.len()]).unwrap();
        r.run(&op).unwrap();
        assert!(std::fs::read(&vda).unwrap() == data);
        assert_eq!(r.take_note(), None);
        assert_eq!(asked.load(std::sync::atomic::Ordering::SeqCst), 0);

        r.set_multicast(SessionServer {
            client: Client::default(),
            server: Url::parse(&srv.url("/")).unwrap(),
            token: None,
            query: String::new(),
        });
        std::fs::write(&vda, vec![0xEEu8; data.len()]).unwrap();
        r.run(&op).unwrap();
        assert!(std::fs::read(&vda).unwrap() == data);
        assert_eq!(
            r.take_note().as_deref(),
            Some("path http: the server refused a multicast session (409): multicast is off on this server")
        );
        let ask = srv
            .requests()
            .into_iter()
            .find(|q| q.route() == "/agent/multicast")
            .unwrap();
        assert_eq!(ask.query("package"), Some("os"));
        assert_eq!(ask.query("file"), Some("image.ndimg"));

        // A session that never comes: every chunk over HTTP, and the note says why.
        std::fs::write(&vda, vec![0xEEu8; data.len()]).unwrap();
        r.run(&op).unwrap();
        assert!(std::fs::read(&vda).unwrap() == data);
        let note = r.take_note().unwrap();
        assert!(
            note.starts_with(&format!(
                "path http: {} chunks over HTTP (",
                captured.index.chunks.len()
            )),
            "{note}"
        );

        // A multicast apply that fails (here its index is not found once) leaves the image
        // to the HTTP apply, and the note says why.
        std::fs::write(&vda, vec![0xEEu8; data.len()]).unwrap();
        fail_index.store(true, std::sync::atomic::Ordering::SeqCst);
        r.run(&op).unwrap();
        assert!(std::fs::read(&vda).unwrap() == data);
        let note = r.take_note().unwrap();
        assert!(
            note.starts_with("path http: the multicast apply failed: "),
            "{note}"
        );
    }

    #[test]
    fn a_failing_step_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = runner(dir.path());
        assert_eq!(
            r.run(&Op::Fail("partition steps are not supported".into())),
            Err(StepFailure::reason("partition steps are not supported"))
        );
    }
}
