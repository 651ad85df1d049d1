//! The sender of one multicast session: announces the image to the group, takes receivers'
//! requests, and multicasts what the scheduler picks at the scheduler's rate, reading chunks
//! from the content library. Every decision is the pure `netdeploy_wire::multicast::Scheduler`;
//! this module owns the socket, the clock and the files.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use netdeploy_wire::image::Index;
use netdeploy_wire::multicast::{
    block_range, blocks_of, Action, Announce, Body, Packet, RateLimits, Scheduler, MAX_DATAGRAM,
};
use tokio::net::UdpSocket;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::live::{Live, Phase};
use crate::counters::Counters;

/// The image a session sends.
#[derive(Debug, Clone)]
pub struct SessionImage {
    pub index: Index,
    pub index_sha256: [u8; 32],
    /// Each chunk's file in the content library, in index order.
    pub chunk_files: Vec<PathBuf>,
}

/// How one session runs.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    pub session: u32,
    pub group: SocketAddrV4,
    /// The address it sends from; its interface carries the group.
    pub source: Ipv4Addr,
    pub ttl: u32,
    pub min_rate: u64,
    pub max_rate: u64,
    /// `Some(n)`: the session ends once `n` receivers came and each finished or fell back,
    /// and data goes out as soon as `n` asked. `None` (a session a deployment started): it
    /// ends once every machine admitted to its [`Live`] view finished or fell back, or when
    /// no one asked for [`IDLE_END`] and no one is left waiting.
    pub receivers: Option<usize>,
    /// Data goes out this long after the first receiver asked (or once `receivers` asked),
    /// so that machines started together share the first round rather than repair it.
    pub join_window: Duration,
    /// ...or as soon as this many receivers asked, when not 0 (`multicast.wait_for_machines`).
    pub start_with: usize,
    /// ...or after this long, whatever is left (they continue over HTTP).
    pub timeout: Duration,
}

/// What a session did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub receivers: usize,
    pub finished: usize,
    pub fell_back: usize,
    /// UDP payload bytes sent to the group.
    pub bytes_sent: u64,
    pub datagrams: u64,
    pub timed_out: bool,
}

/// A session a deployment started ends when no request came for this long and no receiver
/// is left waiting: its machines fell back to HTTP before they ever asked (multicast does not
/// reach them), or they all finished.
pub const IDLE_END: Duration = Duration::from_secs(60);

/// Announcements go out this often, so a machine that joins sees the session quickly.
const ANNOUNCE_EVERY: Duration = Duration::from_millis(500);

/// Until as many receivers as the session waits for have asked, announcements go out this
/// often: machines started together find the session sooner, and data starts sooner.
const ANNOUNCE_EVERY_UNTIL_JOINED: Duration = Duration::from_millis(100);

/// Bytes the sender may send ahead of its rate in one burst.
const BURST: f64 = 128.0 * 1024.0;

/// Opens the sending socket: bound to `source`, multicast out of its interface with `ttl`,
/// looped back so that receivers on the same host (a test on loopback) hear it too.
fn open_socket(source: Ipv4Addr, ttl: u32) -> std::io::Result<UdpSocket> {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)?;
    s.bind(&SocketAddr::from((source, 0)).into())?;
    s.set_multicast_if_v4(&source)?;
    s.set_multicast_ttl_v4(ttl)?;
    s.set_multicast_loop_v4(true)?;
    s.set_send_buffer_size(4 << 20)?;
    s.set_nonblocking(true)?;
    UdpSocket::from_std(s.into())
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Runs a session until it is over, it times out or `cancel` fires; then tells the group
/// it ended. `live` follows it: members, progress, rate, bytes and repairs.
pub async fn run(
    image: &SessionImage,
    opts: &SessionOptions,
    counters: Arc<Counters>,
    cancel: CancellationToken,
    live: &Live,
) -> std::io::Result<Report> {
    let socket = open_socket(opts.source, opts.ttl)?;
    let lens: Vec<u64> = image
        .index
        .chunks
        .iter()
        .map(|c| c.compressed_len)
        .collect();
    let mut sched = Scheduler::new(
        lens.clone(),
        RateLimits {
            min: opts.min_rate,
            max: opts.max_rate,
            loss_permille: 100,
            patience: 20,
        },
    );
    let group = SocketAddr::V4(opts.group);
    let started = Instant::now();
    let mut last_announce: Option<Instant> = None;
    let mut credit = BURST;
    let mut credit_at = Instant::now();
    let mut seq = 0u32;
    let mut chunk: Option<(u32, Vec<u8>)> = None;
    let mut buf = vec![0u8; MAX_DATAGRAM + 1];
    let mut timed_out = false;
    let mut first_request: Option<Instant> = None;
    let mut last_request = Instant::now();
    // Per chunk, the blocks sent at least once: a block sent again is a repair.
    let mut sent: Vec<Vec<bool>> = lens
        .iter()
        .map(|&l| vec![false; blocks_of(l) as usize])
        .collect();
    let send = |bytes: Vec<u8>| {
        let socket = &socket;
        let counters = &counters;
        async move {
            // A datagram the kernel could not queue (ENOBUFS under load) is as lost as one
            // dropped on the wire: receivers ask for it again, so the session goes on.
            match socket.send_to(&bytes, group).await {
                Ok(_) => {
                    counters
                        .multicast_bytes_sent
                        .fetch_add(bytes.len() as u64, Ordering::Relaxed);
                    live.update(|s| s.bytes_sent += bytes.len() as u64);
                }
                Err(e) => tracing::debug!(error = %e, "multicast datagram not sent"),
            }
            std::io::Result::Ok(())
        }
    };
    tracing::info!(
        session = opts.session,
        group = %opts.group,
        chunks = lens.len(),
        bytes = lens.iter().sum::<u64>(),
        "multicast session started"
    );
    loop {
        let over = sched.is_over();
        let ended = match opts.receivers {
            Some(n) => over && sched.members() >= n,
            None => live.end_if(unix_now(), |s| {
                let idle = last_request.elapsed() >= IDLE_END && (over || sched.members() == 0);
                ((over && s.all_admitted_finished()) || idle).then_some(Phase::Ended)
            }),
        };
        if ended {
            break;
        }
        if started.elapsed() >= opts.timeout {
            timed_out = true;
            break;
        }
        if cancel.is_cancelled() {
            break;
        }
        // Every request waiting on the socket first: they decide what goes out next.
        loop {
            match socket.try_recv_from(&mut buf) {
                Ok((n, from)) => {
                    if take_request(&buf[..n], from, opts.session, &mut sched, &counters, live) {
                        last_request = Instant::now();
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => tracing::debug!(error = %e, "multicast receive"),
            }
        }
        // Until every receiver it waits for asked: the ones counted by `receivers`, or the
        // machines admitted to a deployment's session.
        let waiting = match opts.receivers {
            Some(n) => sched.members() < n,
            None => live.update(|s| s.members.values().any(|m| !m.heard)),
        };
        let announce_every = if waiting {
            ANNOUNCE_EVERY_UNTIL_JOINED
        } else {
            ANNOUNCE_EVERY
        };
        if last_announce.is_none_or(|t| t.elapsed() >= announce_every) {
            let p = Packet {
                session: opts.session,
                body: Body::Announce(Announce {
                    index_sha256: image.index_sha256,
                    chunks: lens.len() as u32,
                    rate: sched.rate(),
                }),
            };
            send(p.encode()).await?;
            last_announce = Some(Instant::now());
        }
        if first_request.is_none() && sched.members() > 0 {
            first_request = Some(Instant::now());
        }
        let joined = opts.receivers.is_some_and(|n| sched.members() >= n)
            || (opts.start_with > 0 && sched.members() >= opts.start_with)
            || first_request.is_some_and(|t| t.elapsed() >= opts.join_window);
        if joined {
            live.update(|s| {
                if s.phase == Phase::Joining {
                    s.phase = Phase::Sending;
                }
                s.rate = sched.rate();
            });
        }
        let Some(action) = joined.then(|| sched.next_action()).flatten() else {
            // Nothing asked: wait for a request, or the next announcement.
            tokio::select! {
                _ = socket.readable() => {}
                _ = tokio::time::sleep(ANNOUNCE_EVERY / 5) => {}
                _ = cancel.cancelled() => {}
            }
            continue;
        };
        let body = match action {
            Action::Fallback { receiver } => {
                tracing::info!(
                    session = opts.session,
                    receiver,
                    "receiver told to continue over HTTP"
                );
                live.update(|s| s.members.entry(receiver).or_default().fell_back = true);
                Body::Fallback { receiver }
            }
            Action::Block { chunk: c, block } => {
                if chunk.as_ref().is_none_or(|(held, _)| *held != c) {
                    let path = &image.chunk_files[c as usize];
                    let bytes = tokio::fs::read(path).await?;
                    if bytes.len() as u64 != lens[c as usize] {
                        return Err(std::io::Error::other(format!(
                            "{} has {} bytes, the index says {}",
                            path.display(),
                            bytes.len(),
                            lens[c as usize]
                        )));
                    }
                    chunk = Some((c, bytes));
                }
                let bytes = &chunk.as_ref().expect("just read").1;
                let len = lens[c as usize];
                let again = std::mem::replace(&mut sent[c as usize][block as usize], true);
                live.update(|s| {
                    s.datagrams += 1;
                    s.repairs += u64::from(again);
                });
                seq = seq.wrapping_add(1);
                Body::Data {
                    seq,
                    chunk: c,
                    block,
                    blocks: blocks_of(len),
                    payload: bytes[block_range(len, block)].to_vec(),
                }
            }
        };
        let is_data = matches!(body, Body::Data { .. });
        let wire = Packet {
            session: opts.session,
            body,
        }
        .encode();
        // A token bucket at the scheduler's rate, with a small burst.
        let now = Instant::now();
        credit =
            (credit + now.duration_since(credit_at).as_secs_f64() * sched.rate() as f64).min(BURST);
        credit_at = now;
        if credit < wire.len() as f64 {
            let wait = (wire.len() as f64 - credit) / sched.rate() as f64;
            tokio::time::sleep(Duration::from_secs_f64(wait.max(0.001))).await;
            let now = Instant::now();
            credit += now.duration_since(credit_at).as_secs_f64() * sched.rate() as f64;
            credit_at = now;
        }
        credit -= wire.len() as f64;
        send(wire).await?;
        if is_data {
            Counters::bump(&counters.multicast_datagrams_sent);
        }
    }
    let now = unix_now();
    live.update(|s| {
        if !matches!(s.phase, Phase::Ended | Phase::TimedOut) {
            s.phase = if timed_out {
                Phase::TimedOut
            } else {
                Phase::Ended
            };
            s.ended_at = Some(now);
        }
        s.rate = sched.rate();
    });
    for _ in 0..3 {
        send(
            Packet {
                session: opts.session,
                body: Body::End,
            }
            .encode(),
        )
        .await?;
    }
    let (bytes_sent, datagrams) = live.update(|s| (s.bytes_sent, s.datagrams));
    let report = Report {
        receivers: sched.members(),
        finished: sched.finished(),
        fell_back: sched.fell_back(),
        bytes_sent,
        datagrams,
        timed_out,
    };
    tracing::info!(
        session = opts.session,
        receivers = report.receivers,
        finished = report.finished,
        fell_back = report.fell_back,
        bytes_sent = report.bytes_sent,
        timed_out,
        "multicast session ended"
    );
    Ok(report)
}

/// Takes one datagram from a receiver; anything but a REQUEST of this session is counted
/// and dropped. True for a request.
fn take_request(
    bytes: &[u8],
    from: SocketAddr,
    session: u32,
    sched: &mut Scheduler,
    counters: &Counters,
    live: &Live,
) -> bool {
    match Packet::decode(bytes) {
        Ok(Packet {
            session: s,
            body: Body::Request(req),
        }) if s == session => {
            Counters::bump(&counters.multicast_requests);
            tracing::trace!(%from, receiver = req.receiver, loss = req.loss_permille, "request");
            sched.on_request(&req);
            let chunks = live.info.chunks;
            let lacking: u32 = req
                .chunks
                .iter()
                .map(|&(a, b)| b.min(chunks).saturating_sub(a))
                .sum::<u32>()
                + u32::from(req.partial.is_some());
            live.update(|s| {
                s.requests += 1;
                let m = s.members.entry(req.receiver).or_default();
                m.heard = true;
                m.done = req.is_done();
                m.loss_permille = req.loss_permille;
                m.chunks_held = chunks.saturating_sub(lacking);
            });
            true
        }
        Ok(_) => {
            Counters::bump(&counters.multicast_malformed);
            false
        }
        Err(e) => {
            Counters::bump(&counters.multicast_malformed);
            tracing::debug!(%from, reason = %e, "multicast datagram dropped");
            false
        }
    }
}
