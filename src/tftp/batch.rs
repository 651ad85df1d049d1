//! A window of datagrams handed to the kernel at once.
//!
//! One `send` per block costs more than the system call: each datagram wakes the client, which
//! on a shared CPU preempts the server as the call returns (and between the messages of a
//! `sendmmsg`), so server and client take turns for every block and a window is little faster
//! than lock-step. So a run of equal-sized datagrams goes out as one UDP GSO send
//! (`UDP_SEGMENT`, Linux 4.18): one trip through the stack, split into ordinary datagrams at
//! the device or on loopback delivery, one wake-up. The client sees the same datagrams either
//! way. Blocks too large for the path MTU cannot be segmented (the kernel refuses), and then,
//! as for a kernel without GSO, `sendmmsg(2)` sends the batch. Measured with
//! `benches/tftp_throughput.sh`.

use std::io;
use std::os::fd::{AsRawFd, RawFd};

/// Datagrams per system call; larger batches are sent in several calls. Also the most
/// segments Linux takes in one GSO send (`UDP_MAX_SEGMENTS`).
const MAX_PER_CALL: usize = 64;

/// Most bytes in one GSO send: all segments travel as one IP packet up to segmentation.
const MAX_GSO_BYTES: usize = 65_000;

/// Reusable storage for up to `capacity` datagrams of at most `stride` bytes each.
#[derive(Debug)]
pub struct Batch {
    arena: Vec<u8>,
    stride: usize,
    lens: Vec<usize>,
    capacity: usize,
    /// Cleared for good once the kernel refuses a GSO send on this path.
    gso: bool,
}

impl Batch {
    /// Storage for `capacity` datagrams of up to `stride` bytes (at least one datagram).
    pub fn new(stride: usize, capacity: usize) -> Batch {
        let capacity = capacity.max(1);
        Batch {
            arena: vec![0; stride * capacity],
            stride,
            lens: Vec::with_capacity(capacity),
            capacity,
            gso: true,
        }
    }

    /// Appends datagrams written by `next` into a `stride`-byte buffer, until it returns `None`
    /// or the batch is full. Returns whether `next` may have more.
    pub fn fill(&mut self, mut next: impl FnMut(&mut [u8]) -> Option<usize>) -> bool {
        while self.lens.len() < self.capacity {
            let start = self.lens.len() * self.stride;
            match next(&mut self.arena[start..start + self.stride]) {
                Some(len) => self.lens.push(len),
                None => return false,
            }
        }
        true
    }

    pub fn is_empty(&self) -> bool {
        self.lens.is_empty()
    }

    /// Sends every datagram, in order, on a connected blocking socket, then empties the batch.
    pub fn send(&mut self, socket: &impl AsRawFd) -> io::Result<()> {
        let fd = socket.as_raw_fd();
        let mut sent = 0;
        let result = loop {
            if sent == self.lens.len() {
                break Ok(());
            }
            match self.send_some(fd, sent) {
                Ok(n) => sent += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        self.lens.clear();
        result
    }

    /// One system call for datagrams from `from`; returns how many the kernel took.
    fn send_some(&mut self, fd: RawFd, from: usize) -> io::Result<usize> {
        if self.gso {
            let run = self.segment_run(from);
            if run >= 2 {
                match self.send_segmented(fd, from, run) {
                    Ok(n) => return Ok(n),
                    Err(e) if gso_refused(&e) => self.gso = false,
                    Err(e) => return Err(e),
                }
            }
        }
        self.send_each(fd, from)
    }

    /// How many datagrams from `from` can go as one GSO send: equal lengths, the last one
    /// possibly shorter.
    fn segment_run(&self, from: usize) -> usize {
        let segment = self.lens[from];
        let most = (MAX_GSO_BYTES / segment.max(1)).min(MAX_PER_CALL);
        let mut run = 1;
        while run < most && from + run < self.lens.len() {
            let len = self.lens[from + run];
            if len > segment {
                break;
            }
            run += 1;
            if len < segment {
                break;
            }
        }
        run
    }

    /// One `sendmsg` with `UDP_SEGMENT`: `count` datagrams from `from`, all as long as the
    /// first but the last.
    fn send_segmented(&self, fd: RawFd, from: usize, count: usize) -> io::Result<usize> {
        // SAFETY: all-zero is a valid `iovec` and `msghdr` (null pointers, zero lengths).
        let mut iovecs: [libc::iovec; MAX_PER_CALL] = unsafe { std::mem::zeroed() };
        for (i, iovec) in iovecs.iter_mut().enumerate().take(count) {
            let start = (from + i) * self.stride;
            iovec.iov_base = self.arena[start..].as_ptr() as *mut libc::c_void;
            iovec.iov_len = self.lens[from + i];
        }
        let segment = self.lens[from] as u16;
        // Room for one control message carrying a u16, 8-byte aligned.
        let mut control = [0u64; 4];
        // SAFETY: as above.
        let mut message: libc::msghdr = unsafe { std::mem::zeroed() };
        message.msg_iov = iovecs.as_mut_ptr();
        message.msg_iovlen = count as _;
        message.msg_control = control.as_mut_ptr() as *mut libc::c_void;
        // SAFETY: CMSG_SPACE only computes a size.
        message.msg_controllen = unsafe { libc::CMSG_SPACE(2) } as _;
        // SAFETY: `msg_control` points at `control`, which has room for CMSG_SPACE(2) bytes,
        // so CMSG_FIRSTHDR is non-null and the header and its two data bytes lie inside it.
        unsafe {
            let header = libc::CMSG_FIRSTHDR(&message);
            (*header).cmsg_level = libc::SOL_UDP;
            (*header).cmsg_type = libc::UDP_SEGMENT;
            (*header).cmsg_len = libc::CMSG_LEN(2) as _;
            std::ptr::write_unaligned(libc::CMSG_DATA(header).cast::<u16>(), segment);
        }
        // SAFETY: `message` points at `iovecs[..count]` (into `self.arena`, within bounds) and
        // at `control`; all outlive the call, and the kernel only reads them.
        let n = unsafe { libc::sendmsg(fd, &message, 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(count)
    }

    /// One `sendmmsg` call for the datagrams from `from`; returns how many the kernel took.
    fn send_each(&self, fd: RawFd, from: usize) -> io::Result<usize> {
        let count = (self.lens.len() - from).min(MAX_PER_CALL);
        // SAFETY: all-zero is a valid `iovec` and `mmsghdr` (null pointers, zero lengths).
        let mut iovecs: [libc::iovec; MAX_PER_CALL] = unsafe { std::mem::zeroed() };
        let mut headers: [libc::mmsghdr; MAX_PER_CALL] = unsafe { std::mem::zeroed() };
        for i in 0..count {
            let start = (from + i) * self.stride;
            iovecs[i].iov_base = self.arena[start..].as_ptr() as *mut libc::c_void;
            iovecs[i].iov_len = self.lens[from + i];
            // The socket is connected, so no destination address (`msg_name` stays null).
            headers[i].msg_hdr.msg_iov = &mut iovecs[i];
            headers[i].msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: `headers[..count]` point at `iovecs[..count]`, which point into `self.arena`
        // within bounds; all of them outlive the call, and the kernel only reads the buffers.
        let n = unsafe { libc::sendmmsg(fd, headers.as_mut_ptr(), count as libc::c_uint, 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }
}

/// Whether a failed GSO send means "not on this path or kernel" rather than a transfer error.
fn gso_refused(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EINVAL | libc::EMSGSIZE | libc::EIO | libc::ENOPROTOOPT | libc::EOPNOTSUPP)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lengths like a few windows: runs of full blocks, a short last block, lone datagrams.
    fn lengths() -> Vec<usize> {
        let mut lengths = vec![1472; 46];
        lengths.push(300);
        lengths.extend([1472; 3]);
        lengths.extend([60, 4, 4, 4]);
        lengths.extend([1472; 10]);
        lengths.push(4);
        lengths
    }

    #[test]
    fn batch_arrives_in_order_as_separate_datagrams() {
        let receiver = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        sender.connect(receiver.local_addr().unwrap()).unwrap();
        receiver
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let lengths = lengths();
        let mut batch = Batch::new(1500, 200);
        let mut next = lengths.iter().enumerate();
        let more = batch.fill(|buf| {
            let (i, &len) = next.next()?;
            buf[..len].fill(i as u8);
            Some(len)
        });
        assert!(!more);
        // Fewer datagrams than a default socket buffer holds: nothing reads until the send ends.
        batch.send(&sender).unwrap();
        assert!(batch.is_empty());
        let mut buf = [0u8; 2000];
        for (i, &len) in lengths.iter().enumerate() {
            let got = receiver.recv(&mut buf).unwrap();
            assert_eq!(got, len, "datagram {i}");
            assert!(buf[..len].iter().all(|&b| b == i as u8), "datagram {i}");
        }
    }

    #[test]
    fn runs_are_equal_lengths_with_a_shorter_last() {
        let mut batch = Batch::new(1500, 200);
        let lengths = lengths();
        let mut next = lengths.iter();
        batch.fill(|_| next.next().copied());
        // 44 segments of 1472 bytes fit in one GSO send.
        assert_eq!(batch.segment_run(0), 44);
        assert_eq!(batch.segment_run(44), 3);
        assert_eq!(batch.segment_run(47), 4);
        assert_eq!(batch.segment_run(51), 3);
        assert_eq!(batch.segment_run(54), 11);
    }

    #[test]
    fn fill_stops_at_capacity() {
        let mut batch = Batch::new(4, 3);
        let mut calls = 0;
        assert!(batch.fill(|_| {
            calls += 1;
            Some(1)
        }));
        assert_eq!(calls, 3);
    }
}
