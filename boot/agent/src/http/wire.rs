//! HTTP/1.1 message syntax (RFC 9112): request bytes, the response head, `Content-Range` and
//! chunk-size lines. Values in, values out; the socket is in the parent module.

use super::HttpError;

/// Status line and header fields of a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub status: u16,
    pub headers: Vec<(String, String)>,
}

impl Head {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// How the body is delimited (RFC 9112 section 6.3), for a response to a GET or POST.
    pub fn framing(&self) -> Result<Framing, HttpError> {
        if self.status / 100 == 1 || self.status == 204 || self.status == 304 {
            return Ok(Framing::Empty);
        }
        if let Some(te) = self.header("transfer-encoding") {
            let last = te.rsplit(',').next().unwrap_or("").trim();
            return if last.eq_ignore_ascii_case("chunked") {
                Ok(Framing::Chunked)
            } else {
                Err(HttpError::Malformed(format!(
                    "unsupported Transfer-Encoding {te:?}"
                )))
            };
        }
        match self.header("content-length") {
            Some(v) => v
                .trim()
                .parse::<u64>()
                .map(Framing::Length)
                .map_err(|_| HttpError::Malformed(format!("bad Content-Length {v:?}"))),
            None => Ok(Framing::UntilClose),
        }
    }
}

/// How a response body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Empty,
    Length(u64),
    Chunked,
    UntilClose,
}

/// Parses the status line and header lines (without the empty line that ends them).
pub fn parse_head(text: &str) -> Result<Head, HttpError> {
    let mut lines = text.split("\r\n").flat_map(|l| l.split('\n'));
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/1.") {
        return Err(HttpError::Malformed(format!(
            "not an HTTP/1.x status line: {status_line:?}"
        )));
    }
    let status = parts
        .next()
        .and_then(|s| s.parse::<u16>().ok())
        .filter(|s| (100..600).contains(s))
        .ok_or_else(|| HttpError::Malformed(format!("bad status line {status_line:?}")))?;
    let mut headers = Vec::new();
    for line in lines {
        if line.is_empty() {
            continue;
        }
        let (k, v) = line
            .split_once(':')
            .ok_or_else(|| HttpError::Malformed(format!("bad header line {line:?}")))?;
        headers.push((k.trim().to_owned(), v.trim().to_owned()));
    }
    Ok(Head { status, headers })
}

/// A `Content-Range: bytes START-END/TOTAL` value (RFC 9110 section 14.4); TOTAL may be `*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContentRange {
    pub start: u64,
    pub end: u64,
    pub total: Option<u64>,
}

/// Parses a `Content-Range` of a 206 response; `None` when it is not a byte range.
pub fn parse_content_range(v: &str) -> Option<ContentRange> {
    let rest = v.trim().strip_prefix("bytes")?.trim_start();
    let (range, total) = rest.split_once('/')?;
    let (start, end) = range.split_once('-')?;
    let start = start.trim().parse().ok()?;
    let end = end.trim().parse().ok()?;
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    (start <= end).then_some(ContentRange { start, end, total })
}

/// The size in a chunk-size line (hex, optional `;extensions`).
pub fn parse_chunk_size(line: &str) -> Option<u64> {
    let hex = line.split(';').next()?.trim();
    if hex.is_empty() || hex.len() > 15 {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

/// The bytes of a request. `Connection: close`: one request per connection keeps the client
/// simple, and the agent makes few requests.
pub fn request(
    method: &str,
    authority: &str,
    path: &str,
    extra: &[(&str, String)],
    body: &[u8],
) -> Vec<u8> {
    let mut out = format!(
        "{method} {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: netdeploy-agent/{}\r\n\
         Accept-Encoding: identity\r\nConnection: close\r\n",
        env!("CARGO_PKG_VERSION")
    );
    for (k, v) in extra {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    if method == "POST" || method == "PUT" {
        out.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_head() {
        let h = parse_head("HTTP/1.1 206 Partial Content\r\nContent-Length: 10\r\ncontent-range: bytes 5-14/15\r\n")
            .unwrap();
        assert_eq!(h.status, 206);
        assert_eq!(h.header("Content-Range"), Some("bytes 5-14/15"));
        assert_eq!(h.framing().unwrap(), Framing::Length(10));
        let h = parse_head("HTTP/1.0 200 OK").unwrap();
        assert_eq!(h.framing().unwrap(), Framing::UntilClose);
        let h = parse_head("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3")
            .unwrap();
        assert_eq!(h.framing().unwrap(), Framing::Chunked);
        let h = parse_head("HTTP/1.1 204 No Content\r\n").unwrap();
        assert_eq!(h.framing().unwrap(), Framing::Empty);
    }

    #[test]
    fn refuses_malformed_heads() {
        assert!(parse_head("SSH-2.0-OpenSSH").is_err());
        assert!(parse_head("HTTP/1.1 abc OK").is_err());
        assert!(parse_head("HTTP/1.1 200 OK\r\nno colon here").is_err());
        let h = parse_head("HTTP/1.1 200 OK\r\nContent-Length: -1").unwrap();
        assert!(h.framing().is_err());
        let h = parse_head("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip").unwrap();
        assert!(h.framing().is_err());
    }

    #[test]
    fn parses_content_ranges() {
        assert_eq!(
            parse_content_range("bytes 100-199/200"),
            Some(ContentRange {
                start: 100,
                end: 199,
                total: Some(200)
            })
        );
        assert_eq!(parse_content_range("bytes 0-0/*").unwrap().total, None);
        assert_eq!(parse_content_range("bytes */200"), None);
        assert_eq!(parse_content_range("items 1-2/3"), None);
        assert_eq!(parse_content_range("bytes 5-4/10"), None);
    }

    #[test]
    fn parses_chunk_sizes() {
        assert_eq!(parse_chunk_size("1a"), Some(26));
        assert_eq!(parse_chunk_size("FF;name=value"), Some(255));
        assert_eq!(parse_chunk_size("0"), Some(0));
        assert_eq!(parse_chunk_size(""), None);
        assert_eq!(parse_chunk_size("xyz"), None);
        assert_eq!(parse_chunk_size("1000000000000000"), None);
    }

    #[test]
    fn builds_requests() {
        let r = request(
            "GET",
            "10.0.0.1:8080",
            "/content/ab",
            &[("Range", "bytes=10-".into())],
            b"",
        );
        let r = String::from_utf8(r).unwrap();
        assert!(r.starts_with("GET /content/ab HTTP/1.1\r\nHost: 10.0.0.1:8080\r\n"));
        assert!(r.contains("\r\nRange: bytes=10-\r\n"));
        assert!(!r.contains("Content-Length"));
        assert!(r.ends_with("\r\n\r\n"));
        let r = request("POST", "h:1", "/s", &[], b"{}");
        let r = String::from_utf8(r).unwrap();
        assert!(r.contains("Content-Length: 2\r\n"));
        assert!(r.ends_with("\r\n\r\n{}"));
    }
}
