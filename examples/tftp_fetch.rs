//! A minimal TFTP read client with RFC 7440 windows, for throughput benchmarks: atftp spends
//! several microseconds of CPU per block, which caps what it can show of a server.
//!
//! ```text
//! tftp_fetch SERVER:PORT FILE OUT [BLKSIZE] [WINDOWSIZE]
//! ```
//!
//! Behaves as an RFC 7440 receiver: acknowledges every `windowsize` blocks, at once (with the
//! last block in sequence) on a block out of sequence, and again on its own timeout. Prints
//! `bytes=N seconds=S mb_per_s=R` on success.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use netdeploy::tftp::packet::{Mode, Packet, Request};

const CLIENT_TIMEOUT: Duration = Duration::from_millis(500);
const TRIES: u32 = 20;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [server, file, out, rest @ ..] = args.as_slice() else {
        bail!("usage: tftp_fetch SERVER:PORT FILE OUT [BLKSIZE] [WINDOWSIZE]");
    };
    let server: SocketAddr = server.parse().context("SERVER:PORT")?;
    let blksize: u16 = rest.first().map(|s| s.parse()).transpose()?.unwrap_or(512);
    let windowsize: u16 = rest.get(1).map(|s| s.parse()).transpose()?.unwrap_or(1);

    let socket = socket2::Socket::new(
        socket2::Domain::for_address(server),
        socket2::Type::DGRAM,
        None,
    )?;
    let _ = socket.set_recv_buffer_size(8 << 20);
    let any: SocketAddr = if server.is_ipv4() {
        "0.0.0.0:0".parse()?
    } else {
        "[::]:0".parse()?
    };
    socket.bind(&any.into())?;
    let socket: UdpSocket = socket.into();
    socket.set_read_timeout(Some(CLIENT_TIMEOUT))?;

    let mut options = vec![("tsize".to_owned(), "0".to_owned())];
    if blksize != 512 {
        options.push(("blksize".to_owned(), blksize.to_string()));
    }
    if windowsize != 1 {
        options.push(("windowsize".to_owned(), windowsize.to_string()));
    }
    let request = Packet::Rrq(Request {
        filename: file.clone(),
        mode: Mode::Octet,
        options,
    })
    .to_bytes();

    let started = Instant::now();
    let mut output = BufWriter::with_capacity(1 << 20, File::create(out)?);
    let mut buf = vec![0u8; 65_536];
    let mut blksize = 512usize;
    let mut window = 1u64;
    // Absolute number of the next block wanted, and blocks taken since the last ACK.
    let mut expected = 1u64;
    let mut since_ack = 0u64;
    let mut bytes = 0u64;
    let mut peer: Option<SocketAddr> = None;
    let mut last_sent = request.clone();
    let mut tries = 0;
    socket.send_to(&request, server)?;
    loop {
        let (len, from) = match socket.recv_from(&mut buf) {
            Ok(received) => received,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                tries += 1;
                if tries > TRIES {
                    bail!("no answer after {TRIES} tries");
                }
                socket.send_to(&last_sent, peer.unwrap_or(server))?;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        if peer.is_some_and(|p| p != from) {
            continue;
        }
        tries = 0;
        let ack = |n: u64| Packet::Ack { block: n as u16 }.to_bytes();
        match Packet::parse(&buf[..len]) {
            Ok(Packet::Oack { options }) if peer.is_none() => {
                peer = Some(from);
                for (name, value) in options {
                    match name.to_ascii_lowercase().as_str() {
                        "blksize" => blksize = value.parse()?,
                        "windowsize" => window = value.parse()?,
                        _ => {}
                    }
                }
                last_sent = ack(0);
                socket.send_to(&last_sent, from)?;
            }
            Ok(Packet::Data { block, data }) => {
                peer = Some(from);
                if block == expected as u16 {
                    output.write_all(data)?;
                    bytes += data.len() as u64;
                    expected += 1;
                    since_ack += 1;
                    if data.len() < blksize {
                        socket.send_to(&ack(expected - 1), from)?;
                        break;
                    }
                    if since_ack == window {
                        since_ack = 0;
                        last_sent = ack(expected - 1);
                        socket.send_to(&last_sent, from)?;
                    }
                } else {
                    since_ack = 0;
                    last_sent = ack(expected - 1);
                    socket.send_to(&last_sent, from)?;
                }
            }
            Ok(Packet::Error { code, message }) => bail!("server error {code}: {message}"),
            _ => {}
        }
    }
    output.flush()?;
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "bytes={bytes} seconds={seconds:.3} mb_per_s={:.1}",
        bytes as f64 / 1e6 / seconds
    );
    Ok(())
}
