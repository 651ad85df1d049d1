//! A throwaway PostgreSQL server for tests and benchmarks: Debian's `postgresql` binaries
//! (`initdb`, `postgres`), a cluster in a temporary directory, reachable only through a Unix
//! socket in that directory (no TCP port), run as an unprivileged user when started by root
//! (PostgreSQL refuses to run as root), stopped and removed when dropped.

use std::io;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long the server may take to accept connections.
const START_LIMIT: Duration = Duration::from_secs(60);

/// A running throwaway cluster.
pub struct Cluster {
    dir: PathBuf,
    bin: PathBuf,
    owner: Option<(u32, u32)>,
    server: Child,
    next_db: AtomicU64,
}

impl Cluster {
    /// Makes a cluster (`initdb`) and starts its server.
    pub fn start() -> io::Result<Cluster> {
        let bin = bin_dir()?;
        let dir = std::env::temp_dir().join(format!(
            "netdeploy-pg-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        std::fs::create_dir(&dir)?;
        let owner = unprivileged_user()?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid))?;
        }
        let as_owner = |cmd: &mut Command| {
            if let Some((uid, gid)) = owner {
                cmd.uid(uid).gid(gid);
            }
        };
        let data = dir.join("data");
        let mut initdb = Command::new(bin.join("initdb"));
        initdb
            .args(["-D"])
            .arg(&data)
            .args(["-U", "netdeploy", "--auth=trust", "-E", "UTF8", "--no-sync"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        as_owner(&mut initdb);
        let out = initdb.output()?;
        if !out.status.success() {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(io::Error::other(format!(
                "initdb failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        let server = spawn(&bin, &dir, owner)?;
        let mut cluster = Cluster {
            dir,
            bin,
            owner,
            server,
            next_db: AtomicU64::new(0),
        };
        cluster.wait_ready()?;
        Ok(cluster)
    }

    /// Stops the server as an outage would (fast shutdown: connections are cut); the
    /// databases stay on disk for [`Cluster::restart`].
    pub fn stop(&mut self) {
        stop(&mut self.server);
    }

    /// Starts the stopped server again on the same databases.
    pub fn restart(&mut self) -> io::Result<()> {
        self.server = spawn(&self.bin, &self.dir, self.owner)?;
        self.wait_ready()
    }

    fn wait_ready(&mut self) -> io::Result<()> {
        let started = Instant::now();
        loop {
            if postgres::Config::new()
                .host_path(&self.dir)
                .user("netdeploy")
                .dbname("postgres")
                .connect(postgres::NoTls)
                .is_ok()
            {
                return Ok(());
            }
            if let Some(status) = self.server.try_wait()? {
                return Err(io::Error::other(format!(
                    "postgres exited ({status}): {}",
                    self.log()
                )));
            }
            if started.elapsed() > START_LIMIT {
                return Err(io::Error::other(format!(
                    "postgres did not accept connections within {START_LIMIT:?}: {}",
                    self.log()
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The directory holding the server's socket.
    pub fn socket_dir(&self) -> &Path {
        &self.dir
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.server.id()
    }

    /// A new, empty database; returns its URL (`[store] url`).
    pub fn new_database(&self) -> io::Result<String> {
        let name = format!("netdeploy_{}", self.next_db.fetch_add(1, Ordering::Relaxed));
        let mut admin = postgres::Config::new()
            .host_path(&self.dir)
            .user("netdeploy")
            .dbname("postgres")
            .connect(postgres::NoTls)
            .map_err(io::Error::other)?;
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .map_err(io::Error::other)?;
        Ok(self.url(&name))
    }

    /// The URL of database `name`.
    pub fn url(&self, name: &str) -> String {
        let host: String = self
            .dir
            .to_string_lossy()
            .bytes()
            .map(|b| match b {
                b'/' => "%2F".to_owned(),
                _ => (b as char).to_string(),
            })
            .collect();
        format!("postgresql://netdeploy@{host}/{name}")
    }

    /// What the server logged, for an error message.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        stop(&mut self.server);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Starts `postgres` on the cluster in `dir`, its socket there, no TCP.
fn spawn(bin: &Path, dir: &Path, owner: Option<(u32, u32)>) -> io::Result<Child> {
    let mut postgres = Command::new(bin.join("postgres"));
    postgres
        .arg("-D")
        .arg(dir.join("data"))
        .arg("-k")
        .arg(dir)
        .args(["-c", "listen_addresses=", "-c", "fsync=off"])
        .args(["-c", "max_connections=200"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join("server.log"))?,
        );
    if let Some((uid, gid)) = owner {
        postgres.uid(uid).gid(gid);
    }
    postgres.spawn()
}

/// SIGINT, PostgreSQL's fast shutdown (clients are disconnected), then SIGKILL after 20 s.
fn stop(server: &mut Child) {
    if let Ok(Some(_)) = server.try_wait() {
        return;
    }
    unsafe {
        libc::kill(server.id() as libc::pid_t, libc::SIGINT);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = server.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = server.kill();
    let _ = server.wait();
}

/// The newest installed PostgreSQL's binaries (Debian: `/usr/lib/postgresql/<major>/bin`).
fn bin_dir() -> io::Result<PathBuf> {
    let root = Path::new("/usr/lib/postgresql");
    let newest = std::fs::read_dir(root)
        .ok()
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse::<u32>().ok()?, e.path())))
        .filter(|(_, p)| p.join("bin/initdb").is_file())
        .max_by_key(|(major, _)| *major);
    newest.map(|(_, p)| p.join("bin")).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            "no PostgreSQL server binaries in /usr/lib/postgresql/*/bin: install Debian's \
             postgresql package (lab/install-deps.sh does)",
        )
    })
}

/// Root runs the server as `postgres` (Debian's package makes that user), else `nobody`.
fn unprivileged_user() -> io::Result<Option<(u32, u32)>> {
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    for name in [c"postgres", c"nobody"] {
        let pw = unsafe { libc::getpwnam(name.as_ptr()) };
        if !pw.is_null() {
            let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
            return Ok(Some((uid, gid)));
        }
    }
    Err(io::Error::other(
        "running as root and there is neither a postgres nor a nobody user to run PostgreSQL as",
    ))
}
