//! Files over HTTP: content by SHA-256 (`/content/<sha256>`, only what the catalog
//! references), the TFTP root (`/tftp/<path>`), with `Range`, `ETag` and `Repr-Digest`. Bodies
//! are streamed from disk with their length, never read whole into memory, except small
//! content files, which are kept in memory after their first request.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::counters::Counters;

use super::AppState;

/// Content files up to [`SMALL_FILE`] bytes, kept in memory after their first request: a
/// package of thousands of small driver files is then served without a trip to the blocking
/// pool per file. Only for the content library, whose files never change under their name
/// (the name is the hash); bounded in total, and once full it keeps what it has.
#[derive(Debug, Default)]
pub struct SmallFiles(std::sync::Mutex<(HashMap<std::path::PathBuf, axum::body::Bytes>, usize)>);

/// Bytes [`SmallFiles`] holds at most.
pub(super) const SMALL_FILES_BYTES: usize = 32 << 20;

impl SmallFiles {
    fn get(&self, path: &Path) -> Option<axum::body::Bytes> {
        self.0.lock().ok()?.0.get(path).cloned()
    }

    fn keep(&self, path: &Path, bytes: &axum::body::Bytes) {
        let Ok(mut held) = self.0.lock() else {
            return;
        };
        if held.1 + bytes.len() <= SMALL_FILES_BYTES && !held.0.contains_key(path) {
            held.1 += bytes.len();
            held.0.insert(path.to_owned(), bytes.clone());
        }
    }
}

/// A file of the content library, by its SHA-256 (docs/content.md): `Range` requests,
/// `ETag` and `Repr-Digest` (RFC 9530) from the hash in the name, never re-hashed here.
pub(super) async fn content(
    State(s): State<Arc<AppState>>,
    axum::extract::Path(sha): axum::extract::Path<String>,
    headers: axum::http::HeaderMap,
) -> Response {
    Counters::bump(&s.counters.http_requests);
    let path = match s.bootpath.library.path_of(&sha) {
        Ok(p) => p,
        Err(_) => return (StatusCode::NOT_FOUND, "no such content\n").into_response(),
    };
    match s.bootpath.serves(&sha) {
        Ok(true) => {}
        Ok(false) => {
            tracing::info!(sha256 = %sha, "content request refused: no package or boot image holds it");
            return (StatusCode::NOT_FOUND, "no such content\n").into_response();
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot read the catalog to serve content");
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "the catalog cannot be read\n",
            )
                .into_response();
        }
    }
    // Without upstream servers no request pays for the extra look at the library.
    if !s.bootpath.upstream.is_empty() && !s.bootpath.library.has(&sha) {
        let fetched = s.bootpath.upstream.fetch(&s.bootpath.library, &sha).await;
        let failed = match &fetched {
            Ok(0) => None,
            Ok(bytes) => {
                Counters::bump(&s.counters.content_fetched);
                tracing::info!(sha256 = %sha, bytes, "content fetched from upstream, SHA-256 checked");
                Some(Default::default())
            }
            Err(e) => {
                Counters::bump(&s.counters.content_fetch_failed);
                tracing::warn!(error = %e, "content not here and not fetched");
                Some([(sha.clone(), e.to_string())].into_iter().collect())
            }
        };
        if let Some(failed) = failed {
            let bp = s.bootpath.clone();
            tokio::task::spawn_blocking(move || bp.note_holding(failed));
        }
        if let Err(e) = fetched {
            return (
                StatusCode::BAD_GATEWAY,
                format!(
                    "this server lacks the content and its upstream servers did not give it: {e}\n"
                ),
            )
                .into_response();
        }
    }
    let etag = format!("\"{sha}\"");
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
    {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response();
    }
    let digest = format!(
        "sha-256=:{}:",
        crate::content::base64(&crate::content::unhex(&sha).unwrap_or_default())
    );
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let file = match s.small_files.get(&path) {
        Some(bytes) => Ok(OpenFile::in_memory(bytes)),
        None => OpenFile::open(&path).await.inspect(|f| {
            if let Some(bytes) = &f.whole {
                s.small_files.keep(&path, bytes);
            }
        }),
    };
    send_range(file, range.as_deref(), &etag, &digest)
}

/// Streams a file or one byte range of it (RFC 9110 section 14).
pub(super) fn send_range(
    file: std::io::Result<OpenFile>,
    range: Option<&str>,
    etag: &str,
    digest: &str,
) -> Response {
    let file = match file {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return (StatusCode::NOT_FOUND, "no such content\n").into_response()
        }
        Err(_) => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    };
    let len = file.len;
    let common = [
        (header::ETAG, etag.to_owned()),
        (
            header::HeaderName::from_static("repr-digest"),
            digest.to_owned(),
        ),
        (header::ACCEPT_RANGES, "bytes".to_owned()),
        (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
    ];
    match range.map(|r| parse_range(r, len)) {
        None | Some(RangeAsk::Ignore) => {
            let body = file.body(0, len);
            let mut r = (common, body).into_response();
            r.headers_mut().insert(header::CONTENT_LENGTH, len.into());
            r
        }
        Some(RangeAsk::Unsatisfiable) => (
            StatusCode::RANGE_NOT_SATISFIABLE,
            [(header::CONTENT_RANGE, format!("bytes */{len}"))],
        )
            .into_response(),
        Some(RangeAsk::Bytes(first, last)) => {
            let n = last - first + 1;
            let body = file.body(first, n);
            let mut r = (StatusCode::PARTIAL_CONTENT, common, body).into_response();
            let h = r.headers_mut();
            h.insert(header::CONTENT_LENGTH, n.into());
            h.insert(
                header::CONTENT_RANGE,
                format!("bytes {first}-{last}/{len}")
                    .parse()
                    .expect("valid header"),
            );
            r
        }
    }
}

/// Files up to this size are read whole before the response starts, so that the headers and
/// the body leave in one write (and one TCP segment) instead of a head followed by a small
/// body segment.
pub(super) const SMALL_FILE: u64 = 64 * 1024;

/// A file opened for a response: its length, and its bytes when it is small (then the file
/// itself may be gone).
pub(super) struct OpenFile {
    file: Option<std::fs::File>,
    len: u64,
    whole: Option<axum::body::Bytes>,
}

impl OpenFile {
    fn in_memory(bytes: axum::body::Bytes) -> OpenFile {
        OpenFile {
            file: None,
            len: bytes.len() as u64,
            whole: Some(bytes),
        }
    }

    /// Opens, measures and (when small) reads a file in one trip to the blocking pool.
    async fn open(path: &Path) -> std::io::Result<OpenFile> {
        let path = path.to_owned();
        tokio::task::spawn_blocking(move || {
            use std::io::Read;
            let mut file = std::fs::File::open(&path)?;
            let len = file.metadata()?.len();
            if len > SMALL_FILE {
                return Ok(OpenFile {
                    file: Some(file),
                    len,
                    whole: None,
                });
            }
            let mut buf = Vec::with_capacity(len as usize);
            (&mut file).take(len).read_to_end(&mut buf)?;
            Ok(OpenFile {
                file: None,
                // A file cut short since it was measured is served as it is now.
                len: buf.len() as u64,
                whole: Some(buf.into()),
            })
        })
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)))
    }

    /// The bytes `start..start + len` as a response body.
    fn body(self, start: u64, len: u64) -> Body {
        match (self.whole, self.file) {
            (Some(b), _) => Body::from(b.slice(start as usize..(start + len) as usize)),
            (None, Some(file)) => file_body(file, start, len),
            (None, None) => Body::empty(),
        }
    }
}

/// Bytes read per step of [`file_body`]. Fewer, larger steps cost fewer trips to the blocking
/// pool: with 16 concurrent 300 MiB downloads on 2 cores, 512 KiB gave 87-88% of nginx's rate
/// and 2 MiB 90-91% (`benches/http_content.sh`). Each download holds one chunk at a time, so
/// the memory in flight is at most this much per open connection.
pub(super) const FILE_CHUNK: u64 = 2048 * 1024;

/// The bytes `start..start + len` of a file as a response body. Each chunk is read on the
/// blocking pool straight into the buffer that goes out (`tokio::fs::File` reads into a buffer
/// of its own and copies from it: one more copy of every byte, which shows when many machines
/// fetch an image at once). A file shorter than promised ends the body with an error, so the
/// client sees a short response rather than wrong bytes.
pub(super) fn file_body(file: std::fs::File, start: u64, len: u64) -> Body {
    // The first chunk seeks to `start`; the next ones read on from where it left off.
    let state = (Arc::new(file), Some(start), len);
    let chunks = futures_util::stream::unfold(state, |(file, seek, left)| async move {
        if left == 0 {
            return None;
        }
        let want = left.min(FILE_CHUNK);
        let f = file.clone();
        let read = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<u8>> {
            use std::io::{Read, Seek};
            let mut handle = &*f;
            if let Some(pos) = seek {
                handle.seek(std::io::SeekFrom::Start(pos))?;
            }
            // A Vec's spare capacity is read into without zeroing it first.
            let mut buf = Vec::with_capacity(want as usize);
            handle.take(want).read_to_end(&mut buf)?;
            if (buf.len() as u64) < want {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the file is shorter than when the response started",
                ));
            }
            Ok(buf)
        })
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        Some(match read {
            Ok(buf) => (Ok(axum::body::Bytes::from(buf)), (file, None, left - want)),
            Err(e) => (Err(e), (file, None, 0)),
        })
    });
    Body::from_stream(chunks)
}

/// What a `Range` header asks of a representation of `len` bytes.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum RangeAsk {
    /// Serve the whole file (no usable single byte range, such as several ranges).
    Ignore,
    Unsatisfiable,
    /// First and last byte, inclusive.
    Bytes(u64, u64),
}

pub(super) fn parse_range(h: &str, len: u64) -> RangeAsk {
    let Some(spec) = h.trim().strip_prefix("bytes=") else {
        return RangeAsk::Ignore;
    };
    if spec.contains(',') {
        return RangeAsk::Ignore;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeAsk::Ignore;
    };
    let (a, b) = (a.trim(), b.trim());
    let (first, last) = if a.is_empty() {
        // Suffix: the last N bytes.
        let Ok(n) = b.parse::<u64>() else {
            return RangeAsk::Ignore;
        };
        if n == 0 || len == 0 {
            return RangeAsk::Unsatisfiable;
        }
        (len.saturating_sub(n), len - 1)
    } else {
        let Ok(first) = a.parse::<u64>() else {
            return RangeAsk::Ignore;
        };
        let last = if b.is_empty() {
            len.saturating_sub(1)
        } else {
            match b.parse::<u64>() {
                Ok(l) if l >= first => l.min(len.saturating_sub(1)),
                _ => return RangeAsk::Ignore,
            }
        };
        (first, last)
    };
    if first >= len {
        return RangeAsk::Unsatisfiable;
    }
    RangeAsk::Bytes(first, last)
}

/// The TFTP root over HTTP, for UEFI HTTP boot clients (option 93 = 16, 19) and for iPXE
/// scripts that prefer HTTP: the same path rules as TFTP (case-insensitive, Windows-style
/// separators, nothing outside the root).
pub(super) async fn tftp_file(
    State(s): State<Arc<AppState>>,
    axum::extract::Path(path): axum::extract::Path<String>,
) -> Response {
    let resolved = crate::tftp::path::Root::new(&s.config.tftp.root).and_then(|root| {
        root.resolve(&path)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::NotFound, e.to_string()))
    });
    match resolved {
        Ok(p) => send_file(&s, &p).await,
        Err(e) => {
            tracing::info!(path, error = %e, "HTTP boot file refused");
            (StatusCode::NOT_FOUND, "no such boot file\n").into_response()
        }
    }
}

/// Streams a file with its length.
pub(super) async fn send_file(s: &AppState, path: &Path) -> Response {
    Counters::bump(&s.counters.http_requests);
    let file = match OpenFile::open(path).await {
        Ok(f) => f,
        Err(e) => {
            tracing::error!(file = %path.display(), error = %e, "cannot open boot file");
            return (StatusCode::NOT_FOUND, "file not available\n").into_response();
        }
    };
    let len = file.len;
    (
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (header::CONTENT_LENGTH, len.to_string()),
        ],
        file.body(0, len),
    )
        .into_response()
}

#[cfg(test)]
mod range_tests {
    use super::*;

    #[test]
    fn small_files_are_kept_until_the_bound_and_then_left_alone() {
        let cache = SmallFiles::default();
        let chunk = axum::body::Bytes::from(vec![7u8; SMALL_FILES_BYTES / 2]);
        cache.keep(Path::new("/a"), &chunk);
        cache.keep(Path::new("/b"), &chunk);
        cache.keep(Path::new("/c"), &axum::body::Bytes::from_static(b"x"));
        assert_eq!(cache.get(Path::new("/a")), Some(chunk.clone()));
        assert!(cache.get(Path::new("/b")).is_some());
        // Full: the next file is served from disk each time.
        assert_eq!(cache.get(Path::new("/c")), None);
        // Keeping a file twice counts it once.
        let small = SmallFiles::default();
        for _ in 0..3 {
            small.keep(Path::new("/a"), &chunk);
        }
        small.keep(Path::new("/b"), &chunk);
        assert!(small.get(Path::new("/b")).is_some());
    }

    #[test]
    fn ranges_follow_rfc_9110() {
        assert_eq!(parse_range("bytes=0-99", 1000), RangeAsk::Bytes(0, 99));
        assert_eq!(parse_range("bytes=500-", 1000), RangeAsk::Bytes(500, 999));
        assert_eq!(parse_range("bytes=-100", 1000), RangeAsk::Bytes(900, 999));
        assert_eq!(
            parse_range("bytes=900-5000", 1000),
            RangeAsk::Bytes(900, 999)
        );
        assert_eq!(parse_range("bytes=1000-", 1000), RangeAsk::Unsatisfiable);
        assert_eq!(parse_range("bytes=0-1,5-9", 1000), RangeAsk::Ignore);
        assert_eq!(parse_range("items=0-1", 1000), RangeAsk::Ignore);
        assert_eq!(parse_range("bytes=9-1", 1000), RangeAsk::Ignore);
    }
}
