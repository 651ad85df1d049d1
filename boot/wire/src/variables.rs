//! The media variables file, `/netdeploy/variables` on a boot medium: `KEY=VALUE` lines under
//! a `[netdeploy]` header, with the Configuration Manager names below. The media builder
//! writes it with [`MediaVariables::render`]; the agent reads it with [`parse`]. Both follow
//! the same key rules: names are case-insensitive, a value is one line, and an empty value
//! counts as absent, so the writer refuses what the reader would read differently.

use std::fmt;

/// Where the agent asks for its policy and sends status.
pub const SERVER_URL: &str = "SMSTSServerURL";
/// `BootMedia` or `FullMedia`.
pub const MEDIA_TYPE: &str = "SMSTSMediaType";
/// The deployment to run without asking.
pub const PREFERRED_ADVERT_ID: &str = "SMSTSPreferredAdvertID";
/// The media password hash ([`crate::password`]).
pub const MEDIA_PASSWORD: &str = "SMSTSMediaPassword";
/// The medium's own credential ([`crate::run_token::MediumKey`]).
pub const MEDIUM_KEY: &str = "NetdeployMediumKey";
/// The MAC the PXE script saw: in Windows PE's `netdeploy.ini`, as `netdeploy.mac` on a
/// Linux kernel command line.
pub const MAC: &str = "NetdeployMAC";
/// The run token the PXE script was given: in Windows PE's `netdeploy.ini`, as
/// `netdeploy.token` on a Linux kernel command line.
pub const RUN_TOKEN: &str = "NetdeployRunToken";
/// The pin of the server's HTTPS certificate ([`crate::cert_pin::CertPin`]).
pub const SERVER_PIN: &str = "NetdeployServerPin";

/// What a boot medium holds, or `PXE` for the variables file a PXE boot of Windows PE gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaType {
    /// No medium: Windows PE booted over the network, its `netdeploy.ini` injected by the
    /// iPXE script (Configuration Manager's `SMSTSMediaType=PXE`).
    Pxe,
    /// Boot image plus variables: the policy comes from the server.
    BootMedia,
    /// Also the task sequence and its content: runs with no server.
    FullMedia,
}

impl MediaType {
    pub fn as_str(self) -> &'static str {
        match self {
            MediaType::Pxe => "PXE",
            MediaType::BootMedia => "BootMedia",
            MediaType::FullMedia => "FullMedia",
        }
    }

    /// `PXE`, `BootMedia` or `FullMedia`, in any case.
    pub fn parse(s: &str) -> Option<MediaType> {
        match s.to_ascii_lowercase().as_str() {
            "pxe" => Some(MediaType::Pxe),
            "bootmedia" => Some(MediaType::BootMedia),
            "fullmedia" => Some(MediaType::FullMedia),
            _ => None,
        }
    }
}

impl fmt::Display for MediaType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A line that is not `KEY=VALUE`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: expected KEY=VALUE, found {text:?}")]
pub struct LineError {
    pub line: usize,
    pub text: String,
}

/// The variables as read, in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Variables {
    entries: Vec<(String, String)>,
}

/// Parses the file. Blank lines, lines starting with `#` or `;` and INI section headers are
/// skipped, a UTF-8 byte order mark and CR LF line ends (files written on Windows) are
/// accepted, white space around keys and values is dropped, and a value in double quotes
/// loses them.
pub fn parse(text: &str) -> Result<Variables, LineError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut entries = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') || is_section(line) {
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .filter(|(k, _)| !k.trim().is_empty())
            .ok_or_else(|| LineError {
                line: i + 1,
                text: raw.to_owned(),
            })?;
        entries.push((k.trim().to_owned(), unquote(v.trim()).to_owned()));
    }
    Ok(Variables { entries })
}

fn unquote(v: &str) -> &str {
    v.strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(v)
}

/// `[name]`: one section is all the file has, so its name does not matter.
fn is_section(line: &str) -> bool {
    line.starts_with('[') && line.ends_with(']') && !line.contains('=')
}

impl Variables {
    /// The value of `key` (case-insensitive; the last one wins), `None` when absent or empty.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .rev()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }
}

/// What the media builder writes, and the server for a PXE boot of Windows PE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaVariables {
    /// Required on boot media; on full media, where status goes when the server is reachable.
    pub server_url: Option<String>,
    pub media_type: MediaType,
    /// Set for unattended media: the deployment to run without asking.
    pub preferred_advert_id: Option<String>,
    /// The password hash; the clear password is never stored.
    pub media_password: Option<String>,
    /// The medium's key, `<id>.<secret>` (docs/security.md).
    pub medium_key: Option<String>,
    /// PXE only: the MAC the iPXE script saw.
    pub mac: Option<String>,
    /// PXE only: the run token the iPXE script was given.
    pub run_token: Option<String>,
    /// The pin of the server's HTTPS certificate (docs/security.md).
    pub server_pin: Option<crate::cert_pin::CertPin>,
}

/// A value the reader would not read back as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VariablesError {
    #[error("{key} must be one line, not empty, without surrounding spaces or double quotes")]
    BadValue { key: &'static str },
    #[error("boot media need {SERVER_URL}: they ask the server for the policy")]
    NoServer,
    #[error("{key} is {value:?}, expected PXE, BootMedia or FullMedia")]
    MediaType { key: &'static str, value: String },
    #[error("{key}: {reason}")]
    Pin { key: &'static str, reason: String },
    #[error(transparent)]
    Line(#[from] LineError),
}

impl MediaVariables {
    /// The file's text, CR LF line ends like the Windows PE variables file.
    pub fn render(&self) -> Result<String, VariablesError> {
        if self.server_url.is_none() && self.media_type != MediaType::FullMedia {
            return Err(VariablesError::NoServer);
        }
        let mut s = String::from("[netdeploy]\r\n");
        let mut line = |key: &'static str, value: &str| {
            if value.is_empty()
                || value.contains(['\r', '\n'])
                || value.trim() != value
                || unquote(value) != value
            {
                return Err(VariablesError::BadValue { key });
            }
            s += &format!("{key}={value}\r\n");
            Ok(())
        };
        if let Some(url) = &self.server_url {
            line(SERVER_URL, url)?;
        }
        line(MEDIA_TYPE, self.media_type.as_str())?;
        if let Some(id) = &self.preferred_advert_id {
            line(PREFERRED_ADVERT_ID, id)?;
        }
        if let Some(h) = &self.media_password {
            line(MEDIA_PASSWORD, h)?;
        }
        if let Some(k) = &self.medium_key {
            line(MEDIUM_KEY, k)?;
        }
        if let Some(m) = &self.mac {
            line(MAC, m)?;
        }
        if let Some(t) = &self.run_token {
            line(RUN_TOKEN, t)?;
        }
        if let Some(p) = &self.server_pin {
            line(SERVER_PIN, &p.to_string())?;
        }
        Ok(s)
    }

    /// Reads what [`MediaVariables::render`] wrote (or a person edited): `BootMedia` when the
    /// type is absent.
    pub fn read(text: &str) -> Result<MediaVariables, VariablesError> {
        let v = parse(text)?;
        let media_type = match v.get(MEDIA_TYPE) {
            None => MediaType::BootMedia,
            Some(t) => MediaType::parse(t).ok_or_else(|| VariablesError::MediaType {
                key: MEDIA_TYPE,
                value: t.to_owned(),
            })?,
        };
        let owned = |k| v.get(k).map(str::to_owned);
        Ok(MediaVariables {
            server_url: owned(SERVER_URL),
            media_type,
            preferred_advert_id: owned(PREFERRED_ADVERT_ID),
            media_password: owned(MEDIA_PASSWORD),
            medium_key: owned(MEDIUM_KEY),
            mac: owned(MAC),
            run_token: owned(RUN_TOKEN),
            server_pin: v
                .get(SERVER_PIN)
                .map(|p| {
                    p.parse().map_err(|reason| VariablesError::Pin {
                        key: SERVER_PIN,
                        reason,
                    })
                })
                .transpose()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reads_what_people_write_too() {
        let v = parse(
            "\u{feff}# written by hand\r\nSMSTSServerURL=http://10.77.0.1:8080\r\n\
             smstsmediatype = BootMedia\r\n\r\nSMSTSPreferredAdvertID=\"LAB00002\"\r\n; old\r\n\
             [netdeploy]\r\nA=1\na=\nB=x=y\n",
        )
        .unwrap();
        assert_eq!(v.get(SERVER_URL), Some("http://10.77.0.1:8080"));
        assert_eq!(v.get("SMSTSMEDIATYPE"), Some("BootMedia"));
        assert_eq!(v.get(PREFERRED_ADVERT_ID), Some("LAB00002"));
        assert_eq!(v.get("A"), None, "the last one wins, and empty is absent");
        assert_eq!(v.get("b"), Some("x=y"));
        assert_eq!(
            parse("A=1\nnonsense\n"),
            Err(LineError {
                line: 2,
                text: "nonsense".into()
            })
        );
        assert_eq!(parse("=1").unwrap_err().line, 1);
    }

    #[test]
    fn full_media_need_no_server_and_boot_media_do() {
        let v = MediaVariables {
            server_url: None,
            media_type: MediaType::FullMedia,
            preferred_advert_id: None,
            media_password: None,
            medium_key: None,
            mac: None,
            run_token: None,
            server_pin: None,
        };
        let text = v.render().unwrap();
        assert_eq!(text, "[netdeploy]\r\nSMSTSMediaType=FullMedia\r\n");
        assert_eq!(MediaVariables::read(&text).unwrap(), v);
        let boot = MediaVariables {
            media_type: MediaType::BootMedia,
            ..v
        };
        assert_eq!(boot.render(), Err(VariablesError::NoServer));
    }

    #[test]
    fn values_the_reader_would_change_are_refused() {
        for bad in ["", "a\nSMSTSMediaType=FullMedia", " a", "\"a\"", "a\r"] {
            let v = MediaVariables {
                server_url: Some("http://s".into()),
                media_type: MediaType::BootMedia,
                preferred_advert_id: Some(bad.into()),
                media_password: None,
                medium_key: None,
                mac: None,
                run_token: None,
                server_pin: None,
            };
            assert_eq!(
                v.render(),
                Err(VariablesError::BadValue {
                    key: PREFERRED_ADVERT_ID
                }),
                "{bad:?}"
            );
        }
    }

    proptest! {
        #[test]
        fn what_is_written_reads_back(
            url in proptest::option::of("[a-z]{1,8}://[!-~]{1,30}"),
            full in any::<bool>(),
            id in proptest::option::of("[!-~]([ -~]{0,20}[!-~])?"),
            pw in proptest::option::of("[!-~]{1,60}"),
            key in proptest::option::of("[0-9a-f]{8}\\.[0-9a-f]{64}"),
            pin in proptest::option::of(proptest::array::uniform32(any::<u8>())),
        ) {
            let v = MediaVariables {
                server_url: url,
                media_type: if full { MediaType::FullMedia } else { MediaType::BootMedia },
                preferred_advert_id: id,
                media_password: pw,
                medium_key: key,
                mac: None,
                run_token: None,
                server_pin: pin.map(crate::cert_pin::CertPin::from_digest),
            };
            if let Ok(text) = v.render() {
                prop_assert_eq!(MediaVariables::read(&text).unwrap(), v);
            }
        }
    }
}
