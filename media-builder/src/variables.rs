//! The media variables file, `/netdeploy/variables` on the media: the same `[netdeploy]`
//! INI layout the server injects into Windows PE, read by the agent at boot.

use sha2::{Digest, Sha256};

/// What the media carries (SPEC section 7): the boot image only, or the task sequence too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaType {
    BootMedia,
    FullMedia,
}

impl MediaType {
    pub fn as_str(self) -> &'static str {
        match self {
            MediaType::BootMedia => "BootMedia",
            MediaType::FullMedia => "FullMedia",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variables {
    pub server_url: String,
    pub media_type: MediaType,
    /// Set for unattended media: the deployment to run without asking.
    pub preferred_advert_id: Option<String>,
    /// `sha256$<salt hex>$<hash hex>`; the clear password is never stored.
    pub password_hash: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VariablesError {
    #[error("{field} must not contain a line break or be empty")]
    BadValue { field: &'static str },
}

/// `sha256$<salt>$<SHA-256(salt || password)>`, both in lower-case hex.
pub fn hash_password(password: &str, salt: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(password.as_bytes());
    format!("sha256${}${}", hex(salt), hex(&h.finalize()))
}

/// Checks a password against a `sha256$salt$hash` string.
pub fn verify_password(password: &str, stored: &str) -> bool {
    let mut parts = stored.split('$');
    let (Some("sha256"), Some(salt), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let Some(salt) = unhex(salt) else {
        return false;
    };
    hash_password(password, &salt) == stored
}

/// A salt that is a function of the build inputs, so the media stays reproducible while two
/// media with different settings do not share a salt.
pub fn derived_salt(password: &str, server_url: &str, source_date_epoch: i64) -> [u8; 16] {
    let mut h = Sha256::new();
    h.update(b"netdeploy-media password salt\0");
    h.update(server_url.as_bytes());
    h.update([0]);
    h.update(source_date_epoch.to_le_bytes());
    h.update(Sha256::digest(password.as_bytes()));
    let mut s = [0u8; 16];
    s.copy_from_slice(&h.finalize()[..16]);
    s
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

fn check(field: &'static str, v: &str) -> Result<(), VariablesError> {
    if v.is_empty() || v.contains(['\r', '\n']) {
        return Err(VariablesError::BadValue { field });
    }
    Ok(())
}

impl Variables {
    /// The file's text, CRLF line ends like the Windows PE variables file.
    pub fn render(&self) -> Result<String, VariablesError> {
        let mut s = String::from("[netdeploy]\r\n");
        // Full media run with no server; a server URL there is where status goes when reachable.
        if !(self.server_url.is_empty() && self.media_type == MediaType::FullMedia) {
            check("server URL", &self.server_url)?;
            s += &format!("SMSTSServerURL={}\r\n", self.server_url);
        }
        s += &format!("SMSTSMediaType={}\r\n", self.media_type.as_str());
        if let Some(id) = &self.preferred_advert_id {
            check("preferred deployment", id)?;
            s += &format!("SMSTSPreferredAdvertID={id}\r\n");
        }
        if let Some(h) = &self.password_hash {
            check("password hash", h)?;
            s += &format!("SMSTSMediaPassword={h}\r\n");
        }
        Ok(s)
    }

    /// Parses a rendered file back (the agent's side of the contract).
    pub fn parse(text: &str) -> Option<Variables> {
        let mut v = Variables {
            server_url: String::new(),
            media_type: MediaType::BootMedia,
            preferred_advert_id: None,
            password_hash: None,
        };
        for line in text.lines() {
            let Some((k, val)) = line.trim_end_matches('\r').split_once('=') else {
                continue;
            };
            match k {
                "SMSTSServerURL" => v.server_url = val.to_string(),
                "SMSTSMediaType" => {
                    v.media_type = match val {
                        "FullMedia" => MediaType::FullMedia,
                        _ => MediaType::BootMedia,
                    }
                }
                "SMSTSPreferredAdvertID" => v.preferred_advert_id = Some(val.to_string()),
                "SMSTSMediaPassword" => v.password_hash = Some(val.to_string()),
                _ => {}
            }
        }
        (!v.server_url.is_empty() || v.media_type == MediaType::FullMedia).then_some(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unattended_media_round_trips_through_the_file() {
        let v = Variables {
            server_url: "http://10.0.0.1:8080".into(),
            media_type: MediaType::BootMedia,
            preferred_advert_id: Some("7".into()),
            password_hash: Some(hash_password("pw", b"salt")),
        };
        let text = v.render().unwrap();
        assert!(
            text.starts_with("[netdeploy]\r\nSMSTSServerURL=http://10.0.0.1:8080\r\n"),
            "{text}"
        );
        assert!(text.contains("SMSTSMediaType=BootMedia\r\n"));
        assert!(text.contains("SMSTSPreferredAdvertID=7\r\n"));
        assert!(!text.contains("=pw\r\n"));
        assert_eq!(Variables::parse(&text).unwrap(), v);
    }

    #[test]
    fn attended_media_has_no_preferred_advert_id() {
        let v = Variables {
            server_url: "http://s".into(),
            media_type: MediaType::FullMedia,
            preferred_advert_id: None,
            password_hash: None,
        };
        let text = v.render().unwrap();
        assert!(!text.contains("SMSTSPreferredAdvertID"));
        assert!(text.contains("SMSTSMediaType=FullMedia"));
    }

    #[test]
    fn password_hash_is_salted_sha256_and_verifies() {
        let h = hash_password("secret", &[0xAB, 0xCD]);
        let parts: Vec<&str> = h.split('$').collect();
        assert_eq!(parts[0], "sha256");
        assert_eq!(parts[1], "abcd");
        assert_eq!(parts[2].len(), 64);
        assert!(verify_password("secret", &h));
        assert!(!verify_password("Secret", &h));
        assert_ne!(h, hash_password("secret", &[0xAB, 0xCE]));
    }

    #[test]
    fn full_media_need_no_server() {
        let v = Variables {
            server_url: String::new(),
            media_type: MediaType::FullMedia,
            preferred_advert_id: None,
            password_hash: None,
        };
        let text = v.render().unwrap();
        assert_eq!(text, "[netdeploy]\r\nSMSTSMediaType=FullMedia\r\n");
        assert_eq!(Variables::parse(&text).unwrap(), v);
        let boot = Variables {
            media_type: MediaType::BootMedia,
            ..v
        };
        assert!(boot.render().is_err());
    }

    #[test]
    fn line_breaks_in_values_are_refused() {
        let v = Variables {
            server_url: "http://s\nSMSTSMediaType=FullMedia".into(),
            media_type: MediaType::BootMedia,
            preferred_advert_id: None,
            password_hash: None,
        };
        assert_eq!(
            v.render(),
            Err(VariablesError::BadValue {
                field: "server URL"
            })
        );
    }
}
