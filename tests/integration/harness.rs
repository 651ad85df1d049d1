//! Starts the real `netdeploy serve` on ephemeral ports and reads the chosen ports from its
//! startup line; collects its log; kills it by PID when dropped.
// Shared by every test module; not each uses every helper.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct Server {
    child: Option<Child>,
    pub ready: serde_json::Value,
    log: Arc<Mutex<String>>,
    /// The directory the configuration was written to.
    dir: std::path::PathBuf,
}

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_netdeploy")
}

impl Server {
    /// Starts netdeploy with `config` (TOML) written into `dir`.
    pub fn start(dir: &Path, config: &str) -> Server {
        Server::start_in(dir, config, &[])
    }

    /// Same, with a command prefix (e.g. `ip netns exec NS`).
    pub fn start_in(dir: &Path, config: &str, prefix: &[&str]) -> Server {
        let config_path = dir.join("netdeploy.toml");
        std::fs::write(&config_path, config).unwrap();
        let mut argv: Vec<String> = prefix.iter().map(|s| s.to_string()).collect();
        argv.push(binary().into());
        argv.extend([
            "serve".into(),
            "--config".into(),
            config_path.display().to_string(),
        ]);
        let mut child = Command::new(&argv[0])
            .args(&argv[1..])
            .env("NETDEPLOY_LOG", "debug")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start netdeploy");
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut l = sink.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(first)) = lines.next() {
                let _ = tx.send(first);
            }
            for _ in lines {}
        });
        let first = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                std::thread::sleep(Duration::from_millis(200));
                panic!(
                    "netdeploy did not print its startup line; log:\n{}",
                    log.lock().unwrap()
                );
            }
        };
        let ready: serde_json::Value = serde_json::from_str(&first)
            .unwrap_or_else(|e| panic!("startup line {first:?} is not JSON: {e}"));
        assert_eq!(ready["netdeploy"], "ready", "{first}");
        Server {
            child: Some(child),
            ready,
            log,
            dir: dir.to_owned(),
        }
    }

    /// The data directory of a [`loopback_config`] server.
    pub fn data_dir(&self) -> std::path::PathBuf {
        self.dir.join("data")
    }

    /// A run token for a machine's run of `deployment`, kept in the server's store as the
    /// server keeps the ones it issues, for tests whose subject is what the boot environment
    /// reports rather than how it got its token (tests/integration/credentials.rs is about that).
    pub fn run_token(&self, mac: &str, deployment: Option<&str>) -> String {
        use netdeploy::credentials::{digest, RunCredential, RunToken};
        let store = netdeploy::store::Store::open(&self.data_dir().join("netdeploy.db")).unwrap();
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).unwrap();
        let token = RunToken::from_bytes(bytes);
        let now = netdeploy::bootpath::now();
        let c = RunCredential {
            machine: netdeploy::catalog::MachineIdentity {
                mac: Some(mac.replace('-', ":").parse().unwrap()),
                uuid: None,
            },
            deployment: deployment.map(str::to_owned),
            issued_at: now,
            expires_at: now + 3600,
            ended_at: None,
        };
        store.run_credential_add(&digest(&token), &c, now).unwrap();
        token.to_string()
    }

    /// POSTs a status message (JSON naming `mac` and maybe `deployment`) with a run token of
    /// that machine and deployment; returns the HTTP status.
    pub fn post_status(&self, body: &str) -> u16 {
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        let token = self.run_token(v["mac"].as_str().unwrap(), v["deployment"].as_str());
        http_request(
            self.http_addr(),
            "POST",
            "/agent/status",
            &["Content-Type: application/json", &bearer(&token)],
            body.as_bytes(),
        )
        .0
    }

    fn addr(&self, key: &str) -> SocketAddr {
        let v = self.ready[key][0]
            .as_str()
            .unwrap_or_else(|| panic!("no {key} in {}", self.ready));
        // DHCP entries are "interface address".
        v.rsplit(' ').next().unwrap().parse().unwrap()
    }

    pub fn dhcp_addr(&self) -> SocketAddr {
        self.addr("dhcp")
    }
    pub fn pxe_addr(&self) -> SocketAddr {
        self.addr("pxe")
    }
    pub fn tftp_addr(&self) -> SocketAddr {
        self.addr("tftp")
    }
    pub fn http_addr(&self) -> SocketAddr {
        self.addr("http")
    }
    pub fn url(&self) -> String {
        self.ready["url"].as_str().unwrap().to_owned()
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits until a log line contains every needle.
    pub fn wait_for_log(&self, needles: &[&str], timeout: Duration) -> Option<String> {
        let end = Instant::now() + timeout;
        loop {
            if let Some(l) = self
                .log()
                .lines()
                .find(|l| needles.iter().all(|n| l.contains(n)))
            {
                return Some(l.to_owned());
            }
            if Instant::now() > end {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A counter from `/metrics`.
    /// Waits (at most 10 s) until the server's queued store writes are in the store, for a
    /// test that reads the store from another process (the CLI).
    pub fn settled(&self) {
        for _ in 0..200 {
            let body = http_get(self.http_addr(), "/metrics");
            let pending = body
                .lines()
                .find_map(|l| l.strip_prefix("netdeploy_store_writes_pending "))
                .unwrap_or_else(|| panic!("no store_writes_pending in:\n{body}"));
            if pending.trim() == "0" {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("store writes still pending after 10 s");
    }

    /// Waits (at most 10 s) until the server has reloaded its catalog snapshot more than
    /// `before` times: it noticed a change another process made to the store.
    pub fn wait_for_reload(&self, before: u64) {
        for _ in 0..100 {
            if self.counter("snapshot_reloads") > before {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("the server did not notice the store change within 10 s");
    }

    /// Runs a CLI command that reads the store, once the server's queued writes are in it.
    pub fn cli_reads(&self, data_dir: &Path, args: &[&str]) -> String {
        self.settled();
        cli_ok(data_dir, args)
    }

    /// Runs a CLI command that changes the store, and waits until the server has noticed.
    /// [`Server::cli_changes`] for a server in a lab namespace, which the host cannot reach
    /// over HTTP: waits for the log to say the snapshot was reloaded once more.
    pub fn cli_changes_in_lab(&self, data_dir: &Path, args: &[&str]) -> String {
        let reloads = || self.log().matches("snapshot reloaded").count();
        let before = reloads();
        let out = cli_ok(data_dir, args);
        for _ in 0..100 {
            if reloads() > before {
                return out;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("the server did not notice the store change within 10 s");
    }

    pub fn cli_changes(&self, data_dir: &Path, args: &[&str]) -> String {
        self.settled();
        let before = self.counter("snapshot_reloads");
        let out = cli_ok(data_dir, args);
        self.wait_for_reload(before);
        out
    }

    pub fn counter(&self, name: &str) -> u64 {
        let body = http_get(self.http_addr(), "/metrics");
        let key = format!("netdeploy_{name}_total ");
        body.lines()
            .find_map(|l| l.strip_prefix(&key))
            .unwrap_or_else(|| panic!("no counter {name} in:\n{body}"))
            .trim()
            .parse()
            .unwrap()
    }

    /// Stops the server with SIGTERM and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill(2) on our own child's PID.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let end = Instant::now() + Duration::from_secs(10);
            while Instant::now() < end {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- netdeploy log ---\n{}", self.log());
        }
    }
}

/// A minimal HTTP/1.1 GET over a TCP socket; returns the body (status must be 200).
pub fn http_get(addr: SocketAddr, path: &str) -> String {
    let (status, body) = http_get_status(addr, path);
    assert_eq!(
        status,
        200,
        "GET {path}: {}",
        String::from_utf8_lossy(&body)
    );
    String::from_utf8(body).unwrap()
}

pub fn http_get_status(addr: SocketAddr, path: &str) -> (u16, Vec<u8>) {
    http_request(addr, "GET", path, &[], b"")
}

/// Any request, with extra header lines and a body.
/// A DISCOVER as iPXE sends it (BIOS, option 77 `iPXE`), from `mac`, with its SMBIOS UUID in
/// option 97 when it has one.
pub fn ipxe_discover(mac: &str, uuid: Option<&str>) -> Vec<u8> {
    let mut b = vec![0u8; 236];
    b[0] = 1;
    b[1] = 1;
    b[2] = 6;
    b[4..8].copy_from_slice(&0x6d31_4072u32.to_be_bytes());
    b[10] = 0x80;
    for (i, h) in mac.split([':', '-']).enumerate() {
        b[28 + i] = u8::from_str_radix(h, 16).unwrap();
    }
    b.extend_from_slice(&[99, 130, 83, 99]);
    b.extend_from_slice(&[53, 1, 1, 93, 2, 0, 0, 94, 3, 1, 2, 1]);
    let vendor = b"PXEClient:Arch:00000:UNDI:002001";
    b.push(60);
    b.push(vendor.len() as u8);
    b.extend_from_slice(vendor);
    b.extend_from_slice(&[77, 4, b'i', b'P', b'X', b'E']);
    if let Some(u) = uuid {
        // Option 97 holds the first three fields little-endian, as firmware copies them.
        let mut g = netdeploy::catalog::parse_smbios_uuid(u).unwrap().0;
        g[0..4].reverse();
        g[4..6].reverse();
        g[6..8].reverse();
        b.extend_from_slice(&[97, 17, 0]);
        b.extend_from_slice(&g);
    }
    b.push(255);
    b
}

/// Sends `mac`'s iPXE DISCOVER to the server and waits for its answer (at most 1.5 s: a
/// machine with no deployment gets none), as a machine does before asking for its script.
pub fn dhcp_discover(server: &Server, mac: &str, uuid: Option<&str>) {
    dhcp_discover_at(server.dhcp_addr(), mac, uuid)
}

/// [`dhcp_discover`] to a DHCP address.
pub fn dhcp_discover_at(dhcp: SocketAddr, mac: &str, uuid: Option<&str>) {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    s.send_to(&ipxe_discover(mac, uuid), dhcp).unwrap();
    let mut buf = [0u8; 1500];
    let _ = s.recv_from(&mut buf);
}

/// The iPXE script at `path` (`/boot.ipxe?mac=...`), asked for as a machine does: after its
/// DHCP exchange with the server.
pub fn boot_script(server: &Server, path: &str) -> String {
    let param = |name: &str| {
        path.split(['?', '&'])
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
    };
    dhcp_discover(
        server,
        param("mac").expect("a mac in the script path"),
        param("uuid"),
    );
    http_get(server.http_addr(), path)
}

/// A new boot medium's key from `netdeploy media key`, as `<id>.<secret>`.
pub fn medium_key(data_dir: &Path) -> String {
    let out = cli_ok(data_dir, &["media", "key"]);
    out.lines()
        .find(|l| l.len() == 73 && l.as_bytes()[8] == b'.')
        .unwrap_or_else(|| panic!("no key in:\n{out}"))
        .to_owned()
}

/// The `Authorization` header line that presents a boot medium's key.
pub fn medium_auth(key: &str) -> String {
    format!("Authorization: Medium {key}")
}

/// The `Authorization` header line that presents a run token.
pub fn bearer(token: &str) -> String {
    format!("Authorization: Bearer {token}")
}

/// The run token on the kernel line of an iPXE script (`netdeploy.token=`).
pub fn token_in_script(script: &str) -> Option<String> {
    let at = script.find("netdeploy.token=")? + "netdeploy.token=".len();
    Some(
        script[at..]
            .chars()
            .take_while(char::is_ascii_hexdigit)
            .collect(),
    )
}

pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[&str],
    body: &[u8],
) -> (u16, Vec<u8>) {
    let (status, _, body) = http_exchange(addr, method, path, headers, body);
    (status, body)
}

/// One HTTP request: the status, the response head (lower case) and the body.
pub fn http_exchange(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[&str],
    body: &[u8],
) -> (u16, String, Vec<u8>) {
    use std::io::{Read, Write};
    // A server in a lab namespace is not reachable from here: its address would leave through
    // the host's default route. Tests reach such servers through the CLI and the log.
    assert!(
        addr.ip().is_loopback(),
        "HTTP to {addr} from the host namespace: tests send traffic only to loopback"
    );
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for h in headers {
        head.push_str(h);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("HTTP header end");
    let head = String::from_utf8_lossy(&buf[..split]).into_owned();
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    let mut body = buf[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    (status, head.to_ascii_lowercase(), body)
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let nl = b.windows(2).position(|w| w == b"\r\n").unwrap();
        let n = usize::from_str_radix(std::str::from_utf8(&b[..nl]).unwrap().trim(), 16).unwrap();
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&b[nl + 2..nl + 2 + n]);
        b = &b[nl + 2 + n + 2..];
    }
}

/// A configuration for loopback tests: every port ephemeral, test-mode DHCP.
pub fn loopback_config(dir: &Path, mode: &str, extra: &str) -> String {
    let tftp = dir.join("tftp");
    std::fs::create_dir_all(&tftp).unwrap();
    for f in ["undionly.kpxe", "snponly.efi"] {
        std::fs::write(tftp.join(f), format!("{f} stand-in")).unwrap();
    }
    format!(
        "[server]\ninterfaces = [\"lo\"]\naddress = \"127.0.0.1\"\ndata_dir = {data:?}\n\
         [dhcp]\nmode = {mode:?}\nport = 0\nproxy_port = 0\n{extra}\n\
         [tftp]\nroot = {tftp:?}\nport = 0\n[http]\nport = 0\n",
        data = dir.join("data").display().to_string(),
        tftp = tftp.display().to_string(),
    )
}

/// Runs the `netdeploy` command line with a data directory; returns (success, stdout+stderr).
pub fn cli(data_dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(binary())
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("run netdeploy");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Same, failing the test when the command fails.
pub fn cli_ok(data_dir: &Path, args: &[&str]) -> String {
    let (ok, out) = cli(data_dir, args);
    assert!(ok, "netdeploy {args:?} failed:\n{out}");
    out
}

impl Server {
    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Kills the server with SIGKILL (a crash), waiting for it.
    pub fn crash(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A random SMBIOS UUID (version 4, so never all zeros), as a QEMU machine or a boot request
/// sends it: real hardware always has one, and only a random one proves two runs apart.
pub fn random_smbios_uuid() -> String {
    let u = std::fs::read_to_string("/proc/sys/kernel/random/uuid").expect("kernel random uuid");
    u.trim().to_owned()
}
