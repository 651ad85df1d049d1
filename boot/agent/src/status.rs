//! Status messages to the server (docs/status.md): `POST {server}/agent/status` with one JSON
//! object per event, and optionally one JSON line per event in a local file. Reporting never
//! stops a task sequence: a failure is printed and the sequence goes on.
//!
//! A full media may run where no server can be reached (docs/media.md): its messages are
//! also printed on the console, and from the first one the server does not take (or from the
//! start, without a server) they are appended to a fallback file instead.

use std::cell::Cell;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use netdeploy_wire::status::{StatusKind, StatusMessage};
use netdeploy_wire::{Mac, SmbiosUuid};

use crate::console::say;
use crate::http::{self, Client, RunToken, Url};

/// The fallback file of a full media, under the root.
pub const MEDIA_STATUS_FILE: &str = "/var/lib/netdeploy/status.jsonl";

/// Where messages go, and the identity every message carries.
pub struct Reporter {
    client: Client,
    url: Option<Url>,
    /// Every message is appended here (`--status-file`).
    file: Option<PathBuf>,
    /// Messages the server cannot take are appended here.
    fallback: Option<PathBuf>,
    /// Set once posting failed with a fallback: later messages go straight to it.
    offline: Cell<bool>,
    /// Each message is printed on the console too.
    echo: bool,
    mac: Option<Mac>,
    uuid: Option<SmbiosUuid>,
    deployment: Option<String>,
    /// The run token every message presents (docs/agent-http.md).
    token: Option<RunToken>,
}

impl Reporter {
    /// Posts to `{server}/agent/status` when there is a server, appends to `file` when given.
    pub fn new(
        server: Option<&Url>,
        file: Option<PathBuf>,
        mac: Option<Mac>,
        uuid: Option<SmbiosUuid>,
    ) -> Reporter {
        Reporter {
            // Short timeouts: a status message must not hold up the task sequence for long.
            client: Client {
                connect_timeout: Duration::from_secs(5),
                io_timeout: Duration::from_secs(10),
                pin: None,
            },
            url: server.and_then(|s| s.join("/agent/status").ok()),
            file,
            fallback: None,
            offline: Cell::new(false),
            echo: false,
            mac,
            uuid,
            deployment: None,
            token: None,
        }
    }

    /// Posts to an `https://` server only when its certificate has this pin.
    pub fn with_pin(mut self, pin: Option<http::CertPin>) -> Reporter {
        self.client.pin = pin;
        self
    }

    /// The run token messages present, if any.
    pub fn token(&self) -> Option<&RunToken> {
        self.token.as_ref()
    }

    /// `mac=...&uuid=...&deployment=...`: how this run is named in a request's query.
    pub fn run_query(&self) -> String {
        let (mac, uuid) = (
            self.mac.map(|m| m.to_string()),
            self.uuid.map(|u| u.to_string()),
        );
        let mut pairs: Vec<(&str, &str)> = Vec::new();
        if let Some(m) = &mac {
            pairs.push(("mac", m));
        }
        if let Some(u) = &uuid {
            pairs.push(("uuid", u));
        }
        if let Some(d) = &self.deployment {
            pairs.push(("deployment", d));
        }
        http::url::query(&pairs)
    }

    /// The run token every later message presents.
    pub fn set_token(&mut self, token: Option<RunToken>) {
        self.token = token;
    }

    /// Appends the messages the server cannot take to `path`, and prints every message on
    /// the console: how a full media reports.
    pub fn with_fallback(mut self, path: PathBuf) -> Reporter {
        self.fallback = Some(path);
        self.echoing()
    }

    /// Prints every message on the console too.
    pub fn echoing(mut self) -> Reporter {
        self.echo = true;
        self
    }

    /// Where the messages go, for the console.
    pub fn describe(&self) -> String {
        let mut to = Vec::new();
        if let Some(url) = &self.url {
            to.push(format!("posted to {url}"));
        }
        if let Some(f) = &self.file {
            to.push(format!("appended to {}", f.display()));
        }
        let mut text = match to.is_empty() {
            true => "status messages are not sent anywhere".to_owned(),
            false => format!("status messages are {}", to.join(" and ")),
        };
        match (&self.fallback, &self.url) {
            (Some(f), Some(_)) => text.push_str(&format!(
                "; if the server cannot be reached, appended to {}",
                f.display()
            )),
            (Some(f), None) => {
                text = format!(
                    "status messages are appended to {} (no server)",
                    f.display()
                );
                if let Some(file) = &self.file {
                    text.push_str(&format!(" and to {}", file.display()));
                }
            }
            (None, _) => {}
        }
        text
    }

    /// A file name for this machine's messages: its MAC (`52-54-00-12-34-56`), else its
    /// SMBIOS UUID, else `machine`.
    pub fn identity_file_name(&self) -> String {
        match (&self.mac, &self.uuid) {
            (Some(mac), _) => mac.to_string().replace(':', "-"),
            (None, Some(uuid)) => uuid.to_string(),
            (None, None) => "machine".into(),
        }
    }

    /// The deployment named in every later message.
    pub fn set_deployment(&mut self, id: &str) {
        self.deployment = Some(id.to_owned());
    }

    /// Sends `msg` after filling in the identity and deployment.
    pub fn send(&self, mut msg: StatusMessage) {
        msg.mac = msg.mac.or(self.mac);
        msg.uuid = msg.uuid.or(self.uuid);
        msg.deployment = msg.deployment.or_else(|| self.deployment.clone());
        msg.at = msg.at.or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .ok()
                .map(|d| d.as_secs() as i64)
        });
        let json = match msg.to_json() {
            Ok(j) => j,
            Err(e) => {
                say(format!("cannot encode the status message: {e}"));
                return;
            }
        };
        if self.echo {
            say(format!("status {}", String::from_utf8_lossy(&json)));
        }
        if let Some(path) = &self.file {
            append(path, msg.kind.as_str(), &json);
        }
        let posted = match &self.url {
            Some(url) if !self.offline.get() => match self.post(url, &json) {
                Ok(()) => true,
                Err(e) => {
                    say(format!(
                        "could not report the {} status message to {url}: {e} (going on)",
                        msg.kind
                    ));
                    if let Some(f) = &self.fallback {
                        say(format!(
                            "the server cannot take status messages: they are appended to {} \
                             from now on",
                            f.display()
                        ));
                        self.offline.set(true);
                    }
                    false
                }
            },
            _ => false,
        };
        if !posted {
            if let Some(path) = &self.fallback {
                append(path, msg.kind.as_str(), &json);
            }
        }
    }

    /// Two tries, a second apart: a lost message is worse than a short wait.
    fn post(&self, url: &Url, json: &[u8]) -> Result<(), String> {
        let mut last = String::new();
        for attempt in 0..2 {
            if attempt > 0 {
                std::thread::sleep(Duration::from_secs(1));
            }
            match self.client.post_json(url, json, self.token.as_ref()) {
                Ok(r) if (200..300).contains(&r.status()) => return Ok(()),
                // A 4xx will not change on a retry.
                Ok(r) if (400..500).contains(&r.status()) => {
                    return Err(format!("HTTP {}", r.status()))
                }
                Ok(r) => last = format!("HTTP {}", r.status()),
                Err(e) => last = e.to_string(),
            }
        }
        Err(last)
    }
}

/// Opens `path` for appending, creating it and its directory.
pub fn open_append(path: &Path) -> std::io::Result<std::fs::File> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}

/// Appends one JSON line, creating the file and its directory; failures are printed.
fn append(path: &Path, kind: &str, json: &[u8]) {
    let r = open_append(path).and_then(|mut f| f.write_all(&[json, b"\n"].concat()));
    if let Err(e) = r {
        say(format!(
            "cannot append the {kind} status message to {}: {e}",
            path.display()
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake_server::{FakeServer, Reply};

    #[test]
    fn posts_with_identity_and_appends_json_lines() {
        let srv = FakeServer::start(|_| Reply::new(204));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("status.jsonl");
        let mut r = Reporter::new(
            Some(&Url::parse(&srv.url("")).unwrap()),
            Some(file.clone()),
            "52:54:00:00:00:01".parse().ok(),
            None,
        );
        r.send(StatusMessage {
            reason: Some("rule 8".into()),
            ..StatusMessage::new(StatusKind::NoDeployment)
        });
        r.set_deployment("LAB00001");
        r.send(StatusMessage::new(StatusKind::Started));
        let reqs = srv.requests();
        assert_eq!(reqs.len(), 2);
        assert_eq!(reqs[0].path, "/agent/status");
        let second: StatusMessage = serde_json::from_slice(&reqs[1].body).unwrap();
        assert_eq!(second.deployment.as_deref(), Some("LAB00001"));
        assert_eq!(
            second.mac.map(|m| m.to_string()).as_deref(),
            Some("52:54:00:00:00:01")
        );
        let lines = std::fs::read_to_string(&file).unwrap();
        let kinds: Vec<StatusKind> = lines
            .lines()
            .map(|l| serde_json::from_str::<StatusMessage>(l).unwrap().kind)
            .collect();
        assert_eq!(kinds, [StatusKind::NoDeployment, StatusKind::Started]);
    }

    fn kinds(path: &Path) -> Vec<StatusKind> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str::<StatusMessage>(l).unwrap().kind)
            .collect()
    }

    fn msg(kind: StatusKind) -> StatusMessage {
        StatusMessage::new(kind)
    }

    #[test]
    fn without_a_server_the_fallback_file_gets_every_message() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("var/lib/netdeploy/status.jsonl");
        let r = Reporter::new(None, None, None, None).with_fallback(file.clone());
        assert_eq!(
            r.describe(),
            format!(
                "status messages are appended to {} (no server)",
                file.display()
            )
        );
        r.send(msg(StatusKind::Started));
        r.send(msg(StatusKind::Succeeded));
        assert_eq!(kinds(&file), [StatusKind::Started, StatusKind::Succeeded]);
    }

    #[test]
    fn a_reachable_server_gets_the_messages_and_the_fallback_file_none() {
        let srv = FakeServer::start(|_| Reply::new(204));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("status.jsonl");
        let url = Url::parse(&srv.url("")).unwrap();
        let r = Reporter::new(Some(&url), None, None, None).with_fallback(file.clone());
        assert_eq!(
            r.describe(),
            format!(
                "status messages are posted to {}agent/status; if the server cannot be \
                 reached, appended to {}",
                srv.url("/"),
                file.display()
            )
        );
        r.send(msg(StatusKind::Started));
        assert_eq!(srv.requests().len(), 1);
        assert!(!file.exists());
    }

    #[test]
    fn an_unreachable_server_is_left_for_the_fallback_file_after_the_first_failure() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = Url::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
        drop(listener);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("status.jsonl");
        let r = Reporter::new(Some(&url), None, None, None).with_fallback(file.clone());
        r.send(msg(StatusKind::Started));
        let t = std::time::Instant::now();
        r.send(msg(StatusKind::Step));
        assert!(t.elapsed() < Duration::from_millis(500), "no second try");
        assert_eq!(kinds(&file), [StatusKind::Started, StatusKind::Step]);
    }

    #[test]
    fn a_status_file_flag_gets_every_message_besides_the_server() {
        let dir = tempfile::tempdir().unwrap();
        let (file, fallback) = (dir.path().join("all"), dir.path().join("fallback"));
        let r = Reporter::new(None, Some(file.clone()), None, None).with_fallback(fallback.clone());
        assert_eq!(
            r.describe(),
            format!(
                "status messages are appended to {} (no server) and to {}",
                fallback.display(),
                file.display()
            )
        );
        let r = Reporter::new(None, Some(file.clone()), None, None);
        assert_eq!(
            r.describe(),
            format!("status messages are appended to {}", file.display())
        );
        r.send(msg(StatusKind::Started));
        assert_eq!(kinds(&file), [StatusKind::Started]);
        assert!(!fallback.exists());
    }

    #[test]
    fn a_dead_server_does_not_stop_reporting() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = Url::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
        drop(listener);
        let r = Reporter::new(Some(&url), None, None, None);
        r.send(StatusMessage::new(StatusKind::Started));
    }
}
