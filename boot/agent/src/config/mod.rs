//! Where the agent's configuration comes from, in this order: the flags, the kernel command
//! line, the media variables file. [`cmdline`] and [`variables`] only parse; [`resolve`]
//! decides, naming the field a bad value came from; [`load`] reads the files.

pub mod cmdline;
pub mod variables;

use std::io;
use std::path::{Path, PathBuf};

pub use cmdline::Cmdline;
pub use variables::{MediaType, Variables};
use variables::{
    MAC, MEDIA_PASSWORD, MEDIA_TYPE, MEDIUM_KEY, PREFERRED_ADVERT_ID, RUN_TOKEN, SERVER_PIN,
    SERVER_URL,
};

use crate::cli::RunFlags;
use crate::http::{Url, UrlError};
use crate::media_password::{self, MediaPassword};
use netdeploy_wire::cert_pin::CertPin;
use netdeploy_wire::run_token::{MediumKey, RunToken};

/// The media variables file when nothing names another one.
pub use crate::platform::DEFAULT_VARIABLES;

/// The boot context sent to the server (docs/selection-rules.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    Pxe,
    Media,
}

impl Context {
    pub fn as_str(self) -> &'static str {
        match self {
            Context::Pxe => "pxe",
            Context::Media => "media",
        }
    }

    fn parse(s: &str) -> Option<Context> {
        match s {
            "pxe" => Some(Context::Pxe),
            "media" => Some(Context::Media),
            _ => None,
        }
    }
}

/// Why the configuration is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("{path}: {source}")]
    VariablesLine {
        path: PathBuf,
        source: variables::LineError,
    },
    #[error("{field}: {source}")]
    Url { field: String, source: UrlError },
    #[error("{field}: {value:?} is not pxe or media")]
    Context { field: String, value: String },
    #[error("{field}: {value:?} is not a number of seconds")]
    MenuTimeout { field: String, value: String },
    #[error("{field}: {value:?} is not BootMedia or FullMedia")]
    MediaType { field: String, value: String },
    #[error("netdeploy.token: {0}")]
    Token(String),
    #[error("{field}: {reason}")]
    RunToken { field: String, reason: String },
    #[error("{field}: {reason}")]
    Pin { field: String, reason: String },
    #[error(
        "{field}: {url} is https:// but no certificate pin was given (netdeploy.pin=sha256:... \
         on the kernel command line, {SERVER_PIN} in the media variables, or --pin): the \
         agent trusts no certificate without one"
    )]
    NoPin { field: String, url: String },
    #[error("{field}: {reason}")]
    MediumKey { field: String, reason: String },
    #[error("{field}: {source}")]
    MediaPassword {
        field: String,
        source: media_password::FormatError,
    },
}

/// The resolved configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `None` only for full media, which needs no server.
    pub server: Option<Url>,
    /// The pin of the server's HTTPS certificate (docs/security.md); set whenever `server` is
    /// `https://`.
    pub pin: Option<CertPin>,
    /// The deployment to ask for: the one the PXE script started, or the media's preferred one.
    pub deployment: Option<String>,
    pub context: Context,
    /// The MAC the PXE script saw (`netdeploy.mac`, or `NetdeployMAC` in Windows PE's
    /// variables file), which beats guessing the boot NIC.
    pub mac: Option<String>,
    pub media_type: Option<MediaType>,
    /// The directory of the variables file: the media's `netdeploy` directory, which holds
    /// a full media's policy and content.
    pub media_dir: Option<PathBuf>,
    /// The run token the PXE script gave this run (`netdeploy.token`, or `NetdeployRunToken`
    /// in Windows PE's variables file); a boot medium gets one with its policy.
    pub token: Option<RunToken>,
    /// The boot medium's key (`NetdeployMediumKey`), presented while there is no run token.
    pub medium_key: Option<MediumKey>,
    /// How long a menu waits for a choice (`netdeploy.menu_timeout`).
    pub menu_timeout: std::time::Duration,
    /// `SMSTSMediaPassword`: asked for before anything else happens.
    pub media_password: Option<MediaPassword>,
    /// Prefix of /proc, /sys, /etc and /var paths: `/` except in tests.
    pub root: PathBuf,
    pub status_file: Option<PathBuf>,
    /// Where the settings came from, for the console.
    pub sources: Vec<String>,
}

impl Config {
    /// True when `--root` points elsewhere than `/`: a test, in which the machine must not
    /// be powered off.
    pub fn is_test_root(&self) -> bool {
        self.root != Path::new("/")
    }

    /// `path` (absolute, as on the booted system) under the root.
    pub fn under_root(&self, path: &str) -> PathBuf {
        under(&self.root, path)
    }
}

fn under(root: &Path, path: &str) -> PathBuf {
    if root == Path::new("/") {
        PathBuf::from(path)
    } else {
        root.join(path.trim_start_matches('/'))
    }
}

/// Decides the configuration from its three sources; `vars` is the variables file and its
/// path when one was read.
pub fn resolve(
    flags: &RunFlags,
    cmd: &Cmdline,
    vars: Option<(&Path, &Variables)>,
) -> Result<Config, ConfigError> {
    let root = flags.root.clone().unwrap_or_else(|| PathBuf::from("/"));
    let vars_name = |key: &str| match vars {
        Some((p, _)) => format!("{key} in {}", p.display()),
        None => key.to_owned(),
    };
    let var = |key: &str| vars.and_then(|(_, v)| v.get(key)).map(str::to_owned);
    let mut sources = Vec::new();

    let server_from = [
        (flags.server.clone(), "--server".to_owned()),
        (cmd.server.clone(), "netdeploy.server".to_owned()),
        (var(SERVER_URL), vars_name(SERVER_URL)),
    ]
    .into_iter()
    .find_map(|(v, field)| v.map(|v| (v, field)));
    let server = match &server_from {
        Some((v, field)) => {
            sources.push(format!("server from {field}"));
            Some(Url::parse(v).map_err(|source| ConfigError::Url {
                field: field.clone(),
                source,
            })?)
        }
        None => None,
    };

    let pin = [
        (flags.pin.clone(), "--pin".to_owned()),
        (cmd.pin.clone(), "netdeploy.pin".to_owned()),
        (var(SERVER_PIN), vars_name(SERVER_PIN)),
    ]
    .into_iter()
    .find_map(|(v, field)| v.map(|v| (v, field)));
    let pin = match pin {
        Some((v, field)) => {
            sources.push(format!("certificate pin from {field}"));
            Some(
                v.parse::<CertPin>()
                    .map_err(|reason| ConfigError::Pin { field, reason })?,
            )
        }
        None => None,
    };
    if let (Some(url), None, Some((_, field))) = (&server, &pin, &server_from) {
        if url.is_https() {
            return Err(ConfigError::NoPin {
                field: field.clone(),
                url: url.to_string(),
            });
        }
    }

    let media_type = match var(MEDIA_TYPE) {
        Some(v) => Some(MediaType::parse(&v).ok_or_else(|| ConfigError::MediaType {
            field: vars_name(MEDIA_TYPE),
            value: v,
        })?),
        None => None,
    };

    let media_password = match var(MEDIA_PASSWORD) {
        Some(v) => Some(
            MediaPassword::parse(&v).map_err(|source| ConfigError::MediaPassword {
                field: vars_name(MEDIA_PASSWORD),
                source,
            })?,
        ),
        None => None,
    };

    // Rule 3: the PXE script names the deployment it started; media name a preferred one.
    let deployment = [
        (flags.deployment.clone(), "--deployment".to_owned()),
        (cmd.deployment.clone(), "netdeploy.deployment".to_owned()),
        (var(PREFERRED_ADVERT_ID), vars_name(PREFERRED_ADVERT_ID)),
    ]
    .into_iter()
    .find_map(|(v, field)| v.map(|v| (v, field)));
    if let Some((_, field)) = &deployment {
        sources.push(format!("deployment from {field}"));
    }

    let context = match (&flags.context, &cmd.context) {
        (Some(v), _) => Context::parse(v).ok_or_else(|| ConfigError::Context {
            field: "--context".into(),
            value: v.clone(),
        })?,
        (None, Some(v)) => Context::parse(v).ok_or_else(|| ConfigError::Context {
            field: "netdeploy.context".into(),
            value: v.clone(),
        })?,
        (None, None) if cmd.deployment.is_some() => Context::Pxe,
        // Windows PE booted over the network: its variables file says so.
        (None, None) if media_type == Some(MediaType::Pxe) => Context::Pxe,
        (None, None) if media_type.is_some() => Context::Media,
        // A server named on the command line came from a PXE script; one named only in a
        // variables file came from media.
        (None, None) => match server_from.as_ref().map(|(_, f)| f.as_str()) {
            Some(f) if f.starts_with(SERVER_URL) => Context::Media,
            _ => Context::Pxe,
        },
    };

    let menu_timeout = match &cmd.menu_timeout {
        None => crate::menu::DEFAULT_TIMEOUT,
        Some(v) => {
            std::time::Duration::from_secs(v.parse().map_err(|_| ConfigError::MenuTimeout {
                field: "netdeploy.menu_timeout".into(),
                value: v.clone(),
            })?)
        }
    };

    // Linux gets the run token on the kernel command line, Windows PE in its variables file.
    let token = match (&cmd.token, var(RUN_TOKEN)) {
        (Some(t), _) => Some(t.parse().map_err(ConfigError::Token)?),
        (None, Some(t)) => Some(t.parse().map_err(|reason| ConfigError::RunToken {
            field: vars_name(RUN_TOKEN),
            reason,
        })?),
        (None, None) => None,
    };

    let medium_key = match var(MEDIUM_KEY) {
        Some(v) => Some(v.parse().map_err(|reason| ConfigError::MediumKey {
            field: vars_name(MEDIUM_KEY),
            reason,
        })?),
        None => None,
    };

    Ok(Config {
        server,
        pin,
        token,
        medium_key,
        menu_timeout,
        deployment: deployment.map(|(v, _)| v),
        context,
        mac: cmd.mac.clone().or_else(|| var(MAC)),
        media_type,
        media_dir: vars.and_then(|(p, _)| p.parent()).map(Path::to_owned),
        media_password,
        root,
        status_file: flags.status_file.clone(),
        sources,
    })
}

/// Reads the kernel command line (`--cmdline`, else `/proc/cmdline`) and the variables file
/// (`--vars`, else `netdeploy.vars`, else [`DEFAULT_VARIABLES`] when it exists), then
/// resolves. A variables file that is named but missing is an error.
pub fn load(flags: &RunFlags) -> Result<Config, ConfigError> {
    let root = flags.root.clone().unwrap_or_else(|| PathBuf::from("/"));
    let read = |path: &Path| {
        std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })
    };
    let cmdline_path = flags
        .cmdline
        .clone()
        .unwrap_or_else(|| under(&root, "/proc/cmdline"));
    let cmd = match std::fs::read_to_string(&cmdline_path) {
        Ok(text) => cmdline::parse(&text),
        // Outside Linux (or in a test without one) there is simply no command line.
        Err(e) if e.kind() == io::ErrorKind::NotFound && flags.cmdline.is_none() => {
            Cmdline::default()
        }
        Err(source) => {
            return Err(ConfigError::Read {
                path: cmdline_path,
                source,
            })
        }
    };
    let vars_path = match (&flags.vars, &cmd.vars) {
        (Some(p), _) => Some(p.clone()),
        (None, Some(p)) => Some(under(&root, p)),
        (None, None) => Some(under(&root, DEFAULT_VARIABLES)).filter(|p| p.is_file()),
    };
    let vars = match &vars_path {
        Some(p) => {
            Some(
                variables::parse(&read(p)?).map_err(|source| ConfigError::VariablesLine {
                    path: p.clone(),
                    source,
                })?,
            )
        }
        None => None,
    };
    let vars_ref = vars_path.as_deref().zip(vars.as_ref());
    let mut config = resolve(flags, &cmd, vars_ref)?;
    config
        .sources
        .insert(0, format!("kernel command line {}", cmdline_path.display()));
    if let Some(p) = &vars_path {
        config
            .sources
            .insert(1, format!("variables file {}", p.display()));
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(text: &str) -> Variables {
        variables::parse(text).unwrap()
    }

    #[test]
    fn pxe_takes_everything_from_the_kernel_command_line() {
        let cmd = cmdline::parse(
            "netdeploy.server=http://10.77.0.1:8080 netdeploy.deployment=LAB00001 \
             netdeploy.mac=52:54:00:00:00:01",
        );
        let c = resolve(&RunFlags::default(), &cmd, None).unwrap();
        assert_eq!(
            c.server.as_ref().unwrap().to_string(),
            "http://10.77.0.1:8080/"
        );
        assert_eq!(c.deployment.as_deref(), Some("LAB00001"));
        assert_eq!(c.context, Context::Pxe);
        assert_eq!(c.mac.as_deref(), Some("52:54:00:00:00:01"));
        assert_eq!(c.media_type, None);
        assert_eq!(c.token, None);
        assert!(!c.is_test_root());
        let t = "5a".repeat(32);
        let cmd = cmdline::parse(&format!(
            "netdeploy.server=http://10.77.0.1 netdeploy.token={t}"
        ));
        let c = resolve(&RunFlags::default(), &cmd, None).unwrap();
        assert_eq!(c.token.unwrap().to_string(), t);
        let cmd = cmdline::parse("netdeploy.server=http://10.77.0.1 netdeploy.token=xyz");
        let err = resolve(&RunFlags::default(), &cmd, None).unwrap_err();
        assert!(err.to_string().starts_with("netdeploy.token: "), "{err}");
    }

    #[test]
    fn windows_pe_over_pxe_takes_everything_from_its_netdeploy_ini() {
        let t = "5a".repeat(32);
        let ini = netdeploy_wire::variables::MediaVariables {
            server_url: Some("http://10.77.0.1:8080".into()),
            media_type: MediaType::Pxe,
            preferred_advert_id: Some("LAB00001".into()),
            media_password: None,
            medium_key: None,
            mac: Some("52:54:00:00:00:01".into()),
            run_token: Some(t.clone()),
            server_pin: None,
        }
        .render()
        .unwrap();
        let path = Path::new(r"X:\Windows\System32\netdeploy.ini");
        let v = vars(&ini);
        let c = resolve(&RunFlags::default(), &Cmdline::default(), Some((path, &v))).unwrap();
        assert_eq!(c.context, Context::Pxe);
        assert_eq!(c.media_type, Some(MediaType::Pxe));
        assert_eq!(c.deployment.as_deref(), Some("LAB00001"));
        assert_eq!(c.mac.as_deref(), Some("52:54:00:00:00:01"));
        assert_eq!(c.token.unwrap().to_string(), t);
        assert_eq!(
            c.server.as_ref().unwrap().to_string(),
            "http://10.77.0.1:8080/"
        );
        let bad = vars("SMSTSServerURL=http://10.77.0.1\r\nNetdeployRunToken=xyz\r\n");
        let err = resolve(
            &RunFlags::default(),
            &Cmdline::default(),
            Some((path, &bad)),
        )
        .unwrap_err();
        assert!(
            err.to_string().starts_with("NetdeployRunToken in X:"),
            "{err}"
        );
    }

    #[test]
    fn boot_media_take_the_variables_file() {
        let v = vars(
            "SMSTSServerURL=http://10.77.0.1:8080\nSMSTSMediaType=BootMedia\n\
             SMSTSPreferredAdvertID=LAB00002\n",
        );
        let c = resolve(
            &RunFlags::default(),
            &Cmdline::default(),
            Some((Path::new("/etc/netdeploy/variables"), &v)),
        )
        .unwrap();
        assert_eq!(c.context, Context::Media);
        assert_eq!(c.deployment.as_deref(), Some("LAB00002"));
        assert_eq!(c.media_type, Some(MediaType::BootMedia));
        assert_eq!(c.server.as_ref().unwrap().authority(), "10.77.0.1:8080");
    }

    #[test]
    fn flags_beat_the_command_line_which_beats_the_variables_file() {
        let v = vars("SMSTSServerURL=http://10.0.0.3\nSMSTSPreferredAdvertID=LAB00003");
        let cmd = cmdline::parse("netdeploy.server=http://10.0.0.2 netdeploy.deployment=LAB00002");
        let p = Path::new("/v");
        let c = resolve(&RunFlags::default(), &cmd, Some((p, &v))).unwrap();
        assert_eq!(c.server.as_ref().unwrap().authority(), "10.0.0.2:80");
        assert_eq!(c.deployment.as_deref(), Some("LAB00002"));
        let flags = RunFlags {
            server: Some("http://10.0.0.1".into()),
            deployment: Some("LAB00001".into()),
            context: Some("media".into()),
            root: Some("/tmp/r".into()),
            ..RunFlags::default()
        };
        let c = resolve(&flags, &cmd, Some((p, &v))).unwrap();
        assert_eq!(c.server.as_ref().unwrap().authority(), "10.0.0.1:80");
        assert_eq!(c.deployment.as_deref(), Some("LAB00001"));
        assert_eq!(c.context, Context::Media);
        assert!(c.is_test_root());
        assert_eq!(
            c.under_root("/proc/cmdline"),
            Path::new("/tmp/r/proc/cmdline")
        );
    }

    #[test]
    fn boot_media_read_their_key_and_a_bad_one_names_its_field() {
        let key = format!("0a0b0c0d.{}", "5a".repeat(32));
        let p = Path::new("/netdeploy/variables");
        let v = vars(&format!(
            "SMSTSServerURL=http://10.0.0.3\nSMSTSMediaType=BootMedia\nNetdeployMediumKey={key}"
        ));
        let c = resolve(&RunFlags::default(), &Cmdline::default(), Some((p, &v))).unwrap();
        assert_eq!(c.medium_key.unwrap().to_string(), key);
        let v = vars("SMSTSMediaType=BootMedia\nNetdeployMediumKey=abc");
        let err = resolve(&RunFlags::default(), &Cmdline::default(), Some((p, &v))).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("NetdeployMediumKey in /netdeploy/variables: "),
            "{err}"
        );
    }

    #[test]
    fn an_https_server_needs_a_pin_from_the_command_line_or_the_media() {
        let pin = format!("sha256:{}", "ab".repeat(32));
        let cmd = cmdline::parse(&format!(
            "netdeploy.server=https://10.77.0.1:8443 netdeploy.pin={pin}"
        ));
        let c = resolve(&RunFlags::default(), &cmd, None).unwrap();
        assert!(c.server.unwrap().is_https());
        assert_eq!(c.pin.map(|p| p.to_string()), Some(pin.clone()));

        let cmd = cmdline::parse("netdeploy.server=https://10.77.0.1:8443");
        let err = resolve(&RunFlags::default(), &cmd, None).unwrap_err();
        assert!(matches!(err, ConfigError::NoPin { .. }), "{err}");
        assert!(err.to_string().starts_with("netdeploy.server: "), "{err}");

        let p = Path::new("/netdeploy/variables");
        let v = vars(&format!(
            "SMSTSServerURL=https://10.77.0.1:8443\nNetdeployServerPin={pin}"
        ));
        let c = resolve(&RunFlags::default(), &Cmdline::default(), Some((p, &v))).unwrap();
        assert_eq!(c.pin.map(|p| p.to_string()), Some(pin));

        let v = vars("SMSTSServerURL=https://10.77.0.1:8443\nNetdeployServerPin=sha256:12");
        let err = resolve(&RunFlags::default(), &Cmdline::default(), Some((p, &v))).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("NetdeployServerPin in /netdeploy/variables: "),
            "{err}"
        );
    }

    #[test]
    fn full_media_need_no_server_and_keep_the_media_directory() {
        let v = vars("[netdeploy]\r\nSMSTSMediaType=FullMedia\r\n");
        let c = resolve(
            &RunFlags::default(),
            &Cmdline::default(),
            Some((Path::new("/netdeploy/variables"), &v)),
        )
        .unwrap();
        assert_eq!(c.media_type, Some(MediaType::FullMedia));
        assert_eq!(c.context, Context::Media);
        assert_eq!(c.server, None);
        assert_eq!(c.media_dir.as_deref(), Some(Path::new("/netdeploy")));
        assert_eq!(c.media_password, None);
    }

    #[test]
    fn a_malformed_media_password_is_a_configuration_error_naming_the_field() {
        let p = Path::new("/netdeploy/variables");
        let v = vars("SMSTSMediaType=BootMedia\nSMSTSMediaPassword=sha256$00$abc");
        let err = resolve(&RunFlags::default(), &Cmdline::default(), Some((p, &v))).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("SMSTSMediaPassword in /netdeploy/variables: this medium stores"),
            "{err}"
        );
        assert!(err.to_string().contains("rebuild this medium"), "{err}");
        let phc = netdeploy_wire::password::hash("pw", &[3; 16]).unwrap();
        let v = vars(&format!("SMSTSMediaPassword={phc}"));
        let c = resolve(&RunFlags::default(), &Cmdline::default(), Some((p, &v))).unwrap();
        assert!(c.media_password.is_some());
    }

    #[test]
    fn a_server_named_only_in_the_variables_file_means_media() {
        let v = vars("SMSTSServerURL=http://10.0.0.3");
        let c = resolve(
            &RunFlags::default(),
            &Cmdline::default(),
            Some((Path::new("/v"), &v)),
        )
        .unwrap();
        assert_eq!(c.context, Context::Media);
        let cmd = cmdline::parse("netdeploy.server=http://10.0.0.2 netdeploy.context=media");
        assert_eq!(
            resolve(&RunFlags::default(), &cmd, None).unwrap().context,
            Context::Media
        );
    }

    #[test]
    fn bad_values_name_their_field() {
        let v = vars("SMSTSServerURL=https://deploy.example\nSMSTSMediaType=Floppy");
        let p = Path::new("/media/variables");
        let err = resolve(&RunFlags::default(), &Cmdline::default(), Some((p, &v))).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("SMSTSServerURL in /media/variables: "),
            "{err}"
        );
        let v = vars("SMSTSMediaType=Floppy");
        let err = resolve(&RunFlags::default(), &Cmdline::default(), Some((p, &v))).unwrap_err();
        assert!(err.to_string().contains("SMSTSMediaType"), "{err}");
        let cmd = cmdline::parse("netdeploy.context=client");
        let err = resolve(&RunFlags::default(), &cmd, None).unwrap_err();
        assert!(err.to_string().starts_with("netdeploy.context"), "{err}");
        let cmd = cmdline::parse("netdeploy.server=http://pxe.lab:8080");
        let err = resolve(&RunFlags::default(), &cmd, None).unwrap_err();
        assert!(err.to_string().starts_with("netdeploy.server"), "{err}");
    }

    #[test]
    fn loads_the_files_under_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("proc")).unwrap();
        std::fs::create_dir_all(root.join("etc/netdeploy")).unwrap();
        std::fs::write(root.join("proc/cmdline"), "console=ttyS0 quiet\n").unwrap();
        std::fs::write(
            root.join("etc/netdeploy/variables"),
            "SMSTSServerURL=http://127.0.0.1:9\nSMSTSMediaType=BootMedia\n",
        )
        .unwrap();
        let flags = RunFlags {
            root: Some(root.to_owned()),
            ..RunFlags::default()
        };
        let c = load(&flags).unwrap();
        assert_eq!(c.context, Context::Media);
        assert_eq!(c.server.as_ref().unwrap().authority(), "127.0.0.1:9");

        std::fs::write(
            root.join("proc/cmdline"),
            "netdeploy.vars=/media/vars netdeploy.deployment=LAB00001",
        )
        .unwrap();
        let err = load(&flags).unwrap_err();
        assert!(err.to_string().contains("media/vars"), "{err}");
    }
}
