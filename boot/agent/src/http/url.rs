//! `http://` and `https://` URLs with an IP address for a host: the boot environment has no
//! DNS, and the server hands out URLs built from the address the machine booted from. An
//! `https://` server is checked against a pinned certificate, not a name (`super::tls`).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// Why a URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("{0:?} is not an http:// or https:// URL")]
    NotHttp(String),
    #[error("{url:?}: the host {host:?} is not an IP address (the boot environment has no DNS)")]
    HostNotIp { url: String, host: String },
    #[error("{0:?} has an invalid port")]
    BadPort(String),
}

/// An `http://` or `https://` URL whose host is an IP address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    https: bool,
    host: IpAddr,
    port: u16,
    /// Path and query, always starting with `/`.
    path: String,
}

impl Url {
    /// Parses `http://HOST[:PORT][/PATH]` or `https://...`; HOST is an IPv4 address, a
    /// bracketed IPv6 address or `localhost`.
    pub fn parse(s: &str) -> Result<Url, UrlError> {
        let s = s.trim();
        let scheme = |name: &str| {
            s.get(..name.len())
                .is_some_and(|p| p.eq_ignore_ascii_case(name))
        };
        let (https, rest) = if scheme("http://") {
            (false, &s[7..])
        } else if scheme("https://") {
            (true, &s[8..])
        } else {
            return Err(UrlError::NotHttp(s.to_owned()));
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let path = if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_owned()
        };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let end = v6
                .find(']')
                .ok_or_else(|| UrlError::NotHttp(s.to_owned()))?;
            (&v6[..end], &v6[end + 1..])
        } else {
            match authority.rfind(':') {
                Some(i) => (&authority[..i], &authority[i..]),
                None => (authority, ""),
            }
        };
        let port = match port {
            "" if https => 443,
            "" => 80,
            p => p
                .strip_prefix(':')
                .and_then(|p| p.parse::<u16>().ok())
                .filter(|p| *p != 0)
                .ok_or_else(|| UrlError::BadPort(s.to_owned()))?,
        };
        let host = if host.eq_ignore_ascii_case("localhost") {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            host.parse::<IpAddr>().map_err(|_| UrlError::HostNotIp {
                url: s.to_owned(),
                host: host.to_owned(),
            })?
        };
        Ok(Url {
            https,
            host,
            port,
            path,
        })
    }

    /// True for an `https://` URL.
    pub fn is_https(&self) -> bool {
        self.https
    }

    /// `reference` resolved against this URL: an absolute `http://` URL as it is, a path
    /// appended to this URL's path (so a server URL with a prefix keeps it).
    pub fn join(&self, reference: &str) -> Result<Url, UrlError> {
        if reference.contains("://") {
            return Url::parse(reference);
        }
        let base = self
            .path
            .split('?')
            .next()
            .unwrap_or("")
            .trim_end_matches('/');
        let rel = reference.trim_start_matches('/');
        Ok(Url {
            https: self.https,
            host: self.host,
            port: self.port,
            path: format!("{base}/{rel}"),
        })
    }

    /// This URL with `query` (already encoded, see [`query`]) as its query string.
    pub fn with_query(&self, query: &str) -> Url {
        let path = self.path.split('?').next().unwrap_or("/");
        Url {
            https: self.https,
            host: self.host,
            port: self.port,
            path: if query.is_empty() {
                path.to_owned()
            } else {
                format!("{path}?{query}")
            },
        }
    }

    /// The address to connect to.
    pub fn socket_addr(&self) -> SocketAddr {
        SocketAddr::new(self.host, self.port)
    }

    /// The value of the `Host` header.
    pub fn authority(&self) -> String {
        match self.host {
            IpAddr::V4(a) => format!("{a}:{}", self.port),
            IpAddr::V6(a) => format!("[{a}]:{}", self.port),
        }
    }

    /// Path and query, as sent in the request line.
    pub fn path(&self) -> &str {
        &self.path
    }
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.https { "https" } else { "http" };
        write!(f, "{scheme}://{}{}", self.authority(), self.path)
    }
}

/// An `application/x-www-form-urlencoded`-style query string; `:` is left as it is so MAC
/// addresses stay readable in the server's logs (RFC 3986 allows it in a query).
pub fn query(pairs: &[(&str, &str)]) -> String {
    let enc = |s: &str| -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b':' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_server_urls() {
        let u = Url::parse("http://10.77.0.1:8080").unwrap();
        assert_eq!(u.socket_addr(), "10.77.0.1:8080".parse().unwrap());
        assert_eq!(u.path(), "/");
        assert_eq!(u.to_string(), "http://10.77.0.1:8080/");
        let u = Url::parse("HTTP://10.0.0.2/base/x?y=1").unwrap();
        assert_eq!(u.authority(), "10.0.0.2:80");
        assert_eq!(u.path(), "/base/x?y=1");
        let u = Url::parse("http://[fd00::1]:81/a").unwrap();
        assert_eq!(u.authority(), "[fd00::1]:81");
        assert_eq!(
            Url::parse("http://localhost:9").unwrap().authority(),
            "127.0.0.1:9"
        );
    }

    #[test]
    fn parses_https_urls_with_their_default_port() {
        let u = Url::parse("HTTPS://10.77.0.1").unwrap();
        assert!(u.is_https());
        assert_eq!(u.authority(), "10.77.0.1:443");
        assert_eq!(u.to_string(), "https://10.77.0.1:443/");
        let policy = Url::parse("https://10.77.0.1:8443")
            .unwrap()
            .join("/agent/policy")
            .unwrap()
            .with_query("mac=1");
        assert!(policy.is_https());
        assert_eq!(
            policy.to_string(),
            "https://10.77.0.1:8443/agent/policy?mac=1"
        );
        assert!(!Url::parse("http://10.77.0.1").unwrap().is_https());
    }

    #[test]
    fn refuses_other_schemes_names_and_bad_ports() {
        assert!(matches!(
            Url::parse("ftp://10.0.0.1"),
            Err(UrlError::NotHttp(_))
        ));
        assert!(matches!(
            Url::parse("http://deploy.example/x"),
            Err(UrlError::HostNotIp { .. })
        ));
        assert!(matches!(
            Url::parse("http://10.0.0.1:0"),
            Err(UrlError::BadPort(_))
        ));
        assert!(matches!(
            Url::parse("http://10.0.0.1:x"),
            Err(UrlError::BadPort(_))
        ));
    }

    #[test]
    fn joins_paths_under_the_server_prefix() {
        let base = Url::parse("http://10.77.0.1:8080/").unwrap();
        assert_eq!(
            base.join("/agent/policy").unwrap().to_string(),
            "http://10.77.0.1:8080/agent/policy"
        );
        let base = Url::parse("http://10.77.0.1:8080/nd").unwrap();
        assert_eq!(
            base.join("agent/status").unwrap().path(),
            "/nd/agent/status"
        );
        assert_eq!(
            base.join("http://10.0.0.9:1/content/ab")
                .unwrap()
                .to_string(),
            "http://10.0.0.9:1/content/ab"
        );
    }

    #[test]
    fn encodes_queries() {
        let q = query(&[("mac", "52:54:00:aa:bb:cc"), ("x", "a b&c")]);
        assert_eq!(q, "mac=52:54:00:aa:bb:cc&x=a%20b%26c");
        let u = Url::parse("http://10.0.0.1/agent/policy?old=1")
            .unwrap()
            .with_query(&q);
        assert_eq!(u.path(), "/agent/policy?mac=52:54:00:aa:bb:cc&x=a%20b%26c");
    }
}
