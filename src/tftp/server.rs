//! The tokio layer around [`Transfer`]: the listening socket, one socket per transfer, the
//! bound on concurrent transfers. Every protocol decision lives in [`super::transfer`] and
//! [`super::path`]; this file moves datagrams, keeps time and counts.
//!
//! - A read request takes a slot before anything else ([`super::slots`]): over `max_transfers`
//!   in all or `max_transfers_per_client` for its address it is answered ERROR 0 "server busy"
//!   at once. When every slot is taken, a stalled transfer is told to give way; it ends within
//!   [`CANCEL_CHECK`] with an ERROR to its client, and the waiting client's next request is
//!   served.
//! - Each transfer has its own UDP socket (its transfer ID, RFC 1350 section 4) bound to the
//!   local address of the listening socket, so a client on one interface is answered from the
//!   address it asked, and connected to the client, so the kernel drops datagrams from anyone
//!   else.
//! - A transfer runs on a thread of tokio's blocking pool, with a blocking socket: a transfer
//!   is a loop of send, wait for the ACK, send, where the latency of each wake-up is the
//!   throughput, and a thread blocked in `recv` is woken by the kernel directly, without the
//!   hops of an async task (measured on loopback: lock-step went from about half of tftpd-hpa's
//!   rate to par). File data is read with positional reads straight into the outgoing datagram
//!   buffers, and a window goes to the kernel in one system call ([`super::batch`]).
//! - Cancellation stops the listener; each running transfer notices within
//!   [`CANCEL_CHECK`], sends the client an ERROR and ends.

use std::cell::Cell;
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockRef, Socket, Type};
use tokio::net::UdpSocket;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::batch::Batch;
use super::packet::{self, ErrorCode, Mode, Packet, Request};
use super::path::{PathError, Root};
use super::slots::{Admission, SlotTable};
use super::transfer::{BlockSource, Limits, Outcome, Transfer, REASSEMBLY_DRAIN};
use super::{Generator, Provided, TftpSettings};
use crate::counters::Counters;

/// Receive buffer of the listening socket: room for a burst of requests from a rack of
/// machines powered on together.
const LISTENER_RECV_BUFFER: usize = 1 << 20;

/// Largest send buffer asked for a transfer socket (a full window of the largest blocks).
const MAX_SEND_BUFFER: usize = 4 << 20;

/// Datagrams handed to the kernel in one system call (a whole window, up to this many).
const BATCH_DATAGRAMS: usize = 64;

/// Bytes read from the file at once, ahead of the blocks being sent (a window or more).
const READ_AHEAD: usize = 256 << 10;

/// How often a transfer waiting for its client looks at the cancellation token.
pub const CANCEL_CHECK: Duration = Duration::from_millis(100);

/// Clients whose reassembly memory is remembered at most (see [`Reassembly`]).
const REMEMBERED_CLIENTS: usize = 4096;

/// Per client address, the fragments its last transfer left stranded in its reassembly memory
/// and when: a client's next download starts from there (see `transfer`, "Fragmented blocks").
#[derive(Debug, Default)]
struct Reassembly(Mutex<HashMap<IpAddr, (f64, Instant)>>);

impl Reassembly {
    fn get(&self, client: IpAddr) -> Option<(f64, Instant)> {
        self.0.lock().ok()?.get(&client).copied()
    }

    fn set(&self, client: IpAddr, fragments: f64, now: Instant) {
        let Ok(mut clients) = self.0.lock() else {
            return;
        };
        if fragments <= 0.0 {
            clients.remove(&client);
            return;
        }
        if clients.len() >= REMEMBERED_CLIENTS {
            // Forget the clients whose memory has drained by now.
            clients.retain(|_, (left, at)| {
                *left - now.saturating_duration_since(*at).as_secs_f64() * REASSEMBLY_DRAIN > 0.0
            });
        }
        if clients.len() < REMEMBERED_CLIENTS {
            clients.insert(client, (fragments, now));
        }
    }
}

/// The slots of one listener's transfers, and the flag that tells each to give way.
struct Slots {
    inner: Mutex<(SlotTable, HashMap<u64, Arc<AtomicBool>>)>,
}

impl Slots {
    fn new(max_total: usize, max_per_client: usize) -> Slots {
        Slots {
            inner: Mutex::new((SlotTable::new(max_total, max_per_client), HashMap::new())),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (SlotTable, HashMap<u64, Arc<AtomicBool>>)> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Decides on a request from `client`: a slot, or the refusal (after telling a stalled
    /// transfer to give way, if one should).
    fn admit(self: &Arc<Self>, client: IpAddr) -> Result<Slot, Admission> {
        let mut inner = self.lock();
        match inner.0.admit(client) {
            Admission::Start { id } => {
                let give_way = Arc::new(AtomicBool::new(false));
                inner.1.insert(id, give_way.clone());
                Ok(Slot {
                    slots: self.clone(),
                    id,
                    give_way,
                    stalled: Cell::new(false),
                })
            }
            refused => {
                if let Admission::Busy { give_way: Some(id) } = refused {
                    if let Some(flag) = inner.1.get(&id) {
                        flag.store(true, Ordering::Relaxed);
                    }
                }
                Err(refused)
            }
        }
    }
}

/// A running transfer's slot; given back when dropped.
struct Slot {
    slots: Arc<Slots>,
    id: u64,
    give_way: Arc<AtomicBool>,
    /// What the table was last told.
    stalled: Cell<bool>,
}

impl Slot {
    fn report_stalled(&self, stalled: bool) {
        if self.stalled.replace(stalled) != stalled {
            self.slots.lock().0.set_stalled(self.id, stalled);
        }
    }

    fn must_give_way(&self) -> bool {
        self.give_way.load(Ordering::Relaxed)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut inner = self.slots.lock();
        inner.0.release(self.id);
        inner.1.remove(&self.id);
    }
}

/// Binds a listening socket (port 69 of one interface address, or an ephemeral port in tests).
/// Must be called from within a tokio runtime.
pub fn bind_listener(addr: SocketAddr) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    // The kernel may grant less; a smaller buffer only drops requests that clients resend.
    let _ = socket.set_recv_buffer_size(LISTENER_RECV_BUFFER);
    socket.bind(&addr.into())?;
    socket.set_nonblocking(true)?;
    UdpSocket::from_std(socket.into())
}

/// Serves read requests arriving on `socket` until `cancel` fires, then ends the running
/// transfers (each client gets an ERROR) and returns once they are gone.
///
/// Fails only if the root cannot be opened or the socket has no local address; a malformed
/// datagram, a refused request or a failed transfer is counted and logged, never returned.
pub async fn serve(
    socket: UdpSocket,
    settings: Arc<TftpSettings>,
    counters: Arc<Counters>,
    cancel: CancellationToken,
) -> io::Result<()> {
    let local = socket.local_addr()?;
    let root = Arc::new(Root::new(&settings.root)?);
    let provided = Arc::new(settings.provided.clone());
    let generator = settings.generator.clone();
    let slots = Arc::new(Slots::new(
        settings.max_transfers,
        settings.max_transfers_per_client,
    ));
    let limits = Limits::from(&*settings);
    let reassembly = Arc::new(Reassembly::default());
    let mut transfers = JoinSet::new();
    // A request fits in far less, but a shorter buffer would silently cut a longer datagram.
    let mut buf = vec![0u8; 65_536];
    info!(%local, root = %root.path().display(), max_transfers = settings.max_transfers, max_transfers_per_client = settings.max_transfers_per_client, "TFTP listening");
    loop {
        tokio::select! {
            biased;
            () = cancel.cancelled() => break,
            Some(joined) = transfers.join_next(), if !transfers.is_empty() => {
                if let Err(e) = joined {
                    warn!(error = %e, "TFTP transfer task failed");
                }
            }
            received = socket.recv_from(&mut buf) => match received {
                Ok((len, peer)) => {
                    let listener = Listener {
                        socket: &socket,
                        root: &root,
                        provided: &provided,
                        generator: &generator,
                        slots: &slots,
                        reassembly: &reassembly,
                        limits,
                        counters: &counters,
                        cancel: &cancel,
                    };
                    listener.handle(&buf[..len], peer, &mut transfers).await;
                }
                Err(e) => {
                    warn!(%local, error = %e, "TFTP listener receive failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
        }
    }
    debug!(%local, running = transfers.len(), "TFTP listener stopped; ending transfers");
    while transfers.join_next().await.is_some() {}
    Ok(())
}

struct Listener<'a> {
    socket: &'a UdpSocket,
    root: &'a Arc<Root>,
    provided: &'a Arc<std::collections::BTreeMap<String, Provided>>,
    generator: &'a Option<Generator>,
    slots: &'a Arc<Slots>,
    reassembly: &'a Arc<Reassembly>,
    limits: Limits,
    counters: &'a Arc<Counters>,
    cancel: &'a CancellationToken,
}

impl Listener<'_> {
    async fn handle(&self, bytes: &[u8], peer: SocketAddr, transfers: &mut JoinSet<()>) {
        let request = match Packet::parse(bytes) {
            Ok(Packet::Rrq(request)) => request,
            Ok(Packet::Wrq(request)) => {
                Counters::bump(&self.counters.tftp_refused);
                info!(client = %peer, file = %request.filename, "TFTP write request refused: read-only server");
                self.reply_error(peer, ErrorCode::AccessViolation, "read-only server")
                    .await;
                return;
            }
            Ok(other) => {
                Counters::bump(&self.counters.tftp_malformed);
                debug!(client = %peer, packet = ?other, "TFTP packet other than a request on the listening port dropped");
                return;
            }
            Err(e) => {
                Counters::bump(&self.counters.tftp_malformed);
                debug!(client = %peer, len = bytes.len(), error = %e, "malformed TFTP datagram dropped");
                if e.is_request() {
                    self.reply_error(peer, ErrorCode::IllegalOperation, &e.to_string())
                        .await;
                }
                return;
            }
        };
        if request.mode == Mode::Mail {
            Counters::bump(&self.counters.tftp_refused);
            info!(client = %peer, file = %request.filename, "TFTP mail mode refused");
            self.reply_error(
                peer,
                ErrorCode::IllegalOperation,
                "mail mode is not supported",
            )
            .await;
            return;
        }
        let slot = match self.slots.admit(peer.ip()) {
            Ok(slot) => slot,
            Err(refused) => {
                Counters::bump(&self.counters.tftp_refused);
                match refused {
                    Admission::PerClient => {
                        warn!(client = %peer, file = %request.filename, "TFTP request refused: this client holds tftp.max_transfers_per_client transfers")
                    }
                    Admission::Busy { give_way: Some(id) } => {
                        warn!(client = %peer, file = %request.filename, stalled_transfer = id, "TFTP request refused: all transfer slots busy; a stalled transfer gives way")
                    }
                    _ => {
                        warn!(client = %peer, file = %request.filename, "TFTP request refused: all transfer slots busy")
                    }
                }
                self.reply_error(peer, ErrorCode::NotDefined, "server busy, try again later")
                    .await;
                return;
            }
        };
        let span = tracing::info_span!(
            "tftp",
            client = %peer,
            transfer = slot.id,
            file = %request.filename,
            blksize = tracing::field::Empty,
            windowsize = tracing::field::Empty,
            tsize = tracing::field::Empty,
        );
        let job = TransferJob {
            request,
            peer,
            local: self.socket.local_addr().map(|a| a.ip()).ok(),
            root: Arc::clone(self.root),
            provided: Arc::clone(self.provided),
            generator: self.generator.clone(),
            reassembly: Arc::clone(self.reassembly),
            limits: self.limits,
            counters: Arc::clone(self.counters),
            cancel: self.cancel.clone(),
            slot,
        };
        transfers.spawn_blocking(move || span.in_scope(|| job.run()));
    }

    async fn reply_error(&self, peer: SocketAddr, code: ErrorCode, message: &str) {
        if let Err(e) = self
            .socket
            .send_to(&packet::error_bytes(code, message), peer)
            .await
        {
            debug!(client = %peer, error = %e, "TFTP error reply not sent");
        }
    }
}

/// How a transfer task ended, beyond what the state machine knows.
enum End {
    Transfer(Outcome),
    /// The client's port is closed (ICMP port unreachable).
    ClientGone,
    /// The server is shutting down.
    Cancelled,
    /// Stalled while another client waited for a slot.
    GaveWay,
    Socket(io::Error),
}

struct TransferJob {
    request: Request,
    peer: SocketAddr,
    local: Option<IpAddr>,
    root: Arc<Root>,
    provided: Arc<std::collections::BTreeMap<String, Provided>>,
    generator: Option<Generator>,
    reassembly: Arc<Reassembly>,
    limits: Limits,
    counters: Arc<Counters>,
    cancel: CancellationToken,
    /// Held for the life of the transfer.
    slot: Slot,
}

impl TransferJob {
    fn run(self) {
        let local = self.local.unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let socket = match transfer_socket(local, self.peer) {
            Ok(socket) => socket,
            Err(e) => {
                Counters::bump(&self.counters.tftp_refused);
                warn!(error = %e, "cannot open a TFTP transfer socket");
                return;
            }
        };
        let Some((file, size)) = self.open(&socket) else {
            return;
        };
        let started = Instant::now();
        let mtu = path_mtu(&socket);
        let mut limits = self.limits;
        let ip_header = if self.peer.is_ipv4() { 20 } else { 40 };
        limits.unfragmented_payload = mtu.map(|m| m.saturating_sub(ip_header + 8));
        let mut transfer = Transfer::new(&self.request.options, file, size, &limits, started);
        if let Some(mtu) = mtu {
            transfer.set_path_mtu(mtu);
        }
        if let Some((fragments, at)) = self.reassembly.get(self.peer.ip()) {
            transfer.carry_stranded_fragments(fragments, at);
        }
        let negotiated = transfer.negotiated();
        let span = tracing::Span::current();
        span.record("blksize", negotiated.blksize);
        span.record("windowsize", negotiated.windowsize);
        if let Some(tsize) = negotiated.tsize {
            span.record("tsize", tsize);
        }
        let send_buffer = usize::from(negotiated.windowsize)
            .saturating_mul(usize::from(negotiated.blksize) + 64)
            .min(MAX_SEND_BUFFER);
        let _ = SockRef::from(&socket).set_send_buffer_size(send_buffer);
        Counters::bump(&self.counters.tftp_transfers_started);
        debug!(size, "TFTP transfer started");

        let end = self.drive(&socket, &mut transfer);
        let now = Instant::now();
        let stranded = transfer.stranded_fragments(now);
        self.reassembly.set(self.peer.ip(), stranded, now);
        let elapsed = started.elapsed();
        let stats = transfer.stats();
        let outcome = match &end {
            End::Transfer(Outcome::Completed) => {
                Counters::bump(&self.counters.tftp_transfers_completed);
                "completed".to_owned()
            }
            End::Transfer(Outcome::Aborted { code, message }) => {
                Counters::bump(&self.counters.tftp_transfers_aborted);
                format!("aborted by the client (error {code} {message:?})")
            }
            End::ClientGone => {
                Counters::bump(&self.counters.tftp_transfers_aborted);
                "aborted: the client's port is closed".to_owned()
            }
            End::Transfer(Outcome::TimedOut) => {
                Counters::bump(&self.counters.tftp_transfers_timed_out);
                "timed out".to_owned()
            }
            End::Transfer(Outcome::ReadFailed(e)) => format!("failed: cannot read the file: {e}"),
            End::Cancelled => "ended: server shutting down".to_owned(),
            End::GaveWay => {
                Counters::bump(&self.counters.tftp_transfers_gave_way);
                "ended: stalled while another client waited for a slot".to_owned()
            }
            End::Socket(e) => format!("failed: socket error: {e}"),
        };
        let secs = elapsed.as_secs_f64();
        let delivered = if matches!(end, End::Transfer(Outcome::Completed)) {
            size
        } else {
            0
        };
        info!(
            outcome,
            size,
            bytes_sent = stats.bytes_sent,
            retransmitted = stats.retransmitted,
            timeouts = stats.timeouts,
            reassembly_pauses = stats.reassembly_pauses,
            burst_pauses = stats.burst_pauses,
            srtt_us = transfer.smoothed_rtt().map(|d| d.as_micros() as u64),
            duration_ms = elapsed.as_millis() as u64,
            mb_per_s = format_args!("{:.1}", delivered as f64 / 1e6 / secs.max(1e-6)),
            "TFTP transfer ended"
        );
    }

    /// Resolves and opens the requested file, answering the client with an ERROR if it cannot
    /// (counted as refused before the ERROR leaves, so a client never sees an uncounted one).
    fn open(&self, socket: &std::net::UdpSocket) -> Option<(Source, u64)> {
        let refuse = |code: ErrorCode, message: &'static str| {
            Counters::bump(&self.counters.tftp_refused);
            let _ = socket.send(&packet::error_bytes(code, message));
        };
        let provided = crate::tftp::path::provided_name(&self.request.filename).and_then(|name| {
            self.provided
                .get(&name.to_lowercase())
                .cloned()
                .or_else(|| {
                    self.generator
                        .as_ref()
                        .and_then(|g| (g.0)(&name, self.peer.ip()))
                })
        });
        match provided {
            Some(Provided::Bytes(bytes)) => {
                debug!("TFTP request served from the server's own file");
                let len = bytes.len() as u64;
                return Some((Source::Bytes(bytes), len));
            }
            Some(Provided::File(path)) => {
                return match std::fs::File::open(&path)
                    .and_then(|f| f.metadata().map(|m| (f, m.len())))
                {
                    Ok((f, len)) => {
                        debug!(path = %path.display(), "TFTP request served from a provided file");
                        Some((Source::File(ReadAhead::new(f)), len))
                    }
                    Err(e) => {
                        warn!(path = %path.display(), error = %e, "TFTP request refused: cannot open the provided file");
                        refuse(ErrorCode::FileNotFound, "cannot open the file");
                        None
                    }
                };
            }
            None => {}
        }
        let path = match self.root.resolve(&self.request.filename) {
            Ok(path) => path,
            Err(e) => {
                info!(reason = %e, "TFTP request refused");
                match e {
                    PathError::Refused(_) => refuse(ErrorCode::AccessViolation, "access violation"),
                    PathError::Io(_) => refuse(ErrorCode::AccessViolation, "cannot read"),
                    _ => refuse(ErrorCode::FileNotFound, "file not found"),
                }
                return None;
            }
        };
        // The path is canonical: a symlink in its last component now means it was swapped in
        // after the check, so do not follow one.
        let opened = {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&path)
        };
        let file = match opened.and_then(|f| f.metadata().map(|m| (f, m.len()))) {
            Ok(opened) => opened,
            Err(e) => {
                info!(path = %path.display(), error = %e, "TFTP request refused: cannot open");
                let code = if e.kind() == io::ErrorKind::NotFound {
                    ErrorCode::FileNotFound
                } else {
                    ErrorCode::AccessViolation
                };
                refuse(code, "cannot open the file");
                return None;
            }
        };
        Some((Source::File(ReadAhead::new(file.0)), file.1))
    }

    fn drive(&self, socket: &std::net::UdpSocket, transfer: &mut Transfer<Source>) -> End {
        let window = usize::from(transfer.negotiated().windowsize);
        let mut batch = Batch::new(transfer.max_datagram_len(), window.min(BATCH_DATAGRAMS));
        let mut input = [0u8; 2048];
        let mut counted = 0;
        let mut read_timeout = Duration::ZERO;
        loop {
            loop {
                let now = Instant::now();
                let more = batch.fill(|buf| transfer.poll_transmit(buf, now));
                if batch.is_empty() {
                    break;
                }
                match batch.send(socket) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                        return End::ClientGone;
                    }
                    Err(e) => return End::Socket(e),
                }
                if !more {
                    break;
                }
            }
            let sent = transfer.stats().bytes_sent;
            self.counters
                .tftp_bytes_sent
                .fetch_add(sent - counted, Ordering::Relaxed);
            counted = sent;
            let Some(deadline) = transfer.poll_timeout() else {
                let outcome = transfer.outcome().cloned();
                return End::Transfer(outcome.unwrap_or(Outcome::TimedOut));
            };
            if self.cancel.is_cancelled() {
                let bye = packet::error_bytes(ErrorCode::NotDefined, "server shutting down");
                let _ = socket.send(&bye);
                return End::Cancelled;
            }
            self.slot.report_stalled(transfer.stalled());
            if self.slot.must_give_way() {
                let bye = packet::error_bytes(
                    ErrorCode::NotDefined,
                    "transfer stalled; its slot went to another client",
                );
                let _ = socket.send(&bye);
                return End::GaveWay;
            }
            let now = Instant::now();
            if deadline <= now {
                transfer.handle_timeout(now);
                continue;
            }
            let wait = deadline - now;
            if wait < PRECISE_WAIT {
                // A pause between bursts of a window lasts a round trip, far below the kernel's
                // tick that rounds up a socket's receive timeout: wait for the ACK with ppoll,
                // which sleeps on a high-resolution timer.
                match wait_readable(socket, wait) {
                    Ok(true) => {}
                    Ok(false) => continue,
                    Err(e) => return End::Socket(e),
                }
            }
            // Never zero: a zero receive timeout means "wait forever". Waking early only costs
            // a turn of the loop, so the timeout changes (a system call) only when it would
            // wake late or much too early.
            let wait = wait.clamp(Duration::from_micros(100), CANCEL_CHECK);
            if wait < read_timeout || wait > read_timeout * 2 {
                if let Err(e) = socket.set_read_timeout(Some(wait)) {
                    return End::Socket(e);
                }
                read_timeout = wait;
            }
            match socket.recv(&mut input) {
                Ok(len) => transfer.handle_datagram(&input[..len], Instant::now()),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => return End::ClientGone,
                Err(e) => return End::Socket(e),
            }
        }
    }
}

/// What a transfer sends: a file, or bytes the server made.
enum Source {
    File(ReadAhead),
    Bytes(Arc<[u8]>),
}

impl BlockSource for Source {
    fn read_at(&mut self, offset: u64, out: &mut [u8]) -> io::Result<usize> {
        match self {
            Source::File(f) => f.read_at(offset, out),
            Source::Bytes(b) => (&b[..]).read_at(offset, out),
        }
    }
}

/// The file behind a transfer, read [`READ_AHEAD`] bytes at a time: one system call per window
/// or more instead of one per block.
struct ReadAhead {
    file: std::fs::File,
    buf: Vec<u8>,
    /// File offset of `buf[0]`, and how many bytes of `buf` hold file data.
    start: u64,
    len: usize,
}

impl ReadAhead {
    fn new(file: std::fs::File) -> ReadAhead {
        ReadAhead {
            file,
            buf: Vec::new(),
            start: 0,
            len: 0,
        }
    }
}

impl BlockSource for ReadAhead {
    fn read_at(&mut self, offset: u64, out: &mut [u8]) -> io::Result<usize> {
        let end = offset + out.len() as u64;
        let held = self.start..self.start + self.len as u64;
        if !(held.contains(&offset) && end <= held.end) {
            if out.len() > READ_AHEAD {
                return self.file.read_at(offset, out);
            }
            self.buf.resize(READ_AHEAD, 0);
            self.start = offset;
            self.len = self.file.read_at(offset, &mut self.buf)?;
        }
        let from = (offset - self.start) as usize;
        let n = out.len().min(self.len - from);
        out[..n].copy_from_slice(&self.buf[from..from + n]);
        Ok(n)
    }
}

/// Waits shorter than this go through [`wait_readable`] rather than the socket's receive
/// timeout, which the kernel counts in ticks (up to 10 ms).
const PRECISE_WAIT: Duration = Duration::from_millis(5);

/// Whether a datagram is waiting on `socket`, waiting up to `wait` for one.
fn wait_readable(socket: &std::net::UdpSocket, wait: Duration) -> io::Result<bool> {
    use std::os::fd::AsRawFd;
    let mut fds = libc::pollfd {
        fd: socket.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let timeout = libc::timespec {
        tv_sec: wait.as_secs() as libc::time_t,
        tv_nsec: wait.subsec_nanos() as libc::c_long,
    };
    // SAFETY: one valid pollfd, a valid timespec, and no signal mask.
    let rc = unsafe { libc::ppoll(&mut fds, 1, &timeout, std::ptr::null()) };
    match rc {
        0 => Ok(false),
        n if n > 0 => Ok(true),
        _ => {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                Ok(false)
            } else {
                Err(e)
            }
        }
    }
}

/// The MTU the kernel knows for the path of a connected socket, which tells whether large
/// blocks are fragmented.
fn path_mtu(socket: &std::net::UdpSocket) -> Option<usize> {
    use std::os::fd::AsRawFd;
    let (level, name) = match socket.peer_addr().ok()? {
        SocketAddr::V4(_) => (libc::IPPROTO_IP, libc::IP_MTU),
        SocketAddr::V6(_) => (libc::IPPROTO_IPV6, libc::IPV6_MTU),
    };
    let mut mtu: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `mtu` and `len` are valid for writes and `len` gives the size of `mtu`.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&mut mtu as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    (rc == 0 && mtu > 0).then_some(mtu as usize)
}

/// A socket for one transfer: bound to `local` with an ephemeral port, connected to the client.
fn transfer_socket(local: IpAddr, peer: SocketAddr) -> io::Result<std::net::UdpSocket> {
    let socket = Socket::new(Domain::for_address(peer), Type::DGRAM, Some(Protocol::UDP))?;
    socket.bind(&SocketAddr::new(local, 0).into())?;
    socket.connect(&peer.into())?;
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_ahead_returns_the_file_bytes_in_any_order() {
        let mut file = tempfile::tempfile().unwrap();
        let data: Vec<u8> = (0..READ_AHEAD * 3 + 777)
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        std::io::Write::write_all(&mut file, &data).unwrap();
        let mut source = ReadAhead::new(file);
        let mut buf = vec![0u8; 1468];
        let mut check = |offset: usize, len: usize| {
            let n = source.read_at(offset as u64, &mut buf[..len]).unwrap();
            let expected = &data[offset.min(data.len())..(offset + len).min(data.len())];
            assert_eq!(&buf[..n], expected, "offset {offset}");
        };
        for block in 0..data.len() / 1468 + 1 {
            check(block * 1468, 1468);
        }
        check(READ_AHEAD - 10, 1468);
        check(5, 100);
        check(data.len() - 3, 1468);
        check(data.len() + 10, 1468);
        let mut big = vec![0u8; READ_AHEAD + 1];
        assert_eq!(source.read_at(1, &mut big).unwrap(), READ_AHEAD + 1);
        assert_eq!(big[..], data[1..READ_AHEAD + 2]);
    }
}
