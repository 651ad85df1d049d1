//! Status messages to the server (SPEC section 8): `POST {server}/agent/status` with one JSON
//! object per event, and optionally one JSON line per event in a local file. Reporting never
//! stops a task sequence: a failure is printed and the sequence goes on.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::console::say;
use crate::http::{Client, Url};

/// One status message; absent fields are left out of the JSON.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusMessage {
    /// `started`, `step`, `succeeded`, `failed` or `no-deployment`.
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<String>,
    /// The step's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// 0-based position of the step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_index: Option<usize>,
    /// `true` on `step` messages: the step succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ok: Option<bool>,
    /// The file a failure is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Exit code of a failed command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<i32>,
}

/// Where messages go, and the identity every message carries.
pub struct Reporter {
    client: Client,
    url: Option<Url>,
    file: Option<PathBuf>,
    mac: Option<String>,
    uuid: Option<String>,
    deployment: Option<String>,
}

impl Reporter {
    /// Posts to `{server}/agent/status` when there is a server, appends to `file` when given.
    pub fn new(
        server: Option<&Url>,
        file: Option<PathBuf>,
        mac: Option<String>,
        uuid: Option<String>,
    ) -> Reporter {
        Reporter {
            // Short timeouts: a status message must not hold up the task sequence for long.
            client: Client {
                connect_timeout: Duration::from_secs(5),
                io_timeout: Duration::from_secs(10),
            },
            url: server.and_then(|s| s.join("/agent/status").ok()),
            file,
            mac,
            uuid,
            deployment: None,
        }
    }

    /// The deployment named in every later message.
    pub fn set_deployment(&mut self, id: &str) {
        self.deployment = Some(id.to_owned());
    }

    /// Sends `msg` after filling in the identity and deployment.
    pub fn send(&self, mut msg: StatusMessage) {
        msg.mac = msg.mac.or_else(|| self.mac.clone());
        msg.uuid = msg.uuid.or_else(|| self.uuid.clone());
        msg.deployment = msg.deployment.or_else(|| self.deployment.clone());
        let json = match serde_json::to_vec(&msg) {
            Ok(j) => j,
            Err(e) => {
                say(format!("cannot encode the status message: {e}"));
                return;
            }
        };
        if let Some(path) = &self.file {
            let r = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .and_then(|mut f| f.write_all(&[&json[..], b"\n"].concat()));
            if let Err(e) = r {
                say(format!(
                    "cannot append the {} status message to {}: {e}",
                    msg.kind,
                    path.display()
                ));
            }
        }
        if let Some(url) = &self.url {
            if let Err(e) = self.post(url, &json) {
                say(format!(
                    "could not report the {} status message to {url}: {e} (going on)",
                    msg.kind
                ));
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
            match self.client.post_json(url, json) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake_server::{FakeServer, Reply};

    #[test]
    fn absent_fields_are_left_out() {
        let m = StatusMessage {
            kind: "step".into(),
            step: Some("hello".into()),
            step_index: Some(1),
            ok: Some(true),
            ..StatusMessage::default()
        };
        assert_eq!(
            serde_json::to_string(&m).unwrap(),
            r#"{"kind":"step","step":"hello","step_index":1,"ok":true}"#
        );
    }

    #[test]
    fn posts_with_identity_and_appends_json_lines() {
        let srv = FakeServer::start(|_| Reply::new(204));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("status.jsonl");
        let mut r = Reporter::new(
            Some(&Url::parse(&srv.url("")).unwrap()),
            Some(file.clone()),
            Some("52:54:00:00:00:01".into()),
            None,
        );
        r.send(StatusMessage {
            kind: "no-deployment".into(),
            reason: Some("rule 8".into()),
            ..StatusMessage::default()
        });
        r.set_deployment("LAB00001");
        r.send(StatusMessage {
            kind: "started".into(),
            ..StatusMessage::default()
        });
        let reqs = srv.requests();
        assert_eq!(reqs.len(), 2);
        assert_eq!(reqs[0].path, "/agent/status");
        let second: StatusMessage = serde_json::from_slice(&reqs[1].body).unwrap();
        assert_eq!(second.deployment.as_deref(), Some("LAB00001"));
        assert_eq!(second.mac.as_deref(), Some("52:54:00:00:00:01"));
        let lines = std::fs::read_to_string(&file).unwrap();
        let kinds: Vec<String> = lines
            .lines()
            .map(|l| serde_json::from_str::<StatusMessage>(l).unwrap().kind)
            .collect();
        assert_eq!(kinds, ["no-deployment", "started"]);
    }

    #[test]
    fn a_dead_server_does_not_stop_reporting() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = Url::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
        drop(listener);
        let r = Reporter::new(Some(&url), None, None, None);
        r.send(StatusMessage {
            kind: "started".into(),
            ..StatusMessage::default()
        });
    }
}
