//! A capture to the server (docs/agent-http.md): the agent of a run whose task sequence has a
//! `capture_image` step uploads the image's files one by one, `PUT
//! /agent/capture/<package>/<file>`, then `POST /agent/capture/<package>/done`. Each request
//! presents the run token as `/agent/status` does. Each file is hashed (SHA-256) as it arrives
//! and stored in the content library; `done` checks the image (docs/image-format.md) and saves
//! the package in the catalog through [`crate::admin::create_package`], as `netdeploy package
//! create` does. A package id that exists already is refused: a capture never replaces one.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{Extensions, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::StreamExt;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::AppState;
use crate::catalog::{ContentFile, MachineIdentity, Package, StepAction};
use crate::counters::Counters;
use crate::credentials::{Refusal, Use};
use netdeploy_wire::image::{INDEX_FILE, MAX_COMPRESSED};

/// Largest file of a capture: a chunk at its largest compressed size (docs/image-format.md);
/// an index is far smaller.
pub const MAX_FILE: u64 = MAX_COMPRESSED;
/// About the most files one capture may upload (a 4 TiB disk in 4 MiB chunks): counted by
/// the size of its manifest.
pub const MAX_FILES: usize = 1 << 20;

/// Who uploads: the machine and the deployment its run token is for.
#[derive(Debug, Deserialize)]
pub struct CaptureQuery {
    mac: Option<String>,
    uuid: Option<String>,
    deployment: Option<String>,
}

/// A package id a capture may create: letters, digits, `.`, `_` and `-`, not starting with
/// `.`, at most 64 characters (it names a directory on full media and in the agent's cache).
pub fn is_package_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// A file name a capture uploads: the index or a chunk (`chunk-NNNNNN.zst`).
pub fn is_image_file(name: &str) -> bool {
    name == INDEX_FILE
        || name
            .strip_prefix("chunk-")
            .and_then(|r| r.strip_suffix(".zst"))
            .is_some_and(|n| n.len() >= 6 && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Where the files of one run's capture of `package` wait for `done`: the manifest of what
/// the content library received, under the data directory.
fn staging(s: &AppState, package: &str, token_digest: &str) -> PathBuf {
    s.config
        .data_dir
        .join("capture")
        .join(format!("{package}.{}", &token_digest[..16]))
}

const MANIFEST: &str = "manifest.jsonl";
/// The most bytes a manifest line takes: a path of at most 20 characters, a size and a hash.
const MANIFEST_LINE: u64 = 160;

fn refused(s: &AppState, status: StatusCode, why: impl std::fmt::Display) -> Response {
    Counters::bump(&s.counters.captures_refused);
    tracing::warn!(status = status.as_u16(), reason = %why, "capture refused");
    (
        status,
        Json(serde_json::json!({ "error": why.to_string() })),
    )
        .into_response()
}

fn unavailable(what: &str, e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "{what}");
    (StatusCode::SERVICE_UNAVAILABLE, format!("{what}\n")).into_response()
}

/// Checks the run token, the package id, and that the run's deployment captures to this
/// package and that no package has that id; returns the staging directory.
async fn admit(
    s: &Arc<AppState>,
    q: &CaptureQuery,
    headers: &HeaderMap,
    ext: &Extensions,
    package: &str,
) -> Result<PathBuf, Response> {
    let m = match crate::bootpath::machine_of(q.mac.as_deref(), q.uuid.as_deref()) {
        Ok(m) => m,
        Err(e) => return Err(refused(s, StatusCode::BAD_REQUEST, e)),
    };
    let auth = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let bp = s.bootpath.clone();
    let deployment = q.deployment.clone();
    let checked = tokio::task::spawn_blocking(move || {
        bp.check_run_token(auth.as_deref(), &m, deployment.as_deref(), Use::Status)
    })
    .await;
    let (token, credential) = match checked {
        Ok(Ok(Ok(held))) => held,
        Ok(Ok(Err(r))) => return Err(refuse_token(s, ext, &m, r)),
        Ok(Err(e)) => return Err(unavailable("the run token cannot be checked", e)),
        Err(e) => return Err(unavailable("the run token check failed", e)),
    };
    if !is_package_id(package) {
        return Err(refused(
            s,
            StatusCode::BAD_REQUEST,
            format!(
                "{package:?} is not a package id a capture may create (letters, digits, ., _ \
                 and -, at most 64)"
            ),
        ));
    }
    let snapshot = s.bootpath.memory.snapshot();
    let catalog = snapshot.catalog();
    let captures = credential
        .deployment
        .as_deref()
        .and_then(|d| d.parse().ok())
        .and_then(|d| catalog.deployment(&d))
        .and_then(|d| catalog.task_sequence(&d.task_sequence))
        .is_some_and(|ts| {
            ts.steps.iter().any(|step| {
                step.action == StepAction::CaptureImage && step.package.as_deref() == Some(package)
            })
        });
    if !captures {
        return Err(refused(
            s,
            StatusCode::FORBIDDEN,
            format!(
                "the task sequence of this run's deployment has no capture_image step for \
                 package {package:?}"
            ),
        ));
    }
    if catalog.package(package).is_some() {
        return Err(refused(
            s,
            StatusCode::CONFLICT,
            format!("package {package:?} exists already: a capture never replaces a package"),
        ));
    }
    let digest = crate::credentials::digest(&token);
    Ok(staging(s, package, &digest))
}

fn refuse_token(s: &AppState, ext: &Extensions, m: &MachineIdentity, r: Refusal) -> Response {
    let status = StatusCode::from_u16(r.http_status()).unwrap_or(StatusCode::FORBIDDEN);
    Counters::bump(match r.http_status() {
        401 => &s.counters.agent_unauthorized,
        _ => &s.counters.agent_forbidden,
    });
    let client = ext
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.to_string())
        .unwrap_or_default();
    refused(
        s,
        status,
        format!(
            "{} (client {client}, mac {})",
            r.reason(),
            m.mac.map(|x| x.to_string()).unwrap_or_default()
        ),
    )
}

/// `PUT /agent/capture/<package>/<file>`: one file of the image, hashed as it arrives and
/// stored in the content library.
pub async fn put_file(
    State(s): State<Arc<AppState>>,
    UrlPath((package, file)): UrlPath<(String, String)>,
    Query(q): Query<CaptureQuery>,
    headers: HeaderMap,
    ext: Extensions,
    body: Body,
) -> Response {
    let dir = match admit(&s, &q, &headers, &ext, &package).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    if !is_image_file(&file) {
        return refused(
            &s,
            StatusCode::BAD_REQUEST,
            format!("{file:?} is not a file of an image (image.ndimg or chunk-NNNNNN.zst)"),
        );
    }
    // The manifest's size, not its lines: one line per file, under MANIFEST_LINE bytes, and
    // no upload reads the whole list.
    let listed = std::fs::metadata(dir.join(MANIFEST)).map_or(0, |m| m.len());
    if listed >= MAX_FILES as u64 * MANIFEST_LINE {
        return refused(
            &s,
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("a capture has at most {MAX_FILES} files"),
        );
    }
    if let Err(e) = std::fs::create_dir_all(&dir) {
        return unavailable("the capture cannot be staged", e);
    }
    let part = dir.join(format!("{file}.part"));
    let received = match receive(body, &part).await {
        Ok(r) => r,
        Err(Received::TooLarge) => {
            let _ = std::fs::remove_file(&part);
            return refused(
                &s,
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("{file}: larger than {MAX_FILE} bytes"),
            );
        }
        Err(Received::Io(e)) => {
            let _ = std::fs::remove_file(&part);
            return unavailable("the uploaded file cannot be stored", e);
        }
    };
    let library = s.bootpath.library.clone();
    let name = file.clone();
    let (sha256, size) = received.clone();
    let stored = tokio::task::spawn_blocking(move || {
        // The file was hashed as it arrived and synced: it moves into the library as it is,
        // with no second copy or read (a captured disk is many GB). Only where the staging
        // directory and the library are on different filesystems is it copied, and hashed
        // again on the way.
        let stored = match library.adopt(&part, &sha256) {
            Ok(()) => Ok(crate::catalog::ContentFile {
                path: name.clone(),
                size,
                sha256,
            }),
            Err(_) => library.import(&part, &name),
        };
        let _ = std::fs::remove_file(&part);
        let f = stored.map_err(|e| e.to_string())?;
        let mut line = serde_json::to_vec(&f).map_err(|e| e.to_string())?;
        line.push(b'\n');
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(MANIFEST))
            .and_then(|mut m| m.write_all(&line).and_then(|_| m.sync_all()))
            .map_err(|e| e.to_string())?;
        Ok::<_, String>(f)
    })
    .await;
    match stored {
        Ok(Ok(f)) if f.sha256 == received.0 => {
            tracing::info!(package, file, size = f.size, sha256 = %f.sha256, "capture file stored");
            (
                StatusCode::CREATED,
                Json(serde_json::json!({ "path": f.path, "size": f.size, "sha256": f.sha256 })),
            )
                .into_response()
        }
        Ok(Ok(f)) => unavailable(
            "the uploaded file changed while it was stored",
            format!("{} != {}", f.sha256, received.0),
        ),
        Ok(Err(e)) => unavailable("the uploaded file cannot be stored", e),
        Err(e) => unavailable("storing the uploaded file failed", e),
    }
}

enum Received {
    TooLarge,
    Io(std::io::Error),
}

/// Streams `body` to `path`, hashing it; at most [`MAX_FILE`] bytes. Returns the SHA-256
/// (lowercase hex) and the size.
async fn receive(body: Body, path: &Path) -> Result<(String, u64), Received> {
    let mut out = tokio::fs::File::create(path).await.map_err(Received::Io)?;
    let mut hash = Sha256::new();
    let mut size = 0u64;
    let mut stream = body.into_data_stream();
    while let Some(piece) = stream.next().await {
        let piece = piece.map_err(|e| Received::Io(std::io::Error::other(e)))?;
        size += piece.len() as u64;
        if size > MAX_FILE {
            return Err(Received::TooLarge);
        }
        hash.update(&piece);
        tokio::io::AsyncWriteExt::write_all(&mut out, &piece)
            .await
            .map_err(Received::Io)?;
    }
    tokio::io::AsyncWriteExt::flush(&mut out)
        .await
        .map_err(Received::Io)?;
    // On disk before the library takes it in: a crash never leaves a short file under a hash.
    out.sync_all().await.map_err(Received::Io)?;
    Ok((netdeploy_wire::hex::encode(&hash.finalize()), size))
}

/// The files a capture stored so far, in the order they arrived; a file sent again counts
/// once, as last sent.
fn read_manifest(dir: &Path) -> Vec<ContentFile> {
    let text = std::fs::read_to_string(dir.join(MANIFEST)).unwrap_or_default();
    let mut files: Vec<ContentFile> = Vec::new();
    for f in text
        .lines()
        .filter_map(|l| serde_json::from_str::<ContentFile>(l).ok())
    {
        files.retain(|g| g.path != f.path);
        files.push(f);
    }
    files
}

/// `POST /agent/capture/<package>/done`: the image is whole; check it and save the package.
pub async fn done(
    State(s): State<Arc<AppState>>,
    UrlPath(package): UrlPath<String>,
    Query(q): Query<CaptureQuery>,
    headers: HeaderMap,
    ext: Extensions,
) -> Response {
    let dir = match admit(&s, &q, &headers, &ext, &package).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    let files = read_manifest(&dir);
    if !files.iter().any(|f| f.path == INDEX_FILE) {
        return refused(
            &s,
            StatusCode::BAD_REQUEST,
            format!("the capture of {package:?} has no {INDEX_FILE}: send it before done"),
        );
    }
    let bp = s.bootpath.clone();
    let id = package.clone();
    let saved = tokio::task::spawn_blocking(move || {
        let p = Package {
            id,
            version: 1,
            files,
            package_share: false,
        };
        let r = crate::admin::create_package(&bp.store, &bp.library, &p, false);
        if r.is_ok() {
            let _ = std::fs::remove_dir_all(&dir);
        }
        r.map(|images| (p, images))
    })
    .await;
    match saved {
        Ok(Ok((p, images))) => {
            s.bootpath.memory.reloaded().await;
            Counters::bump(&s.counters.captures_saved);
            let bytes: u64 = p.files.iter().map(|f| f.size).sum();
            tracing::info!(
                package,
                files = p.files.len(),
                bytes,
                "captured image saved as a package"
            );
            (
                StatusCode::CREATED,
                Json(serde_json::json!({
                    "package": p.id,
                    "files": p.files.len(),
                    "bytes": bytes,
                    "chunks": images.iter().map(|i| i.chunks).sum::<usize>(),
                })),
            )
                .into_response()
        }
        Ok(Err(crate::admin::AdminError::Store(e))) => {
            unavailable("the package cannot be saved", e)
        }
        Ok(Err(e)) => refused(&s, StatusCode::CONFLICT, e),
        Err(e) => unavailable("saving the package failed", e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_image_files_and_plain_package_ids_are_taken() {
        for ok in ["image.ndimg", "chunk-000000.zst", "chunk-1234567.zst"] {
            assert!(is_image_file(ok), "{ok}");
        }
        for bad in [
            "../image.ndimg",
            "chunk-12.zst",
            "chunk-00000a.zst",
            "x.zst",
            "manifest.jsonl",
            "",
        ] {
            assert!(!is_image_file(bad), "{bad}");
        }
        for ok in ["ref-disk", "win11_2026.1", "A"] {
            assert!(is_package_id(ok), "{ok}");
        }
        for bad in ["", ".hidden", "a/b", "a b", &"x".repeat(65)] {
            assert!(!is_package_id(bad), "{bad}");
        }
    }
}
