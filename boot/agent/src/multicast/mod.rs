//! Multicast apply (docs/multicast.md): receives an image's chunks from a netdeploy
//! multicast session and writes each one only after it matched the SHA-256 the index gives
//! it, exactly as the HTTP apply does; whatever multicast did not bring (no session heard
//! within a few seconds, a stalled session, the server's "continue over HTTP" or the end of
//! the session) is fetched over HTTP. The console says which path was taken.
//!
//! The protocol's decisions (what is complete, what to ask for) are the pure
//! `netdeploy_wire::multicast::Receiver`; this module owns the socket, the clock and the disk.

pub mod cli;
pub mod session;

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

use netdeploy_wire::multicast::{Body, Packet, Receiver, MAX_DATAGRAM};
use sha2::{Digest, Sha256};

use crate::console::say;
use crate::download::Backoff;
use crate::image::apply::{fetch_chunk, fetch_index, open_target, write_chunk, zero_ranges};
use crate::image::{ImageError, ImageRef, Store};

/// How a multicast apply listens.
#[derive(Debug, Clone)]
pub struct MulticastOptions {
    /// The session's group and port.
    pub group: SocketAddrV4,
    /// The address of the interface to join the group on (unspecified: the kernel's choice).
    pub interface: Ipv4Addr,
    /// No announcement of the image within this long: everything over HTTP.
    pub wait: Duration,
    /// No data within this long once joined: the rest over HTTP.
    pub stall: Duration,
    /// Partly received chunks held in memory at once.
    pub max_partial: usize,
    pub backoff: Backoff,
    /// The receiver id the server gave this machine; `None`: one drawn from the target.
    pub receiver: Option<u32>,
}

impl MulticastOptions {
    /// Waits 5 s for the session, gives up on it after 10 s without data, holds 8 chunks.
    pub fn new(group: SocketAddrV4) -> MulticastOptions {
        MulticastOptions {
            group,
            interface: Ipv4Addr::UNSPECIFIED,
            wait: Duration::from_secs(5),
            stall: Duration::from_secs(10),
            max_partial: 8,
            backoff: Backoff::default(),
            receiver: None,
        }
    }
}

/// Why chunks were fetched over HTTP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fallback {
    /// No announcement of this image arrived within the wait.
    NoSession,
    /// Joined, then no data for the stall time.
    Stalled,
    /// The server told this machine to continue over HTTP (it kept losing too much).
    Told,
    /// The session ended before this machine had everything.
    Ended,
}

impl Fallback {
    pub fn describe(&self, o: &MulticastOptions) -> String {
        match self {
            Fallback::NoSession => format!(
                "no multicast session of this image on {} within {} s",
                o.group,
                o.wait.as_secs()
            ),
            Fallback::Stalled => format!("no multicast data for {} s", o.stall.as_secs()),
            Fallback::Told => "the server said to continue over HTTP".into(),
            Fallback::Ended => "the multicast session ended".into(),
        }
    }
}

/// What a multicast apply did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub chunks: usize,
    /// Chunks received by multicast and by HTTP.
    pub multicast: usize,
    pub http: usize,
    /// Chunks received by multicast that failed their SHA-256 (asked for again).
    pub rejected: usize,
    pub fallback: Option<Fallback>,
    pub zeroed: u64,
}

/// Opens the receiving socket: the group's port, shared with other receivers on the host,
/// joined on `interface`.
fn open_socket(o: &MulticastOptions) -> std::io::Result<UdpSocket> {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)?;
    s.set_reuse_address(true)?;
    // Bound to the group, the socket hears only it, not other traffic to the port.
    s.bind(&SocketAddr::from((*o.group.ip(), o.group.port())).into())?;
    s.join_multicast_v4(o.group.ip(), &o.interface)?;
    // Room for the data that arrives while a chunk is checked and written, or while other
    // work has the CPU: past the kernel's cap (208 KiB on a stock kernel, a few ms at
    // hundreds of Mbit/s) where allowed.
    if let Err(e) = crate::platform::force_recv_buffer(&s, RECV_BUFFER) {
        say(format!(
            "multicast: receive buffer of {RECV_BUFFER} bytes: {e}"
        ));
    }
    // Read in batches (see `receive`): never woken by each datagram.
    s.set_nonblocking(true)?;
    Ok(s.into())
}

/// The receive buffer asked for: about 0.3 s of data at 400 Mbit/s. It holds only what
/// waits to be read.
const RECV_BUFFER: usize = 32 << 20;

/// When the socket is empty the receiver sleeps this long and then drains what queued
/// meanwhile: at hundreds of Mbit/s a blocking read would be woken once per datagram, and
/// those wake-ups cost more CPU than the data (many receivers share a machine's cores).
const POLL: Duration = Duration::from_millis(1);

/// No datagram for this long: the receiver asks for what the stream has passed.
const QUIET: Duration = Duration::from_millis(20);

/// No datagram for this long, longer than a sender or a kernel busy with other work pauses:
/// what was sent has arrived, so the receiver asks for all it still lacks.
const SILENT: Duration = Duration::from_millis(250);

/// This receiver's id: distinct per machine and run.
fn receiver_id(target: &Path) -> u32 {
    let mut h = Sha256::new();
    h.update(std::process::id().to_le_bytes());
    h.update(format!("{:?}", std::time::SystemTime::now()));
    h.update(target.as_os_str().as_encoded_bytes());
    let d = h.finalize();
    u32::from_le_bytes([d[0], d[1], d[2], d[3]])
}

/// Applies `image` onto `target`: chunks from the multicast session on `o.group`, the rest
/// from `store` (the server's content library over HTTP). The index always comes from
/// `store`, checked against the policy's SHA-256; a session announcing another index is not
/// listened to.
pub fn apply(
    store: &Store<'_>,
    image: &ImageRef<'_>,
    target: &Path,
    o: &MulticastOptions,
) -> Result<Received, ImageError> {
    let name = image.name;
    let (index, index_sha) = fetch_index(store, image, &o.backoff)?;
    let file = open_target(name, target, index.size)?;
    let write_err = |source| ImageError::Write {
        image: name.to_owned(),
        target: target.to_owned(),
        source,
    };
    let zeroed = zero_ranges(&file, &index.zeros).map_err(write_err)?;
    let lens: Vec<u64> = index.chunks.iter().map(|c| c.compressed_len).collect();
    let mut rx = Receiver::new(
        o.receiver.unwrap_or_else(|| receiver_id(target)),
        lens,
        &[],
        o.max_partial,
    );
    let mut multicast = 0usize;
    let mut rejected = 0usize;
    let fallback = match open_socket(o) {
        Err(e) => {
            say(format!("{name}: cannot join {}: {e}", o.group));
            Some(Fallback::NoSession)
        }
        Ok(socket) => receive(&socket, &index_sha, &mut rx, o, |i, bytes| {
            let chunk = &index.chunks[i];
            if let Err(e) = chunk.verify(i, bytes) {
                say(format!("{name}: multicast {e}; asked for again"));
                rejected += 1;
                return Ok(false);
            }
            write_chunk(name, i, chunk, bytes, &file, target)?;
            multicast += 1;
            Ok(true)
        })?,
    };
    let missing: Vec<usize> = (0..index.chunks.len()).filter(|i| !rx.have()[*i]).collect();
    match &fallback {
        None => say(format!(
            "{name}: path multicast: {multicast} chunks from {}",
            o.group
        )),
        Some(f) => say(format!(
            "{name}: path {}: {multicast} chunks by multicast, {} over HTTP ({})",
            if multicast > 0 {
                "multicast+http"
            } else {
                "http"
            },
            missing.len(),
            f.describe(o)
        )),
    }
    for &i in &missing {
        let bytes = fetch_chunk(store, name, i, &index.chunks[i], &o.backoff)?;
        write_chunk(name, i, &index.chunks[i], &bytes, &file, target)?;
    }
    file.sync_all().map_err(write_err)?;
    say(format!(
        "{name}: {} chunks, {zeroed} bytes zeroed, SHA-256 of every chunk verified",
        index.chunks.len()
    ));
    Ok(Received {
        chunks: index.chunks.len(),
        multicast,
        http: missing.len(),
        rejected,
        fallback,
        zeroed,
    })
}

/// Listens until every chunk is written (`None`) or multicast gives up (the reason).
/// `complete(i, bytes)` checks and writes chunk `i`; false means it failed its check.
fn receive(
    socket: &UdpSocket,
    index_sha: &[u8; 32],
    rx: &mut Receiver,
    o: &MulticastOptions,
    mut complete: impl FnMut(usize, &[u8]) -> Result<bool, ImageError>,
) -> Result<Option<Fallback>, ImageError> {
    let mut buf = vec![0u8; MAX_DATAGRAM + 1];
    let started = Instant::now();
    let mut session: Option<(u32, SocketAddr)> = None;
    let mut last_data = Instant::now();
    let mut data_seen = false;
    let mut last_request: Option<Instant> = None;
    let mut last_datagram = Instant::now();
    // `all`: everything lacking; otherwise only what the stream has passed.
    let send_requests = |rx: &mut Receiver, session: u32, server: SocketAddr, all: bool| {
        let reqs = if all {
            rx.requests()
        } else {
            rx.requests_passed()
        };
        for req in reqs {
            let wire = Packet {
                session,
                body: Body::Request(req),
            }
            .encode();
            // A lost request is sent again at the next turn.
            let _ = socket.send_to(&wire, server);
        }
    };
    loop {
        if rx.is_complete() {
            if let Some((id, server)) = session {
                // Said three times: the server ends the session when everyone is done.
                for _ in 0..3 {
                    send_requests(rx, id, server, true);
                }
            }
            return Ok(None);
        }
        let idle = match socket.recv_from(&mut buf) {
            Ok((n, from)) => {
                last_datagram = Instant::now();
                match Packet::decode(&buf[..n]) {
                    Ok(Packet {
                        session: id,
                        body: Body::Announce(a),
                    }) if &a.index_sha256 == index_sha => {
                        if session.is_none() {
                            say(format!(
                                "multicast: joined session {id} on {} from {from} ({} chunks)",
                                o.group, a.chunks
                            ));
                        }
                        // Until its first data, a session waits out its join window: its
                        // announcements say it is alive.
                        if !data_seen {
                            last_data = Instant::now();
                        }
                        session = Some((id, from));
                    }
                    Ok(Packet {
                        session: id,
                        body:
                            Body::Data {
                                seq,
                                chunk,
                                block,
                                blocks,
                                payload,
                            },
                    }) if session.is_some_and(|(s, _)| s == id) => {
                        last_data = Instant::now();
                        data_seen = true;
                        match rx.on_data(seq, chunk, block, blocks, &payload) {
                            Ok(Some(bytes)) => {
                                if complete(chunk as usize, &bytes)? {
                                    rx.written(chunk);
                                } else {
                                    rx.rejected(chunk);
                                }
                            }
                            Ok(None) => {}
                            Err(e) => say(format!("multicast: datagram dropped: {e}")),
                        }
                    }
                    Ok(Packet {
                        session: id,
                        body: Body::Fallback { receiver },
                    }) if session.is_some_and(|(s, _)| s == id) && receiver == rx.id() => {
                        return Ok(Some(Fallback::Told));
                    }
                    Ok(Packet {
                        session: id,
                        body: Body::End,
                    }) if session.is_some_and(|(s, _)| s == id) => {
                        return Ok(Some(Fallback::Ended));
                    }
                    // Another session, another image, our own kind of datagram, or damage.
                    _ => {}
                }
                false
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                std::thread::sleep(POLL);
                true
            }
            Err(e) => {
                say(format!("multicast: {e}"));
                std::thread::sleep(POLL);
                true
            }
        };
        let Some((id, server)) = session else {
            if started.elapsed() >= o.wait {
                return Ok(Some(Fallback::NoSession));
            }
            continue;
        };
        if last_data.elapsed() >= o.stall {
            return Ok(Some(Fallback::Stalled));
        }
        // Ask for what the stream has passed (what is still queued in the socket or the
        // kernel is on its way) when the socket is drained and quiet, and at least every
        // second while data keeps coming, so that the server hears this machine's loss;
        // for everything lacking at first and once nothing came for a while. A receiver
        // whose partial chunks are all taken asks for their repairs at once.
        let since = last_request.map_or(Duration::MAX, |t| t.elapsed());
        let every = if rx.is_full() {
            Duration::from_millis(50)
        } else {
            Duration::from_secs(1)
        };
        let quiet = last_datagram.elapsed();
        let first = last_request.is_none();
        let silent = idle && quiet >= SILENT;
        if first
            || (idle && quiet >= QUIET && since >= Duration::from_millis(100))
            || since >= every
        {
            send_requests(rx, id, server, first || silent);
            last_request = Some(Instant::now());
        }
    }
}
