//! A minimal HTTP/1.1 client over `std::net::TcpStream`, or over TLS to a pinned certificate
//! for `https://` URLs ([`tls`]): GET (optionally from a byte offset with `Range: bytes=N-`)
//! and POST of JSON, bodies framed by `Content-Length`, chunked transfer coding or the end of
//! the connection, with connect and read/write timeouts. One request per connection. The
//! syntax is in [`wire`], the socket here.

pub mod tls;
pub mod url;
pub mod wire;

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

pub use netdeploy_wire::cert_pin::CertPin;
pub use netdeploy_wire::run_token::RunToken;
pub use url::{Url, UrlError};
pub use wire::{ContentRange, Framing};

/// Longest response head accepted.
const MAX_HEAD: u64 = 64 * 1024;

/// Why a request failed. Everything but [`HttpError::Malformed`] is worth a retry.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("cannot connect to {addr}: {source}")]
    Connect { addr: String, source: io::Error },
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("malformed response: {0}")]
    Malformed(String),
    #[error("the response body is larger than {0} bytes")]
    TooLarge(usize),
    /// HTTPS without a pin: no certificate would be checked, so none is trusted.
    #[error(
        "{url} is https:// but no certificate pin was given (netdeploy.pin=sha256:... on the \
         kernel command line, or NetdeployServerPin in the media variables): refused"
    )]
    NoPin { url: String },
    #[error(transparent)]
    WrongCertificate(#[from] tls::PinMismatch),
    #[error("TLS: {0}")]
    Tls(String),
}

impl HttpError {
    /// True when asking again cannot help: the server is not the pinned one, or there is no
    /// pin to check it with.
    pub fn refuses_server(&self) -> bool {
        matches!(
            self,
            HttpError::NoPin { .. } | HttpError::WrongCertificate(_)
        )
    }
}

/// Timeouts of every request, and the pin `https://` URLs are checked against.
#[derive(Debug, Clone)]
pub struct Client {
    pub connect_timeout: Duration,
    /// For each read or write on the socket, not for the whole transfer.
    pub io_timeout: Duration,
    /// The server certificate's pin; an `https://` request without one is refused.
    pub pin: Option<CertPin>,
}

impl Default for Client {
    fn default() -> Client {
        Client {
            connect_timeout: Duration::from_secs(10),
            io_timeout: Duration::from_secs(30),
            pin: None,
        }
    }
}

impl Client {
    /// This client, checking `https://` servers against `pin`.
    pub fn with_pin(self, pin: Option<CertPin>) -> Client {
        Client { pin, ..self }
    }

    /// GET `url`; with `range_from`, asks for the bytes from that offset to the end.
    pub fn get(&self, url: &Url, range_from: Option<u64>) -> Result<Response, HttpError> {
        let extra: Vec<(&str, String)> = range_from
            .map(|n| ("Range", format!("bytes={n}-")))
            .into_iter()
            .collect();
        self.send("GET", url, &extra, b"")
    }

    /// GET `url` with this `Authorization` value (docs/agent-http.md), when there is one.
    pub fn get_authorized(
        &self,
        url: &Url,
        authorization: Option<&str>,
    ) -> Result<Response, HttpError> {
        let extra: Vec<(&str, String)> = authorization
            .map(|a| ("Authorization", a.to_owned()))
            .into_iter()
            .collect();
        self.send("GET", url, &extra, b"")
    }

    /// POST `json` (already serialized) to `url`, presenting `token` when there is one.
    pub fn post_json(
        &self,
        url: &Url,
        json: &[u8],
        token: Option<&RunToken>,
    ) -> Result<Response, HttpError> {
        let mut extra = vec![("Content-Type", "application/json".to_owned())];
        extra.extend(token.map(|t| ("Authorization", t.authorization())));
        self.send("POST", url, &extra, json)
    }

    /// PUT `body` to `url`, presenting `token` when there is one.
    pub fn put(
        &self,
        url: &Url,
        body: &[u8],
        token: Option<&RunToken>,
    ) -> Result<Response, HttpError> {
        let mut extra = vec![("Content-Type", "application/octet-stream".to_owned())];
        extra.extend(token.map(|t| ("Authorization", t.authorization())));
        self.send("PUT", url, &extra, body)
    }

    fn send(
        &self,
        method: &str,
        url: &Url,
        extra: &[(&str, String)],
        body: &[u8],
    ) -> Result<Response, HttpError> {
        let addr = url.socket_addr();
        let stream = TcpStream::connect_timeout(&addr, self.connect_timeout).map_err(|source| {
            HttpError::Connect {
                addr: addr.to_string(),
                source,
            }
        })?;
        stream.set_read_timeout(Some(self.io_timeout))?;
        stream.set_write_timeout(Some(self.io_timeout))?;
        stream.set_nodelay(true)?;
        let mut stream = if url.is_https() {
            let pin = self.pin.ok_or_else(|| HttpError::NoPin {
                url: url.to_string(),
            })?;
            Stream::Tls(Box::new(tls::connect(stream, addr.ip(), pin)?))
        } else {
            Stream::Plain(stream)
        };
        stream.write_all(&wire::request(
            method,
            &url.authority(),
            url.path(),
            extra,
            body,
        ))?;
        stream.flush()?;
        let mut reader = BufReader::with_capacity(256 * 1024, stream);
        let head = read_head(&mut reader)?;
        let framing = head.framing()?;
        Ok(Response {
            head,
            body: Body {
                reader,
                state: match framing {
                    Framing::Empty => State::Done,
                    Framing::Length(n) => State::Length(n),
                    Framing::Chunked => State::ChunkStart,
                    Framing::UntilClose => State::UntilClose,
                },
            },
        })
    }
}

/// The connection: plain TCP, or TLS over it.
enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// Reads the status line and headers, skipping interim 1xx responses.
fn read_head(reader: &mut BufReader<Stream>) -> Result<wire::Head, HttpError> {
    loop {
        let mut text = String::new();
        loop {
            let line = read_line(reader, MAX_HEAD)?;
            if line.is_empty() {
                if text.is_empty() {
                    continue; // tolerate a stray empty line before the status line
                }
                break;
            }
            text.push_str(&line);
            text.push_str("\r\n");
            if text.len() as u64 > MAX_HEAD {
                return Err(HttpError::Malformed("response head too long".into()));
            }
        }
        let head = wire::parse_head(&text)?;
        if head.status / 100 != 1 {
            return Ok(head);
        }
    }
}

/// One line without its CR LF; an error when the connection ends first or the line is
/// longer than `limit`.
fn read_line(reader: &mut impl BufRead, limit: u64) -> io::Result<String> {
    let mut buf = Vec::new();
    reader.take(limit + 2).read_until(b'\n', &mut buf)?;
    if buf.last() != Some(&b'\n') {
        return Err(if buf.len() as u64 > limit {
            io::Error::new(io::ErrorKind::InvalidData, "line too long")
        } else {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the connection closed in the middle of a line",
            )
        });
    }
    buf.pop();
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    String::from_utf8(buf).map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "not UTF-8"))
}

/// A response whose body is read through [`Read`]. A body cut short (fewer bytes than
/// `Content-Length`, a chunk not finished) reads as an [`io::ErrorKind::UnexpectedEof`] error.
pub struct Response {
    head: wire::Head,
    body: Body,
}

impl Response {
    pub fn status(&self) -> u16 {
        self.head.status
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.header(name)
    }

    /// The body length, when it is given by `Content-Length`.
    pub fn content_length(&self) -> Option<u64> {
        match self.body.state {
            State::Length(n) if self.header("transfer-encoding").is_none() => Some(n),
            _ => None,
        }
    }

    /// The `Content-Range` of a 206 response.
    pub fn content_range(&self) -> Option<ContentRange> {
        self.header("content-range")
            .and_then(wire::parse_content_range)
    }

    /// The whole body, refusing one longer than `limit` bytes.
    pub fn read_body(mut self, limit: usize) -> Result<Vec<u8>, HttpError> {
        let mut out = Vec::new();
        (&mut self).take(limit as u64 + 1).read_to_end(&mut out)?;
        if out.len() > limit {
            return Err(HttpError::TooLarge(limit));
        }
        Ok(out)
    }
}

impl Read for Response {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.body.read(buf)
    }
}

struct Body {
    reader: BufReader<Stream>,
    state: State,
}

enum State {
    Done,
    /// Bytes of a `Content-Length` body still to come.
    Length(u64),
    UntilClose,
    /// Before a chunk-size line.
    ChunkStart,
    /// Bytes of the current chunk still to come.
    InChunk(u64),
}

fn cut_short(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("the connection closed {what}"),
    )
}

impl Read for Body {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            match self.state {
                State::Done => return Ok(0),
                State::UntilClose => return self.reader.read(buf),
                State::Length(0) => {
                    self.state = State::Done;
                    return Ok(0);
                }
                State::Length(left) => {
                    let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    let n = self.reader.read(&mut buf[..want])?;
                    if n == 0 {
                        return Err(cut_short(&format!(
                            "with {left} bytes of the body still to come"
                        )));
                    }
                    self.state = State::Length(left - n as u64);
                    return Ok(n);
                }
                State::ChunkStart => {
                    let line = read_line(&mut self.reader, 1024)
                        .map_err(|_| cut_short("before a chunk size"))?;
                    let size = wire::parse_chunk_size(&line).ok_or_else(|| {
                        io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!("bad chunk size line {line:?}"),
                        )
                    })?;
                    if size == 0 {
                        // Trailer fields, then the empty line that ends the message.
                        while !read_line(&mut self.reader, 8192)
                            .map_err(|_| cut_short("in the chunked trailer"))?
                            .is_empty()
                        {}
                        self.state = State::Done;
                    } else {
                        self.state = State::InChunk(size);
                    }
                }
                State::InChunk(left) => {
                    let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    let n = self.reader.read(&mut buf[..want])?;
                    if n == 0 {
                        return Err(cut_short("in the middle of a chunk"));
                    }
                    let left = left - n as u64;
                    if left == 0 {
                        let mut crlf = [0u8; 2];
                        self.reader
                            .read_exact(&mut crlf)
                            .map_err(|_| cut_short("after a chunk"))?;
                        if &crlf != b"\r\n" {
                            return Err(io::Error::new(
                                io::ErrorKind::InvalidData,
                                "a chunk is not followed by CR LF",
                            ));
                        }
                        self.state = State::ChunkStart;
                    } else {
                        self.state = State::InChunk(left);
                    }
                    return Ok(n);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake_server::{range_reply, FakeServer, Reply};

    fn u(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    fn client() -> Client {
        Client {
            connect_timeout: Duration::from_secs(2),
            io_timeout: Duration::from_secs(5),
            pin: None,
        }
    }

    #[test]
    fn gets_a_body_with_content_length() {
        let srv = FakeServer::start(|_| Reply::new(200).body(b"hello".to_vec()));
        let r = client().get(&u(&srv.url("/x")), None).unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.content_length(), Some(5));
        assert_eq!(r.read_body(100).unwrap(), b"hello");
        let req = &srv.requests()[0];
        assert_eq!(req.method, "GET");
        assert_eq!(req.path, "/x");
        assert_eq!(req.header("range"), None);
    }

    #[test]
    fn gets_a_chunked_body() {
        let srv = FakeServer::start(|_| {
            Reply::new(200)
                .body(b"hello chunked world".to_vec())
                .chunked(&[5, 1, 13])
        });
        let r = client().get(&u(&srv.url("/c")), None).unwrap();
        assert_eq!(r.content_length(), None);
        assert_eq!(r.read_body(100).unwrap(), b"hello chunked world");
    }

    #[test]
    fn reads_to_the_end_of_the_connection_without_a_length() {
        let srv = FakeServer::start(|_| Reply::new(200).body(b"no length".to_vec()).no_length());
        let r = client().get(&u(&srv.url("/")), None).unwrap();
        assert_eq!(r.read_body(100).unwrap(), b"no length");
    }

    #[test]
    fn asks_for_a_range_and_gets_206() {
        let data: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let d = data.clone();
        let srv = FakeServer::start(move |req| range_reply(req, &d));
        let r = client().get(&u(&srv.url("/f")), Some(600)).unwrap();
        assert_eq!(r.status(), 206);
        assert_eq!(
            r.content_range(),
            Some(ContentRange {
                start: 600,
                end: 999,
                total: Some(1000)
            })
        );
        assert_eq!(r.read_body(2000).unwrap(), &data[600..]);
        assert_eq!(srv.requests()[0].header("range"), Some("bytes=600-"));
        let r = client().get(&u(&srv.url("/f")), Some(1000)).unwrap();
        assert_eq!(r.status(), 416);
    }

    #[test]
    fn a_cut_body_is_an_error_and_the_rest_comes_with_a_range() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let d = data.clone();
        let srv = FakeServer::start(move |req| {
            let reply = range_reply(req, &d);
            if req.header("range").is_none() {
                reply.cut_after(40_000)
            } else {
                reply
            }
        });
        let mut r = client().get(&u(&srv.url("/f")), None).unwrap();
        let mut got = Vec::new();
        let err = r.read_to_end(&mut got).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        assert_eq!(got.len(), 40_000);
        let r = client()
            .get(&u(&srv.url("/f")), Some(got.len() as u64))
            .unwrap();
        assert_eq!(r.status(), 206);
        got.extend(r.read_body(200_000).unwrap());
        assert_eq!(got, data);
    }

    #[test]
    fn a_cut_chunked_body_is_an_error() {
        let srv = FakeServer::start(|_| {
            Reply::new(200)
                .body(vec![7u8; 3000])
                .chunked(&[1000, 2000])
                .cut_after(1500)
        });
        let mut r = client().get(&u(&srv.url("/")), None).unwrap();
        let mut got = Vec::new();
        let err = r.read_to_end(&mut got).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn posts_json() {
        let srv = FakeServer::start(|req| {
            assert_eq!(req.header("content-type"), Some("application/json"));
            Reply::new(204)
        });
        let r = client()
            .post_json(
                &u(&srv.url("/agent/status")),
                br#"{"kind":"started"}"#,
                None,
            )
            .unwrap();
        assert_eq!(r.status(), 204);
        assert!(r.read_body(10).unwrap().is_empty());
        let reqs = srv.requests();
        assert_eq!(reqs[0].method, "POST");
        assert_eq!(reqs[0].body, br#"{"kind":"started"}"#);
    }

    #[test]
    fn reports_404_and_refuses_huge_bodies() {
        let srv = FakeServer::start(|_| Reply::new(404).body(b"no such content\n".to_vec()));
        let r = client().get(&u(&srv.url("/content/x")), None).unwrap();
        assert_eq!(r.status(), 404);
        assert!(matches!(r.read_body(4), Err(HttpError::TooLarge(4))));
    }

    #[test]
    fn times_out_on_a_silent_server() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = Url::parse(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
        let c = Client {
            connect_timeout: Duration::from_secs(1),
            io_timeout: Duration::from_millis(200),
            pin: None,
        };
        let started = std::time::Instant::now();
        match c.get(&url, None) {
            Err(HttpError::Io(e)) => assert!(matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            )),
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => panic!("a silent server gave a response"),
        }
        assert!(started.elapsed() < Duration::from_secs(3));
        drop(listener);
    }

    #[test]
    fn refused_connections_name_the_address() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let url = Url::parse(&format!("http://{addr}/")).unwrap();
        let err = client().get(&url, None).err().unwrap();
        assert!(err.to_string().contains(&addr.to_string()), "{err}");
    }
}
