//! A tiny HTTP/1.1 server on a loopback port for the agent's tests: each connection is read
//! up to the end of its request, answered by a handler and closed. Replies can be chunked,
//! have no length, or be cut after some bytes (the connection then closes early), and a
//! helper answers `Range` requests like the netdeploy server does.
//!
//! Shared by the unit tests (`src/lib.rs` includes this file) and the end-to-end test.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

/// A request as the server read it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// N of `Range: bytes=N-`.
    pub fn range_from(&self) -> Option<u64> {
        self.header("range")?
            .strip_prefix("bytes=")?
            .strip_suffix('-')?
            .parse()
            .ok()
    }

    /// The path without its query.
    pub fn route(&self) -> &str {
        self.path.split('?').next().unwrap_or("")
    }

    /// The value of `name` in the query string (not decoded).
    pub fn query(&self, name: &str) -> Option<&str> {
        let q = self.path.split_once('?')?.1;
        q.split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v)
    }
}

/// What the server answers.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    chunks: Option<Vec<usize>>,
    no_length: bool,
    cut_after: Option<usize>,
}

impl Reply {
    pub fn new(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: Vec::new(),
            chunks: None,
            no_length: false,
            cut_after: None,
        }
    }

    pub fn body(mut self, body: Vec<u8>) -> Reply {
        self.body = body;
        self
    }

    pub fn json(self, value: &serde_json::Value) -> Reply {
        self.header("Content-Type", "application/json")
            .body(serde_json::to_vec(value).unwrap())
    }

    pub fn header(mut self, k: &str, v: &str) -> Reply {
        self.headers.push((k.to_owned(), v.to_owned()));
        self
    }

    /// Sends the body with chunked transfer coding, in chunks of these sizes (the rest of
    /// the body in one last chunk).
    pub fn chunked(mut self, sizes: &[usize]) -> Reply {
        self.chunks = Some(sizes.to_vec());
        self
    }

    /// Sends no `Content-Length`: the body ends when the connection closes.
    pub fn no_length(mut self) -> Reply {
        self.no_length = true;
        self
    }

    /// Closes the connection after `n` bytes of the (encoded) body.
    pub fn cut_after(mut self, n: usize) -> Reply {
        self.cut_after = Some(n);
        self
    }

    fn encode(&self) -> (Vec<u8>, Vec<u8>) {
        let mut head = format!("HTTP/1.1 {} Test\r\nConnection: close\r\n", self.status);
        for (k, v) in &self.headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        let body = match &self.chunks {
            Some(sizes) => {
                head.push_str("Transfer-Encoding: chunked\r\n");
                let mut out = Vec::new();
                let mut rest = &self.body[..];
                let mut sizes = sizes.iter();
                while !rest.is_empty() {
                    let n = sizes.next().copied().unwrap_or(rest.len()).min(rest.len());
                    out.extend_from_slice(format!("{n:x}\r\n").as_bytes());
                    out.extend_from_slice(&rest[..n]);
                    out.extend_from_slice(b"\r\n");
                    rest = &rest[n..];
                }
                out.extend_from_slice(b"0\r\n\r\n");
                out
            }
            None => {
                if !self.no_length {
                    head.push_str(&format!("Content-Length: {}\r\n", self.body.len()));
                }
                self.body.clone()
            }
        };
        head.push_str("\r\n");
        (head.into_bytes(), body)
    }
}

/// Answers a GET of `data` as the netdeploy server does: 200 with everything, 206 from the
/// offset of `Range: bytes=N-`, 416 when N is at or past the end.
pub fn range_reply(req: &Request, data: &[u8]) -> Reply {
    match req.range_from() {
        None => Reply::new(200).body(data.to_vec()),
        Some(n) if n as usize >= data.len() => {
            Reply::new(416).header("Content-Range", &format!("bytes */{}", data.len()))
        }
        Some(n) => Reply::new(206)
            .header(
                "Content-Range",
                &format!("bytes {}-{}/{}", n, data.len() - 1, data.len()),
            )
            .body(data[n as usize..].to_vec()),
    }
}

type Handler = dyn Fn(&Request) -> Reply + Send + Sync;

/// The server; stops accepting when dropped.
pub struct FakeServer {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<Request>>>,
    stop: Arc<AtomicBool>,
}

impl FakeServer {
    pub fn start(handler: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let handler: Arc<Handler> = Arc::new(handler);
        let (reqs, stopped) = (requests.clone(), stop.clone());
        thread::spawn(move || {
            for conn in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (handler, reqs) = (handler.clone(), reqs.clone());
                thread::spawn(move || serve(conn, &*handler, &reqs));
            }
        });
        FakeServer {
            addr,
            requests,
            stop,
        }
    }

    /// `http://127.0.0.1:PORT` followed by `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Every request so far, in order of arrival.
    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

fn serve(conn: TcpStream, handler: &Handler, reqs: &Mutex<Vec<Request>>) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_owned();
    let path = parts.next().unwrap_or("").to_owned();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 {
            return;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    let mut req = Request {
        method,
        path,
        headers,
        body: Vec::new(),
    };
    let len: usize = req
        .header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    req.body = vec![0; len];
    if reader.read_exact(&mut req.body).is_err() {
        return;
    }
    reqs.lock().unwrap().push(req.clone());
    let reply = handler(&req);
    let (head, body) = reply.encode();
    let mut conn = conn;
    let body = match reply.cut_after {
        Some(n) => &body[..n.min(body.len())],
        None => &body[..],
    };
    if conn.write_all(&head).is_ok() {
        let _ = conn.write_all(body);
    }
    let _ = conn.flush();
    let _ = conn.shutdown(Shutdown::Both);
}
