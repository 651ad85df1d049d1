//! Multicast imaging (docs/multicast.md): a receiver-driven protocol that sends an image's
//! chunks (docs/image-format.md) once to many machines.
//!
//! The server multicasts whichever chunks (or blocks of chunks) any receiver asked for, each
//! once per round however many asked; each receiver keeps asking for what it still lacks, so a
//! machine that joins late asks for everything and gets what it missed. Every datagram starts
//! with [`MAGIC`], [`VERSION`] and the session id, so a stray or older datagram is refused.
//!
//! Pure code: the datagram codec ([`Packet`]), the receiver's state ([`Receiver`]) and the
//! server's scheduler ([`Scheduler`]). Sockets, clocks and disks live in the server and agent.

use std::collections::{BTreeMap, HashMap};

/// The first four bytes of every datagram.
pub const MAGIC: [u8; 4] = *b"NDMC";

/// The version this code writes and the only one it reads.
pub const VERSION: u8 = 1;

/// Bytes of chunk data in one DATA datagram (the last block of a chunk may be shorter): with
/// the 24-byte header and UDP/IP headers this stays under a 1500-byte MTU.
pub const BLOCK: usize = 1400;

/// Largest datagram either side sends or accepts.
pub const MAX_DATAGRAM: usize = 1472;

/// Most block-bitmap bytes a REQUEST carries: a partial chunk of more blocks is asked for whole.
pub const MAX_BITMAP: usize = 1024;

/// Most chunk ranges in one REQUEST.
pub const MAX_RANGES: usize = 128;

const HEADER_LEN: usize = 10;

/// Packet kinds, the byte after the version.
const DATA: u8 = 1;
const REQUEST: u8 = 2;
const ANNOUNCE: u8 = 3;
const FALLBACK: u8 = 4;
const END: u8 = 5;

/// One datagram of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    pub session: u32,
    pub body: Body,
}

/// What a datagram says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// Server to group: block `block` of chunk `chunk`, which has `blocks` blocks. `seq`
    /// numbers the server's DATA datagrams so that receivers measure their loss.
    Data {
        seq: u32,
        chunk: u32,
        block: u32,
        blocks: u32,
        payload: Vec<u8>,
    },
    /// Receiver to server: what it still lacks. No ranges and no partial chunk means done.
    Request(Request),
    /// Server to group, every half second: which image this session sends.
    Announce(Announce),
    /// Server to group: receiver `receiver` is to continue over HTTP.
    Fallback { receiver: u32 },
    /// Server to group: the session is over; whoever lacks chunks fetches them over HTTP.
    End,
}

/// A receiver's request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub receiver: u32,
    /// Lost DATA datagrams since its last request, in thousandths.
    pub loss_permille: u16,
    /// Chunks it lacks entirely, as half-open ranges `start..end`.
    pub chunks: Vec<(u32, u32)>,
    /// One partly received chunk: its index and a bitmap of the blocks it lacks (bit `b % 8`
    /// of byte `b / 8` set for block `b`).
    pub partial: Option<(u32, Vec<u8>)>,
}

impl Request {
    /// A request that asks for nothing says that the receiver has every chunk.
    pub fn is_done(&self) -> bool {
        self.chunks.is_empty() && self.partial.is_none()
    }
}

/// The server's announcement of its session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announce {
    /// SHA-256 of the image index this session sends.
    pub index_sha256: [u8; 32],
    pub chunks: u32,
    /// The current sending rate, bytes per second.
    pub rate: u64,
}

/// Why a datagram is refused. Untrusted bytes only ever produce one of these.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    #[error(
        "{len} bytes is not a multicast datagram (at least {HEADER_LEN}, at most {MAX_DATAGRAM})"
    )]
    Length { len: usize },
    #[error("not a netdeploy multicast datagram (bad magic)")]
    Magic,
    #[error(
        "multicast protocol version {found} is not supported (this netdeploy speaks {VERSION})"
    )]
    Version { found: u8 },
    #[error("unknown packet kind {0}")]
    Kind(u8),
    #[error("the datagram is cut short")]
    Truncated,
    #[error("{0} trailing bytes")]
    Trailing(usize),
    #[error("malformed: {0}")]
    Malformed(&'static str),
}

impl Packet {
    /// The datagram's bytes. Encoding a packet that [`Packet::decode`] would refuse (an
    /// oversized payload or request) is a caller's bug; the sides only build valid ones.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(64);
        b.extend_from_slice(&MAGIC);
        b.push(VERSION);
        b.push(match &self.body {
            Body::Data { .. } => DATA,
            Body::Request(_) => REQUEST,
            Body::Announce(_) => ANNOUNCE,
            Body::Fallback { .. } => FALLBACK,
            Body::End => END,
        });
        b.extend_from_slice(&self.session.to_le_bytes());
        match &self.body {
            Body::Data {
                seq,
                chunk,
                block,
                blocks,
                payload,
            } => {
                for v in [seq, chunk, block, blocks] {
                    b.extend_from_slice(&v.to_le_bytes());
                }
                b.extend_from_slice(payload);
            }
            Body::Request(r) => {
                b.extend_from_slice(&r.receiver.to_le_bytes());
                b.extend_from_slice(&r.loss_permille.to_le_bytes());
                b.extend_from_slice(&(r.chunks.len() as u16).to_le_bytes());
                for (s, e) in &r.chunks {
                    b.extend_from_slice(&s.to_le_bytes());
                    b.extend_from_slice(&e.to_le_bytes());
                }
                match &r.partial {
                    None => b.push(0),
                    Some((chunk, bitmap)) => {
                        b.push(1);
                        b.extend_from_slice(&chunk.to_le_bytes());
                        b.extend_from_slice(&(bitmap.len() as u16).to_le_bytes());
                        b.extend_from_slice(bitmap);
                    }
                }
            }
            Body::Announce(a) => {
                b.extend_from_slice(&a.index_sha256);
                b.extend_from_slice(&a.chunks.to_le_bytes());
                b.extend_from_slice(&a.rate.to_le_bytes());
            }
            Body::Fallback { receiver } => b.extend_from_slice(&receiver.to_le_bytes()),
            Body::End => {}
        }
        b
    }

    /// Reads and checks a datagram: length, magic, version, kind, then every field.
    pub fn decode(bytes: &[u8]) -> Result<Packet, PacketError> {
        if bytes.len() < HEADER_LEN || bytes.len() > MAX_DATAGRAM {
            return Err(PacketError::Length { len: bytes.len() });
        }
        if bytes[..4] != MAGIC {
            return Err(PacketError::Magic);
        }
        if bytes[4] != VERSION {
            return Err(PacketError::Version { found: bytes[4] });
        }
        let kind = bytes[5];
        let mut r = Reader {
            b: bytes,
            at: HEADER_LEN,
        };
        let session = u32::from_le_bytes(bytes[6..10].try_into().expect("4 bytes"));
        let body = match kind {
            DATA => {
                let (seq, chunk, block, blocks) = (r.u32()?, r.u32()?, r.u32()?, r.u32()?);
                let payload = r.take(r.left())?.to_vec();
                if payload.is_empty() || payload.len() > BLOCK {
                    return Err(PacketError::Malformed(
                        "DATA payload of 0 or over 1400 bytes",
                    ));
                }
                if block >= blocks {
                    return Err(PacketError::Malformed(
                        "DATA block beyond its chunk's blocks",
                    ));
                }
                Body::Data {
                    seq,
                    chunk,
                    block,
                    blocks,
                    payload,
                }
            }
            REQUEST => {
                let receiver = r.u32()?;
                let loss_permille = r.u16()?;
                if loss_permille > 1000 {
                    return Err(PacketError::Malformed("REQUEST loss over 1000 per mille"));
                }
                let n = r.u16()? as usize;
                if n > MAX_RANGES {
                    return Err(PacketError::Malformed("REQUEST with too many ranges"));
                }
                let mut chunks = Vec::with_capacity(n);
                for _ in 0..n {
                    let (s, e) = (r.u32()?, r.u32()?);
                    if s >= e {
                        return Err(PacketError::Malformed("REQUEST with an empty range"));
                    }
                    chunks.push((s, e));
                }
                let partial = match r.u8()? {
                    0 => None,
                    1 => {
                        let chunk = r.u32()?;
                        let len = r.u16()? as usize;
                        if len == 0 || len > MAX_BITMAP {
                            return Err(PacketError::Malformed(
                                "REQUEST bitmap of 0 or too many bytes",
                            ));
                        }
                        Some((chunk, r.take(len)?.to_vec()))
                    }
                    _ => return Err(PacketError::Malformed("REQUEST partial flag not 0 or 1")),
                };
                Body::Request(Request {
                    receiver,
                    loss_permille,
                    chunks,
                    partial,
                })
            }
            ANNOUNCE => Body::Announce(Announce {
                index_sha256: r.take(32)?.try_into().expect("32 bytes"),
                chunks: r.u32()?,
                rate: r.u64()?,
            }),
            FALLBACK => Body::Fallback { receiver: r.u32()? },
            END => Body::End,
            k => return Err(PacketError::Kind(k)),
        };
        if r.left() > 0 {
            return Err(PacketError::Trailing(r.left()));
        }
        Ok(Packet { session, body })
    }
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn left(&self) -> usize {
        self.b.len() - self.at
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], PacketError> {
        if n > self.left() {
            return Err(PacketError::Truncated);
        }
        let s = &self.b[self.at..self.at + n];
        self.at += n;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, PacketError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, PacketError> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().expect("2")))
    }

    fn u32(&mut self) -> Result<u32, PacketError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4")))
    }

    fn u64(&mut self) -> Result<u64, PacketError> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8")))
    }
}

/// Blocks in a chunk of `len` compressed bytes.
pub fn blocks_of(len: u64) -> u32 {
    len.div_ceil(BLOCK as u64) as u32
}

/// The byte range of block `block` in a chunk of `len` bytes.
pub fn block_range(len: u64, block: u32) -> std::ops::Range<usize> {
    let start = block as usize * BLOCK;
    start..(start + BLOCK).min(len as usize)
}

fn bit(bitmap: &[u8], b: u32) -> bool {
    bitmap
        .get(b as usize / 8)
        .is_some_and(|byte| byte & (1 << (b % 8)) != 0)
}

fn set_bit(bitmap: &mut [u8], b: u32) {
    bitmap[b as usize / 8] |= 1 << (b % 8);
}

/// Why the receiver dropped a DATA datagram. None of them is an error of the session: the
/// chunk is asked for again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DataError {
    #[error("chunk {0} is not in the image")]
    NoSuchChunk(u32),
    #[error("chunk {chunk} has {expected} blocks, the datagram says {found}")]
    Blocks {
        chunk: u32,
        expected: u32,
        found: u32,
    },
    #[error("chunk {chunk} has no block {block}")]
    NoSuchBlock { chunk: u32, block: u32 },
    #[error("block {block} of chunk {chunk} has {found} bytes, {expected} expected")]
    BlockLength {
        chunk: u32,
        block: u32,
        expected: usize,
        found: usize,
    },
}

/// A partly received chunk.
struct Partial {
    data: Vec<u8>,
    /// Bit set for each block received.
    have: Vec<u8>,
    missing: u32,
}

/// The receiver's side of a session: blocks in, complete chunks out, and what to ask next.
///
/// It holds at most `max_partial` partly received chunks in memory; blocks of further chunks
/// are dropped (and asked for again), which bounds memory whatever the server sends.
pub struct Receiver {
    id: u32,
    lens: Vec<u64>,
    /// Chunks completed and handed out (written by the caller).
    done: Vec<bool>,
    remaining: usize,
    partial: BTreeMap<u32, Partial>,
    max_partial: usize,
    /// DATA sequence numbers seen since the last request: lowest, highest, how many.
    window: Option<(u32, u32, u32)>,
    /// Where the stream is: the chunk and block of the last DATA taken.
    at: Option<(u32, u32)>,
}

impl Receiver {
    /// A receiver `id` of an image whose chunks have the compressed lengths `lens`, lacking
    /// every chunk whose `have` entry is false (all of them when `have` is empty).
    pub fn new(id: u32, lens: Vec<u64>, have: &[bool], max_partial: usize) -> Receiver {
        let done: Vec<bool> = (0..lens.len())
            .map(|i| have.get(i).copied().unwrap_or(false))
            .collect();
        let remaining = done.iter().filter(|d| !**d).count();
        Receiver {
            id,
            lens,
            done,
            remaining,
            partial: BTreeMap::new(),
            max_partial: max_partial.max(1),
            window: None,
            at: None,
        }
    }

    /// The receiver id its requests carry.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Chunks still lacking.
    pub fn remaining(&self) -> usize {
        self.remaining
    }

    pub fn is_complete(&self) -> bool {
        self.remaining == 0
    }

    /// True when it holds as many partly received chunks as it may: blocks of other chunks
    /// are dropped until these complete, so its repairs are worth asking for at once.
    pub fn is_full(&self) -> bool {
        self.partial.len() >= self.max_partial
    }

    /// Which chunks are complete.
    pub fn have(&self) -> &[bool] {
        &self.done
    }

    /// Takes one DATA datagram's fields. Returns the chunk's bytes when this block completed
    /// it; the caller verifies them against the index and then calls [`Receiver::written`],
    /// or [`Receiver::rejected`] when they fail.
    pub fn on_data(
        &mut self,
        seq: u32,
        chunk: u32,
        block: u32,
        blocks: u32,
        payload: &[u8],
    ) -> Result<Option<Vec<u8>>, DataError> {
        self.window = Some(match self.window {
            None => (seq, seq, 1),
            Some((lo, hi, n)) => (lo.min(seq), hi.max(seq), n.saturating_add(1)),
        });
        let len = *self
            .lens
            .get(chunk as usize)
            .ok_or(DataError::NoSuchChunk(chunk))?;
        let expected = blocks_of(len);
        if blocks != expected {
            return Err(DataError::Blocks {
                chunk,
                expected,
                found: blocks,
            });
        }
        if block >= expected {
            return Err(DataError::NoSuchBlock { chunk, block });
        }
        self.at = Some((chunk, block));
        let range = block_range(len, block);
        if payload.len() != range.len() {
            return Err(DataError::BlockLength {
                chunk,
                block,
                expected: range.len(),
                found: payload.len(),
            });
        }
        if self.done[chunk as usize] {
            return Ok(None);
        }
        if !self.partial.contains_key(&chunk) && self.partial.len() >= self.max_partial {
            return Ok(None);
        }
        let p = self.partial.entry(chunk).or_insert_with(|| Partial {
            data: vec![0; len as usize],
            have: vec![0; (expected as usize).div_ceil(8)],
            missing: expected,
        });
        if bit(&p.have, block) {
            return Ok(None);
        }
        p.data[range].copy_from_slice(payload);
        set_bit(&mut p.have, block);
        p.missing -= 1;
        if p.missing > 0 {
            return Ok(None);
        }
        let p = self.partial.remove(&chunk).expect("present");
        Ok(Some(p.data))
    }

    /// Chunk `chunk`, handed out by [`Receiver::on_data`], is verified and written.
    pub fn written(&mut self, chunk: u32) {
        if let Some(d) = self.done.get_mut(chunk as usize) {
            if !*d {
                *d = true;
                self.remaining -= 1;
            }
        }
    }

    /// Chunk `chunk` failed its check: it is asked for again whole.
    pub fn rejected(&mut self, chunk: u32) {
        self.partial.remove(&chunk);
    }

    /// The loss measured since the last request, in thousandths, and restarts the count.
    fn take_loss(&mut self) -> u16 {
        match self.window.take() {
            Some((lo, hi, n)) => {
                let span = u64::from(hi.wrapping_sub(lo)) + 1;
                let lost = span.saturating_sub(u64::from(n));
                (lost * 1000 / span).min(1000) as u16
            }
            None => 0,
        }
    }

    /// The requests to send now: the chunks lacking entirely (in one request, as many ranges
    /// as fit), then one request per partly received chunk with the bitmap of its missing
    /// blocks. A complete receiver sends one empty request, which says it is done.
    pub fn requests(&mut self) -> Vec<Request> {
        self.build(None)
    }

    /// The requests to send while data keeps coming: only what the stream has already passed
    /// (chunks before the one the last DATA belonged to, and that chunk's blocks before the
    /// last one), so that nothing still on its way (queued in the socket while this machine
    /// was busy) is asked for, and so sent, again. Empty when nothing was passed; the loss
    /// measured then goes with the next request.
    pub fn requests_passed(&mut self) -> Vec<Request> {
        match self.at {
            Some(at) if !self.is_complete() => self.build(Some(at)),
            _ => self.requests(),
        }
    }

    /// Requests for what is lacking, or only for what lies before `before` (chunk, block).
    fn build(&mut self, before: Option<(u32, u32)>) -> Vec<Request> {
        let passed_chunk = |c: usize| before.is_none_or(|(at, _)| (c as u32) < at);
        let mut chunks = Vec::new();
        let mut i = 0usize;
        while i < self.done.len() && chunks.len() < MAX_RANGES {
            let whole = |i: usize| {
                passed_chunk(i)
                    && !self.done[i]
                    && self
                        .partial
                        .get(&(i as u32))
                        .is_none_or(|p| bitmap_too_big(self.lens[i]) && p.missing > 0)
            };
            if whole(i) {
                let start = i;
                while i < self.done.len() && whole(i) {
                    i += 1;
                }
                chunks.push((start as u32, i as u32));
            } else {
                i += 1;
            }
        }
        let mut partials = Vec::new();
        for (chunk, p) in &self.partial {
            if bitmap_too_big(self.lens[*chunk as usize]) {
                continue;
            }
            let upto = match before {
                None => u32::MAX,
                Some((at, _)) if *chunk < at => u32::MAX,
                Some((at, block)) if *chunk == at => block,
                Some(_) => continue,
            };
            let blocks = blocks_of(self.lens[*chunk as usize]);
            let mut want = vec![0u8; (blocks as usize).div_ceil(8)];
            let mut any = false;
            for b in 0..blocks.min(upto) {
                if !bit(&p.have, b) {
                    set_bit(&mut want, b);
                    any = true;
                }
            }
            if any {
                partials.push((*chunk, want));
            }
        }
        if before.is_some() && chunks.is_empty() && partials.is_empty() {
            return Vec::new();
        }
        let loss_permille = self.take_loss();
        let mut out = vec![Request {
            receiver: self.id,
            loss_permille,
            chunks,
            partial: None,
        }];
        out.extend(partials.into_iter().map(|partial| Request {
            receiver: self.id,
            loss_permille,
            chunks: Vec::new(),
            partial: Some(partial),
        }));
        if out.len() > 1 && out[0].chunks.is_empty() {
            out.remove(0);
        }
        out
    }
}

fn bitmap_too_big(len: u64) -> bool {
    (blocks_of(len) as usize).div_ceil(8) > MAX_BITMAP
}

/// What the scheduler knows of one receiver.
#[derive(Debug, Clone, Default)]
struct Member {
    loss_permille: u16,
    /// Consecutive requests with loss over the limit while the rate was at its minimum.
    strikes: u32,
    /// The scheduler's count of slow-downs when this receiver's previous request came: its
    /// loss since then was measured at the current rate only if no slow-down came between.
    cuts_seen: Option<u64>,
    done: bool,
    fell_back: bool,
}

/// How the sender adapts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    /// Bytes per second, never less.
    pub min: u64,
    /// Bytes per second, never more; also the starting rate.
    pub max: u64,
    /// Loss above this (thousandths) slows the sender down.
    pub loss_permille: u16,
    /// Requests in a row with loss above the limit at the minimum rate after which a
    /// receiver is told to continue over HTTP.
    pub patience: u32,
}

/// What the sender does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Multicast block `block` of chunk `chunk`.
    Block { chunk: u32, block: u32 },
    /// Tell receiver `receiver` to continue over HTTP.
    Fallback { receiver: u32 },
}

/// The sender's side of a session: the union of every receiver's requests, each block sent
/// once per round however many asked for it, and the rate.
pub struct Scheduler {
    lens: Vec<u64>,
    /// Per chunk, a bitmap of the blocks still to send this round.
    pending: BTreeMap<u32, Vec<u8>>,
    /// Chunks some receiver holds partly (asked for by bitmap): sent before the round goes
    /// on, so that the receiver can check, write and free them rather than drop new chunks.
    repairs: std::collections::BTreeSet<u32>,
    /// Where the round is: the next chunk and block to consider.
    cursor: (u32, u32),
    members: HashMap<u32, Member>,
    fallbacks: Vec<u32>,
    limits: RateLimits,
    rate: u64,
    /// Slow-downs so far.
    cuts: u64,
}

impl Scheduler {
    pub fn new(lens: Vec<u64>, limits: RateLimits) -> Scheduler {
        let limits = RateLimits {
            min: limits.min.max(1),
            max: limits.max.max(limits.min.max(1)),
            ..limits
        };
        Scheduler {
            lens,
            pending: BTreeMap::new(),
            repairs: Default::default(),
            cursor: (0, 0),
            members: HashMap::new(),
            fallbacks: Vec::new(),
            rate: limits.max,
            limits,
            cuts: 0,
        }
    }

    /// The sending rate, bytes per second.
    pub fn rate(&self) -> u64 {
        self.rate
    }

    /// Receivers heard from.
    pub fn members(&self) -> usize {
        self.members.len()
    }

    /// Receivers that have every chunk.
    pub fn finished(&self) -> usize {
        self.members.values().filter(|m| m.done).count()
    }

    /// Receivers told to continue over HTTP.
    pub fn fell_back(&self) -> usize {
        self.members.values().filter(|m| m.fell_back).count()
    }

    /// True when at least one receiver came and each one has finished or fell back.
    pub fn is_over(&self) -> bool {
        !self.members.is_empty() && self.members.values().all(|m| m.done || m.fell_back)
    }

    /// Takes a receiver's request: its chunks and blocks join what is pending, its loss
    /// moves the rate.
    pub fn on_request(&mut self, req: &Request) {
        let n = self.lens.len() as u32;
        let m = self.members.entry(req.receiver).or_default();
        if m.fell_back {
            return;
        }
        m.done = req.is_done();
        m.loss_permille = req.loss_permille;
        for &(s, e) in &req.chunks {
            for c in s.min(n)..e.min(n) {
                let blocks = blocks_of(self.lens[c as usize]);
                if blocks == 0 {
                    continue;
                }
                let want = self.pending.entry(c).or_insert_with(|| bitmap(blocks));
                for b in 0..blocks {
                    set_bit(want, b);
                }
            }
        }
        if let Some((c, asked)) = &req.partial {
            if let Some(&len) = self.lens.get(*c as usize) {
                let blocks = blocks_of(len);
                if (0..blocks).any(|b| bit(asked, b)) {
                    let want = self.pending.entry(*c).or_insert_with(|| bitmap(blocks));
                    for b in (0..blocks).filter(|b| bit(asked, *b)) {
                        set_bit(want, b);
                    }
                    self.repairs.insert(*c);
                }
            }
        }
        self.adapt(req.receiver);
    }

    /// Slows down by a fifth when a receiver loses more than the limit, speeds up by a
    /// twentieth otherwise; a receiver that keeps losing at the minimum rate falls back.
    /// A loss measured partly before the last slow-down does not slow down again: when many
    /// receivers report the same burst of loss, the sender slows down once, not once each.
    fn adapt(&mut self, receiver: u32) {
        let limits = self.limits;
        let cuts = self.cuts;
        let m = self.members.get_mut(&receiver).expect("present");
        let since_last_cut = m.cuts_seen.is_none_or(|seen| seen == cuts);
        if m.loss_permille > limits.loss_permille {
            if self.rate == limits.min {
                m.strikes += 1;
                if m.strikes >= limits.patience {
                    m.fell_back = true;
                    self.fallbacks.push(receiver);
                }
            }
            if since_last_cut && self.rate > limits.min {
                self.rate = (self.rate - self.rate / 5).max(limits.min);
                self.cuts += 1;
            }
            m.cuts_seen = Some(self.cuts);
        } else {
            m.cuts_seen = Some(cuts);
            m.strikes = 0;
            let worst = self
                .members
                .values()
                .filter(|m| !m.fell_back && !m.done)
                .map(|m| m.loss_permille)
                .max()
                .unwrap_or(0);
            if worst <= limits.loss_permille {
                self.rate = (self.rate + self.rate / 20 + 1).min(limits.max);
            }
        }
    }

    /// Bytes waiting to be sent in this round.
    pub fn pending_bytes(&self) -> u64 {
        self.pending
            .iter()
            .map(|(c, want)| {
                let len = self.lens[*c as usize];
                (0..blocks_of(len))
                    .filter(|i| bit(want, *i))
                    .map(|i| block_range(len, i).len() as u64)
                    .sum::<u64>()
            })
            .sum()
    }

    /// The next thing to send, or `None` when nothing is pending. A block is sent once and
    /// then leaves the pending set until someone asks for it again; the round goes on from
    /// where it was, chunk after chunk, so a late request waits for its turn rather than
    /// starve the others.
    pub fn next_action(&mut self) -> Option<Action> {
        if let Some(receiver) = self.fallbacks.pop() {
            return Some(Action::Fallback { receiver });
        }
        while let Some(&r) = self.repairs.first() {
            if self.pending.contains_key(&r) {
                break;
            }
            self.repairs.remove(&r);
        }
        let (c, b) = self.cursor;
        let (chunk, from) = match self.repairs.first() {
            Some(&r) => (r, 0),
            None => match self.pending.range(c..).next() {
                Some((&k, _)) if k == c => (k, b),
                Some((&k, _)) => (k, 0),
                None => (*self.pending.keys().next()?, 0),
            },
        };
        let repair = self.repairs.contains(&chunk);
        let blocks = blocks_of(self.lens[chunk as usize]);
        let want = self.pending.get_mut(&chunk).expect("present");
        // The blocks after the cursor first, then the ones a request added behind it.
        let block = (from..blocks)
            .chain(0..from.min(blocks))
            .find(|b| bit(want, *b))
            .expect("a pending chunk has a block to send");
        want[block as usize / 8] &= !(1 << (block % 8));
        if want.iter().all(|b| *b == 0) {
            self.pending.remove(&chunk);
            self.repairs.remove(&chunk);
            if !repair {
                self.cursor = (chunk + 1, 0);
            }
        } else if !repair {
            self.cursor = (chunk, block + 1);
        }
        Some(Action::Block { chunk, block })
    }
}

fn bitmap(blocks: u32) -> Vec<u8> {
    vec![0; (blocks as usize).div_ceil(8)]
}

#[cfg(test)]
mod tests;
