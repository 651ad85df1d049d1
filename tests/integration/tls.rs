//! HTTPS for the agent endpoints and the admin API (docs/security.md): a real server with
//! `[http.tls]` on loopback, the agent's own HTTP client pinning its certificate, curl trusting
//! the kept self-signed certificate, and plain HTTP refused where HTTPS is required.

use std::process::Command;
use std::time::Duration;

use netdeploy_agent::http::{CertPin, Client, HttpError, Url};

use crate::deployments::write_site;
use crate::harness::{binary, boot_script, cli_ok, http_request, loopback_config, Server};

const PC1: &str = "52:54:00:1f:00:01";
const TOKEN: &str = "tls-admin-token-0123456789";

/// `[http.tls]` with a self-signed certificate, an admin token, and LAB00001 for pc1.
fn setup() -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().unwrap();
    let k = dir.path().join("vmlinuz");
    let i = dir.path().join("initrd.img");
    std::fs::write(&k, b"kernel").unwrap();
    std::fs::write(&i, b"initrd").unwrap();
    let site = write_site(dir.path(), &k, &i, PC1, "52:54:00:1f:00:09", "");
    cli_ok(
        &dir.path().join("data"),
        &["site", "apply", site.to_str().unwrap()],
    );
    let server = Server::start(dir.path(), &tls_config(dir.path()));
    (dir, server)
}

fn tls_config(dir: &std::path::Path) -> String {
    loopback_config(dir, "proxy", "[http.tls]\nport = 0\n")
        .replace("[http]\n", &format!("[http]\nadmin_token = {TOKEN:?}\n"))
}

fn https_url(server: &Server) -> String {
    server.ready["https_url"].as_str().unwrap().to_owned()
}

fn pin(server: &Server) -> CertPin {
    server.ready["tls_pin"].as_str().unwrap().parse().unwrap()
}

/// The value of `name=` on the kernel line of an iPXE script.
fn parameter<'a>(script: &'a str, name: &str) -> Option<&'a str> {
    script
        .split_whitespace()
        .find_map(|w| w.strip_prefix(name)?.strip_prefix('='))
}

/// The iPXE script that starts LAB00001 on pc1 (over plain HTTP, as iPXE asks for it).
fn pxe_script(server: &Server) -> String {
    let script = boot_script(
        server,
        &format!("/boot.ipxe?mac={}&arch=0", PC1.replace(':', "-")),
    );
    assert!(script.contains("netdeploy.deployment=LAB00001"), "{script}");
    script
}

fn client(pin: Option<CertPin>) -> Client {
    Client {
        connect_timeout: Duration::from_secs(5),
        io_timeout: Duration::from_secs(10),
        pin,
    }
}

fn policy_url(base: &str) -> Url {
    Url::parse(base)
        .unwrap()
        .join("/agent/policy")
        .unwrap()
        .with_query(&format!("mac={PC1}&context=pxe&deployment=LAB00001"))
}

fn succeeded() -> String {
    format!(r#"{{"kind":"succeeded","mac":"{PC1}","deployment":"LAB00001"}}"#)
}

fn recorded(server: &Server) -> serde_json::Value {
    serde_json::from_str(&server.cli_reads(&server.data_dir(), &["status", "--json"])).unwrap()
}

#[test]
fn agent_fetches_its_policy_over_https_with_the_pin_of_the_ipxe_script() {
    let (_dir, server) = setup();
    let script = pxe_script(&server);
    assert_eq!(
        parameter(&script, "netdeploy.server"),
        Some(https_url(&server).as_str()),
        "{script}"
    );
    assert_eq!(
        parameter(&script, "netdeploy.pin"),
        Some(pin(&server).to_string().as_str()),
        "{script}"
    );
    // Windows PE gets the same through its variables file, read with the media's parser.
    let (code, ini) = http_request(
        server.http_addr(),
        "GET",
        "/winpe/variables.ini?mac=52-54-00-1f-00-01",
        &[],
        b"",
    );
    assert_eq!(code, 200);
    let vars = netdeploy_wire::variables::parse(&String::from_utf8_lossy(&ini)).unwrap();
    assert_eq!(
        vars.get("SMSTSServerURL"),
        Some(https_url(&server).as_str())
    );
    assert_eq!(
        vars.get("NetdeployServerPin"),
        Some(pin(&server).to_string().as_str())
    );
    // The agent's own configuration, read from that kernel line.
    let line = script
        .lines()
        .find(|l| l.contains("netdeploy.pin="))
        .unwrap();
    let cmd = netdeploy_agent::config::cmdline::parse(line);
    let config = netdeploy_agent::config::resolve(&Default::default(), &cmd, None).unwrap();
    let server_url = config.server.clone().unwrap();
    assert!(server_url.is_https());
    let token = config.token.clone().expect("a run token");
    let r = client(config.pin)
        .get_authorized(
            &policy_url(&server_url.to_string()),
            Some(&token.authorization()),
        )
        .unwrap();
    assert_eq!(r.status(), 200);
    let body = r.read_body(1 << 20).unwrap();
    match netdeploy_agent::policy::parse(&body).unwrap() {
        netdeploy_agent::policy::Policy::Run(p) => assert!(!p.steps.is_empty()),
        other => panic!("not a run policy: {other:?}"),
    }
    // The status message goes the same way, and counts.
    let before = recorded(&server);
    let r = client(config.pin)
        .post_json(
            &server_url.join("/agent/status").unwrap(),
            succeeded().as_bytes(),
            Some(&token),
        )
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_ne!(recorded(&server), before);
}

#[test]
fn agent_refuses_a_wrong_certificate_and_the_server_records_nothing_from_it() {
    let (_dir, server) = setup();
    let script = pxe_script(&server);
    let token: netdeploy_agent::http::RunToken = parameter(&script, "netdeploy.token")
        .unwrap()
        .parse()
        .unwrap();
    let wrong = CertPin::from_digest([0x5a; 32]);
    let before = recorded(&server);
    let status_url = Url::parse(&https_url(&server))
        .unwrap()
        .join("/agent/status")
        .unwrap();
    let err = client(Some(wrong))
        .post_json(&status_url, succeeded().as_bytes(), Some(&token))
        .err()
        .expect("a certificate other than the pinned one was accepted");
    match &err {
        HttpError::WrongCertificate(m) => {
            assert_eq!(m.expected, wrong);
            assert_eq!(m.presented, pin(&server));
        }
        e => panic!("unexpected error {e}"),
    }
    assert!(err.to_string().contains(&pin(&server).to_string()), "{err}");
    let err = client(Some(wrong))
        .get_authorized(
            &policy_url(&https_url(&server)),
            Some(&token.authorization()),
        )
        .err()
        .expect("a certificate other than the pinned one was accepted");
    assert!(matches!(err, HttpError::WrongCertificate(_)), "{err}");
    for _ in 0..100 {
        if server.counter("http_tls_handshakes_failed") >= 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(server.counter("http_tls_handshakes_failed"), 2);
    assert_eq!(recorded(&server), before);
    assert!(!server.log().contains("/agent/status"), "{}", server.log());
}

#[test]
fn admin_api_answers_over_https_and_is_refused_over_plain_http() {
    let (_dir, server) = setup();
    let cert = server.data_dir().join("tls/server.crt");
    let url = format!("{}/api/v1/catalog", https_url(&server));
    let out = Command::new("curl")
        .args(["-sS", "--fail", "--cacert"])
        .arg(&cert)
        .args(["-H", &format!("Authorization: Bearer {TOKEN}"), &url])
        .output()
        .expect("run curl");
    assert!(
        out.status.success(),
        "curl {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let catalog: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(catalog.is_object(), "{catalog}");
    // Without the certificate curl trusts nothing it knows of: the server is not vouched for
    // by a certificate authority, only by the kept certificate (or its pin).
    let untrusted = Command::new("curl")
        .args(["-sS", "--fail", "--capath", "/nonexistent", "--cacert"])
        .arg("/dev/null")
        .arg(&url)
        .output()
        .expect("run curl");
    assert!(!untrusted.status.success());

    let bearer = format!("Authorization: Bearer {TOKEN}");
    let (code, body) = http_request(
        server.http_addr(),
        "GET",
        "/api/v1/catalog",
        &[&bearer],
        b"",
    );
    let body = String::from_utf8_lossy(&body);
    assert_eq!(code, 403, "{body}");
    assert!(
        body.contains(&format!("use {}/api/v1/catalog", https_url(&server))),
        "{body}"
    );
    assert_eq!(server.counter("http_plain_refused"), 1);
    // The first stages stay on plain HTTP.
    let (code, _) = http_request(server.http_addr(), "GET", "/healthz", &[], b"");
    assert_eq!(code, 200);
}

#[test]
fn plain_http_may_be_allowed_for_the_agent_and_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let config = tls_config(dir.path()).replace(
        "[http.tls]\nport = 0\n",
        "[http.tls]\nport = 0\nallow_plain_http = true\n",
    );
    let server = Server::start(dir.path(), &config);
    let bearer = format!("Authorization: Bearer {TOKEN}");
    let (code, _) = http_request(
        server.http_addr(),
        "GET",
        "/api/v1/catalog",
        &[&bearer],
        b"",
    );
    assert_eq!(code, 200);
}

#[test]
fn self_signed_certificate_is_made_once_and_kept_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let config = tls_config(dir.path());
    let mut first = Server::start(dir.path(), &config);
    let pin_first = pin(&first);
    first
        .wait_for_log(&["HTTPS certificate", "made=true"], Duration::from_secs(5))
        .expect("the first start makes the certificate");
    first.stop();
    let second = Server::start(dir.path(), &config);
    assert_eq!(pin(&second), pin_first);
    second
        .wait_for_log(&["HTTPS certificate", "made=false"], Duration::from_secs(5))
        .expect("a restart keeps the certificate");
    // The command line prints the same pin, offline, from the configuration.
    let out = Command::new(binary())
        .args(["--config"])
        .arg(dir.path().join("netdeploy.toml"))
        .args(["tls", "fingerprint"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        pin_first.to_string()
    );
    use std::os::unix::fs::PermissionsExt;
    let key = second.data_dir().join("tls/server.key");
    let mode = std::fs::metadata(key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn a_bad_certificate_path_names_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key.pem");
    std::fs::write(&key, "not a key\n").unwrap();
    let config = loopback_config(
        dir.path(),
        "proxy",
        &format!(
            "[http.tls]\nport = 0\ncert = \"/nonexistent/cert.pem\"\nkey = {:?}\n",
            key.display().to_string()
        ),
    );
    let path = dir.path().join("netdeploy.toml");
    std::fs::write(&path, &config).unwrap();
    let out = Command::new(binary())
        .arg("--config")
        .arg(&path)
        .arg("check")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        text.contains("http.tls.cert: /nonexistent/cert.pem is not a file"),
        "{text}"
    );
    // A file that holds no certificate is named too, when the server starts.
    let cert = dir.path().join("cert.pem");
    std::fs::write(&cert, "not a certificate\n").unwrap();
    std::fs::write(
        &path,
        config.replace("/nonexistent/cert.pem", &cert.display().to_string()),
    )
    .unwrap();
    let out = Command::new(binary())
        .arg("--config")
        .arg(&path)
        .arg("serve")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(text.contains("http.tls.cert: "), "{text}");
    assert!(text.contains("holds no PEM certificate"), "{text}");
}

#[test]
fn https_connections_are_held_to_the_handshake_timeout_and_the_per_client_cap() {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    let config = tls_config(dir.path())
        .replace(
            "[http.tls]\nport = 0\n",
            "[http.tls]\nport = 0\nhandshake_timeout_seconds = 1\n",
        )
        .replace("[http]\n", "[http]\nmax_connections_per_client = 2\n");
    let server = Server::start(dir.path(), &config);
    let addr: std::net::SocketAddr = server.ready["https"][0].as_str().unwrap().parse().unwrap();
    // Two silent connections hold this client's two slots.
    let mut silent: Vec<std::net::TcpStream> = (0..2)
        .map(|_| std::net::TcpStream::connect(addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    // A third is over the cap: answered 503 before any TLS and closed.
    let mut third = std::net::TcpStream::connect(addr).unwrap();
    third
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut answer = String::new();
    third.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer:?}");
    // The silent ones never start a handshake: the server closes them.
    for s in &mut silent {
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(
            s.read(&mut buf).unwrap(),
            0,
            "the server kept the connection"
        );
    }
    // The counters follow the close: on a loaded machine a moment later.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while server.counter("http_tls_handshakes_failed") < 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(server.counter("http_tls_handshakes_failed"), 2);
    assert_eq!(server.counter("http_connections_refused"), 1);
    server
        .wait_for_log(
            &["TLS handshake not done within http.tls.handshake_timeout_seconds"],
            Duration::from_secs(5),
        )
        .expect("the closing is logged");
}

#[test]
fn media_build_passes_the_configurations_pin_to_the_builder() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("netdeploy.toml");
    std::fs::write(&config, tls_config(dir.path())).unwrap();
    // netdeploy runs the builder beside its own executable: a stand-in that prints its
    // arguments.
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let netdeploy = bin.join("netdeploy");
    std::fs::copy(binary(), &netdeploy).unwrap();
    let builder = bin.join("netdeploy-media");
    std::fs::write(&builder, "#!/bin/sh\necho \"$@\"\n").unwrap();
    std::fs::set_permissions(&builder, std::fs::Permissions::from_mode(0o755)).unwrap();
    let run = |args: &[&str]| {
        for _ in 0..50 {
            match Command::new(&netdeploy)
                .arg("--config")
                .arg(&config)
                .args(args)
                .output()
            {
                // A file just written may be busy for a moment (ETXTBSY).
                Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) => {
                    std::thread::sleep(Duration::from_millis(100))
                }
                r => return r.unwrap(),
            }
        }
        panic!("{} stayed busy", netdeploy.display());
    };
    let out = run(&["media", "build", "--server-url", "https://127.0.0.1:8443"]);
    assert!(out.status.success(), "{out:?}");
    let fingerprint = run(&["tls", "fingerprint"]);
    let pin = String::from_utf8_lossy(&fingerprint.stdout)
        .trim()
        .to_owned();
    assert!(pin.starts_with("sha256:"), "{fingerprint:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("build --server-url https://127.0.0.1:8443 --server-pin {pin}")
    );
    // A pin given on the command line is left as it is.
    let out = run(&["media", "build", "--server-pin", "sha256:given"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "build --server-pin sha256:given"
    );
}
