//! What the boot path decides from: the catalog as an immutable, indexed [`Snapshot`] swapped
//! whole when the store changes, and the machines' [`History`] (loop guard, attempts, UUID
//! sightings) in memory, changed at once by what this server records. Nothing on the DHCP or
//! `/boot.ipxe` path reads or writes the database.
//!
//! - Writes (loop guard, attempts, sightings, status messages, the lease file) change memory
//!   first, then go through a bounded queue to one [`keep`] task that persists them off the
//!   reactor. A full queue is counted (`store_queue_full` in `/metrics`) and logged: a write the
//!   DHCP path makes (a sighting, a status message, the lease file) is then not persisted;
//!   one that guards a machine (a start, an attempt) waits for room.
//! - [`keep`] polls the store's version (SQLite's `data_version` and this process's commits
//!   that changed something, the boot path's own left out) four times a second, so a change by the CLI or the admin API is used within a second; it
//!   reloads the snapshot and the history on the blocking pool while the old ones serve.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::catalog::index::{CatalogView, IndexedCatalog};
use crate::catalog::site::Settings;
use crate::catalog::{Catalog, MachineIdentity};
use crate::counters::Counters;
use crate::decision::{Attempt, History, Outcome};
use crate::store::catalog as stored;
use crate::store::{StatusMessage, Store, StoreError};
use netdeploy_wire::{Mac, SmbiosUuid};

/// How many writes may wait for the disk; past it, see the module documentation.
pub const QUEUE_CAPACITY: usize = 4096;
/// How often the store's version is read.
const POLL: Duration = Duration::from_millis(250);
/// How long [`Memory::settled`] and [`Memory::reloaded`] wait at most.
const SETTLE_LIMIT: Duration = Duration::from_secs(5);
/// How often a full queue is logged at most.
const FULL_LOG_EVERY: Duration = Duration::from_secs(10);

/// The catalog and site settings at one store version, indexed.
#[derive(Debug)]
pub struct Snapshot {
    catalog: IndexedCatalog,
    /// The site settings.
    pub settings: Settings,
}

impl Snapshot {
    /// Indexes a catalog.
    pub fn new(catalog: Catalog, settings: Settings) -> Snapshot {
        Snapshot {
            catalog: IndexedCatalog::new(catalog),
            settings,
        }
    }

    /// The catalog.
    pub fn catalog(&self) -> &Catalog {
        self.catalog.catalog()
    }

    /// The catalog as the decision reads it, through its indexes.
    pub fn view(&self) -> CatalogView<'_> {
        CatalogView::Indexed(&self.catalog)
    }
}

/// Something the boot path records.
#[derive(Debug, Clone)]
pub enum Write {
    /// A required deployment started on a machine through PXE (rule 7's loop guard).
    Guard {
        machine: MachineIdentity,
        deployment: crate::catalog::DeploymentId,
        at: i64,
    },
    /// The outcome of a machine's last attempt of a deployment (`started`, `succeeded`,
    /// `failed`).
    Attempt {
        machine: MachineIdentity,
        deployment: crate::catalog::DeploymentId,
        outcome: Outcome,
        at: i64,
    },
    /// A machine's run of a deployment restarts it mid-sequence and continues at `step`
    /// (docs/selection-rules.md rule 7).
    Restart {
        machine: MachineIdentity,
        deployment: crate::catalog::DeploymentId,
        step: usize,
        at: i64,
    },
    /// A boot request carried this MAC and UUID together.
    Sighting { uuid: SmbiosUuid, mac: Mac, at: i64 },
    /// A status message.
    Status(Box<StatusMessage>),
    /// The DHCP lease table, as JSON, to replace the lease file.
    Leases { path: PathBuf, json: String },
}

impl Write {
    /// Changes the in-memory history as the write will change the store.
    fn apply(&self, h: &mut History) {
        match self {
            Write::Guard {
                machine,
                deployment,
                ..
            } => h.record_pxe_start(*machine, *deployment),
            Write::Attempt {
                machine,
                deployment,
                outcome,
                ..
            } => h.record_attempt(
                *machine,
                *deployment,
                Attempt {
                    outcome: *outcome,
                    at: 0,
                },
            ),
            Write::Restart {
                machine,
                deployment,
                step,
                ..
            } => h.record_restart(*machine, *deployment, *step),
            Write::Sighting { uuid, mac, at } => {
                h.record_sighting(*uuid, *mac, *at);
            }
            Write::Status(_) | Write::Leases { .. } => {}
        }
    }

    /// A write that keeps a machine from running a deployment twice: it waits for room in the
    /// queue rather than be dropped.
    fn guards_a_machine(&self) -> bool {
        matches!(
            self,
            Write::Guard { .. } | Write::Attempt { .. } | Write::Restart { .. }
        )
    }

    /// Writes it to the store (or the lease file).
    fn persist(self, store: &Store) -> Result<(), String> {
        let e = |e: StoreError| e.to_string();
        match self {
            Write::Guard {
                machine,
                deployment,
                at,
            } => store
                .guard_set(&machine.record(), &deployment.to_string(), at)
                .map_err(e),
            Write::Attempt {
                machine,
                deployment,
                outcome,
                at,
            } => {
                let (identity, deployment) = (machine.record(), deployment.to_string());
                let text = match outcome {
                    Outcome::Succeeded => "succeeded",
                    Outcome::Failed => "failed",
                    Outcome::Interrupted => "started",
                };
                // An end ends a run continuing after a restart, as in memory.
                if outcome != Outcome::Interrupted {
                    store.resume_clear(&identity, &deployment).map_err(e)?;
                }
                store
                    .attempt_set(&identity, &deployment, text, at)
                    .map_err(e)
            }
            Write::Restart {
                machine,
                deployment,
                step,
                at,
            } => store
                .resume_set(&machine.record(), &deployment.to_string(), step, at)
                .map_err(e),
            Write::Sighting { uuid, mac, at } => {
                match stored::record_sighting(store, mac, uuid, at) {
                    Ok(true) => {
                        tracing::info!(%mac, %uuid, "first boot request with this MAC and UUID together");
                        Ok(())
                    }
                    Ok(false) => Ok(()),
                    // Kept in memory; a later request records it once the database answers.
                    Err(err) if err.is_unreachable() => Ok(()),
                    Err(err) => Err(e(err)),
                }
            }
            Write::Status(m) => store.add_status_or_keep(&m).map(|_| ()).map_err(e),
            Write::Leases { path, json } => crate::dhcp::leases::save(&path, &json)
                .map_err(|err| format!("lease file {}: {err}", path.display())),
        }
    }
}

/// The boot path's memory: the current snapshot and history, and the queue to the store.
pub struct Memory {
    snapshot: RwLock<Arc<Snapshot>>,
    history: Mutex<History>,
    queue: OnceLock<mpsc::Sender<Write>>,
    counters: Arc<Counters>,
    full_logged: Mutex<Option<Instant>>,
    /// Writes queued, and writes persisted (or given up) by the keeper, since start.
    queued: AtomicU64,
    persisted: tokio::sync::watch::Sender<u64>,
    /// Asks the keeper to read the store again now.
    reload_asked: tokio::sync::Notify,
    /// Reloads done since start.
    reloads: tokio::sync::watch::Sender<u64>,
    /// The store version [`Memory::load`] read: a change after it is reloaded.
    loaded: (i64, u64),
}

/// Reads the catalog, the settings and the history from the store, and the version they are
/// of (read first: a change while reading is seen at the next poll).
fn load(store: &Store) -> Result<(Snapshot, History, (i64, u64)), StoreError> {
    let version = store.version()?;
    let (catalog, settings) = stored::load(store)?;
    let history = stored::history(store)?;
    Ok((Snapshot::new(catalog, settings), history, version))
}

impl Memory {
    /// Loads everything from the store. Until [`keep`] runs, writes go to the store at once.
    pub fn load(store: &Store, counters: Arc<Counters>) -> Result<Memory, StoreError> {
        let (snapshot, history, loaded) = load(store)?;
        Ok(Memory {
            snapshot: RwLock::new(Arc::new(snapshot)),
            history: Mutex::new(history),
            queue: OnceLock::new(),
            counters,
            full_logged: Mutex::new(None),
            queued: AtomicU64::new(0),
            persisted: tokio::sync::watch::Sender::new(0),
            reload_asked: tokio::sync::Notify::new(),
            reloads: tokio::sync::watch::Sender::new(0),
            loaded,
        })
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn history(&self) -> std::sync::MutexGuard<'_, History> {
        self.history.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts the snapshot reloads: changes after each one.
    pub fn reloads(&self) -> tokio::sync::watch::Receiver<u64> {
        self.reloads.subscribe()
    }

    /// Runs `f` on the current history (held for the call: keep it short).
    pub fn with_history<T>(&self, f: impl FnOnce(&History) -> T) -> T {
        f(&self.history())
    }

    /// Records a write without waiting: memory changes at once; the store follows through
    /// the queue, or not at all when the queue is full (counted and logged). Before [`keep`]
    /// runs, it is written to the store here.
    pub fn record(&self, store: &Store, w: Write) {
        let mut h = self.history();
        w.apply(&mut h);
        let Some(queue) = self.queue.get() else {
            drop(h);
            if let Err(e) = w.persist(store) {
                tracing::error!(error = %e, "cannot record in the store");
            }
            return;
        };
        match queue.try_send(w) {
            Ok(()) => {
                self.queued.fetch_add(1, Ordering::AcqRel);
            }
            Err(mpsc::error::TrySendError::Full(w)) => {
                drop(h);
                self.full(&w);
            }
            // The writer has stopped (shutting down): write it here.
            Err(mpsc::error::TrySendError::Closed(w)) => {
                drop(h);
                if let Err(e) = w.persist(store) {
                    tracing::error!(error = %e, "cannot record in the store");
                }
            }
        }
    }

    /// Records a write that must reach the store: memory changes at once; it waits for room
    /// in the queue (back-pressure on the caller) rather than be dropped.
    pub async fn record_surely(&self, store: &Store, w: Write) {
        let Some(queue) = self.queue.get() else {
            return self.record(store, w);
        };
        let permit = match queue.try_reserve() {
            Ok(p) => p,
            Err(mpsc::error::TrySendError::Full(())) => {
                self.full(&w);
                match queue.reserve().await {
                    Ok(p) => p,
                    Err(_) => return self.record(store, w),
                }
            }
            Err(mpsc::error::TrySendError::Closed(())) => return self.record(store, w),
        };
        let mut h = self.history();
        w.apply(&mut h);
        permit.send(w);
        self.queued.fetch_add(1, Ordering::AcqRel);
    }

    /// Writes waiting for the store.
    pub fn pending(&self) -> u64 {
        self.queued
            .load(Ordering::Acquire)
            .saturating_sub(*self.persisted.borrow())
    }

    /// Waits (at most [`SETTLE_LIMIT`]) until every write queued before the call is in the
    /// store: for readers of the store (status views, the admin API) that must see what the
    /// boot path recorded.
    pub async fn settled(&self) {
        let target = self.queued.load(Ordering::Acquire);
        let mut persisted = self.persisted.subscribe();
        let wait = persisted.wait_for(|&n| n >= target);
        if tokio::time::timeout(SETTLE_LIMIT, wait).await.is_err() {
            tracing::warn!(
                pending = self.pending(),
                "store writes still queued after {SETTLE_LIMIT:?}; reading the store anyway"
            );
        }
    }

    /// Asks for the snapshot and history to be read from the store again now, and waits (at
    /// most [`SETTLE_LIMIT`]) until they are: after a change made through this process (the
    /// admin API), so the next decision uses it.
    pub async fn reloaded(&self) {
        if self.queue.get().is_none() {
            return;
        }
        let mut reloads = self.reloads.subscribe();
        let before = *reloads.borrow_and_update();
        self.reload_asked.notify_one();
        let wait = reloads.wait_for(|&n| n > before);
        if tokio::time::timeout(SETTLE_LIMIT, wait).await.is_err() {
            tracing::warn!("the snapshot was not reloaded within {SETTLE_LIMIT:?}");
        }
    }

    /// [`Memory::record_surely`] from the blocking pool.
    pub fn record_surely_blocking(&self, store: &Store, w: Write) {
        match tokio::runtime::Handle::try_current() {
            Ok(rt) if self.queue.get().is_some() => rt.block_on(self.record_surely(store, w)),
            _ => self.record(store, w),
        }
    }

    /// [`Memory::settled`] from the blocking pool; nothing to wait for before [`keep`] runs.
    pub fn settled_blocking(&self) {
        match tokio::runtime::Handle::try_current() {
            Ok(rt) if self.queue.get().is_some() => rt.block_on(self.settled()),
            _ => {}
        }
    }

    fn full(&self, w: &Write) {
        Counters::bump(&self.counters.store_queue_full);
        let mut last = self.full_logged.lock().unwrap_or_else(|p| p.into_inner());
        if last.is_none_or(|t| t.elapsed() >= FULL_LOG_EVERY) {
            *last = Some(Instant::now());
            let what = if w.guards_a_machine() {
                "the request waits for room"
            } else {
                "not persisted (kept in memory)"
            };
            tracing::warn!(
                capacity = QUEUE_CAPACITY,
                dropped_or_waited = self.counters.store_queue_full.load(Ordering::Relaxed),
                "the store write queue is full: {what}"
            );
        }
    }
}

/// Sends this memory's writes through the queue from now on, and returns the task that
/// persists them and keeps the snapshot and history current until cancelled (then persists
/// what is left). Call once per [`Memory`].
pub fn keep(
    memory: Arc<Memory>,
    store: Arc<Store>,
    cancel: CancellationToken,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
    let first = memory.queue.set(tx).is_ok();
    async move {
        if first {
            keeper(memory, store, rx, cancel).await;
        } else {
            tracing::error!("the store writer runs already");
        }
    }
}

async fn keeper(
    memory: Arc<Memory>,
    store: Arc<Store>,
    mut rx: mpsc::Receiver<Write>,
    cancel: CancellationToken,
) {
    let mut seen = Some(memory.loaded);
    let mut reachable = true;
    let mut poll = tokio::time::interval(POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut batch = Vec::with_capacity(256);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => {
                rx.close();
                while let Ok(w) = rx.try_recv() {
                    batch.push(w);
                }
                persist(&memory, &store, std::mem::take(&mut batch)).await;
                return;
            }
            n = rx.recv_many(&mut batch, 256) => {
                if n == 0 {
                    return;
                }
                persist(&memory, &store, std::mem::take(&mut batch)).await;
            }
            _ = memory.reload_asked.notified() => {
                seen = reload(&memory, &store, &mut rx).await.or(seen);
            }
            _ = poll.tick() => {
                let polled = {
                    let store = store.clone();
                    tokio::task::spawn_blocking(move || {
                        let v = store.version();
                        // What waited for an unreachable database goes first, in order.
                        let sent = (v.is_ok() && store.kept() > 0).then(|| store.send_kept());
                        (v, sent, store.kept())
                    })
                    .await
                };
                let Ok((version, sent, waiting)) = polled else { continue };
                match (&version, reachable) {
                    (Err(e), true) if e.is_unreachable() => {
                        reachable = false;
                        tracing::warn!(error = %e, "the store is unreachable: PXE decisions go on from the last snapshot; status messages and loop-guard records wait in the spool until it answers");
                    }
                    (Ok(_), false) => {
                        reachable = true;
                        tracing::info!(waiting, "the store answers again");
                    }
                    _ => {}
                }
                match sent {
                    Some(Ok(n)) if n > 0 => tracing::info!(sent = n, waiting, "records kept in the spool sent to the store"),
                    Some(Err(e)) => tracing::debug!(error = %e, waiting, "the spool waits"),
                    _ => {}
                }
                let now = version.ok();
                if now.is_some() && now != seen {
                    seen = reload(&memory, &store, &mut rx).await.or(seen);
                }
            }
        }
    }
}

/// Writes a batch on the blocking pool. The boot path's own writes do not change
/// [`Store::version`], so they do not reload the snapshot.
async fn persist(memory: &Memory, store: &Arc<Store>, batch: Vec<Write>) {
    if batch.is_empty() {
        return;
    }
    let n = batch.len() as u64;
    let store = store.clone();
    let _ = tokio::task::spawn_blocking(move || {
        for w in batch {
            if let Err(e) = w.persist(&store) {
                tracing::error!(error = %e, "cannot record in the store");
            }
        }
    })
    .await;
    memory.persisted.send_modify(|p| *p += n);
}

/// Reads the store again off the reactor and swaps in the new snapshot and history; writes
/// queued meanwhile are applied to the new history and persisted. Returns the version read.
async fn reload(
    memory: &Memory,
    store: &Arc<Store>,
    rx: &mut mpsc::Receiver<Write>,
) -> Option<(i64, u64)> {
    let started = Instant::now();
    let loaded = {
        let store = store.clone();
        tokio::task::spawn_blocking(move || load(&store)).await
    };
    let (snapshot, mut history, version) = match loaded {
        Ok(Ok(l)) => l,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "cannot reload the catalog; the last one serves on");
            return None;
        }
        Err(_) => return None,
    };
    let devices = snapshot.catalog().devices.len();
    let mut pending = Vec::new();
    {
        let mut h = memory.history();
        while let Ok(w) = rx.try_recv() {
            w.apply(&mut history);
            pending.push(w);
        }
        *h = history;
        *memory.snapshot.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(snapshot);
    }
    Counters::bump(&memory.counters.snapshot_reloads);
    memory.reloads.send_modify(|n| *n += 1);
    tracing::info!(
        devices,
        took_ms = started.elapsed().as_millis() as u64,
        "catalog changed in the store: snapshot reloaded"
    );
    persist(memory, store, pending).await;
    Some(version)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Device;

    fn guard(n: u8) -> Write {
        Write::Guard {
            machine: MachineIdentity {
                mac: Some(Mac([2, 0, 0, 0, 0, n])),
                uuid: None,
            },
            deployment: "LAB00001".parse().unwrap(),
            at: 1,
        }
    }

    #[tokio::test]
    async fn a_change_by_another_process_is_reloaded_and_records_made_meanwhile_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("netdeploy.db");
        let store = Arc::new(Store::open(&path).unwrap());
        let memory = Arc::new(Memory::load(&store, Default::default()).unwrap());
        let cancel = CancellationToken::new();
        let task = tokio::spawn(keep(memory.clone(), store.clone(), cancel.clone()));

        memory.record_surely(&store, guard(1)).await;
        assert_eq!(
            memory.with_history(|h| h.guards().count()),
            1,
            "seen at once"
        );

        // Another process (another connection to the file) declares a device.
        let other = Store::open(&path).unwrap();
        let device = Device {
            name: "pc1".into(),
            macs: vec![Mac([2, 0, 0, 0, 0, 9])],
            uuid: None,
            server: false,
            site_system: false,
        };
        other.put("device", "pc1", &device, 0).unwrap();
        memory.record(&store, guard(2));
        for _ in 0..100 {
            if memory.snapshot().catalog().device("pc1").is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let snapshot = memory.snapshot();
        assert!(snapshot.catalog().device("pc1").is_some());
        assert_eq!(
            snapshot
                .view()
                .match_device(&MachineIdentity {
                    mac: Some(Mac([2, 0, 0, 0, 0, 9])),
                    uuid: None
                })
                .map(|d| d.name.as_str()),
            Some("pc1")
        );
        assert_eq!(memory.with_history(|h| h.guards().count()), 2);

        memory.settled().await;
        assert_eq!(memory.pending(), 0);
        assert_eq!(
            other.guards().unwrap().len(),
            2,
            "both guards reached the store"
        );
        cancel.cancel();
        task.await.unwrap();
    }

    #[tokio::test]
    async fn writes_made_before_the_writer_runs_go_to_the_store_at_once() {
        let store = Arc::new(Store::in_memory().unwrap());
        let memory = Memory::load(&store, Default::default()).unwrap();
        memory.record(&store, guard(3));
        memory.record_surely(&store, guard(4)).await;
        assert_eq!(store.guards().unwrap().len(), 2);
        assert_eq!(memory.with_history(|h| h.guards().count()), 2);
    }
}
