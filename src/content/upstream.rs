//! Content from other servers (docs/fleet.md, "Content on every server"): a server that lacks
//! a file the catalog references asks its `[content] upstream` servers for it by hash, checks
//! the SHA-256 of what arrives before the file enters its library, then serves it. Each hash
//! is fetched once however many machines ask at the same time.
//!
//! Each server also keeps, in the shared store, which packages and boot images it holds whole
//! and which files it failed to fetch and why ([`Holding`]): what `netdeploy content status`
//! shows for every server.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::http::{header, Request, Uri};
use http_body_util::{BodyExt as _, Empty};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt as _;

use super::Library;
use crate::catalog::Catalog;
use crate::store::{Store, StoreError};

/// How long one upstream may take to connect and to send a file.
const CONNECT_LIMIT: std::time::Duration = std::time::Duration::from_secs(5);
const TRANSFER_LIMIT: std::time::Duration = std::time::Duration::from_secs(3600);

/// The upstream servers of this one, and the fetches in progress.
#[derive(Default)]
pub struct Upstream {
    bases: Vec<Uri>,
    inflight: tokio::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// Why no upstream gave a file: each server tried and what went wrong there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no upstream server gave {sha256}: {}", .tried.iter().map(|(u, w)| format!("{u}: {w}")).collect::<Vec<_>>().join("; "))]
pub struct FetchError {
    pub sha256: String,
    pub tried: Vec<(String, String)>,
}

impl Upstream {
    pub fn new(bases: Vec<Uri>) -> Upstream {
        Upstream {
            bases,
            inflight: Default::default(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.bases.is_empty()
    }

    /// Makes sure the library holds `sha256`, fetching it from the first upstream that has it.
    /// Returns the bytes fetched (0 when it was there already).
    pub async fn fetch(&self, library: &Library, sha256: &str) -> Result<u64, FetchError> {
        let one = {
            let mut m = self.inflight.lock().await;
            m.entry(sha256.to_owned()).or_default().clone()
        };
        let _turn = one.lock().await;
        let out = if library.has(sha256) {
            Ok(0)
        } else {
            let mut tried = Vec::new();
            let mut got = None;
            for base in &self.bases {
                match fetch_from(base, library, sha256).await {
                    Ok(n) => {
                        got = Some(n);
                        break;
                    }
                    Err(why) => tried.push((base.to_string(), why)),
                }
            }
            got.ok_or(FetchError {
                sha256: sha256.to_owned(),
                tried,
            })
        };
        self.inflight.lock().await.remove(sha256);
        out
    }
}

/// GETs `<base>/content/<sha256>` into a temporary file, hashing it; adopts it into the
/// library only when the hash is right.
async fn fetch_from(base: &Uri, library: &Library, sha256: &str) -> Result<u64, String> {
    let host = base.host().ok_or("no host")?.to_owned();
    let port = base.port_u16().unwrap_or(80);
    let stream = tokio::time::timeout(
        CONNECT_LIMIT,
        tokio::net::TcpStream::connect((host.as_str(), port)),
    )
    .await
    .map_err(|_| "no connection within 5 s".to_owned())?
    .map_err(|e| format!("cannot connect: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let authority = base.authority().map(|a| a.to_string()).unwrap_or(host);
    let req = Request::get(format!("/content/{sha256}"))
        .header(header::HOST, authority)
        .body(Empty::<bytes::Bytes>::new())
        .map_err(|e| e.to_string())?;
    let res = sender.send_request(req).await.map_err(|e| e.to_string())?;
    if !res.status().is_success() {
        return Err(format!("HTTP {}", res.status().as_u16()));
    }
    let tmp = library.temp_path("fetch");
    let outcome = tokio::time::timeout(TRANSFER_LIMIT, async {
        let mut file = tokio::fs::File::create(&tmp)
            .await
            .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
        let mut body = res.into_body();
        let mut hash = Sha256::new();
        let mut n = 0u64;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| format!("the transfer broke: {e}"))?;
            if let Some(data) = frame.data_ref() {
                hash.update(data);
                n += data.len() as u64;
                file.write_all(data)
                    .await
                    .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
            }
        }
        file.sync_all().await.map_err(|e| e.to_string())?;
        let got = netdeploy_wire::hex::encode(&hash.finalize());
        if got != sha256 {
            return Err(format!(
                "SHA-256 mismatch: got {got} ({n} bytes); not stored"
            ));
        }
        Ok(n)
    })
    .await
    .unwrap_or_else(|_| Err("the transfer took over an hour".into()));
    let adopted = match outcome {
        Ok(n) => {
            let tmp2 = tmp.clone();
            let sha = sha256.to_owned();
            let lib = library.clone();
            tokio::task::spawn_blocking(move || lib.adopt(&tmp2, &sha))
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| e.to_string()))
                .map(|()| n)
        }
        Err(e) => Err(e),
    };
    if adopted.is_err() {
        let _ = tokio::fs::remove_file(&tmp).await;
    }
    adopted
}

/// What one server holds of the catalog's content, as kept in the shared store.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holding {
    pub server: String,
    /// Unix seconds.
    pub at: i64,
    /// Packages (`package:ID`) and boot images (`boot_image:ID`) whose every file is here.
    pub held: Vec<String>,
    /// The others, with how many of their files are missing.
    pub missing: BTreeMap<String, usize>,
    /// Files an upstream fetch failed for, by SHA-256, with why.
    pub failed: BTreeMap<String, String>,
}

/// The store kind holdings are kept under, by server name.
pub const HOLDING: &str = "content_holding";

impl Holding {
    /// What `library` holds of `catalog`'s packages and boot images.
    pub fn of(server: &str, catalog: &Catalog, library: &Library, at: i64) -> Holding {
        let mut h = Holding {
            server: server.to_owned(),
            at,
            ..Holding::default()
        };
        let items = catalog
            .packages
            .iter()
            .map(|p| {
                (
                    format!("package:{}", p.id),
                    p.files.iter().map(|f| f.sha256.clone()).collect::<Vec<_>>(),
                )
            })
            .chain(catalog.boot_images.iter().map(|b| {
                (
                    format!("boot_image:{}", b.id),
                    b.files.iter().map(|f| f.sha256.clone()).collect(),
                )
            }));
        for (name, hashes) in items {
            let missing = hashes.iter().filter(|s| !library.has(s)).count();
            if missing == 0 {
                h.held.push(name);
            } else {
                h.missing.insert(name, missing);
            }
        }
        h
    }

    /// Keeps it in the store (not a catalog change: no server reloads for it).
    pub fn save(&self, store: &Store) -> Result<(), StoreError> {
        store.quiet_transaction(|tx| tx.put(HOLDING, &self.server, self, self.at))
    }

    /// Every server's holding, by name.
    pub fn all(store: &Store) -> Result<Vec<Holding>, StoreError> {
        store.list(HOLDING)
    }
}

/// Saves this server's holding now, with the failures `failed` (by SHA-256) kept from before
/// unless the file is here now. Blocks.
pub fn note_holding(
    store: &Store,
    server: &str,
    catalog: &Catalog,
    library: &Library,
    failed: BTreeMap<String, String>,
    at: i64,
) -> Result<(), StoreError> {
    let mut h = Holding::of(server, catalog, library, at);
    let before: Option<Holding> = store.get(HOLDING, server)?;
    h.failed = before.map(|b| b.failed).unwrap_or_default();
    h.failed.extend(failed);
    h.failed.retain(|sha, _| !library.has(sha));
    h.save(store)
}
