//! Where every command finds the server's configuration and data: `--config`, then
//! `NETDEPLOY_CONFIG`, then /etc/netdeploy/netdeploy.toml, as `serve` does. The data directory
//! is `--data-dir` when given, else the configuration's `server.data_dir`, else the default.
//!
//! Only `serve`, `check` and `wake` need the served interfaces to exist; every other command
//! reads just the data directory from the file, so it works outside the server's network
//! namespace too. A command that reads the catalog refuses a data directory that holds none,
//! naming the path it looked at, rather than answering from an empty catalog.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;

use netdeploy::config::{Config, StorageConfig, DEFAULT_CONFIG_PATH, DEFAULT_DATA_DIR};
use netdeploy::store::Store;

/// The catalog's file inside the data directory.
const CATALOG_FILE: &str = "netdeploy.db";

/// The command-line options that locate the configuration and the data directory.
#[derive(Debug, Args, Clone)]
pub struct Locate {
    /// The configuration file (TOML), as the server uses it. Without it, NETDEPLOY_CONFIG,
    /// then /etc/netdeploy/netdeploy.toml when it exists. `netdeploy config-example` prints one.
    #[arg(
        long,
        short = 'c',
        env = "NETDEPLOY_CONFIG",
        global = true,
        visible_alias = "server-config"
    )]
    pub config: Option<PathBuf>,
    /// The data directory (catalog and content); overrides the configuration's
    /// `server.data_dir`. Default: /var/lib/netdeploy.
    #[arg(long, env = "NETDEPLOY_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,
}

/// Where a value came from, for messages that tell the user what was looked at.
#[derive(Debug, Clone)]
pub enum Source {
    Flag,
    Config(PathBuf),
    Default,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Flag => write!(f, "from --data-dir / NETDEPLOY_DATA_DIR"),
            Source::Config(p) => write!(f, "server.data_dir of {}", p.display()),
            Source::Default => write!(
                f,
                "the default; no --config, NETDEPLOY_CONFIG or {DEFAULT_CONFIG_PATH}"
            ),
        }
    }
}

impl Locate {
    /// The configuration file to use: the one named, else the default path when it exists.
    pub fn config_path(&self) -> Option<PathBuf> {
        self.config.clone().or_else(|| {
            let default = PathBuf::from(DEFAULT_CONFIG_PATH);
            default.is_file().then_some(default)
        })
    }

    /// The configuration for `serve` and `check`, which cannot run without one.
    pub fn server_config(&self) -> anyhow::Result<(PathBuf, Config)> {
        let Some(path) = self.config_path() else {
            anyhow::bail!(
                "no configuration: give --config FILE, set NETDEPLOY_CONFIG, or create \
                 {DEFAULT_CONFIG_PATH} (`netdeploy config-example` prints an annotated one)"
            );
        };
        let mut config = Config::load(&path)?;
        if let Some(d) = &self.data_dir {
            config.data_dir = d.clone();
        }
        Ok((path, config))
    }

    /// The data directory for the catalog commands. `may_create`: the command creates objects,
    /// so a data directory with no catalog yet gets a new one (and says so on stderr).
    pub fn resolve(&self, may_create: bool) -> anyhow::Result<DataDir> {
        let config_path = self.config_path();
        let storage = config_path
            .as_deref()
            .map(StorageConfig::load)
            .transpose()?;
        let store_url = storage.as_ref().and_then(|s| s.store_url.clone());
        let (data_dir, source) = match (&self.data_dir, storage, &config_path) {
            (Some(d), _, _) => (d.clone(), Source::Flag),
            (None, Some(s), Some(p)) => (s.data_dir, Source::Config(p.clone())),
            _ => (PathBuf::from(DEFAULT_DATA_DIR), Source::Default),
        };
        Ok(DataDir {
            data_dir,
            source,
            may_create,
            config_path,
            store_url,
        })
    }
}

/// Where the database and content library are, and how that was decided.
#[derive(Debug, Clone)]
pub struct DataDir {
    pub data_dir: PathBuf,
    pub source: Source,
    /// Whether the command may start a new catalog when the directory holds none.
    pub may_create: bool,
    /// The configuration file found, if any (for `wake` and wake-on-LAN on create).
    pub config_path: Option<PathBuf>,
    /// Its `[store] url`: the catalog is then in that PostgreSQL database.
    pub store_url: Option<String>,
}

impl DataDir {
    /// Opens the catalog. A command that only reads is refused when there is no catalog, so a
    /// wrong path never looks like an empty lab.
    pub fn open(&self) -> anyhow::Result<Store> {
        if let Some(url) = &self.store_url {
            return Ok(Store::open_url(url)?);
        }
        let db = self.data_dir.join(CATALOG_FILE);
        if !db.exists() {
            if !self.may_create {
                anyhow::bail!(
                    "no catalog at {} (data directory {}, {}); apply a site file first, or \
                     point --config or --data-dir at the server's data directory",
                    db.display(),
                    self.data_dir.display(),
                    self.source
                );
            }
            std::fs::create_dir_all(&self.data_dir)
                .with_context(|| format!("cannot create {}", self.data_dir.display()))?;
            eprintln!(
                "netdeploy: new catalog at {} ({})",
                db.display(),
                self.source
            );
        }
        Ok(Store::open(&db)?)
    }

    /// The server's whole configuration, served interfaces included (for wake-on-LAN).
    /// `None` when no configuration file was found.
    pub fn full_config(&self) -> anyhow::Result<Option<Config>> {
        self.config_path
            .as_deref()
            .map(Config::load)
            .transpose()
            .map_err(Into::into)
    }
}
