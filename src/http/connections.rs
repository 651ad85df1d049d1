//! HTTP connections: the accept loop and the limits every peer is held to.
//!
//! Each accepted socket gets `TCP_NODELAY` (a small response goes out at once instead of
//! waiting for the client's delayed ACK), a slot in [`ConnectionTable`] (a cap in all and per
//! client address; a connection over either cap is answered `503` and closed), and a watchdog
//! that closes it when it stays idle between requests longer than the idle timeout or takes
//! longer than the header timeout to send a request head it has started. An idle connection
//! then costs its peer a file descriptor for a bounded time only, so a crowd of idle sockets
//! cannot exhaust the server's descriptors and hang HTTP and TFTP with them.
//!
//! The HTTPS listener holds its connections to the same caps and timeouts, and to a TLS
//! handshake timeout before them. Every request carries the [`Transport`] it came over.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::HttpLimits;
use crate::counters::Counters;

/// Which listener a request came through, in the request's extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Http,
    Https,
}

/// What the HTTPS listener does before HTTP: the handshake, within its timeout.
#[derive(Clone)]
pub struct TlsAccept {
    pub acceptor: tokio_rustls::TlsAcceptor,
    pub handshake_timeout: Duration,
}

/// Why a new connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The server holds `max_connections` already.
    Total,
    /// This client address holds `max_connections_per_client` already.
    PerClient,
}

impl Refusal {
    fn reason(self) -> &'static str {
        match self {
            Refusal::Total => "the server holds http.max_connections connections",
            Refusal::PerClient => {
                "this client address holds http.max_connections_per_client connections"
            }
        }
    }
}

/// Open connections, in all and per client address: decides whether one more may open.
#[derive(Debug)]
pub struct ConnectionTable {
    max_total: usize,
    max_per_client: usize,
    total: usize,
    per_client: HashMap<IpAddr, usize>,
}

impl ConnectionTable {
    pub fn new(max_total: usize, max_per_client: usize) -> ConnectionTable {
        ConnectionTable {
            max_total,
            max_per_client,
            total: 0,
            per_client: HashMap::new(),
        }
    }

    /// Takes a slot for a connection from `ip`, or says which cap it would pass.
    pub fn admit(&mut self, ip: IpAddr) -> Result<(), Refusal> {
        if self.total >= self.max_total {
            return Err(Refusal::Total);
        }
        let n = self.per_client.entry(ip).or_insert(0);
        if *n >= self.max_per_client {
            return Err(Refusal::PerClient);
        }
        *n += 1;
        self.total += 1;
        Ok(())
    }

    /// Gives back the slot of a connection from `ip` that [`ConnectionTable::admit`] let in.
    pub fn release(&mut self, ip: IpAddr) {
        if let Some(n) = self.per_client.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                self.per_client.remove(&ip);
            }
            self.total -= 1;
        }
    }

    /// Connections open in all.
    pub fn total(&self) -> usize {
        self.total
    }
}

/// A connection's slot; gives it back when dropped.
struct Slot {
    table: Arc<Mutex<ConnectionTable>>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.table
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .release(self.ip);
    }
}

/// What a connection is doing, as the watchdog sees it: times are milliseconds since the
/// connection was accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Phase {
    /// Requests whose response has not been sent to its end.
    pub in_flight: usize,
    /// When the connection last became idle (accepted, or its last response ended).
    pub idle_since_ms: u64,
    /// When the first byte of the next request head arrived, if it did while idle.
    pub head_started_ms: Option<u64>,
}

/// What the watchdog does about a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Watch {
    /// A request is being answered: no deadline until it ends.
    Busy,
    /// Look again at this time (ms since accept) unless something happens before.
    Until(u64),
    /// Close the connection now.
    Close(CloseReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// No request within `http.idle_timeout_seconds` of the connection becoming idle.
    Idle,
    /// A request head not complete within `http.header_timeout_seconds` of its first byte.
    SlowHeader,
}

/// The watchdog's decision at `now_ms` (ms since accept). A started head is held to the
/// header timeout and to the idle timeout both, whichever ends first.
pub fn watch(phase: Phase, now_ms: u64, header_timeout: Duration, idle_timeout: Duration) -> Watch {
    if phase.in_flight > 0 {
        return Watch::Busy;
    }
    let idle_end = phase
        .idle_since_ms
        .saturating_add(idle_timeout.as_millis() as u64);
    let header_end = phase
        .head_started_ms
        .map(|t| t.saturating_add(header_timeout.as_millis() as u64));
    if header_end.is_some_and(|end| now_ms >= end && end <= idle_end) {
        return Watch::Close(CloseReason::SlowHeader);
    }
    if now_ms >= idle_end {
        return Watch::Close(CloseReason::Idle);
    }
    Watch::Until(header_end.map_or(idle_end, |h| h.min(idle_end)))
}

/// What the socket, the service and the watchdog of one connection share.
struct Activity {
    accepted: Instant,
    in_flight: AtomicUsize,
    idle_since_ms: AtomicU64,
    /// 0: no head started; otherwise ms since accept plus one.
    head_started: AtomicU64,
    changed: Notify,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            accepted: Instant::now(),
            in_flight: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(0),
            head_started: AtomicU64::new(0),
            changed: Notify::new(),
        }
    }

    fn now_ms(&self) -> u64 {
        self.accepted.elapsed().as_millis() as u64
    }

    fn phase(&self) -> Phase {
        let head = self.head_started.load(Ordering::Acquire);
        Phase {
            in_flight: self.in_flight.load(Ordering::Acquire),
            idle_since_ms: self.idle_since_ms.load(Ordering::Acquire),
            head_started_ms: (head > 0).then(|| head - 1),
        }
    }

    /// Bytes arrived from the client.
    fn on_read(&self) {
        if self.in_flight.load(Ordering::Acquire) == 0
            && self.head_started.load(Ordering::Relaxed) == 0
        {
            self.head_started
                .store(self.now_ms() + 1, Ordering::Release);
            self.changed.notify_one();
        }
    }

    /// A request head was parsed and goes to the router.
    fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.head_started.store(0, Ordering::Release);
        InFlight(self.clone())
    }
}

/// A request being answered; its drop (when the response body has been sent or dropped) ends
/// it.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let a = &self.0;
        a.idle_since_ms.store(a.now_ms(), Ordering::Release);
        if a.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            a.changed.notify_one();
        }
    }
}

/// Waits until the connection must be closed, and says why.
async fn watchdog(activity: Arc<Activity>, limits: HttpLimits) -> CloseReason {
    loop {
        // Registered before the phase is read, so a change right after the read still wakes us.
        let changed = activity.changed.notified();
        match watch(
            activity.phase(),
            activity.now_ms(),
            limits.header_timeout,
            limits.idle_timeout,
        ) {
            Watch::Close(reason) => return reason,
            Watch::Busy => changed.await,
            Watch::Until(ms) => {
                let at = activity.accepted + Duration::from_millis(ms);
                tokio::select! {
                    _ = changed => {}
                    _ = tokio::time::sleep_until(at.into()) => {}
                }
            }
        }
    }
}

/// The socket as hyper sees it: reads tell the watchdog that a request head has started.
struct Watched<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.on_read();
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A response body that ends its request's [`InFlight`] when it is dropped.
struct Tracked {
    body: Body,
    _in_flight: InFlight,
}

impl http_body::Body for Tracked {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }
    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }
    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// The answer to a connection over a cap. The request is not read: the client may have sent
/// nothing yet.
fn refusal_response(r: Refusal) -> Vec<u8> {
    let body = format!("too many connections: {}\n", r.reason());
    format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\nRetry-After: 5\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Serves HTTP (or HTTPS, with `tls`) on an already bound listener until cancelled, then lets
/// open requests finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    limits: HttpLimits,
    counters: Arc<Counters>,
    table: Arc<Mutex<ConnectionTable>>,
    cancel: CancellationToken,
    tls: Option<TlsAccept>,
) -> std::io::Result<()> {
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let (stream, peer) = tokio::select! {
            _ = cancel.cancelled() => break,
            // Reaps finished connection tasks so the set does not grow.
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
            r = listener.accept() => match r {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors (EMFILE) or a connection reset before accept: wait a
                    // little rather than spin on an error that repeats.
                    tracing::warn!(error = %e, "HTTP accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let admitted = table
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .admit(peer.ip());
        if let Err(refusal) = admitted {
            Counters::bump(&counters.http_connections_refused);
            tracing::warn!(client = %peer, reason = refusal.reason(), "HTTP connection refused");
            conns.spawn(async move {
                let mut stream = stream;
                let answer = refusal_response(refusal);
                let _ = tokio::time::timeout(Duration::from_secs(1), async {
                    stream.write_all(&answer).await?;
                    stream.shutdown().await
                })
                .await;
            });
            continue;
        }
        let slot = Slot {
            table: table.clone(),
            ip: peer.ip(),
        };
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(client = %peer, error = %e, "cannot set TCP_NODELAY");
        }
        let conn = Connection {
            peer,
            router: router.clone(),
            limits,
            counters: counters.clone(),
            cancel: cancel.clone(),
        };
        match &tls {
            None => {
                conns.spawn(conn.serve(stream, Transport::Http, slot));
            }
            Some(tls) => {
                conns.spawn(conn.handshake(stream, tls.clone(), slot));
            }
        }
    }
    while conns.join_next().await.is_some() {}
    Ok(())
}

/// What one connection is served with.
struct Connection {
    peer: SocketAddr,
    router: axum::Router,
    limits: HttpLimits,
    counters: Arc<Counters>,
    cancel: CancellationToken,
}

impl Connection {
    /// The TLS handshake within its timeout, then HTTP over it. The slot is held from accept.
    async fn handshake(self, stream: tokio::net::TcpStream, tls: TlsAccept, slot: Slot) {
        let peer = self.peer;
        let accepted = tokio::select! {
            r = tokio::time::timeout(tls.handshake_timeout, tls.acceptor.accept(stream)) => r,
            _ = self.cancel.cancelled() => return,
        };
        match accepted {
            Ok(Ok(stream)) => self.serve(stream, Transport::Https, slot).await,
            Ok(Err(e)) => {
                Counters::bump(&self.counters.http_tls_handshakes_failed);
                tracing::info!(client = %peer, error = %e, "HTTPS connection closed: TLS handshake failed");
            }
            Err(_) => {
                Counters::bump(&self.counters.http_tls_handshakes_failed);
                tracing::info!(client = %peer, "HTTPS connection closed: TLS handshake not done within http.tls.handshake_timeout_seconds");
            }
        }
    }

    /// HTTP/1.1 with keep-alive, closed by its watchdog or at shutdown once idle.
    async fn serve<S>(self, stream: S, transport: Transport, _slot: Slot)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Connection {
            peer,
            router,
            limits,
            counters,
            cancel,
        } = self;
        let activity = Arc::new(Activity::new());
        let io = TokioIo::new(Watched {
            inner: stream,
            activity: activity.clone(),
        });
        let service = {
            let activity = activity.clone();
            hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                let in_flight = activity.begin();
                req.extensions_mut().insert(ConnectInfo(peer));
                req.extensions_mut().insert(transport);
                let call = tower::ServiceExt::oneshot(router.clone(), req.map(Body::new));
                async move {
                    let resp = call.await?;
                    Ok::<_, std::convert::Infallible>(resp.map(|body| {
                        Body::new(Tracked {
                            body,
                            _in_flight: in_flight,
                        })
                    }))
                }
            })
        };
        let conn = hyper::server::conn::http1::Builder::new()
            .keep_alive(true)
            .serve_connection(io, service);
        tokio::pin!(conn);
        let dog = watchdog(activity, limits);
        tokio::pin!(dog);
        let mut shutting_down = false;
        loop {
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(client = %peer, error = %e, "HTTP connection ended with an error");
                    }
                    return;
                }
                reason = dog.as_mut() => {
                    match reason {
                        CloseReason::Idle => {
                            Counters::bump(&counters.http_connections_idle_closed);
                            tracing::debug!(client = %peer, "HTTP connection closed: idle past http.idle_timeout_seconds");
                        }
                        CloseReason::SlowHeader => {
                            Counters::bump(&counters.http_connections_slow_header_closed);
                            tracing::info!(client = %peer, "HTTP connection closed: request head not complete within http.header_timeout_seconds");
                        }
                    }
                    return;
                }
                _ = cancel.cancelled(), if !shutting_down => {
                    shutting_down = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: Duration = Duration::from_secs(10);
    const IDLE: Duration = Duration::from_secs(60);

    fn idle_since(ms: u64) -> Phase {
        Phase {
            in_flight: 0,
            idle_since_ms: ms,
            head_started_ms: None,
        }
    }

    #[test]
    fn idle_connection_is_closed_at_the_idle_timeout() {
        assert_eq!(watch(idle_since(0), 0, HEADER, IDLE), Watch::Until(60_000));
        assert_eq!(
            watch(idle_since(0), 59_999, HEADER, IDLE),
            Watch::Until(60_000)
        );
        assert_eq!(
            watch(idle_since(0), 60_000, HEADER, IDLE),
            Watch::Close(CloseReason::Idle)
        );
        // The idle time counts from the end of the last response.
        assert_eq!(
            watch(idle_since(5_000), 60_000, HEADER, IDLE),
            Watch::Until(65_000)
        );
    }

    #[test]
    fn started_head_must_be_complete_within_the_header_timeout() {
        let p = Phase {
            head_started_ms: Some(30_000),
            ..idle_since(0)
        };
        assert_eq!(watch(p, 30_000, HEADER, IDLE), Watch::Until(40_000));
        assert_eq!(
            watch(p, 40_000, HEADER, IDLE),
            Watch::Close(CloseReason::SlowHeader)
        );
        // A head started just before the idle end does not extend the connection's life.
        let late = Phase {
            head_started_ms: Some(55_000),
            ..idle_since(0)
        };
        assert_eq!(watch(late, 55_000, HEADER, IDLE), Watch::Until(60_000));
        assert_eq!(
            watch(late, 60_000, HEADER, IDLE),
            Watch::Close(CloseReason::Idle)
        );
    }

    #[test]
    fn connection_answering_a_request_has_no_deadline() {
        let p = Phase {
            in_flight: 1,
            ..idle_since(0)
        };
        assert_eq!(watch(p, 10_000_000, HEADER, IDLE), Watch::Busy);
    }

    #[test]
    fn per_client_cap_refuses_that_client_only() {
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let mut t = ConnectionTable::new(10, 2);
        assert_eq!(t.admit(a), Ok(()));
        assert_eq!(t.admit(a), Ok(()));
        assert_eq!(t.admit(a), Err(Refusal::PerClient));
        assert_eq!(t.admit(b), Ok(()));
        t.release(a);
        assert_eq!(t.admit(a), Ok(()));
        assert_eq!(t.total(), 3);
    }

    #[test]
    fn total_cap_refuses_everyone_until_a_slot_is_released() {
        let ips: Vec<IpAddr> = (1..=4)
            .map(|i| format!("10.0.0.{i}").parse().unwrap())
            .collect();
        let mut t = ConnectionTable::new(3, 2);
        for ip in &ips[..3] {
            assert_eq!(t.admit(*ip), Ok(()));
        }
        assert_eq!(t.admit(ips[3]), Err(Refusal::Total));
        t.release(ips[0]);
        assert_eq!(t.admit(ips[3]), Ok(()));
        // Releasing an address that holds nothing changes nothing.
        t.release("10.9.9.9".parse().unwrap());
        assert_eq!(t.total(), 3);
    }
}
