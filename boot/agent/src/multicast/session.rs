//! The task sequence's side of multicast (docs/multicast.md): before an `apply_image` of a
//! netdeploy image in a deployment with `multicast = true`, the agent asks the server which
//! session sends that image (`GET /agent/multicast`, with the run token), and the step's
//! status says which path the image took.

use std::net::{IpAddr, Ipv4Addr, UdpSocket};

use netdeploy_wire::policy::MulticastSession;

use super::{MulticastOptions, Received};
use crate::http::{url, Client, RunToken, Url};

/// A refusal's text is shown on the console and in the status: a few lines at most.
const MAX_ANSWER: usize = 16 * 1024;

/// Where to ask for sessions: the server the policy came from, with the run's token.
#[derive(Clone)]
pub struct SessionServer {
    pub client: Client,
    pub server: Url,
    pub token: Option<RunToken>,
    /// Who asks, as every run request says it (`mac=...&uuid=...&deployment=...`,
    /// `Reporter::run_query`); the token is checked against it.
    pub query: String,
}

impl SessionServer {
    /// The session that sends `file` of `package`, as the server answers
    /// `GET /agent/multicast?mac=...&uuid=...&deployment=...&package=ID&file=PATH`; the error says why there is none (the
    /// server's refusal, or why it could not be asked), for `path http: ...`.
    pub fn ask(&self, package: &str, file: &str) -> Result<MulticastSession, String> {
        let u = self
            .server
            .join("/agent/multicast")
            .map_err(|e| format!("cannot ask for a multicast session: {e}"))?
            .with_query(&self.query_for(package, file));
        let auth = self.token.as_ref().map(RunToken::authorization);
        let resp = self
            .client
            .get_authorized(&u, auth.as_deref())
            .map_err(|e| format!("cannot ask {u} for a multicast session: {e}"))?;
        let status = resp.status();
        let body = resp
            .read_body(MAX_ANSWER)
            .map_err(|e| format!("no answer from {u} for a multicast session: {e}"))?;
        if status != 200 {
            return Err(format!(
                "the server refused a multicast session ({status}): {}",
                refusal(&body)
            ));
        }
        serde_json::from_slice(&body)
            .map_err(|e| format!("the server's multicast session does not parse: {e}"))
    }

    fn query_for(&self, package: &str, file: &str) -> String {
        let asked = url::query(&[("package", package), ("file", file)]);
        if self.query.is_empty() {
            asked
        } else {
            format!("{}&{asked}", self.query)
        }
    }

    /// The address of the interface this machine reaches the server through: the group is
    /// joined there, not on whatever the routing table picks for 239/8 (the boot
    /// environment may have no default route). Unspecified when it cannot be told.
    pub fn interface(&self) -> Ipv4Addr {
        let probe = || -> std::io::Result<IpAddr> {
            // A UDP "connection" sends nothing; it only makes the kernel choose a source.
            let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
            s.connect(self.server.socket_addr())?;
            Ok(s.local_addr()?.ip())
        };
        match probe() {
            Ok(IpAddr::V4(a)) => a,
            _ => Ipv4Addr::UNSPECIFIED,
        }
    }
}

/// Why the server refused: its `{"error": "..."}`, or the body as text.
fn refusal(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_owned())
}

/// The options of an apply from `session`: its group, and the receiver id the server gave
/// this machine, joined on `interface`.
pub fn options(session: &MulticastSession, interface: Ipv4Addr) -> MulticastOptions {
    MulticastOptions {
        interface,
        receiver: Some(session.receiver),
        ..MulticastOptions::new(session.group)
    }
}

/// The path an image took, as the step's status says it: `path multicast: 12 chunks by
/// multicast, 0 over HTTP`; when multicast brought only part or nothing, the rest came over
/// HTTP and the reason follows.
pub fn path_note(r: &Received, o: &MulticastOptions) -> String {
    match (&r.fallback, r.multicast) {
        (None, m) => format!(
            "path multicast: {m} chunks by multicast, {} over HTTP",
            r.http
        ),
        (Some(f), 0) => format!("path http: {} chunks over HTTP ({})", r.http, f.describe(o)),
        (Some(f), m) => format!(
            "path multicast+http: {m} chunks by multicast, {} over HTTP ({})",
            r.http,
            f.describe(o)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake_server::{FakeServer, Reply};
    use crate::multicast::Fallback;

    fn server(srv: &FakeServer, token: Option<RunToken>) -> SessionServer {
        SessionServer {
            client: Client::default(),
            server: Url::parse(&srv.url("/")).unwrap(),
            token,
            query: "mac=52:54:00:00:00:07&deployment=LAB00002".into(),
        }
    }

    #[test]
    fn a_session_is_asked_for_by_package_and_file_with_the_run_token() {
        let srv = FakeServer::start(|_| {
            Reply::new(200).json(&serde_json::json!({
                "session": 77, "group": "239.255.77.9:7409", "receiver": 4,
                "index_sha256": "ab".repeat(32),
            }))
        });
        let token = RunToken::from_bytes([0x5a; 32]);
        let s = server(&srv, Some(token.clone()))
            .ask("LAB00002", "img/image.ndimg")
            .unwrap();
        assert_eq!((s.session, s.receiver), (77, 4));
        assert_eq!(s.group.to_string(), "239.255.77.9:7409");
        let o = options(&s, Ipv4Addr::new(10, 0, 0, 5));
        assert_eq!(o.receiver, Some(4));
        assert_eq!(o.group, s.group);
        assert_eq!(o.interface, Ipv4Addr::new(10, 0, 0, 5));
        let reqs = srv.requests();
        assert_eq!(reqs.len(), 1);
        assert_eq!(reqs[0].route(), "/agent/multicast");
        assert_eq!(reqs[0].query("mac"), Some("52:54:00:00:00:07"));
        assert_eq!(reqs[0].query("deployment"), Some("LAB00002"));
        assert_eq!(reqs[0].query("package"), Some("LAB00002"));
        assert_eq!(reqs[0].query("file"), Some("img%2Fimage.ndimg"));
        assert_eq!(
            reqs[0].header("authorization"),
            Some(token.authorization().as_str())
        );
    }

    #[test]
    fn a_refusal_or_an_answer_that_does_not_parse_says_why() {
        let srv = FakeServer::start(|req| {
            if req.query("file") == Some("a.ndimg") {
                Reply::new(409).body(b"multicast is off on this server\n".to_vec())
            } else if req.query("file") == Some("c.ndimg") {
                Reply::new(403).json(&serde_json::json!({
                    "error": "deployment LAB00001 does not allow multicast"
                }))
            } else {
                Reply::new(200).body(b"{\"session\":1}".to_vec())
            }
        });
        let s = server(&srv, None);
        let why = s.ask("P", "a.ndimg").unwrap_err();
        assert_eq!(
            why,
            "the server refused a multicast session (409): multicast is off on this server"
        );
        let why = s.ask("P", "c.ndimg").unwrap_err();
        assert_eq!(
            why,
            "the server refused a multicast session (403): deployment LAB00001 does not allow multicast"
        );
        let why = s.ask("P", "b.ndimg").unwrap_err();
        assert!(why.contains("does not parse"), "{why}");
        assert_eq!(srv.requests()[0].header("authorization"), None);
        // Nobody listening: an error, never a hang or a panic.
        drop(srv);
    }

    #[test]
    fn the_interface_is_the_one_that_reaches_the_server() {
        let s = SessionServer {
            client: Client::default(),
            server: Url::parse("http://127.0.0.1:9").unwrap(),
            token: None,
            query: String::new(),
        };
        assert_eq!(s.interface(), Ipv4Addr::LOCALHOST);
    }

    #[test]
    fn the_path_note_says_how_many_chunks_came_which_way_and_why() {
        let o = MulticastOptions::new("239.255.77.1:7400".parse().unwrap());
        let r = |multicast, http, fallback| Received {
            chunks: multicast + http,
            multicast,
            http,
            rejected: 0,
            fallback,
            zeroed: 0,
        };
        assert_eq!(
            path_note(&r(12, 0, None), &o),
            "path multicast: 12 chunks by multicast, 0 over HTTP"
        );
        assert_eq!(
            path_note(&r(0, 12, Some(Fallback::NoSession)), &o),
            "path http: 12 chunks over HTTP (no multicast session of this image on 239.255.77.1:7400 within 5 s)"
        );
        assert_eq!(
            path_note(&r(9, 3, Some(Fallback::Told)), &o),
            "path multicast+http: 9 chunks by multicast, 3 over HTTP (the server said to continue over HTTP)"
        );
    }
}
