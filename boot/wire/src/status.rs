//! Status messages (`POST /agent/status`): one JSON object per event of a run, from the agent
//! to the server, or one JSON line per event on a full media that kept them.

use serde::{Deserialize, Serialize};

use crate::{Mac, SmbiosUuid};

closed_set! {
    /// What happened.
    pub enum StatusKind {
        /// The deployment started.
        Started = "started",
        /// A step ended (`ok`).
        Step = "step",
        /// A `reboot` step in the middle of the sequence (`step_index`) restarts the machine;
        /// the run continues at the next step.
        Rebooting = "rebooting",
        /// Every step succeeded.
        Succeeded = "succeeded",
        /// The run failed (`step`, `file`, `reason`, `code` say where and why).
        Failed = "failed",
        /// Nothing is deployed to the machine (`reason`).
        NoDeployment = "no-deployment",
    }
}

/// One status message; absent fields are left out of the JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusMessage {
    pub kind: StatusKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<Mac>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uuid: Option<SmbiosUuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<String>,
    /// The step's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// 0-based position of the step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_index: Option<usize>,
    /// On `step` messages: the step succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ok: Option<bool>,
    /// The file a failure is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// Why a run failed; on an `ok` step, how it was done when it says (the path an image
    /// took: `path multicast: 12 chunks by multicast, 0 over HTTP`, docs/multicast.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Exit code of a failed command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<i32>,
    /// When it was sent, Unix seconds by the machine's clock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<i64>,
}

impl StatusMessage {
    /// A message of `kind` with nothing else set.
    pub fn new(kind: StatusKind) -> StatusMessage {
        StatusMessage {
            kind,
            mac: None,
            uuid: None,
            deployment: None,
            step: None,
            step_index: None,
            ok: None,
            file: None,
            reason: None,
            code: None,
            at: None,
        }
    }

    /// The JSON the agent sends.
    pub fn to_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_fields_are_left_out_and_kinds_keep_their_spelling() {
        let m = StatusMessage {
            step: Some("hello".into()),
            step_index: Some(1),
            ok: Some(true),
            mac: Some(Mac([0x52, 0x54, 0, 0, 0, 1])),
            ..StatusMessage::new(StatusKind::Step)
        };
        assert_eq!(
            String::from_utf8(m.to_json().unwrap()).unwrap(),
            r#"{"kind":"step","mac":"52:54:00:00:00:01","step":"hello","step_index":1,"ok":true}"#
        );
        let m: StatusMessage = serde_json::from_str(r#"{"kind":"no-deployment"}"#).unwrap();
        assert_eq!(m.kind, StatusKind::NoDeployment);
        let m: StatusMessage = serde_json::from_str(r#"{"kind":"paused"}"#).unwrap();
        assert_eq!(m.kind, StatusKind::Unknown("paused".into()));
    }
}
