//! The state machine against a model client over a simulated link: each direction is a FIFO with
//! a bandwidth and a latency, and loses datagrams by a deterministic pattern. The model client
//! behaves like EDK2's and atftp's RFC 7440 receivers: it acknowledges after `windowsize` blocks
//! counted from its last ACK, at once on a block out of sequence (with the last block it got in
//! sequence), and on its own timeout.

use super::*;
use proptest::prelude::*;
use std::collections::VecDeque;

const MS: Duration = Duration::from_millis(1);

fn limits() -> Limits {
    Limits {
        max_blksize: MAX_BLKSIZE,
        max_windowsize: 64,
        timeout: Duration::from_secs(1),
        retries: 5,
        unfragmented_payload: None,
        fragmented_windows: false,
    }
}

fn opts(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

fn window_opts(blksize: u16, windowsize: u16) -> Vec<(String, String)> {
    opts(&[
        ("blksize", &blksize.to_string()),
        ("windowsize", &windowsize.to_string()),
    ])
}

/// Pseudo-random bytes, the same for the same length.
fn content(len: usize) -> Vec<u8> {
    let mut rng = XorShift::seeded(len as u64);
    (0..len).map(|_| rng.next() as u8).collect()
}

struct XorShift(u64);

impl XorShift {
    /// Scrambles the seed (SplitMix64) so that small seeds give no run of small outputs.
    fn seeded(seed: u64) -> XorShift {
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        XorShift((z ^ (z >> 31)) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// True with probability `p`.
    fn chance(&mut self, p: f64) -> bool {
        ((self.next() >> 11) as f64 / (1u64 << 53) as f64) < p
    }
}

/// Decides whether the `index`-th datagram (from 0) of `len` bytes, sent at a time, is lost.
type Dropper = Box<dyn FnMut(u64, usize, Instant) -> bool>;

fn no_loss() -> Dropper {
    Box::new(|_, _, _| false)
}

/// Loses each IP fragment (1480 bytes of UDP payload per 1500-byte MTU) with probability `p`,
/// and so the whole datagram if any fragment is lost.
fn fragment_loss(seed: u64, p: f64) -> Dropper {
    let mut rng = XorShift::seeded(seed);
    Box::new(move |_, len, _| {
        let fragments = (len + 8).div_ceil(1480);
        (0..fragments).fold(false, |lost, _| rng.chance(p) | lost)
    })
}

/// Fragment loss as above, in front of a receiver with Linux's reassembly limits: the
/// fragments of a datagram that lost one stay 30 s, and while `capacity` fragments are held
/// every new fragment is dropped. Counts the datagrams lost to a full memory in `blind`.
fn reassembling_receiver(
    seed: u64,
    p: f64,
    capacity: u64,
    blind: std::rc::Rc<std::cell::Cell<u64>>,
) -> Dropper {
    let mut rng = XorShift::seeded(seed);
    let mut held: VecDeque<(Instant, u64)> = VecDeque::new();
    let mut total = 0;
    Box::new(move |_, len, now| {
        while let Some(&(expiry, n)) = held.front() {
            if expiry > now {
                break;
            }
            total -= n;
            held.pop_front();
        }
        let fragments = (len as u64 + 8).div_ceil(1480);
        if fragments > 1 && total >= capacity {
            blind.set(blind.get() + 1);
            return true;
        }
        let lost = (0..fragments).filter(|_| rng.chance(p)).count() as u64;
        if lost > 0 && fragments > 1 {
            held.push_back((now + Duration::from_secs(30), fragments - lost));
            total += fragments - lost;
        }
        lost > 0
    })
}

/// The receiving application behind a socket buffer at the link's far end: it reads one
/// datagram every `per_datagram`, and a datagram that arrives while `capacity` wait unread
/// is dropped (as atftp's socket drops a window larger than its receive buffer).
struct Reader {
    capacity: usize,
    per_datagram: Duration,
    /// When each datagram still in the buffer is read.
    queued: VecDeque<Instant>,
    dropped: u64,
}

impl Reader {
    fn new(capacity: usize, per_datagram: Duration) -> Reader {
        Reader {
            capacity,
            per_datagram,
            queued: VecDeque::new(),
            dropped: 0,
        }
    }

    /// When a datagram arriving at `at` is read, or `None` if the buffer drops it.
    fn arrive(&mut self, at: Instant) -> Option<Instant> {
        while self.queued.front().is_some_and(|t| *t <= at) {
            self.queued.pop_front();
        }
        if self.queued.len() >= self.capacity {
            self.dropped += 1;
            return None;
        }
        let read = self.queued.back().map_or(at, |last| (*last).max(at)) + self.per_datagram;
        self.queued.push_back(read);
        Some(read)
    }
}

struct Link {
    latency: Duration,
    bytes_per_sec: u64,
    free_at: Instant,
    sent: u64,
    lost: u64,
    in_flight: VecDeque<(Instant, Vec<u8>)>,
    drop: Dropper,
    reader: Option<Reader>,
}

impl Link {
    fn new(t0: Instant, latency: Duration, bytes_per_sec: u64, drop: Dropper) -> Link {
        Link {
            latency,
            bytes_per_sec,
            free_at: t0,
            sent: 0,
            lost: 0,
            in_flight: VecDeque::new(),
            drop,
            reader: None,
        }
    }

    fn send(&mut self, now: Instant, bytes: &[u8]) {
        let wire = bytes.len() as u64 + 42;
        let start = self.free_at.max(now);
        self.free_at = start + Duration::from_nanos(wire * 1_000_000_000 / self.bytes_per_sec);
        let index = self.sent;
        self.sent += 1;
        if (self.drop)(index, bytes.len(), start) {
            self.lost += 1;
            return;
        }
        let mut at = self.free_at + self.latency;
        if let Some(reader) = &mut self.reader {
            match reader.arrive(at) {
                Some(read) => at = read,
                None => return,
            }
        }
        self.in_flight.push_back((at, bytes.to_vec()));
    }

    fn next_arrival(&self) -> Option<Instant> {
        self.in_flight.front().map(|(t, _)| *t)
    }
}

/// An RFC 7440 receiver.
struct Client {
    blksize: usize,
    window: u64,
    /// Absolute index of the next block wanted.
    expected: u64,
    since_ack: u64,
    data: Vec<u8>,
    done: bool,
    aborted: bool,
    timeout: Duration,
    deadline: Option<Instant>,
    /// Answers blocks out of sequence (and repeated ones) with an ACK, as RFC 7440 asks.
    acks_out_of_sequence: bool,
    saw_block_zero: bool,
}

impl Client {
    fn new() -> Client {
        Client {
            blksize: 512,
            window: 1,
            expected: 1,
            since_ack: 0,
            data: Vec::new(),
            done: false,
            aborted: false,
            timeout: Duration::from_secs(1),
            deadline: None,
            acks_out_of_sequence: true,
            saw_block_zero: false,
        }
    }

    fn ack(&mut self, n: u64) -> Vec<u8> {
        self.since_ack = 0;
        Packet::Ack { block: n as u16 }.to_bytes()
    }

    fn receive(&mut self, bytes: &[u8], now: Instant) -> Option<Vec<u8>> {
        match Packet::parse(bytes).expect("server sent a malformed packet") {
            Packet::Oack { options } => {
                for (name, value) in options {
                    match name.as_str() {
                        "blksize" => self.blksize = value.parse().unwrap(),
                        "windowsize" => self.window = value.parse().unwrap(),
                        _ => {}
                    }
                }
                self.deadline = Some(now + self.timeout);
                (self.expected == 1).then(|| self.ack(0))
            }
            Packet::Data { block, data } => {
                if block == self.expected as u16 && !self.done {
                    self.saw_block_zero |= block == 0;
                    self.data.extend_from_slice(data);
                    self.expected += 1;
                    self.since_ack += 1;
                    self.deadline = Some(now + self.timeout);
                    if data.len() < self.blksize {
                        self.done = true;
                        self.deadline = None;
                        return Some(self.ack(self.expected - 1));
                    }
                    (self.since_ack >= self.window).then(|| self.ack(self.expected - 1))
                } else if self.done || self.acks_out_of_sequence {
                    Some(self.ack(self.expected - 1))
                } else {
                    None
                }
            }
            Packet::Error { .. } => {
                self.aborted = true;
                self.deadline = None;
                None
            }
            other => panic!("server sent {other:?}"),
        }
    }

    fn on_timeout(&mut self, now: Instant) -> Vec<u8> {
        self.deadline = Some(now + self.timeout);
        self.ack(self.expected - 1)
    }
}

struct Sim {
    t0: Instant,
    now: Instant,
    server: Transfer<Vec<u8>>,
    client: Client,
    down: Link,
    up: Link,
    buf: Vec<u8>,
}

struct Finished {
    data: Vec<u8>,
    outcome: Outcome,
    stats: Stats,
    elapsed: Duration,
    lost: u64,
    saw_block_zero: bool,
}

impl Sim {
    fn new(file: Vec<u8>, options: &[(String, String)], limits: &Limits) -> Sim {
        Sim::over(
            file,
            options,
            limits,
            Duration::from_micros(100),
            no_loss(),
            no_loss(),
        )
    }

    fn over(
        file: Vec<u8>,
        options: &[(String, String)],
        limits: &Limits,
        latency: Duration,
        down: Dropper,
        up: Dropper,
    ) -> Sim {
        let t0 = Instant::now();
        let size = file.len() as u64;
        // 1 Gbit/s.
        let rate = 125_000_000;
        Sim {
            t0,
            now: t0,
            server: Transfer::new(options, file, size, limits, t0),
            client: Client::new(),
            down: Link::new(t0, latency, rate, down),
            up: Link::new(t0, latency, rate, up),
            buf: Vec::new(),
        }
    }

    fn flush(&mut self) {
        self.buf.resize(self.server.max_datagram_len(), 0);
        while let Some(len) = self.server.poll_transmit(&mut self.buf, self.now) {
            self.down.send(self.now, &self.buf[..len]);
        }
    }

    /// Runs until the server has ended, or panics after too many events.
    fn run(self) -> Finished {
        self.run_then(|_| {})
    }

    /// Runs, then lets `look` see the end state of the simulation.
    fn run_then(mut self, look: impl FnOnce(&Sim)) -> Finished {
        for _ in 0..5_000_000 {
            self.flush();
            if let Some(outcome) = self.server.outcome() {
                look(&self);
                return Finished {
                    data: std::mem::take(&mut self.client.data),
                    outcome: outcome.clone(),
                    stats: self.server.stats().clone(),
                    elapsed: self.now - self.t0,
                    lost: self.down.lost + self.up.lost,
                    saw_block_zero: self.client.saw_block_zero,
                };
            }
            let candidates = [
                self.down.next_arrival(),
                self.up.next_arrival(),
                self.server.poll_timeout(),
                self.client.deadline,
            ];
            let (which, at) = candidates
                .iter()
                .enumerate()
                .filter_map(|(i, t)| t.map(|t| (i, t)))
                .min_by_key(|(_, t)| *t)
                .expect("nothing left to happen");
            self.now = self.now.max(at);
            match which {
                0 => {
                    let (_, bytes) = self.down.in_flight.pop_front().unwrap();
                    if let Some(ack) = self.client.receive(&bytes, self.now) {
                        self.up.send(self.now, &ack);
                    }
                }
                1 => {
                    let (_, bytes) = self.up.in_flight.pop_front().unwrap();
                    self.server.handle_datagram(&bytes, self.now);
                }
                2 => self.server.handle_timeout(self.now),
                _ => {
                    let ack = self.client.on_timeout(self.now);
                    self.up.send(self.now, &ack);
                }
            }
        }
        panic!("simulation did not end");
    }
}

/// Everything the transfer has to send at `now`.
fn drain(t: &mut Transfer<Vec<u8>>, now: Instant) -> Vec<Vec<u8>> {
    let mut buf = vec![0; t.max_datagram_len()];
    let mut out = Vec::new();
    while let Some(len) = t.poll_transmit(&mut buf, now) {
        out.push(buf[..len].to_vec());
    }
    out
}

/// Everything the transfer has to send from `now` on, through its pauses between bursts;
/// stops when it waits for the client.
fn drain_paced(t: &mut Transfer<Vec<u8>>, mut now: Instant) -> Vec<Vec<u8>> {
    let mut out = drain(t, now);
    while let Some(until) = t.paced_until {
        now = until;
        t.handle_timeout(now);
        out.extend(drain(t, now));
    }
    out
}

/// Runs the timer when it is due; returns when that was.
fn fire(t: &mut Transfer<Vec<u8>>) -> Instant {
    let due = t.poll_timeout().expect("no timer");
    t.handle_timeout(due);
    due
}

fn data_blocks(datagrams: &[Vec<u8>]) -> Vec<u16> {
    datagrams
        .iter()
        .map(|d| match Packet::parse(d).unwrap() {
            Packet::Data { block, .. } => block,
            other => panic!("expected DATA, got {other:?}"),
        })
        .collect()
}

fn ack(block: u16) -> Vec<u8> {
    Packet::Ack { block }.to_bytes()
}

// --- negotiation -------------------------------------------------------------------------

#[test]
fn no_options_means_no_oack() {
    let n = negotiate(&[], 1000, &limits());
    assert_eq!((n.blksize, n.windowsize, n.tsize), (512, 1, None));
    assert!(n.oack.is_empty());
}

#[test]
fn options_are_granted_within_limits_in_the_clients_order() {
    let n = negotiate(
        &opts(&[
            ("TSIZE", "0"),
            ("BlkSize", "65464"),
            ("windowsize", "1000"),
            ("timeout", "3"),
            ("multicast", ""),
        ]),
        123_456,
        &Limits {
            max_blksize: 1468,
            ..limits()
        },
    );
    assert_eq!(
        n.oack,
        opts(&[
            ("tsize", "123456"),
            ("blksize", "1468"),
            ("windowsize", "64"),
            ("timeout", "3")
        ])
    );
    assert_eq!(n.blksize, 1468);
    assert_eq!(n.windowsize, 64);
    assert_eq!(n.timeout, Duration::from_secs(3));
    assert_eq!(n.tsize, Some(123_456));
}

#[test]
fn requested_blksize_is_honoured_up_to_the_maximum() {
    for (asked, granted) in [("8", 8), ("1468", 1468), ("9000", 9000), ("70000", 65464)] {
        let n = negotiate(&opts(&[("blksize", asked)]), 0, &limits());
        assert_eq!(n.blksize, granted, "{asked}");
    }
}

#[test]
fn window_is_fitted_to_the_block_size() {
    let fitted = |blksize: &str, windowsize: &str| {
        let n = negotiate(
            &opts(&[("windowsize", windowsize), ("blksize", blksize)]),
            0,
            &limits(),
        );
        assert_eq!(n.oack[0], ("windowsize".into(), n.windowsize.to_string()));
        n.windowsize
    };
    assert_eq!(fitted("65464", "64"), 2);
    assert_eq!(fitted("8192", "64"), 16);
    assert_eq!(fitted("1468", "64"), 64);
    assert_eq!(fitted("65464", "4"), 2);
    assert_eq!(fitted("32768", "4"), 4);
}

#[test]
fn invalid_option_values_are_left_out() {
    for (name, value) in [
        ("blksize", "7"),
        ("blksize", "-1"),
        ("blksize", "1k"),
        ("blksize", ""),
        ("windowsize", "0"),
        ("timeout", "0"),
        ("timeout", "256"),
        ("tsize", "x"),
        ("blksize", "99999999999999999999999"),
    ] {
        let n = negotiate(&opts(&[(name, value)]), 10, &limits());
        assert!(n.oack.is_empty(), "{name}={value}");
        assert_eq!((n.blksize, n.windowsize), (512, 1));
    }
}

#[test]
fn repeated_option_keeps_the_first() {
    let n = negotiate(
        &opts(&[("blksize", "1024"), ("BLKSIZE", "2048")]),
        0,
        &limits(),
    );
    assert_eq!(n.oack, opts(&[("blksize", "1024")]));
}

// --- start, ACKs, errors --------------------------------------------------------------------

#[test]
fn request_without_options_starts_with_data_1() {
    let now = Instant::now();
    let mut t = Transfer::new(&[], content(1000), 1000, &limits(), now);
    assert_eq!(data_blocks(&drain(&mut t, now)), vec![1]);
    t.handle_datagram(&ack(1), now);
    assert_eq!(data_blocks(&drain(&mut t, now)), vec![2]);
    t.handle_datagram(&ack(2), now);
    assert_eq!(t.outcome(), Some(&Outcome::Completed));
    assert_eq!(t.poll_timeout(), None);
}

#[test]
fn oack_waits_for_ack_0_then_sends_a_window() {
    let now = Instant::now();
    let mut t = Transfer::new(&window_opts(512, 4), content(5000), 5000, &limits(), now);
    let first = drain(&mut t, now);
    assert_eq!(
        Packet::parse(&first[0]).unwrap(),
        Packet::Oack {
            options: window_opts(512, 4)
        }
    );
    t.handle_datagram(&ack(1), now);
    assert!(drain(&mut t, now).is_empty(), "only ACK 0 answers an OACK");
    t.handle_datagram(&ack(0), now);
    assert_eq!(data_blocks(&drain(&mut t, now)), vec![1, 2, 3, 4]);
}

#[test]
fn oack_is_resent_on_timeout() {
    let now = Instant::now();
    let mut t = Transfer::new(&opts(&[("tsize", "0")]), content(10), 10, &limits(), now);
    drain(&mut t, now);
    let due = t.poll_timeout().unwrap();
    t.handle_timeout(due);
    let again = drain(&mut t, now);
    assert!(matches!(Packet::parse(&again[0]), Ok(Packet::Oack { .. })));
}

#[test]
fn client_error_ends_the_transfer_at_once() {
    let now = Instant::now();
    let mut t = Transfer::new(&opts(&[("tsize", "0")]), content(10), 10, &limits(), now);
    drain(&mut t, now);
    t.handle_datagram(b"\x00\x05\x00\x08tsize probe\x00", now);
    assert_eq!(
        t.outcome(),
        Some(&Outcome::Aborted {
            code: ErrorCode::OptionsRefused,
            message: "tsize probe".to_owned()
        })
    );
    assert!(drain(&mut t, now).is_empty());
    assert_eq!(t.poll_timeout(), None);
}

#[test]
fn duplicate_ack_is_ignored() {
    // Answering a duplicate ACK doubles every later block (Sorcerer's Apprentice, RFC 1123
    // section 4.2.3.1).
    let now = Instant::now();
    let mut t = Transfer::new(&[], content(2000), 2000, &limits(), now);
    drain(&mut t, now);
    t.handle_datagram(&ack(1), now);
    assert_eq!(data_blocks(&drain(&mut t, now)), vec![2]);
    t.handle_datagram(&ack(1), now);
    assert!(drain(&mut t, now).is_empty());
    t.handle_datagram(&ack(0), now);
    assert!(drain(&mut t, now).is_empty());
}

#[test]
fn ack_inside_the_window_restarts_it_after_that_block() {
    let now = Instant::now();
    let mut t = Transfer::new(
        &window_opts(512, 4),
        content(10_000),
        10_000,
        &limits(),
        now,
    );
    drain(&mut t, now);
    t.handle_datagram(&ack(0), now);
    assert_eq!(data_blocks(&drain(&mut t, now)), vec![1, 2, 3, 4]);
    t.handle_datagram(&ack(2), now);
    // The window restarts after block 2, in bursts half as large (see "Pacing a window").
    assert_eq!(t.burst, 2);
    assert_eq!(data_blocks(&drain_paced(&mut t, now)), vec![3, 4, 5, 6]);
    // ACKs for blocks never sent, and for the block before the window, change nothing.
    t.handle_datagram(&ack(9), now);
    t.handle_datagram(&ack(2), now);
    assert!(drain(&mut t, now).is_empty());
    t.handle_datagram(&ack(6), now);
    assert_eq!(data_blocks(&drain_paced(&mut t, now)), vec![7, 8, 9, 10]);
}

#[test]
fn garbage_from_the_client_is_ignored() {
    let now = Instant::now();
    let mut t = Transfer::new(&[], content(2000), 2000, &limits(), now);
    drain(&mut t, now);
    for junk in [
        &b""[..],
        b"\x00",
        b"\x00\x04\x00",
        b"\x00\x03\x00\x01data",
        b"\xff\xff",
    ] {
        t.handle_datagram(junk, now);
    }
    assert!(drain(&mut t, now).is_empty());
    assert_eq!(t.outcome(), None);
}

#[test]
fn file_that_is_a_multiple_of_blksize_ends_with_an_empty_block() {
    let now = Instant::now();
    let mut t = Transfer::new(&window_opts(512, 8), content(1024), 1024, &limits(), now);
    drain(&mut t, now);
    t.handle_datagram(&ack(0), now);
    let sent = drain(&mut t, now);
    let lengths: Vec<usize> = sent.iter().map(|d| d.len() - DATA_HEADER_LEN).collect();
    assert_eq!(lengths, vec![512, 512, 0]);
    t.handle_datagram(&ack(3), now);
    assert_eq!(t.outcome(), Some(&Outcome::Completed));
}

#[test]
fn empty_file_is_one_empty_block() {
    let f = Sim::new(Vec::new(), &[], &limits()).run();
    assert_eq!(f.outcome, Outcome::Completed);
    assert!(f.data.is_empty());
    assert_eq!(f.stats.data_sent, 1);
}

#[test]
fn file_shrinking_under_the_transfer_fails_it_with_an_error() {
    let now = Instant::now();
    // Claims 2000 bytes, holds 600.
    let mut t = Transfer::new(&[], content(600), 2000, &limits(), now);
    drain(&mut t, now);
    t.handle_datagram(&ack(1), now);
    let sent = drain(&mut t, now);
    assert!(matches!(
        Packet::parse(&sent[0]),
        Ok(Packet::Error {
            code: ErrorCode::NotDefined,
            ..
        })
    ));
    assert!(matches!(t.outcome(), Some(Outcome::ReadFailed(_))));
}

// --- timeouts -------------------------------------------------------------------------------

#[test]
fn silent_client_is_given_up_after_the_retries() {
    let t0 = Instant::now();
    let mut t = Transfer::new(&[], content(2000), 2000, &limits(), t0);
    let mut sent = drain(&mut t, t0).len();
    while let Some(due) = t.poll_timeout() {
        t.handle_timeout(due);
        sent += drain(&mut t, due).len();
        assert!(due - t0 < Duration::from_secs(60));
    }
    assert_eq!(t.outcome(), Some(&Outcome::TimedOut));
    // The first DATA 1 and five retransmissions, one second apart (no round trip measured).
    assert_eq!(sent, 6);
    assert_eq!(t.stats().timeouts, 6);
}

#[test]
fn silent_client_stalls_the_transfer_after_two_timeouts_and_an_ack_ends_the_stall() {
    let t0 = Instant::now();
    let mut t = Transfer::new(&window_opts(512, 4), content(20_000), 20_000, &limits(), t0);
    drain(&mut t, t0);
    assert!(!t.stalled());
    // The OACK is resent once: not yet stalled.
    let due = fire(&mut t);
    drain(&mut t, due);
    assert!(!t.stalled());
    let due = fire(&mut t);
    drain(&mut t, due);
    assert!(t.stalled());
    t.handle_datagram(&ack(0), due);
    assert!(!t.stalled());
    assert_eq!(data_blocks(&drain(&mut t, due)), [1, 2, 3, 4]);
    // Silent again through a tail probe and a resent window.
    for _ in 0..2 {
        let due = fire(&mut t);
        drain(&mut t, due);
    }
    assert!(t.stalled());
    t.handle_datagram(&ack(2), due);
    assert!(!t.stalled());
    // A transfer that has ended is not stalled, whatever came before.
    t.handle_datagram(
        &Packet::Error {
            code: ErrorCode::NotDefined,
            message: String::new(),
        }
        .to_bytes(),
        due,
    );
    assert!(!t.stalled());
}

#[test]
fn early_timer_call_is_ignored() {
    let t0 = Instant::now();
    let mut t = Transfer::new(&[], content(2000), 2000, &limits(), t0);
    drain(&mut t, t0);
    t.handle_timeout(t0 + 10 * MS);
    assert!(drain(&mut t, t0 + 10 * MS).is_empty());
    assert_eq!(t.stats().timeouts, 0);
}

#[test]
fn retransmission_timeout_follows_the_round_trip_and_backs_off() {
    let t0 = Instant::now();
    let mut t = Transfer::new(
        &window_opts(512, 4),
        content(100_000),
        100_000,
        &limits(),
        t0,
    );
    drain(&mut t, t0);
    // Round trips of 2 ms.
    let mut now = t0 + 2 * MS;
    t.handle_datagram(&ack(0), now);
    for block in [4u16, 8, 12, 16] {
        drain(&mut t, now);
        now += 2 * MS;
        t.handle_datagram(&ack(block), now);
    }
    drain(&mut t, now);
    let rto = t.poll_timeout().unwrap() - now;
    assert!(rto >= MIN_RTO && rto < 20 * MS, "{rto:?}");
    // Then silence: the timeout doubles up to the ceiling, then five more at the ceiling.
    let mut gaps = Vec::new();
    let mut last = now;
    while let Some(due) = t.poll_timeout() {
        gaps.push(due - last);
        last = due;
        t.handle_timeout(due);
        drain(&mut t, due);
    }
    assert_eq!(t.outcome(), Some(&Outcome::TimedOut));
    assert!(gaps.windows(2).all(|w| w[1] >= w[0]), "{gaps:?}");
    let at_ceiling = gaps
        .iter()
        .filter(|g| **g == Duration::from_secs(1))
        .count();
    assert_eq!(at_ceiling, 6, "{gaps:?}");
    assert!(last - now < Duration::from_secs(8), "{:?}", last - now);
}

#[test]
fn timeout_option_bounds_the_retransmission_timeout() {
    let t0 = Instant::now();
    let mut o = window_opts(512, 4);
    o.push(("timeout".into(), "3".into()));
    let mut t = Transfer::new(&o, content(10_000), 10_000, &limits(), t0);
    assert_eq!(t.negotiated().timeout, Duration::from_secs(3));
    drain(&mut t, t0);
    let mut last = t0;
    let mut gaps = Vec::new();
    while let Some(due) = t.poll_timeout() {
        gaps.push(due - last);
        last = due;
        t.handle_timeout(due);
    }
    assert_eq!(gaps.iter().max(), Some(&Duration::from_secs(3)));
}

#[test]
fn first_timeout_sends_a_tail_probe_second_resends_the_window() {
    let t0 = Instant::now();
    let mut t = Transfer::new(&window_opts(512, 4), content(10_000), 10_000, &limits(), t0);
    drain(&mut t, t0);
    t.handle_datagram(&ack(0), t0);
    assert_eq!(data_blocks(&drain(&mut t, t0)), vec![1, 2, 3, 4]);
    let due = fire(&mut t);
    assert_eq!(data_blocks(&drain(&mut t, due)), vec![4]);
    let due = fire(&mut t);
    assert_eq!(data_blocks(&drain(&mut t, due)), vec![1, 2, 3, 4]);
}

#[test]
fn probe_answered_with_the_ack_before_the_window_resends_it() {
    let t0 = Instant::now();
    let mut t = Transfer::new(&window_opts(512, 4), content(10_000), 10_000, &limits(), t0);
    drain(&mut t, t0);
    t.handle_datagram(&ack(0), t0);
    drain(&mut t, t0);
    // Duplicates alone change nothing...
    t.handle_datagram(&ack(0), t0 + MS);
    assert!(drain(&mut t, t0 + MS).is_empty());
    let due = fire(&mut t);
    assert_eq!(data_blocks(&drain(&mut t, due)), vec![4]);
    // ...but after a probe, ACK 0 says block 1 is missing.
    t.handle_datagram(&ack(0), due + MS);
    assert_eq!(data_blocks(&drain(&mut t, due + MS)), vec![1, 2, 3, 4]);
}

#[test]
fn lock_step_never_answers_a_duplicate_even_after_a_timeout() {
    let t0 = Instant::now();
    let mut t = Transfer::new(&[], content(10_000), 10_000, &limits(), t0);
    drain(&mut t, t0);
    t.handle_datagram(&ack(1), t0 + MS);
    drain(&mut t, t0 + MS);
    let due = fire(&mut t);
    assert_eq!(data_blocks(&drain(&mut t, due)), vec![2]);
    t.handle_datagram(&ack(1), due + MS);
    assert!(drain(&mut t, due + MS).is_empty());
}

// --- whole transfers over the simulated link ---------------------------------------------

#[test]
fn lossless_transfers_deliver_every_size_with_every_window() {
    for size in [0, 1, 511, 512, 513, 1024, 5000, 8192, 8193, 23_488, 100_000] {
        for options in [
            vec![],
            window_opts(512, 1),
            window_opts(512, 4),
            window_opts(1468, 16),
            window_opts(8, 3),
        ] {
            let file = content(size);
            let f = Sim::new(file.clone(), &options, &limits()).run();
            assert_eq!(f.outcome, Outcome::Completed, "{size} {options:?}");
            assert!(f.data == file, "{size} {options:?}");
            let n = negotiate(&options, size as u64, &limits());
            let blocks = size as u64 / u64::from(n.blksize) + 1;
            assert_eq!(f.stats.data_sent, blocks, "{size} {options:?}");
            assert_eq!(f.stats.windows, blocks.div_ceil(u64::from(n.windowsize)));
        }
    }
}

#[test]
fn block_numbers_wrap_to_zero_after_65535() {
    // 65536 full blocks and a short one: the wire numbers go 65535, 0, 1.
    let size = 512 * 65_536 + 100;
    let file = content(size);
    let f = Sim::new(file.clone(), &window_opts(512, 64), &limits()).run();
    assert_eq!(f.outcome, Outcome::Completed);
    assert!(f.saw_block_zero);
    assert!(f.data == file);
}

#[test]
fn block_numbers_wrap_in_lock_step_too() {
    let size = 512 * 65_537;
    let file = content(size);
    let f = Sim::new(file.clone(), &[], &limits()).run();
    assert_eq!(f.outcome, Outcome::Completed);
    assert!(f.data == file);
}

#[test]
fn every_seventh_datagram_lost_still_delivers_in_bounded_round_trips() {
    let size = 2 << 20;
    let file = content(size);
    let options = window_opts(1468, 16);
    let f = Sim::over(
        file.clone(),
        &options,
        &limits(),
        Duration::from_micros(100),
        Box::new(|i, _, _| i % 7 == 6),
        no_loss(),
    )
    .run();
    assert_eq!(f.outcome, Outcome::Completed);
    assert!(f.data == file);
    let blocks = (size / 1468 + 1) as u64;
    // Lock-step needs one round trip per block; a lost datagram costs at most a few more.
    let round_trips = f.stats.windows + f.stats.timeouts;
    assert!(
        round_trips <= blocks / 4 + 3 * f.lost,
        "{round_trips} round trips for {blocks} blocks, {} lost: {:?}",
        f.lost,
        f.stats
    );
}

#[test]
fn lost_acks_are_recovered() {
    let file = content(300_000);
    let f = Sim::over(
        file.clone(),
        &window_opts(1468, 8),
        &limits(),
        Duration::from_micros(100),
        no_loss(),
        Box::new(|i, _, _| i % 3 == 1),
    )
    .run();
    assert_eq!(f.outcome, Outcome::Completed);
    assert!(f.data == file);
}

/// Elapsed time over a lossy 1 Gbit/s link with 100 µs latency.
fn lossy_run(file: &[u8], options: &[(String, String)], seed: u64, p: f64) -> Finished {
    let f = Sim::over(
        file.to_vec(),
        options,
        &Limits {
            retries: 50,
            ..limits()
        },
        Duration::from_micros(100),
        fragment_loss(seed, p),
        fragment_loss(seed.wrapping_mul(31), p),
    )
    .run();
    assert_eq!(f.outcome, Outcome::Completed);
    assert!(f.data == file);
    f
}

#[test]
fn windows_of_fragmented_blocks_under_loss_are_no_slower_than_lock_step() {
    // 1% loss per fragment: 6% of 8 KiB datagrams and 36% of 64 KiB ones are lost.
    for (blksize, windowsize) in [(8192, 16), (8192, 64), (65464, 16), (65464, 64)] {
        let file = content(16 << 20);
        let lock_step = lossy_run(&file, &window_opts(blksize, 1), 7, 0.01);
        let windowed = lossy_run(&file, &window_opts(blksize, windowsize), 7, 0.01);
        assert!(
            windowed.elapsed <= lock_step.elapsed,
            "blksize {blksize}: window {windowsize} took {:?} ({:?}), lock-step {:?} ({:?})",
            windowed.elapsed,
            windowed.stats,
            lock_step.elapsed,
            lock_step.stats
        );
    }
}

/// A transfer over a 1 Gbit/s link with 20 µs of latency into a client whose socket buffer
/// holds 16 datagrams and whose application takes 20 µs to read each (faster than lock-step
/// feeds it, slower than the link); returns it and the datagrams the buffer dropped.
fn buffer_bound_run(file: &[u8], options: &[(String, String)]) -> (Finished, u64) {
    let mut sim = Sim::over(
        file.to_vec(),
        options,
        &limits(),
        Duration::from_micros(20),
        no_loss(),
        no_loss(),
    );
    sim.down.reader = Some(Reader::new(16, Duration::from_micros(20)));
    let dropped = std::rc::Rc::new(std::cell::Cell::new(0));
    let f = sim.run_then(|sim| dropped.set(sim.down.reader.as_ref().unwrap().dropped));
    assert_eq!(f.outcome, Outcome::Completed);
    assert!(f.data == file);
    (f, dropped.get())
}

#[test]
fn window_overflowing_the_client_socket_buffer_is_no_slower_than_lock_step() {
    let file = content(8 << 20);
    for (blksize, windowsize) in [(1468, 64), (1468, 16), (8192, 64), (65464, 16)] {
        let (lock_step, _) = buffer_bound_run(&file, &window_opts(blksize, 1));
        let (windowed, dropped) = buffer_bound_run(&file, &window_opts(blksize, windowsize));
        assert!(
            windowed.elapsed <= lock_step.elapsed,
            "blksize {blksize}: window {windowsize} took {:?} ({:?}, {dropped} dropped), lock-step {:?}",
            windowed.elapsed,
            windowed.stats,
            lock_step.elapsed,
        );
    }
}

/// One lost datagram at the given index of the server's sends (0 is the OACK, then DATA 1...).
fn lose_one(index: u64) -> Finished {
    let file = content(1 << 20);
    let f = Sim::over(
        file.clone(),
        &window_opts(1024, 16),
        &limits(),
        Duration::from_micros(100),
        Box::new(move |i, _, _| i == index),
        no_loss(),
    )
    .run();
    assert_eq!(f.outcome, Outcome::Completed);
    assert!(f.data == file);
    f
}

#[test]
fn lost_tail_of_a_window_costs_one_short_timeout_and_one_block() {
    // Block 16 ends the first window: nothing after it tells the client it is missing.
    let f = lose_one(16);
    assert_eq!(f.stats.timeouts, 1);
    assert_eq!(f.stats.retransmitted, 1);
    assert!(f.elapsed < Duration::from_millis(100), "{:?}", f.elapsed);
}

#[test]
fn lost_block_inside_a_window_costs_no_timeout() {
    let f = lose_one(5);
    assert_eq!(f.stats.timeouts, 0);
    // Blocks 5 to 16 again, nothing more.
    assert_eq!(f.stats.retransmitted, 12);
}

#[test]
fn lost_first_block_of_a_window_is_found_by_the_probe() {
    // Block 17 starts the second window; the client's reports (ACK 16) look like duplicates.
    let f = lose_one(17);
    assert_eq!(f.stats.timeouts, 1);
    assert_eq!(f.stats.retransmitted, 17);
    assert!(f.elapsed < Duration::from_millis(100), "{:?}", f.elapsed);
}

#[test]
fn client_silent_on_blocks_out_of_sequence_still_gets_the_file() {
    let file = content(1 << 20);
    let mut sim = Sim::over(
        file.clone(),
        &window_opts(1024, 16),
        &limits(),
        Duration::from_micros(100),
        Box::new(|i, _, _| i % 50 == 7),
        no_loss(),
    );
    sim.client.acks_out_of_sequence = false;
    sim.client.timeout = Duration::from_secs(5);
    let f = sim.run();
    assert_eq!(f.outcome, Outcome::Completed);
    assert!(f.data == file);
    // Each loss costs the probe's timeout and the window's: well under the client's own.
    assert!(f.elapsed < Duration::from_secs(2), "{:?}", f.elapsed);
}

/// 64 MiB of 8 KiB blocks (six fragments each) over 1% fragment loss each way, to a receiver
/// with Linux's default reassembly memory; returns the run and how many datagrams the receiver
/// dropped for want of memory.
fn fragmented_run(windowsize: u16, mtu_known: bool) -> (Finished, u64) {
    let file = content(64 << 20);
    let blind = std::rc::Rc::new(std::cell::Cell::new(0));
    let mut sim = Sim::over(
        file.clone(),
        &window_opts(8192, windowsize),
        &Limits {
            retries: 5,
            ..limits()
        },
        Duration::from_micros(100),
        reassembling_receiver(3, 0.01, 1800, blind.clone()),
        fragment_loss(4, 0.01),
    );
    sim.client.timeout = Duration::from_millis(500);
    if mtu_known {
        sim.server.set_path_mtu(1500);
    }
    let f = sim.run();
    (f, blind.get())
}

#[test]
fn path_mtu_gives_fragments_per_block() {
    let now = Instant::now();
    let fragments = |blksize: u16, mtu: usize| {
        let mut t = Transfer::new(&window_opts(blksize, 1), Vec::new(), 0, &limits(), now);
        t.set_path_mtu(mtu);
        t.fragments
    };
    assert_eq!(fragments(1468, 1500), 1);
    assert_eq!(fragments(1469, 1500), 2);
    assert_eq!(fragments(8192, 1500), 6);
    assert_eq!(fragments(65464, 1500), 45);
    assert_eq!(fragments(65464, 65536), 1);
}

#[test]
fn fragmented_blocks_under_loss_never_blind_the_receiver() {
    for windowsize in [1, 16] {
        let (f, blind) = fragmented_run(windowsize, true);
        assert_eq!(f.outcome, Outcome::Completed, "windowsize {windowsize}");
        assert_eq!(blind, 0, "windowsize {windowsize}: {:?}", f.stats);
        assert!(f.stats.reassembly_pauses > 0);
        // The receiver's memory sets the pace (a window sends more blocks that may be lost
        // than lock-step does), still well above lock-step with a one-second retransmission
        // timeout: about 0.1 MB/s at 6% datagram loss.
        let rate = 64.0 * 1.048_576 / f.elapsed.as_secs_f64();
        assert!(
            rate > 0.3,
            "windowsize {windowsize}: {rate:.2} MB/s, {:?}",
            f.stats
        );
    }
}

#[test]
fn without_pacing_fast_recovery_blinds_the_receiver() {
    // The failure the pacing prevents: the receiver's memory fills and nothing gets through.
    let (f, blind) = fragmented_run(16, false);
    assert!(blind > 0);
    assert_eq!(f.outcome, Outcome::TimedOut, "{:?}", f.stats);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn any_loss_pattern_still_delivers_the_exact_bytes(
        seed in any::<u64>(),
        p in 0.0f64..0.2,
        size in 0usize..60_000,
        blksize in prop::sample::select(vec![8u16, 512, 1468, 4096]),
        window in 1u16..24,
    ) {
        let file = content(size);
        lossy_run(&file, &window_opts(blksize, window), seed, p);
    }
}

#[test]
fn a_window_of_blocks_larger_than_the_path_mtu_gets_blocks_that_fit() {
    let ethernet = Limits {
        unfragmented_payload: Some(1500 - 28),
        ..limits()
    };
    let asked = opts(&[("blksize", "65464"), ("windowsize", "16"), ("tsize", "0")]);
    let n = negotiate(&asked, 1 << 20, &ethernet);
    assert_eq!((n.blksize, n.windowsize), (1468, 16));
    assert_eq!(
        n.oack,
        vec![
            ("blksize".to_string(), "1468".to_string()),
            ("windowsize".to_string(), "16".to_string()),
            ("tsize".to_string(), (1u64 << 20).to_string()),
        ]
    );
    // Lock-step keeps its large blocks: each saves a round trip.
    let n = negotiate(&opts(&[("blksize", "65464")]), 1 << 20, &ethernet);
    assert_eq!(n.blksize, 65464);
    // A block that fits is granted as asked.
    let n = negotiate(
        &opts(&[("windowsize", "16"), ("blksize", "1432")]),
        1 << 20,
        &ethernet,
    );
    assert_eq!(n.blksize, 1432);
    // Loopback's MTU fits the largest block; the setting grants fragmented windows.
    let loopback = Limits {
        unfragmented_payload: Some(65536 - 28),
        ..limits()
    };
    assert_eq!(negotiate(&asked, 1 << 20, &loopback).blksize, 65464);
    let as_asked = Limits {
        fragmented_windows: true,
        ..ethernet
    };
    assert_eq!(negotiate(&asked, 1 << 20, &as_asked).blksize, 65464);
}
