//! One read transfer as a pure state machine: datagrams and timer ticks in, datagrams and a
//! deadline out. No socket and no clock: the caller passes `now` with every event, and the file
//! is read through [`BlockSource`], so tests drive it over a simulated lossy link.
//!
//! # Protocol
//! - Options (RFC 2347) are negotiated by [`negotiate`]; if any is acknowledged the transfer
//!   starts with an OACK and waits for ACK 0, else it starts with DATA 1 (RFC 1350).
//! - Blocks are numbered from 1 and the number on the wire wraps from 65535 to 0, as most
//!   clients expect for files above 32 MiB at 512-byte blocks. Internally blocks carry a 64-bit
//!   index, so a wrap is nothing special.
//! - A file always ends with a block shorter than blksize, which is empty when the size is a
//!   multiple of it (RFC 1350 section 6).
//! - Windowsize (RFC 7440): `windowsize` blocks go out before an ACK is awaited. An ACK for the
//!   last block of the window moves on to the next window. An ACK for an earlier block `n` means
//!   the client has everything up to `n` and nothing after it (RFC 7440 section 4: a receiver
//!   that sees a block out of sequence acknowledges the last one it got in sequence), so the
//!   window restarts at `n + 1`. An ACK for the block just before the window is a duplicate and
//!   is ignored: answering duplicates is the Sorcerer's Apprentice bug (RFC 1123 section
//!   4.2.3.1), which doubles every later datagram. Two exceptions, each acting at most once
//!   per event that makes the ACK trustworthy: the answer to a tail probe, and, while sending
//!   is paced (see "Fragmented blocks"), an ACK that can only answer this window.
//! - A client ERROR ends the transfer at once: UEFI firmware reads the size from the OACK and
//!   then aborts (docs/network-boot.md).
//!
//! # Loss recovery
//! A receiver acknowledges after `windowsize` blocks counted from its last ACK, on a block out
//! of sequence, and on its own timeout (seconds, for most clients). A loss inside a window is
//! thus reported one round trip later by the next block that arrives; what needs the server's
//! timer is a loss at the tail of a window (nothing arrives after it) and a lost ACK.
//! - Retransmission timeout: from the measured round trips (RFC 6298), at least [`MIN_RTO`], at
//!   most the negotiated `timeout` option or the configured timeout, doubled after each timeout
//!   in a row. A lost tail is resent after a few round trips, not after seconds. Every ACK that
//!   ends or cuts short the current window is a sample: an RFC 7440 receiver discards what
//!   follows a gap, so that ACK can only come from this window's copies (Karn's ambiguity does
//!   not arise), and a window that keeps losing blocks still yields samples.
//! - The first timeout in a row resends only the last block sent (a tail probe). Whatever the
//!   client holds, that block makes it answer at once: it completes the window, or it is out of
//!   sequence and draws the ACK of the last block in sequence, or it is a duplicate of what the
//!   client has and draws that ACK again. One block does the work of a window, and an answer
//!   naming the block before the window is, this once, acted on. A second timeout in a row
//!   resends the window, for clients that stay silent.
//! - A window is capped at [`MAX_WINDOW_BYTES`] when options are negotiated (RFC 7440 lets the
//!   server grant less than asked). A loss wastes what follows it in the window: in simulation,
//!   windows of 64 blocks of 64 KiB under 1% fragment loss ran at a fifth of the lock-step rate.
//!   The cap bounds the waste of one loss and keeps a window within a client's socket buffer:
//!   128 KiB, under the 208 KiB a Linux socket gets by default (atftp keeps it), which the
//!   kernel charges with each datagram's overhead. With 1 MiB, atftp on loopback dropped most
//!   of every 8192 x 64 window and ran at a tenth of the lock-step rate.
//! - The window is not shrunk at run time: the client, not the server, decides when to
//!   acknowledge, so a smaller window needs an extra copy of its last block to draw the ACK,
//!   and that copy and the block before it are each a tail whose loss costs a timeout.
//!   Instead the window is paced (next section).
//!
//! # Pacing a window into the client's socket buffer
//! A window larger than the client's socket buffer overflows it: on loopback, 64 blocks of
//! 8 KiB arrive faster than the client reads them, the kernel drops the rest of the window,
//! and every window is resent from the first drop, far below the lock-step rate. The server
//! sees it as losses (an ACK cutting the window short, or a timeout), as TCP does, and reacts
//! the same way, on a burst rather than on the window: at most `burst` blocks go back to
//! back, then sending pauses for the shortest round trip seen (measured from the last block
//! out to the ACK: the path and a client that keeps up; the smoothed round trip would grow
//! with the pauses themselves) before the next burst of the same window. The first burst holds [`INITIAL_BURST_BYTES`]; a window without a loss
//! doubles the burst (slow start) until the first loss, and adds a block to it after that;
//! an ACK that cuts a fully sent window short halves it, and leaves it no larger than what the
//! client took in sequence (additive increase, multiplicative decrease). A timeout alone leaves it: the tail
//! probe that follows draws the ACK that tells how much arrived. A burst as large as the window is not paced at all, so a client
//! that keeps up never waits. One burst per shortest round trip delivers at least one block
//! per round trip, the lock-step rate.
//! - Retries: the transfer is abandoned when the client stays silent through `retries`
//!   retransmissions at the full timeout (the shorter early ones come on top).
//!
//! # Fragmented blocks
//! A block larger than the path MTU travels as IP fragments, and a datagram that loses one
//! leaves the others in the receiver's reassembly memory until its reassembly timeout (30 s on
//! Linux, within 4 MiB by default). Once that memory is full the receiver drops every new
//! fragment: a sender that recovers from losses quickly strands fragments faster than they
//! expire and blinds its client for the rest of the timeout, which no retry outlasts. So, when
//! blocks are fragmented ([`Transfer::set_path_mtu`]), each DATA datagram sent adds what its
//! loss would strand, at the loss rate the ACKs have shown so far, to a model of that memory
//! which drains at [`REASSEMBLY_DRAIN`] fragments per second; while the model holds more than
//! [`REASSEMBLY_BUDGET`], the next datagram waits. Pacing single datagrams rather than whole
//! windows keeps the client fed, so it does not give up during a pause, and the
//! retransmission timeout runs from the last datagram actually sent. The model carries over
//! to the client's next transfer, until [`REASSEMBLY_TIMEOUT`] has expired everything. Blocks
//! within the MTU, and lossless links, are never paced.
//!
//! Pacing keeps the client from going blind; it cannot make a lost fragment cost less than its
//! whole block, and a window of 16 blocks of 8 KiB under 1% loss still ran at a fraction of the
//! lock-step rate on a veth pair. So by default a client that asks for a window gets blocks
//! that fit the path MTU ([`Limits::unfragmented_payload`]; RFC 2348 lets the server grant a
//! smaller blksize): a window of unfragmented blocks is as fast on a clean link and loses one
//! datagram per loss. Lock-step transfers keep the large blocks they asked for, which save
//! round trips; `tftp.fragmented_windows = true` grants windows of large blocks as asked.

use std::io;
use std::time::{Duration, Instant};

use super::packet::{self, ErrorCode, Packet, DATA_HEADER_LEN};
use super::TftpSettings;

/// The shortest retransmission timeout, whatever the measured round trip.
pub const MIN_RTO: Duration = Duration::from_millis(10);

/// Retransmission timeout before the first round trip is measured (RFC 6298 section 2.1).
pub const INITIAL_RTO: Duration = Duration::from_secs(1);

/// Fragments stranded at the receiver by lost ones that the server lets build up before it
/// holds back (see "Fragmented blocks" above).
///
/// Calibrated on Linux's defaults: 4 MiB of reassembly memory (`ipfrag_high_thresh`), some
/// 1800 fragments of a 1500-byte MTU, each kept 30 s (`ipfrag_time`). The receiver then holds
/// up to the budget plus 30 s of drain, 512 + 720 fragments: two thirds of its memory, the rest
/// left for what the model cannot know (other traffic, a server restart).
pub const REASSEMBLY_BUDGET: f64 = 512.0;

/// Stranded fragments the receiver is taken to drop per second (see [`REASSEMBLY_BUDGET`]).
pub const REASSEMBLY_DRAIN: f64 = 24.0;

/// After this long every stranded fragment has expired (Linux's `ipfrag_time`; RFC 791
/// suggests 15 s), so a client idle that long starts afresh.
pub const REASSEMBLY_TIMEOUT: Duration = Duration::from_secs(30);

/// The shortest pause for the receiver's reassembly memory.
const MIN_PAUSE: Duration = Duration::from_millis(1);

/// Retransmission timeouts in a row, with no answer from the client, after which a transfer
/// counts as stalled: a tail probe and a whole window (or the OACK twice) went unanswered. A
/// stalled transfer gives way when another client waits for its slot (see `slots`).
pub const STALLED_AFTER_TIMEOUTS: u32 = 2;

/// The message of the ERROR sent when the file cannot be read.
const READ_ERROR: &str = "server cannot read the file";

/// Default block size (RFC 1350).
pub const DEFAULT_BLKSIZE: u16 = 512;

/// Largest block size RFC 2348 allows.
pub const MAX_BLKSIZE: u16 = 65464;

/// Most file bytes in one window; the windowsize granted is lowered to fit (see "Loss
/// recovery" above).
pub const MAX_WINDOW_BYTES: usize = 128 << 10;

/// File bytes of the first burst of a window: well within a default Linux socket buffer
/// (208 KiB, counted with per-datagram overhead); the burst grows from there.
const INITIAL_BURST_BYTES: usize = 64 << 10;

/// The shortest pause between two bursts of a window.
const MIN_BURST_PAUSE: Duration = Duration::from_micros(10);

/// Where the state machine reads file bytes.
pub trait BlockSource {
    /// Reads up to `buf.len()` bytes at `offset`; fewer only at the end of the data.
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<usize>;
}

impl BlockSource for &[u8] {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(self.len());
        let n = buf.len().min(self.len() - start);
        buf[..n].copy_from_slice(&self[start..start + n]);
        Ok(n)
    }
}

impl BlockSource for Vec<u8> {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        self.as_slice().read_at(offset, buf)
    }
}

impl BlockSource for std::fs::File {
    /// Positional reads: no seek, and page-cache hits cost microseconds.
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let mut filled = 0;
        while filled < buf.len() {
            match FileExt::read_at(self, &mut buf[filled..], offset + filled as u64) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(filled)
    }
}

/// What the server grants, from [`TftpSettings`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_blksize: u16,
    pub max_windowsize: u16,
    /// Retransmission timeout ceiling when the client names none.
    pub timeout: Duration,
    /// Retransmissions at the full timeout before the transfer is abandoned.
    pub retries: u32,
    /// The largest UDP payload that reaches the client in one IP datagram (path MTU less the
    /// IP and UDP headers), when known. With `fragmented_windows` off, a transfer with a
    /// window gets blocks that fit it (see "Fragmented blocks" above).
    pub unfragmented_payload: Option<usize>,
    /// Grant windows of blocks larger than the path MTU as asked.
    pub fragmented_windows: bool,
}

impl From<&TftpSettings> for Limits {
    fn from(s: &TftpSettings) -> Limits {
        Limits {
            max_blksize: s.max_blksize,
            max_windowsize: s.max_windowsize,
            timeout: s.timeout,
            retries: s.retries,
            unfragmented_payload: None,
            fragmented_windows: s.fragmented_windows,
        }
    }
}

/// The options in force for one transfer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    pub blksize: u16,
    pub windowsize: u16,
    /// Retransmission timeout ceiling: the client's `timeout` option, else the configured one.
    pub timeout: Duration,
    /// The file size, when the client asked for it (RFC 2349).
    pub tsize: Option<u64>,
    /// The options acknowledged in the OACK, in the client's order; empty means no OACK.
    pub oack: Vec<(String, String)>,
}

/// Decides which of the client's options are acknowledged and with what value.
///
/// - `blksize` (RFC 2348): 8 to 65464; granted up to `max_blksize`.
/// - `windowsize` (RFC 7440): 1 to 65535; granted up to `max_windowsize`, and up to what fits
///   in [`MAX_WINDOW_BYTES`] at the granted blksize.
/// - `timeout` (RFC 2349): 1 to 255 seconds, acknowledged unchanged as the RFC requires.
/// - `tsize` (RFC 2349): answered with the file size.
///
/// Names are compared without regard to case; a value that is not a decimal number in range,
/// an unknown option and a repeated option are left out of the OACK, which RFC 2347 allows.
pub fn negotiate(options: &[(String, String)], size: u64, limits: &Limits) -> Negotiated {
    let mut n = Negotiated {
        blksize: DEFAULT_BLKSIZE,
        windowsize: 1,
        timeout: limits.timeout,
        tsize: None,
        oack: Vec::new(),
    };
    let mut seen = [false; 4];
    for (name, value) in options {
        let Some(which) = ["blksize", "windowsize", "timeout", "tsize"]
            .iter()
            .position(|known| name.eq_ignore_ascii_case(known))
        else {
            continue;
        };
        if std::mem::replace(&mut seen[which], true) {
            continue;
        }
        let Some(value) = decimal(value) else {
            continue;
        };
        let granted = match which {
            0 if value >= 8 => {
                n.blksize = value.min(u64::from(limits.max_blksize.min(MAX_BLKSIZE))) as u16;
                u64::from(n.blksize)
            }
            1 if value >= 1 => {
                n.windowsize = value.min(u64::from(limits.max_windowsize.max(1))) as u16;
                u64::from(n.windowsize)
            }
            2 if (1..=255).contains(&value) => {
                n.timeout = Duration::from_secs(value);
                value
            }
            3 => {
                n.tsize = Some(size);
                size
            }
            _ => continue,
        };
        n.oack
            .push((name.to_ascii_lowercase(), granted.to_string()));
    }
    // Options may come in any order, so blocks and window are fitted at the end. A window of
    // fragmented blocks loses a whole block to any lost fragment and strands the rest at the
    // client; RFC 2348 lets the server grant a smaller blksize than asked.
    if let Some(payload) = limits.unfragmented_payload {
        let fit = payload
            .saturating_sub(DATA_HEADER_LEN)
            .clamp(8, usize::from(MAX_BLKSIZE)) as u16;
        if n.windowsize > 1 && !limits.fragmented_windows && n.blksize > fit {
            n.blksize = fit;
            if let Some(entry) = n.oack.iter_mut().find(|(name, _)| name == "blksize") {
                entry.1 = n.blksize.to_string();
            }
        }
    }
    let fitting = (MAX_WINDOW_BYTES / usize::from(n.blksize)).clamp(1, usize::from(u16::MAX));
    if usize::from(n.windowsize) > fitting {
        n.windowsize = fitting as u16;
        if let Some(entry) = n.oack.iter_mut().find(|(name, _)| name == "windowsize") {
            entry.1 = n.windowsize.to_string();
        }
    }
    n
}

fn decimal(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// How a transfer ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The client acknowledged the final block.
    Completed,
    /// The client sent an ERROR packet.
    Aborted { code: ErrorCode, message: String },
    /// The client stayed silent through every retry.
    TimedOut,
    /// The file could not be read (or changed size); the client was sent an ERROR.
    ReadFailed(String),
}

/// What one transfer put on the wire.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// DATA datagrams sent, retransmissions included.
    pub data_sent: u64,
    /// File bytes sent in DATA datagrams, retransmissions included.
    pub bytes_sent: u64,
    /// DATA datagrams that repeated a block already sent.
    pub retransmitted: u64,
    /// Windows sent, each waiting for one ACK (tail probes not included).
    pub windows: u64,
    /// Retransmission timeouts.
    pub timeouts: u64,
    /// Windows in which a loss was detected (by a timeout or an early ACK).
    pub lossy_windows: u64,
    /// Pauses in sending so that the receiver could drop stranded fragments.
    pub reassembly_pauses: u64,
    /// Pauses between bursts of a window, so that the client could read what came.
    pub burst_pauses: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    /// OACK sent, waiting for ACK 0.
    Negotiating,
    Sending,
    Done(Outcome),
}

/// Smoothed round trip (RFC 6298 section 2).
#[derive(Debug, Clone, Copy, Default)]
struct RoundTrip {
    srtt: Option<Duration>,
    rttvar: Duration,
    /// The shortest sample: the path with the client keeping up.
    min: Option<Duration>,
}

impl RoundTrip {
    fn sample(&mut self, r: Duration) {
        self.min = Some(self.min.map_or(r, |m| m.min(r)));
        match self.srtt {
            None => {
                self.srtt = Some(r);
                self.rttvar = r / 2;
            }
            Some(srtt) => {
                self.rttvar = (self.rttvar * 3 + srtt.abs_diff(r)) / 4;
                self.srtt = Some((srtt * 7 + r) / 8);
            }
        }
    }

    fn rto(&self, ceiling: Duration) -> Duration {
        match self.srtt {
            None => INITIAL_RTO.min(ceiling),
            Some(srtt) => (srtt + self.rttvar * 4).clamp(MIN_RTO.min(ceiling), ceiling),
        }
    }
}

/// Datagrams waiting to be sent, in this order.
#[derive(Debug, Default)]
struct Outgoing {
    control: Option<Vec<u8>>,
    /// Blocks `next..end` (absolute indices).
    next: u64,
    end: u64,
    /// One block resent alone (a tail probe).
    probe: Option<u64>,
}

/// One read transfer.
#[derive(Debug)]
pub struct Transfer<S> {
    source: S,
    size: u64,
    negotiated: Negotiated,
    blksize: usize,
    window: u64,
    last_block: u64,
    retries: u32,
    phase: Phase,
    /// Oldest block not yet acknowledged.
    base: u64,
    /// Highest block queued so far.
    highest_sent: u64,
    /// Highest block put on the wire (to count retransmissions).
    highest_on_wire: u64,
    /// First and last block of the current window.
    window_start: u64,
    window_end: u64,
    window_sent_at: Instant,
    /// The ACK that ends or cuts short the current window measures a round trip.
    window_timed: bool,
    window_lossy: bool,
    /// A tail probe is out: the next ACK says where the client is.
    probing: bool,
    rtt: RoundTrip,
    /// IP fragments per DATA datagram on the path (1: not fragmented).
    fragments: u64,
    /// Fragments the receiver is taken to hold for datagrams that lost one, as of `stranded_at`.
    stranded: f64,
    stranded_at: Instant,
    /// DATA datagrams whose fate the ACKs revealed: arrived, lost.
    arrived: u64,
    lost: u64,
    /// Sending waits for the receiver's reassembly memory, or for the client to read a burst,
    /// until then.
    paced_until: Option<Instant>,
    /// Blocks sent back to back before a pause (see "Pacing a window"); not paced while it is
    /// the whole window.
    burst: u64,
    /// Blocks sent since the window started or the last pause.
    burst_sent: u64,
    /// Below this the burst doubles after a window without loss (slow start); from it, it
    /// grows by one block.
    burst_threshold: u64,
    /// The current window paused for the receiver after its first block went out.
    window_paused: bool,
    /// Retransmission deadline, counted from the last datagram sent.
    deadline: Instant,
    armed_rto: Duration,
    timeouts_in_a_row: u32,
    retries_at_ceiling: u32,
    oack: Vec<u8>,
    out: Outgoing,
    stats: Stats,
}

impl<S: BlockSource> Transfer<S> {
    /// Starts the transfer of `size` bytes read from `source`, for a request with `options`.
    /// The first datagram (OACK or DATA 1) is ready in [`Transfer::poll_transmit`].
    pub fn new(
        options: &[(String, String)],
        source: S,
        size: u64,
        limits: &Limits,
        now: Instant,
    ) -> Transfer<S> {
        let negotiated = negotiate(options, size, limits);
        let blksize = usize::from(negotiated.blksize);
        let oack = if negotiated.oack.is_empty() {
            Vec::new()
        } else {
            Packet::Oack {
                options: negotiated.oack.clone(),
            }
            .to_bytes()
        };
        let mut t = Transfer {
            source,
            size,
            blksize,
            window: u64::from(negotiated.windowsize),
            last_block: size / blksize as u64 + 1,
            retries: limits.retries,
            phase: Phase::Negotiating,
            base: 1,
            highest_sent: 0,
            highest_on_wire: 0,
            window_start: 1,
            window_end: 0,
            window_sent_at: now,
            window_timed: true,
            window_lossy: false,
            probing: false,
            rtt: RoundTrip::default(),
            fragments: 1,
            stranded: 0.0,
            stranded_at: now,
            arrived: 0,
            lost: 0,
            paced_until: None,
            burst: u64::from(negotiated.windowsize)
                .min((INITIAL_BURST_BYTES / blksize).max(1) as u64),
            burst_sent: 0,
            burst_threshold: u64::from(negotiated.windowsize),
            window_paused: false,
            deadline: now,
            armed_rto: Duration::ZERO,
            timeouts_in_a_row: 0,
            retries_at_ceiling: 0,
            oack,
            out: Outgoing::default(),
            stats: Stats::default(),
            negotiated,
        };
        if t.oack.is_empty() {
            t.phase = Phase::Sending;
            t.send_window(now);
        } else {
            t.out.control = Some(t.oack.clone());
            t.arm(now);
        }
        t
    }

    pub fn negotiated(&self) -> &Negotiated {
        &self.negotiated
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The smoothed round trip so far (RFC 6298), from the last block of a window out to its
    /// ACK.
    pub fn smoothed_rtt(&self) -> Option<Duration> {
        self.rtt.srtt
    }

    /// The MTU of the path to the client (IPv4 headers assumed), which tells whether DATA
    /// datagrams are fragmented. Until it is given they are taken not to be.
    pub fn set_path_mtu(&mut self, mtu: usize) {
        // Every fragment but the last carries a multiple of 8 bytes after a 20-byte IP header.
        let per_fragment = (mtu.saturating_sub(20) & !7).max(8);
        let datagram = 8 + DATA_HEADER_LEN + self.blksize;
        self.fragments = datagram.div_ceil(per_fragment) as u64;
    }

    /// Fragments an earlier transfer left stranded at this client, as of `at` (see
    /// [`Transfer::stranded_fragments`]): the receiver's memory outlives a transfer.
    pub fn carry_stranded_fragments(&mut self, fragments: f64, at: Instant) {
        self.stranded = fragments;
        self.stranded_at = at;
    }

    /// Fragments the receiver is taken to hold at `now` for datagrams that lost one.
    pub fn stranded_fragments(&mut self, now: Instant) -> f64 {
        self.drain_stranded(now);
        self.stranded
    }

    /// How the transfer ended, once it has; then nothing is left to send but an ERROR.
    pub fn outcome(&self) -> Option<&Outcome> {
        match &self.phase {
            Phase::Done(outcome) => Some(outcome),
            _ => None,
        }
    }

    /// Whether the client has stayed silent through [`STALLED_AFTER_TIMEOUTS`] retransmission
    /// timeouts in a row; any progress ends it.
    pub fn stalled(&self) -> bool {
        !matches!(self.phase, Phase::Done(_)) && self.timeouts_in_a_row >= STALLED_AFTER_TIMEOUTS
    }

    /// When [`Transfer::handle_timeout`] is due; `None` once the transfer has ended.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            Phase::Done(_) => None,
            _ => Some(self.paced_until.unwrap_or(self.deadline)),
        }
    }

    /// A datagram received from the client.
    pub fn handle_datagram(&mut self, bytes: &[u8], now: Instant) {
        if matches!(self.phase, Phase::Done(_)) {
            return;
        }
        match Packet::parse(bytes) {
            Ok(Packet::Ack { block }) => self.on_ack(block, now),
            Ok(Packet::Error { code, message }) => {
                self.finish(Outcome::Aborted { code, message });
            }
            // Anything else from the client's port is stray; the timer recovers.
            Ok(_) | Err(_) => {}
        }
    }

    /// The deadline from [`Transfer::poll_timeout`] has passed (early calls are ignored).
    pub fn handle_timeout(&mut self, now: Instant) {
        if matches!(self.phase, Phase::Done(_)) {
            return;
        }
        if let Some(until) = self.paced_until {
            // The end of a pause for the receiver: the queue goes on in poll_transmit.
            if now >= until {
                self.paced_until = None;
            }
            return;
        }
        if now < self.deadline {
            return;
        }
        self.stats.timeouts += 1;
        if self.armed_rto >= self.negotiated.timeout {
            self.retries_at_ceiling += 1;
            if self.retries_at_ceiling > self.retries {
                self.finish(Outcome::TimedOut);
                return;
            }
        }
        self.timeouts_in_a_row += 1;
        if self.phase == Phase::Negotiating {
            self.out.control = Some(self.oack.clone());
            self.window_timed = false;
            self.arm(now);
            return;
        }
        // A block or the ACK was lost; which, nothing tells.
        self.note_loss(1);
        if self.timeouts_in_a_row == 1 && self.window > 1 {
            self.out.next = self.out.end;
            self.out.probe = Some(self.highest_sent);
            self.window_timed = false;
            self.probing = true;
            self.arm(now);
        } else {
            self.send_window(now);
        }
    }

    /// The longest datagram [`Transfer::poll_transmit`] can produce.
    pub fn max_datagram_len(&self) -> usize {
        (DATA_HEADER_LEN + self.blksize)
            .max(self.oack.len())
            .max(READ_ERROR.len() + 5)
    }

    /// Encodes the next datagram to send into `buf` and returns its length; `None` when
    /// nothing is waiting, or when the rest must wait for the receiver (then
    /// [`Transfer::poll_timeout`] says until when). `buf` must hold
    /// [`Transfer::max_datagram_len`] bytes; the caller reuses it, so the hot path does not
    /// allocate, and may fill a batch of such buffers.
    pub fn poll_transmit(&mut self, buf: &mut [u8], now: Instant) -> Option<usize> {
        if let Some(control) = self.out.control.take() {
            buf[..control.len()].copy_from_slice(&control);
            return Some(control.len());
        }
        if self.paced_until.is_some() || (self.out.next >= self.out.end && self.out.probe.is_none())
        {
            return None;
        }
        if !self.pace(now) {
            return None;
        }
        let block = if self.out.next < self.out.end {
            self.out.next += 1;
            self.out.next - 1
        } else {
            self.out.probe.take()?
        };
        // The retransmission timeout runs from the last datagram out.
        self.window_sent_at = now;
        self.deadline = now + self.armed_rto;
        match self.read_block(block, buf) {
            Ok(len) => {
                self.burst_sent += 1;
                self.stats.data_sent += 1;
                self.stats.bytes_sent += len as u64;
                if block <= self.highest_on_wire {
                    self.stats.retransmitted += 1;
                } else {
                    self.highest_on_wire = block;
                }
                Some(DATA_HEADER_LEN + len)
            }
            Err(e) => {
                self.finish(Outcome::ReadFailed(e.to_string()));
                let error = packet::error_bytes(ErrorCode::NotDefined, READ_ERROR);
                buf[..error.len()].copy_from_slice(&error);
                Some(error.len())
            }
        }
    }

    /// Whether a fragmented DATA datagram may go now; charges it with the fragments its loss
    /// would strand at the loss rate seen so far, or sets a pause (see "Fragmented blocks").
    fn pace(&mut self, now: Instant) -> bool {
        if self.burst < self.window && self.burst_sent >= self.burst {
            if let Some(rtt) = self.rtt.min {
                self.paced_until = Some(now + rtt.max(MIN_BURST_PAUSE));
                self.burst_sent = 0;
                self.stats.burst_pauses += 1;
                return false;
            }
        }
        if self.fragments == 1 {
            return true;
        }
        self.drain_stranded(now);
        if self.stranded > REASSEMBLY_BUDGET {
            let wait = (self.stranded - REASSEMBLY_BUDGET) / REASSEMBLY_DRAIN;
            self.paced_until = Some(now + Duration::from_secs_f64(wait).max(MIN_PAUSE));
            self.window_paused |= self.out.next > self.window_start;
            self.stats.reassembly_pauses += 1;
            return false;
        }
        let loss_rate = self.lost as f64 / (self.lost + self.arrived).max(1) as f64;
        self.stranded += loss_rate * (self.fragments - 1) as f64;
        true
    }

    fn drain_stranded(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.stranded_at);
        self.stranded = if elapsed >= REASSEMBLY_TIMEOUT {
            0.0
        } else {
            (self.stranded - elapsed.as_secs_f64() * REASSEMBLY_DRAIN).max(0.0)
        };
        self.stranded_at = now;
    }

    fn read_block(&mut self, block: u64, buf: &mut [u8]) -> io::Result<usize> {
        let offset = (block - 1) * self.blksize as u64;
        let len = (self.size - offset).min(self.blksize as u64) as usize;
        packet::write_data_header(buf, block as u16);
        let payload = &mut buf[DATA_HEADER_LEN..DATA_HEADER_LEN + len];
        let n = self.source.read_at(offset, payload)?;
        if n != len {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the file shrank during the transfer",
            ));
        }
        Ok(len)
    }

    fn on_ack(&mut self, wire: u16, now: Instant) {
        if self.phase == Phase::Negotiating {
            if wire == 0 {
                if self.window_timed {
                    self.rtt.sample(now - self.window_sent_at);
                }
                self.progress();
                self.phase = Phase::Sending;
                self.send_window(now);
            }
            return;
        }
        // The absolute block in [base - 1, highest_sent] with this wire number, if any.
        let before = self.base - 1;
        let n = before + u64::from(wire.wrapping_sub(before as u16));
        if n > self.highest_sent {
            return;
        }
        if n == before {
            if self.window > 1 && (self.probing || self.paced_report()) {
                // The client lacks the window's first block.
                self.note_loss(1);
                self.send_window(now);
            }
            return;
        }
        if n == self.last_block {
            self.finish(Outcome::Completed);
            return;
        }
        self.progress();
        if self.window_timed && n <= self.window_end && self.out.next >= self.out.end {
            self.rtt.sample(now - self.window_sent_at);
        }
        if n >= self.window_start {
            self.arrived += n + 1 - self.window_start;
        }
        if n < self.window_end {
            // RFC 7440 section 4: the client has up to n and dropped what followed.
            self.note_loss(1);
            if n >= self.window_start && self.out.next >= self.out.end {
                // The whole window went out and the client took this much of it in sequence:
                // the rest was lost, on the way or in a full socket buffer.
                let delivered = n + 1 - self.window_start;
                self.burst = (self.burst / 2).min(delivered).max(1);
                self.burst_threshold = self.burst;
            }
        } else if n == self.window_end && !self.window_lossy && self.burst < self.window {
            self.burst = if self.burst < self.burst_threshold {
                (self.burst * 2).min(self.burst_threshold)
            } else {
                self.burst + 1
            }
            .min(self.window);
        }
        self.base = n + 1;
        self.send_window(now);
    }

    /// Whether a duplicate ACK while pacing reports a lost first block rather than being
    /// stale: a pause came after the first block, and a later block has gone out since, so the
    /// ACK answers a block of this window (a pause is much longer than a round trip). Each
    /// pause allows one such restart, so duplicates cannot feed on each other.
    fn paced_report(&self) -> bool {
        self.window_paused && self.out.next > self.window_start + 1
    }

    /// The client made progress: the retry budget starts again.
    fn progress(&mut self) {
        self.timeouts_in_a_row = 0;
        self.retries_at_ceiling = 0;
    }

    fn note_loss(&mut self, lost: u64) {
        self.lost += lost;
        if !self.window_lossy {
            self.window_lossy = true;
            self.stats.lossy_windows += 1;
        }
    }

    /// Queues the window starting at `base`.
    fn send_window(&mut self, now: Instant) {
        self.window_start = self.base;
        let end = (self.base + self.window - 1).min(self.last_block);
        self.out.next = self.base;
        self.out.end = end + 1;
        self.out.probe = None;
        self.highest_sent = self.highest_sent.max(end);
        self.window_end = end;
        self.window_timed = true;
        self.window_lossy = false;
        self.probing = false;
        self.window_paused = false;
        self.burst_sent = 0;
        self.stats.windows += 1;
        self.arm(now);
    }

    fn arm(&mut self, now: Instant) {
        let ceiling = self.negotiated.timeout;
        let mut rto = self.rtt.rto(ceiling);
        for _ in 0..self.timeouts_in_a_row {
            rto = (rto * 2).min(ceiling);
        }
        self.armed_rto = rto;
        self.window_sent_at = now;
        self.deadline = now + rto;
    }

    fn finish(&mut self, outcome: Outcome) {
        self.phase = Phase::Done(outcome);
        self.out = Outgoing::default();
        self.paced_until = None;
    }
}

#[cfg(test)]
mod tests;
