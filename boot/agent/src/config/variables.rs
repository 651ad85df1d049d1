//! The media variables file: `KEY=VALUE` lines written by the media builder (SPEC section 7),
//! with the Configuration Manager names `SMSTSServerURL`, `SMSTSMediaType`,
//! `SMSTSPreferredAdvertID` and `SMSTSMediaPassword`. Names are case-insensitive, as task
//! sequence variables are.

/// A line that is not `KEY=VALUE`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: expected KEY=VALUE, found {text:?}")]
pub struct LineError {
    pub line: usize,
    pub text: String,
}

/// The variables, in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Variables {
    entries: Vec<(String, String)>,
}

/// What a boot media holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaType {
    /// Boot image plus variables: the policy comes from the server.
    BootMedia,
    /// Also the task sequence and its content: runs with no server.
    FullMedia,
}

impl MediaType {
    /// `BootMedia` or `FullMedia`, in any case.
    pub fn parse(s: &str) -> Option<MediaType> {
        match s.to_ascii_lowercase().as_str() {
            "bootmedia" => Some(MediaType::BootMedia),
            "fullmedia" => Some(MediaType::FullMedia),
            _ => None,
        }
    }
}

/// Parses the file. Blank lines, lines starting with `#` or `;` and INI section headers
/// (`[netdeploy]`, which the media builder writes first) are skipped, a UTF-8 byte order mark
/// and CR LF line ends (files written on Windows) are accepted, and a value in double quotes
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
        let v = v.trim();
        let v = v
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(v);
        entries.push((k.trim().to_owned(), v.to_owned()));
    }
    Ok(Variables { entries })
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

    pub fn server_url(&self) -> Option<&str> {
        self.get("SMSTSServerURL")
    }

    pub fn media_type(&self) -> Option<&str> {
        self.get("SMSTSMediaType")
    }

    pub fn preferred_advert_id(&self) -> Option<&str> {
        self.get("SMSTSPreferredAdvertID")
    }

    /// The stored media password hash, `sha256$<salt hex>$<hash hex>`.
    pub fn media_password(&self) -> Option<&str> {
        self.get("SMSTSMediaPassword")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_media_variables() {
        let v = parse(
            "\u{feff}# written by netdeploy-media\r\nSMSTSServerURL=http://10.77.0.1:8080\r\n\
             smstsmediatype = BootMedia\r\n\r\nSMSTSPreferredAdvertID=\"LAB00002\"\r\n; old\r\n",
        )
        .unwrap();
        assert_eq!(v.server_url(), Some("http://10.77.0.1:8080"));
        assert_eq!(v.media_type(), Some("BootMedia"));
        assert_eq!(v.preferred_advert_id(), Some("LAB00002"));
        assert_eq!(MediaType::parse("BootMedia"), Some(MediaType::BootMedia));
        assert_eq!(MediaType::parse("FULLMEDIA"), Some(MediaType::FullMedia));
        assert_eq!(MediaType::parse("Stick"), None);
    }

    #[test]
    fn reads_the_file_the_media_builder_writes() {
        let salt = "00112233445566778899aabbccddeeff";
        let hash = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
        let text = format!(
            "[netdeploy]\r\nSMSTSServerURL=http://10.77.0.1:8080\r\nSMSTSMediaType=FullMedia\r\n\
             SMSTSPreferredAdvertID=LAB00002\r\nSMSTSMediaPassword=sha256${salt}${hash}\r\n"
        );
        let v = parse(&text).unwrap();
        assert_eq!(v.server_url(), Some("http://10.77.0.1:8080"));
        assert_eq!(v.media_type(), Some("FullMedia"));
        assert_eq!(v.preferred_advert_id(), Some("LAB00002"));
        assert_eq!(
            v.media_password(),
            Some(format!("sha256${salt}${hash}").as_str())
        );
        assert_eq!(v.get("netdeploy"), None);
        let bad = parse("[netdeploy\r\n").unwrap_err();
        assert_eq!(bad.line, 1);
    }

    #[test]
    fn empty_values_count_as_absent_and_the_last_one_wins() {
        let v = parse("SMSTSPreferredAdvertID=\nA=1\na=2\nB=x=y").unwrap();
        assert_eq!(v.preferred_advert_id(), None);
        assert_eq!(v.get("A"), Some("2"));
        assert_eq!(v.get("b"), Some("x=y"));
    }

    #[test]
    fn a_line_without_a_key_names_its_number() {
        assert_eq!(
            parse("A=1\nnonsense\n"),
            Err(LineError {
                line: 2,
                text: "nonsense".into()
            })
        );
        assert_eq!(parse("=1").unwrap_err().line, 1);
    }
}
