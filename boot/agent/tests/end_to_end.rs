//! The agent binary against a fake netdeploy server on a loopback port: a machine root with
//! fake /proc and /sys entries (`--root`), a policy, content by SHA-256 with `Range`, and
//! status messages collected. Needs no root and no network namespace; with `--root` the
//! agent only prints its power actions.

#[path = "support/fake_server.rs"]
mod fake_server;

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};

use fake_server::{range_reply, FakeServer, Reply};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const MAC: &str = "52:54:00:12:34:56";
const UUID: &str = "8d4c1c4e-51a4-4f6e-9a3b-0c1d2e3f4a5b";

fn sha(data: &[u8]) -> String {
    netdeploy_wire::hex::encode(&Sha256::digest(data))
}

/// What the fake server serves; set after it started, when its URL is known.
#[derive(Default)]
struct Site {
    policy: Value,
    /// Served instead of `policy` to a request that names no deployment.
    menu: Option<Value>,
    /// SHA-256 → bytes served at /content/<sha256>.
    content: HashMap<String, Vec<u8>>,
    /// SHA-256 → cut the first answer for it after this many bytes.
    cut_once: HashMap<String, usize>,
    /// The run token the policy response hands out (`netdeploy-run-token`).
    run_token: Option<String>,
}

struct Lab {
    srv: FakeServer,
    site: Arc<Mutex<Site>>,
    dir: tempfile::TempDir,
}

impl Lab {
    fn start() -> Lab {
        let site = Arc::new(Mutex::new(Site::default()));
        let s = site.clone();
        let srv = FakeServer::start(move |req| {
            let mut site = s.lock().unwrap();
            let route = req.route().to_owned();
            if route == "/agent/policy" && req.method == "GET" {
                let reply = match (&site.menu, req.query("deployment")) {
                    (Some(menu), None) => Reply::new(200).json(menu),
                    _ => Reply::new(200).json(&site.policy),
                };
                match &site.run_token {
                    Some(t) => reply.header("Netdeploy-Run-Token", t),
                    None => reply,
                }
            } else if route == "/agent/status" && req.method == "POST" {
                Reply::new(204)
            } else if let Some(hash) = route.strip_prefix("/content/") {
                let Some(data) = site.content.get(hash).cloned() else {
                    return Reply::new(404).body(b"no such content\n".to_vec());
                };
                let reply = range_reply(req, &data);
                match site.cut_once.remove(hash) {
                    Some(n) => reply.cut_after(n),
                    None => reply,
                }
            } else {
                Reply::new(404)
            }
        });
        Lab {
            srv,
            site,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn base(&self) -> String {
        self.srv.url("")
    }

    /// Serves `data` and returns its entry for a package in the policy.
    fn content(&self, path: &str, data: &[u8]) -> Value {
        let h = sha(data);
        self.site
            .lock()
            .unwrap()
            .content
            .insert(h.clone(), data.to_vec());
        json!({"path": path, "size": data.len(), "sha256": h,
               "url": format!("{}/content/{h}", self.base())})
    }

    fn set_policy(&self, policy: Value) {
        self.site.lock().unwrap().policy = policy;
    }

    /// A machine root: one NIC, a SMBIOS UUID, and `cmdline` as /proc/cmdline.
    fn machine(&self, cmdline: &str) -> PathBuf {
        let root = self.dir.path().join("root");
        for (nic, mac) in [("ens3", MAC), ("lo", "00:00:00:00:00:00")] {
            let d = root.join("sys/class/net").join(nic);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("address"), format!("{mac}\n")).unwrap();
        }
        let dmi = root.join("sys/class/dmi/id");
        std::fs::create_dir_all(&dmi).unwrap();
        std::fs::write(
            dmi.join("product_uuid"),
            format!("{}\n", UUID.to_uppercase()),
        )
        .unwrap();
        std::fs::create_dir_all(root.join("proc")).unwrap();
        std::fs::write(root.join("proc/cmdline"), format!("{cmdline}\n")).unwrap();
        root
    }

    /// The kernel command line the PXE script of the server writes.
    fn pxe_cmdline(&self, deployment: &str) -> String {
        format!(
            "console=ttyS0 netdeploy.server={} netdeploy.deployment={deployment} netdeploy.mac={MAC}",
            self.base()
        )
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn statuses(&self) -> Vec<Value> {
        self.srv
            .requests()
            .iter()
            .filter(|r| r.route() == "/agent/status")
            .map(|r| serde_json::from_slice(&r.body).unwrap())
            .collect()
    }

    fn kinds(&self) -> Vec<String> {
        self.statuses()
            .iter()
            .map(|s| s["kind"].as_str().unwrap().to_owned())
            .collect()
    }
}

fn agent(root: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_netdeploy-agent"))
        .arg("--root")
        .arg(root)
        .args(extra)
        .output()
        .unwrap()
}

/// The agent with `input` typed on its console (stdin).
fn agent_typing(root: &Path, extra: &[&str], input: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_netdeploy-agent"))
        .arg("--root")
        .arg(root)
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The agent may stop reading early; a broken pipe then is expected.
    let _ = child.stdin.take().unwrap().write_all(input.as_bytes());
    child.wait_with_output().unwrap()
}

/// `SMSTSMediaPassword` as the media builder writes it.
fn stored_password(password: &str) -> String {
    netdeploy_wire::password::hash(password, b"netdeploy-salt-1").unwrap()
}

fn text(o: &Output) -> (String, String) {
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    eprintln!("--- agent stdout\n{out}--- agent stderr\n{err}---");
    (out, err)
}

fn image(n: usize) -> Vec<u8> {
    (0..n).map(|i| ((i * 131) % 251) as u8).collect()
}

#[test]
fn the_run_token_of_the_kernel_line_is_presented_until_the_policy_hands_out_another() {
    let lab = Lab::start();
    let (first, second) = ("1a".repeat(32), "2b".repeat(32));
    let note = lab.path("note");
    lab.set_policy(json!({
        "action": "run", "reason": "required (rule 5)",
        "deployment": {"id": "LAB00001", "task_sequence": "ts", "name": "Note",
                       "option": "download_on_demand"},
        "steps": [{"name": "note", "action": "write_file", "value": "text", "target": note}],
        "packages": {}, "warnings": []
    }));
    lab.site.lock().unwrap().run_token = Some(second.clone());
    let root = lab.machine(&format!(
        "{} netdeploy.token={first}",
        lab.pxe_cmdline("LAB00001")
    ));
    let o = agent(&root, &[]);
    text(&o);
    assert_eq!(o.status.code(), Some(0));
    let reqs = lab.srv.requests();
    let policy = reqs.iter().find(|r| r.route() == "/agent/policy").unwrap();
    assert_eq!(
        policy.header("authorization"),
        Some(format!("Bearer {first}").as_str())
    );
    let statuses: Vec<_> = reqs
        .iter()
        .filter(|r| r.route() == "/agent/status")
        .collect();
    assert!(!statuses.is_empty());
    for r in statuses {
        assert_eq!(
            r.header("authorization"),
            Some(format!("Bearer {second}").as_str())
        );
    }
}

#[test]
fn a_machine_without_a_run_token_sends_no_authorization() {
    let lab = Lab::start();
    lab.set_policy(json!({"action": "none", "reason": "nothing here (rule 8)"}));
    let root = lab.machine(&lab.pxe_cmdline("LAB00001"));
    let o = agent(&root, &[]);
    text(&o);
    assert_eq!(o.status.code(), Some(0));
    let reqs = lab.srv.requests();
    assert!(reqs.iter().any(|r| r.route() == "/agent/status"));
    assert!(reqs.iter().all(|r| r.header("authorization").is_none()));
}

#[test]
fn pxe_deployment_applies_an_image_runs_the_steps_and_reports_success() {
    let lab = Lab::start();
    let img = image(3 << 20);
    let disk_entry = lab.content("disk.img", &img);
    let motd_entry = lab.content("etc/motd", b"welcome to the lab\n");
    // The image stream breaks once after 1 MiB: the agent resumes with Range.
    lab.site.lock().unwrap().cut_once.insert(sha(&img), 1 << 20);
    let disk = lab.path("vda");
    std::fs::write(&disk, vec![0u8; 4 << 20]).unwrap();
    let (motd, note, out) = (lab.path("motd"), lab.path("note"), lab.path("out"));
    lab.set_policy(json!({
        "action": "run", "reason": "required (rule 5)",
        "deployment": {"id": "LAB00001", "task_sequence": "ts", "name": "Say hello",
                       "option": "download_on_demand"},
        "steps": [
            {"name": "write the disk", "action": "apply_image", "package": "disk",
             "file": "disk.img", "target": disk},
            {"name": "set", "action": "set_variable", "variable": "OSDComputerName", "value": "pc1"},
            {"name": "hello", "action": "run_command",
             "command": format!("echo \"hello $OSDComputerName $NETDEPLOY_DEPLOYMENT\" > {}", out.display())},
            {"name": "motd", "action": "write_file", "package": "tools", "file": "etc/motd",
             "target": motd},
            {"name": "note", "action": "write_file", "value": "text", "target": note},
            {"name": "off", "action": "poweroff"}
        ],
        "packages": {"disk": [disk_entry], "tools": [motd_entry]},
        "warnings": []
    }));
    let root = lab.machine(&lab.pxe_cmdline("LAB00001"));
    let status_file = lab.path("status.jsonl");
    let o = agent(&root, &["--status-file", status_file.to_str().unwrap()]);
    let (stdout, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout.contains("NETDEPLOY-AGENT-RESULT success deployment=LAB00001\n"));
    assert!(stderr.contains(&format!(
        "netdeploy-agent: step 1/6 \"write the disk\": apply_image disk.img -> {}\n",
        disk.display()
    )));
    assert!(stderr.contains("would poweroff now"));

    let written = std::fs::read(&disk).unwrap();
    assert_eq!(&written[..img.len()], &img[..]);
    assert!(written[img.len()..].iter().all(|b| *b == 0));
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "hello pc1 LAB00001\n"
    );
    assert_eq!(
        std::fs::read_to_string(&motd).unwrap(),
        "welcome to the lab\n"
    );
    assert_eq!(std::fs::read_to_string(&note).unwrap(), "text");

    let reqs = lab.srv.requests();
    let policy_req = reqs.iter().find(|r| r.route() == "/agent/policy").unwrap();
    assert_eq!(policy_req.query("mac"), Some(MAC));
    assert_eq!(policy_req.query("uuid"), Some(UUID));
    assert_eq!(policy_req.query("context"), Some("pxe"));
    assert_eq!(policy_req.query("deployment"), Some("LAB00001"));
    let image_ranges: Vec<Option<u64>> = reqs
        .iter()
        .filter(|r| r.route() == format!("/content/{}", sha(&img)))
        .map(|r| r.range_from())
        .collect();
    assert_eq!(image_ranges, [None, Some(1 << 20)]);

    let statuses = lab.statuses();
    assert_eq!(
        lab.kinds(),
        [
            "started",
            "step",
            "step",
            "step",
            "step",
            "step",
            "step",
            "succeeded"
        ]
    );
    for (i, s) in statuses[1..7].iter().enumerate() {
        assert_eq!(s["step_index"], i);
        assert_eq!(s["ok"], true);
    }
    assert_eq!(statuses[1]["step"], "write the disk");
    for s in &statuses {
        assert_eq!(s["deployment"], "LAB00001");
        assert_eq!(s["mac"], MAC);
        assert_eq!(s["uuid"], UUID);
    }
    let lines = std::fs::read_to_string(&status_file).unwrap();
    assert_eq!(lines.lines().count(), 8);
}

#[test]
fn altered_content_fails_naming_the_file_and_leaves_no_partial_file() {
    let lab = Lab::start();
    let good = b"welcome\n".to_vec();
    let mut entry = lab.content("etc/motd", &good);
    // The server's bytes differ from the hash the policy gives.
    let altered = b"w3lcome\n".to_vec();
    let h = entry["sha256"].as_str().unwrap().to_owned();
    lab.site.lock().unwrap().content.insert(h.clone(), altered);
    entry["size"] = json!(good.len());
    let motd = lab.path("etc/motd");
    lab.set_policy(json!({
        "action": "run",
        "deployment": {"id": "LAB00001", "option": "download_on_demand"},
        "steps": [
            {"name": "note", "action": "write_file", "value": "ok", "target": lab.path("note")},
            {"name": "motd", "action": "write_file", "package": "tools", "file": "etc/motd",
             "target": motd},
            {"name": "never", "action": "run_command", "command": "exit 0"}
        ],
        "packages": {"tools": [entry]}
    }));
    let root = lab.machine(&lab.pxe_cmdline("LAB00001"));
    let o = agent(&root, &[]);
    let (stdout, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    let line = stdout
        .lines()
        .find(|l| l.starts_with("NETDEPLOY-AGENT-RESULT"))
        .unwrap();
    assert!(
        line.starts_with("NETDEPLOY-AGENT-RESULT failure deployment=LAB00001 step=\"motd\" reason=\"etc/motd: SHA-256 mismatch: expected "),
        "{line}"
    );
    assert!(line.contains(&h), "{line}");
    assert!(!stderr.contains("step 3/3"));
    assert!(!motd.exists());
    assert_eq!(
        std::fs::read_dir(lab.path("etc")).unwrap().count(),
        0,
        "no part file is left"
    );
    assert_eq!(lab.kinds(), ["started", "step", "failed"]);
    let failed = &lab.statuses()[2];
    assert_eq!(failed["step"], "motd");
    assert_eq!(failed["step_index"], 1);
    assert_eq!(failed["file"], "etc/motd");
    assert!(failed["reason"]
        .as_str()
        .unwrap()
        .contains("SHA-256 mismatch"));
}

#[test]
fn download_all_refuses_an_altered_image_before_touching_the_disk() {
    let lab = Lab::start();
    let img = image(1 << 20);
    let mut entry = lab.content("disk.img", &img);
    let h = entry["sha256"].as_str().unwrap().to_owned();
    let mut altered = img.clone();
    altered[4096] ^= 0xff;
    lab.site.lock().unwrap().content.insert(h, altered);
    entry["size"] = json!(img.len());
    let disk = lab.path("vda");
    std::fs::write(&disk, vec![0u8; 2 << 20]).unwrap();
    lab.set_policy(json!({
        "action": "run",
        "deployment": {"id": "LAB00003", "option": "download_all"},
        "steps": [{"name": "write the disk", "action": "apply_image", "package": "disk",
                   "file": "disk.img", "target": disk}],
        "packages": {"disk": [entry]}
    }));
    let root = lab.machine(&lab.pxe_cmdline("LAB00003"));
    let o = agent(&root, &[]);
    let (stdout, _) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout.contains("NETDEPLOY-AGENT-RESULT failure deployment=LAB00003 step=\"\" reason=\"disk.img: SHA-256 mismatch"));
    assert!(std::fs::read(&disk).unwrap().iter().all(|b| *b == 0));
    let cache = root.join("var/lib/netdeploy/packages/disk");
    assert_eq!(std::fs::read_dir(&cache).unwrap().count(), 0);
    assert_eq!(lab.kinds(), ["started", "failed"]);
    assert_eq!(lab.statuses()[1]["file"], "disk.img");
}

#[test]
fn a_failing_command_reports_its_exit_code() {
    let lab = Lab::start();
    lab.set_policy(json!({
        "action": "run",
        "deployment": {"id": "LAB00004", "option": "download_on_demand"},
        "steps": [{"name": "check", "action": "run_command", "command": "exit 3"},
                  {"name": "off", "action": "reboot"}]
    }));
    let root = lab.machine(&lab.pxe_cmdline("LAB00004"));
    let o = agent(&root, &[]);
    let (stdout, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout.contains(
        "NETDEPLOY-AGENT-RESULT failure deployment=LAB00004 step=\"check\" reason=\"the command exited with code 3\""
    ));
    // After a failure the last step's power action still happens.
    assert!(stderr.contains("would reboot now"));
    let failed = lab.statuses().pop().unwrap();
    assert_eq!(failed["kind"], "failed");
    assert_eq!(failed["code"], 3);
}

#[test]
fn a_secret_value_reaches_the_commands_but_never_the_console_or_the_status_messages() {
    let lab = Lab::start();
    lab.set_policy(json!({
        "action": "run",
        "deployment": {"id": "LAB00005", "option": "download_on_demand"},
        "steps": [
            {"name": "join", "action": "set_variable", "variable": "DomainPassword",
             "value": "hunter2-long", "secret": true},
            {"name": "use", "action": "run_command",
             "command": "test \"$DomainPassword\" = hunter2-long && echo \"joining with $DomainPassword\" && echo \"to stderr: $DomainPassword\" >&2"},
            {"name": "fail", "action": "run_command",
             "command": "echo using hunter2-long >/dev/null; exit 4"}
        ]
    }));
    let root = lab.machine(&lab.pxe_cmdline("LAB00005"));
    let o = agent(&root, &[]);
    let (stdout, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    // The command saw the value: the step after it is the one that failed.
    assert!(stderr.contains("step 2/3 \"use\": ok"), "{stderr}");
    assert!(stdout.contains("step=\"fail\""), "{stdout}");
    assert!(
        stderr.contains("set_variable DomainPassword=********"),
        "{stderr}"
    );
    // What the command printed reached the console, masked.
    assert!(stdout.contains("joining with ********\n"), "{stdout}");
    assert!(stderr.contains("to stderr: ********\n"), "{stderr}");
    for (what, text) in [("stdout", &stdout), ("stderr", &stderr)] {
        assert!(!text.contains("hunter2"), "{what}:\n{text}");
    }
    let statuses = serde_json::to_string(&lab.statuses()).unwrap();
    assert!(!statuses.contains("hunter2"), "{statuses}");
}

#[test]
fn the_run_is_logged_with_the_reason_the_server_gave() {
    let lab = Lab::start();
    lab.set_policy(json!({
        "action": "run", "reason": "required (rule 5)",
        "deployment": {"id": "LAB00001", "task_sequence": "ts", "name": "Power off",
                       "option": "download_on_demand"},
        "steps": [{"name": "off", "action": "poweroff"}]
    }));
    // A PXE script names the deployment it started; the server still says why it runs.
    let root = lab.machine(&lab.pxe_cmdline("LAB00001"));
    let o = agent(&root, &[]);
    let (_, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(0));
    assert!(
        stderr.contains(
            "deployment LAB00001 \"Power off\" (task sequence ts): 1 steps, \
             content option download_on_demand; required (rule 5)\n"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("rule 3"), "{stderr}");
}

#[test]
fn nothing_deployed_is_said_plainly_and_exits_zero() {
    let lab = Lab::start();
    lab.set_policy(
        json!({"action": "none", "reason": "nothing is deployed to this machine (rule 8)"}),
    );
    let root = lab.machine(&lab.pxe_cmdline("LAB00009"));
    let o = agent(&root, &[]);
    let (stdout, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(0));
    assert!(stderr.contains("nothing is deployed to this machine (rule 8)"));
    assert!(stdout.contains("NETDEPLOY-AGENT-RESULT no-deployment reason=\"nothing is deployed to this machine (rule 8)\""));
    assert_eq!(lab.kinds(), ["no-deployment"]);
    assert_eq!(
        lab.statuses()[0]["reason"],
        "nothing is deployed to this machine (rule 8)"
    );
}

#[test]
fn boot_media_ask_for_their_preferred_deployment_in_media_context() {
    let lab = Lab::start();
    lab.set_policy(json!({"action": "none", "reason": "nothing (rule 8)"}));
    let root = lab.machine("console=ttyS0");
    std::fs::create_dir_all(root.join("etc/netdeploy")).unwrap();
    std::fs::write(
        root.join("etc/netdeploy/variables"),
        format!(
            "SMSTSServerURL={}\nSMSTSMediaType=BootMedia\nSMSTSPreferredAdvertID=LAB00002\n",
            lab.base()
        ),
    )
    .unwrap();
    let o = agent(&root, &[]);
    text(&o);
    assert_eq!(o.status.code(), Some(0));
    let req = lab
        .srv
        .requests()
        .into_iter()
        .find(|r| r.route() == "/agent/policy")
        .unwrap();
    assert_eq!(req.query("context"), Some("media"));
    assert_eq!(req.query("deployment"), Some("LAB00002"));
}

#[test]
fn a_boot_medium_presents_its_key_and_then_the_run_token_its_policy_brought() {
    let lab = Lab::start();
    lab.set_policy(json!({"action": "none", "reason": "nothing (rule 8)"}));
    let token = "3c".repeat(32);
    lab.site.lock().unwrap().run_token = Some(token.clone());
    let key = format!("0a0b0c0d.{}", "5a".repeat(32));
    let root = lab.machine("console=ttyS0");
    std::fs::create_dir_all(root.join("etc/netdeploy")).unwrap();
    std::fs::write(
        root.join("etc/netdeploy/variables"),
        format!(
            "SMSTSServerURL={}\nSMSTSMediaType=BootMedia\nNetdeployMediumKey={key}\n",
            lab.base()
        ),
    )
    .unwrap();
    let o = agent(&root, &[]);
    text(&o);
    assert_eq!(o.status.code(), Some(0));
    let reqs = lab.srv.requests();
    let policy = reqs.iter().find(|r| r.route() == "/agent/policy").unwrap();
    assert_eq!(
        policy.header("authorization"),
        Some(format!("Medium {key}").as_str())
    );
    let status = reqs.iter().find(|r| r.route() == "/agent/status").unwrap();
    assert_eq!(
        status.header("authorization"),
        Some(format!("Bearer {token}").as_str())
    );
}

#[test]
fn without_a_server_the_agent_fails_plainly() {
    let dir = tempfile::tempdir().unwrap();
    let o = agent(dir.path(), &[]);
    let (stdout, _) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout
        .contains("NETDEPLOY-AGENT-RESULT failure deployment=none step=\"\" reason=\"no server"));
}

#[test]
fn verify_checks_a_file_and_prints_the_rate() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("blob");
    let data = image(1 << 20);
    std::fs::write(&f, &data).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_netdeploy-agent"))
        .arg("verify")
        .arg(&f)
        .arg(sha(&data))
        .output()
        .unwrap();
    let (stdout, _) = text(&o);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout.starts_with("netdeploy-agent verify: ok "));
    assert!(stdout.contains(" bytes=1048576 "));
    assert!(stdout.contains(" MB/s="));
    let o = Command::new(env!("CARGO_BIN_EXE_netdeploy-agent"))
        .arg("verify")
        .arg(&f)
        .arg("0".repeat(64))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn a_protected_medium_asks_for_its_password_before_asking_the_server() {
    let lab = Lab::start();
    lab.set_policy(json!({"action": "none", "reason": "nothing (rule 8)"}));
    let root = lab.machine("console=ttyS0 netdeploy.vars=/netdeploy/variables");
    std::fs::create_dir_all(root.join("netdeploy")).unwrap();
    std::fs::write(
        root.join("netdeploy/variables"),
        format!(
            "[netdeploy]\r\nSMSTSServerURL={}\r\nSMSTSMediaType=BootMedia\r\n\
             SMSTSPreferredAdvertID=LAB00002\r\nSMSTSMediaPassword={}\r\n",
            lab.base(),
            stored_password("open sesame")
        ),
    )
    .unwrap();

    let o = agent_typing(
        &root,
        &[],
        "guess\nopen sesame \nOpen sesame\nopen sesame\n",
    );
    let (stdout, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stdout,
        "NETDEPLOY-AGENT-RESULT failure deployment=LAB00002 step=\"\" reason=\"wrong media password\"\n"
    );
    assert_eq!(
        stderr.matches("netdeploy-agent: media password: ").count(),
        3
    );
    assert!(lab.srv.requests().is_empty(), "nothing reaches the server");

    let o = agent_typing(&root, &[], "guess\r\nopen sesame\r\n");
    let (stdout, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(0));
    assert!(stderr.contains("netdeploy-agent: wrong media password, 2 attempts left\n"));
    assert!(stderr.contains("netdeploy-agent: media password accepted\n"));
    assert!(stdout.contains("NETDEPLOY-AGENT-RESULT no-deployment"));
    assert_eq!(lab.kinds(), ["no-deployment"]);
}

#[test]
fn a_malformed_media_password_is_a_configuration_failure() {
    let dir = tempfile::tempdir().unwrap();
    let vars = dir.path().join("variables");
    std::fs::write(
        &vars,
        "[netdeploy]\r\nSMSTSMediaType=FullMedia\r\nSMSTSMediaPassword=plain-text\r\n",
    )
    .unwrap();
    let o = agent_typing(
        dir.path(),
        &["--vars", vars.to_str().unwrap()],
        "plain-text\n",
    );
    let (stdout, _) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout.starts_with(&format!(
            "NETDEPLOY-AGENT-RESULT failure deployment=none step=\"\" reason=\"configuration: \
             SMSTSMediaPassword in {}: expected an argon2id hash",
            vars.display()
        )),
        "{stdout}"
    );
}

#[test]
fn a_medium_with_an_old_salted_sha256_password_says_to_rebuild_it() {
    let dir = tempfile::tempdir().unwrap();
    let vars = dir.path().join("variables");
    std::fs::write(
        &vars,
        "[netdeploy]\r\nSMSTSMediaType=FullMedia\r\nSMSTSMediaPassword=sha256$6e6574$\
         9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\r\n",
    )
    .unwrap();
    let o = agent_typing(dir.path(), &["--vars", vars.to_str().unwrap()], "test\n");
    let (stdout, _) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout.contains("rebuild this medium"), "{stdout}");
}

/// Boot media without a preferred deployment, for a machine with two available ones.
fn menu_lab(extra_cmdline: &str) -> (Lab, PathBuf) {
    menu_lab_with(extra_cmdline, "")
}

/// The same, with more lines in the variables file.
fn menu_lab_with(extra_cmdline: &str, extra_vars: &str) -> (Lab, PathBuf) {
    let lab = Lab::start();
    lab.site.lock().unwrap().menu = Some(json!({
        "action": "menu", "reason": "available deployments only: choose one (rule 6)",
        "entries": [
            {"id": "LAB00002", "name": "Say hello", "purpose": "available"},
            {"id": "LAB00003", "name": "Say goodbye", "purpose": "available"}
        ]
    }));
    lab.set_policy(json!({
        "action": "run", "reason": "preferred (rule 3)",
        "deployment": {"id": "LAB00003", "task_sequence": "bye", "name": "Say goodbye"},
        "steps": [{"name": "bye", "action": "run_command", "command": "echo goodbye"}]
    }));
    let root = lab.machine(&format!(
        "console=ttyS0 netdeploy.vars=/netdeploy/variables {extra_cmdline}"
    ));
    std::fs::create_dir_all(root.join("netdeploy")).unwrap();
    std::fs::write(
        root.join("netdeploy/variables"),
        format!(
            "[netdeploy]\r\nSMSTSServerURL={}\r\nSMSTSMediaType=BootMedia\r\n{extra_vars}",
            lab.base()
        ),
    )
    .unwrap();
    (lab, root)
}

#[test]
fn a_menu_lists_the_deployments_and_runs_the_one_typed() {
    let (lab, root) = menu_lab("");
    let o = agent_typing(&root, &[], "7\n2\n");
    let (stdout, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(0));
    assert!(
        stderr.contains("1) LAB00002  Say hello  (available)\n"),
        "{stderr}"
    );
    assert!(
        stderr.contains("2) LAB00003  Say goodbye  (available)\n"),
        "{stderr}"
    );
    assert!(stderr.contains("\"7\" is not in the menu"), "{stderr}");
    assert!(
        stdout.ends_with("goodbye\nNETDEPLOY-AGENT-RESULT success deployment=LAB00003\n"),
        "{stdout}"
    );
    let asked: Vec<Option<String>> = lab
        .srv
        .requests()
        .iter()
        .filter(|r| r.route() == "/agent/policy")
        .map(|r| r.query("deployment").map(str::to_owned))
        .collect();
    assert_eq!(asked, [None, Some("LAB00003".into())]);
    assert!(lab.srv.requests()[0].path.contains("context=media"));
    assert_eq!(lab.kinds(), ["started", "step", "succeeded"]);
    assert_eq!(lab.statuses()[0]["deployment"], "LAB00003");
}

#[test]
fn a_menu_choice_typed_ahead_of_the_menu_after_the_password_is_kept() {
    let vars = format!("SMSTSMediaPassword={}\r\n", stored_password("open sesame"));
    let (lab, root) = menu_lab_with("", &vars);
    let o = agent_typing(&root, &[], "open sesame\nLAB00003\n");
    let (stdout, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("media password accepted"), "{stderr}");
    assert!(stderr.contains("chosen: LAB00003"), "{stderr}");
    assert!(stdout.ends_with("NETDEPLOY-AGENT-RESULT success deployment=LAB00003\n"));
    assert_eq!(lab.kinds(), ["started", "step", "succeeded"]);
}

#[test]
fn no_answer_to_the_menu_in_time_leaves_the_machine_alone_and_reports_nothing() {
    let (lab, root) = menu_lab("netdeploy.menu_timeout=1");
    // The console stays open and silent.
    let mut child = Command::new(env!("CARGO_BIN_EXE_netdeploy-agent"))
        .arg("--root")
        .arg(&root)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take();
    let o = child.wait_with_output().unwrap();
    drop(stdin);
    let (stdout, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(0));
    assert!(
        stderr.contains("no deployment was chosen within 1 s"),
        "{stderr}"
    );
    assert!(
        stdout.starts_with("NETDEPLOY-AGENT-RESULT no-deployment"),
        "{stdout}"
    );
    assert!(
        lab.statuses().is_empty(),
        "nothing is reported: {:?}",
        lab.kinds()
    );
    let policies = lab
        .srv
        .requests()
        .iter()
        .filter(|r| r.route() == "/agent/policy")
        .count();
    assert_eq!(policies, 1);
}

/// A full media under `root`: `/netdeploy/variables` as the media builder writes it,
/// `/netdeploy/policy.json` and `/netdeploy/content/<sha256>` for each of `files`.
fn full_media(root: &Path, extra_vars: &str, policy: &Value, files: &[&[u8]]) -> PathBuf {
    let dir = root.join("netdeploy");
    std::fs::create_dir_all(dir.join("content")).unwrap();
    std::fs::write(
        dir.join("variables"),
        format!("[netdeploy]\r\nSMSTSMediaType=FullMedia\r\n{extra_vars}"),
    )
    .unwrap();
    std::fs::write(dir.join("policy.json"), serde_json::to_vec(policy).unwrap()).unwrap();
    for f in files {
        std::fs::write(dir.join("content").join(sha(f)), f).unwrap();
    }
    dir
}

/// A policy file entry as the server writes it: the URL points at the server, which a full
/// media ignores.
fn media_entry(path: &str, data: &[u8]) -> Value {
    let h = sha(data);
    json!({"path": path, "size": data.len(), "sha256": h,
           "url": format!("http://10.77.0.1:8080/content/{h}")})
}

/// A machine root without any network interface.
fn machine_without_nic(dir: &Path) -> PathBuf {
    let root = dir.join("root");
    std::fs::create_dir_all(root.join("proc")).unwrap();
    std::fs::write(
        root.join("proc/cmdline"),
        "console=ttyS0 netdeploy.vars=/netdeploy/variables\n",
    )
    .unwrap();
    root
}

fn status_kinds(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["kind"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

#[test]
fn full_media_run_their_task_sequence_from_the_medium_without_a_network() {
    let dir = tempfile::tempdir().unwrap();
    let root = machine_without_nic(dir.path());
    let img = image(3 << 20);
    let motd = b"welcome from the medium\n".to_vec();
    let disk = dir.path().join("vda");
    std::fs::write(&disk, vec![0u8; 4 << 20]).unwrap();
    let (motd_out, out) = (dir.path().join("motd"), dir.path().join("out"));
    let policy = json!({
        "action": "run", "reason": "required (rule 5)",
        "deployment": {"id": "LAB00005", "task_sequence": "ts", "name": "Offline",
                       "option": "download_on_demand"},
        "steps": [
            {"name": "write the disk", "action": "apply_image", "package": "disk",
             "file": "disk.img", "target": disk},
            {"name": "motd", "action": "write_file", "package": "tools", "file": "etc/motd",
             "target": motd_out},
            {"name": "tool", "action": "run_command", "package": "tools",
             "command": format!("cat etc/motd > {}", out.display())},
            {"name": "off", "action": "poweroff"}
        ],
        "packages": {"disk": [media_entry("disk.img", &img)],
                     "tools": [media_entry("etc/motd", &motd)]},
        "warnings": []
    });
    let media = full_media(&root, "", &policy, &[&img, &motd]);
    let o = agent(&root, &[]);
    let (stdout, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(
        stdout,
        "NETDEPLOY-AGENT-RESULT success deployment=LAB00005\n"
    );
    let status_file = media.join("status/machine.jsonl");
    for line in [
        "netdeploy-agent: machine mac=none uuid=none context=media deployment=none\n".to_owned(),
        format!(
            "netdeploy-agent: full media: task sequence from {}, content from {}, nothing from \
             the network\n",
            media.join("policy.json").display(),
            media.join("content").display()
        ),
        format!(
            "netdeploy-agent: status messages are appended to {} (no server)\n",
            status_file.display()
        ),
        "netdeploy-agent: status {\"kind\":\"started\",\"deployment\":\"LAB00005\",\"at\":"
            .to_owned(),
        "netdeploy-agent: status {\"kind\":\"succeeded\",\"deployment\":\"LAB00005\",\"at\":"
            .to_owned(),
    ] {
        assert!(stderr.contains(&line), "missing {line:?}");
    }
    assert!(stderr.contains("would poweroff now"));
    assert_eq!(&std::fs::read(&disk).unwrap()[..img.len()], &img[..]);
    assert_eq!(std::fs::read(&motd_out).unwrap(), motd);
    assert_eq!(std::fs::read(&out).unwrap(), motd);
    assert_eq!(
        status_kinds(&status_file),
        ["started", "step", "step", "step", "step", "succeeded"]
    );
}

#[test]
fn altered_media_content_fails_the_step_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let root = machine_without_nic(dir.path());
    let motd = b"welcome\n".to_vec();
    let target = dir.path().join("etc/motd");
    let policy = json!({
        "action": "run",
        "deployment": {"id": "LAB00006", "option": "download_on_demand"},
        "steps": [
            {"name": "note", "action": "write_file", "value": "ok", "target": dir.path().join("note")},
            {"name": "motd", "action": "write_file", "package": "tools", "file": "etc/motd",
             "target": target},
            {"name": "never", "action": "run_command", "command": "exit 0"}
        ],
        "packages": {"tools": [media_entry("etc/motd", &motd)]}
    });
    let media = full_media(&root, "", &policy, &[]);
    std::fs::write(media.join("content").join(sha(&motd)), b"w3lcome\n").unwrap();
    let status_file = dir.path().join("status.jsonl");
    let o = agent(&root, &["--status-file", status_file.to_str().unwrap()]);
    let (stdout, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout.starts_with(&format!(
            "NETDEPLOY-AGENT-RESULT failure deployment=LAB00006 step=\"motd\" \
             reason=\"etc/motd: SHA-256 mismatch: expected {}, got {}\"",
            sha(&motd),
            sha(b"w3lcome\n")
        )),
        "{stdout}"
    );
    assert!(!stderr.contains("step 3/3"));
    assert!(!target.exists());
    assert_eq!(
        std::fs::read_dir(dir.path().join("etc")).unwrap().count(),
        0
    );
    // --status-file takes the place of the default file.
    assert_eq!(status_kinds(&status_file), ["started", "step", "failed"]);
    assert!(!media.join("status/machine.jsonl").exists());
    let failed: Value = serde_json::from_str(
        std::fs::read_to_string(&status_file)
            .unwrap()
            .lines()
            .last()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(failed["file"], "etc/motd");
    assert_eq!(failed["step"], "motd");
}

#[test]
fn download_all_on_full_media_refuses_an_altered_image_before_touching_the_disk() {
    let dir = tempfile::tempdir().unwrap();
    let root = machine_without_nic(dir.path());
    let img = image(1 << 20);
    let disk = dir.path().join("vda");
    std::fs::write(&disk, vec![0u8; 2 << 20]).unwrap();
    let policy = json!({
        "action": "run",
        "deployment": {"id": "LAB00007", "option": "download_all"},
        "steps": [{"name": "write the disk", "action": "apply_image", "package": "disk",
                   "file": "disk.img", "target": disk}],
        "packages": {"disk": [media_entry("disk.img", &img)]}
    });
    let media = full_media(&root, "", &policy, &[]);
    let mut altered = img.clone();
    altered[4096] ^= 0xff;
    std::fs::write(media.join("content").join(sha(&img)), &altered).unwrap();
    let o = agent(&root, &[]);
    let (stdout, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr.contains("download_all: verifying 1 files (1.0 MiB) before the first step"));
    assert!(stdout.contains(
        "NETDEPLOY-AGENT-RESULT failure deployment=LAB00007 step=\"\" reason=\"disk.img: SHA-256 mismatch"
    ));
    assert!(std::fs::read(&disk).unwrap().iter().all(|b| *b == 0));

    // The right image passes the check, and the step writes it.
    std::fs::write(media.join("content").join(sha(&img)), &img).unwrap();
    let o = agent(&root, &[]);
    let (stdout, _) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{stdout}");
    assert_eq!(&std::fs::read(&disk).unwrap()[..img.len()], &img[..]);
    assert_eq!(
        status_kinds(&media.join("status/machine.jsonl")),
        ["started", "failed", "started", "step", "succeeded"]
    );
}

#[test]
fn missing_media_content_or_policy_fail_plainly() {
    let dir = tempfile::tempdir().unwrap();
    let root = machine_without_nic(dir.path());
    let data = b"data".to_vec();
    let policy = json!({
        "action": "run",
        "deployment": {"id": "LAB00008"},
        "steps": [{"name": "copy", "action": "write_file", "package": "p", "file": "f",
                   "target": dir.path().join("f")}],
        "packages": {"p": [media_entry("f", &data)]}
    });
    let media = full_media(&root, "", &policy, &[]);
    let o = agent(&root, &[]);
    let (stdout, _) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stdout,
        format!(
            "NETDEPLOY-AGENT-RESULT failure deployment=LAB00008 step=\"copy\" reason=\"f: not \
             found at {}\"\n",
            media.join("content").join(sha(&data)).display()
        )
    );
    std::fs::remove_file(media.join("policy.json")).unwrap();
    let o = agent(&root, &[]);
    let (stdout, _) = text(&o);
    assert!(
        stdout.starts_with(&format!(
            "NETDEPLOY-AGENT-RESULT failure deployment=none step=\"\" reason=\"cannot read the \
             media's policy {}: ",
            media.join("policy.json").display()
        )),
        "{stdout}"
    );
}

#[test]
fn full_media_report_to_their_server_when_it_answers_and_fetch_nothing() {
    let lab = Lab::start();
    let root = lab.machine("console=ttyS0 netdeploy.vars=/netdeploy/variables");
    let data = b"from the medium\n".to_vec();
    let mut entry = lab.content("f", b"from the server\n");
    entry["sha256"] = json!(sha(&data));
    entry["size"] = json!(data.len());
    let policy = json!({
        "action": "run",
        "deployment": {"id": "LAB00010"},
        "steps": [{"name": "copy", "action": "write_file", "package": "p", "file": "f",
                   "target": lab.path("f")}],
        "packages": {"p": [entry]}
    });
    let media = full_media(
        &root,
        &format!(
            "SMSTSServerURL={}\r\nSMSTSPreferredAdvertID=LAB00010\r\n",
            lab.base()
        ),
        &policy,
        &[&data],
    );
    let o = agent(&root, &[]);
    let (stdout, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout.contains("NETDEPLOY-AGENT-RESULT success deployment=LAB00010"));
    assert_eq!(std::fs::read(lab.path("f")).unwrap(), data);
    assert!(stderr.contains(&format!(
        "netdeploy-agent: status messages are posted to {}/agent/status; if the server cannot \
         be reached, appended to {}\n",
        lab.base(),
        media
            .join(format!("status/{}.jsonl", MAC.replace(':', "-")))
            .display()
    )));
    assert_eq!(lab.kinds(), ["started", "step", "succeeded"]);
    assert_eq!(lab.statuses()[0]["mac"], MAC);
    let routes: Vec<String> = lab
        .srv
        .requests()
        .iter()
        .map(|r| r.route().to_owned())
        .collect();
    assert!(routes.iter().all(|r| r == "/agent/status"), "{routes:?}");
    assert!(!media
        .join(format!("status/{}.jsonl", MAC.replace(':', "-")))
        .exists());
}

#[test]
fn a_full_medium_opens_its_sealed_secret_with_the_typed_password_and_never_shows_it() {
    use netdeploy_wire::seal::{SealKey, NONCE_LEN, SALT_LEN};
    let dir = tempfile::tempdir().unwrap();
    let root = machine_without_nic(dir.path());
    let key = SealKey::derive("lab secret", &[4; SALT_LEN]).unwrap();
    let policy = json!({
        "action": "run",
        "deployment": {"id": "LAB00006", "task_sequence": "ts", "name": "Join",
                       "option": "download_on_demand"},
        "steps": [
            {"name": "join", "action": "set_variable", "variable": "DomainPassword",
             "secret": true, "sealed": key.seal("hunter2-long", [6; NONCE_LEN])},
            // The command sees the value; the medium holds only its hash.
            {"name": "use", "action": "run_command",
             "command": format!("printf %s \"$DomainPassword\" | sha256sum | grep -q {}",
                                sha(b"hunter2-long"))}
        ],
        "packages": {}, "warnings": []
    });
    let vars = format!("SMSTSMediaPassword={}\r\n", stored_password("lab secret"));
    let media = full_media(&root, &vars, &policy, &[]);
    let on_media = std::fs::read_to_string(media.join("policy.json")).unwrap();
    assert!(!on_media.contains("hunter2"), "{on_media}");

    let o = agent_typing(&root, &[], "lab secret\n");
    let (stdout, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{stderr}");
    assert_eq!(
        stdout,
        "NETDEPLOY-AGENT-RESULT success deployment=LAB00006\n"
    );
    assert!(
        stderr.contains("set_variable DomainPassword=********"),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"), "{stderr}");
    let status = std::fs::read_to_string(media.join("status/machine.jsonl")).unwrap();
    assert!(!status.contains("hunter2"), "{status}");
}

/// An HTTPS server on a loopback port with a certificate rcgen made: answers the policy with
/// `none` and takes status messages. Records the route of every request that got past the
/// TLS handshake.
struct HttpsLab {
    url: String,
    pin: netdeploy_wire::cert_pin::CertPin,
    routes: Arc<Mutex<Vec<String>>>,
}

impl HttpsLab {
    fn start() -> HttpsLab {
        use std::io::{BufRead, BufReader, Read};
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let pin = netdeploy_wire::cert_pin::CertPin::from_digest(Sha256::digest(cert.der()).into());
        let config = Arc::new(
            rustls::ServerConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .unwrap(),
        );
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("https://{}", listener.local_addr().unwrap());
        let routes = Arc::new(Mutex::new(Vec::new()));
        let seen = routes.clone();
        std::thread::spawn(move || {
            for tcp in listener.incoming().map_while(Result::ok) {
                let (config, seen) = (config.clone(), seen.clone());
                std::thread::spawn(move || {
                    let conn = rustls::ServerConnection::new(config).unwrap();
                    let mut tls = rustls::StreamOwned::new(conn, tcp);
                    let mut reader = BufReader::new(&mut tls);
                    let mut head = Vec::new();
                    let mut line = String::new();
                    while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                        if line == "\r\n" {
                            break;
                        }
                        head.push(std::mem::take(&mut line));
                    }
                    let Some(first) = head.first() else { return };
                    let length: usize = head
                        .iter()
                        .find_map(|h| {
                            h.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse().unwrap())
                        })
                        .unwrap_or(0);
                    let mut body = vec![0u8; length];
                    let _ = reader.read_exact(&mut body);
                    let route = first
                        .split(' ')
                        .nth(1)
                        .unwrap_or("")
                        .split('?')
                        .next()
                        .unwrap_or("")
                        .to_owned();
                    seen.lock().unwrap().push(route.clone());
                    let answer: Vec<u8> = if route == "/agent/policy" {
                        let body = r#"{"action":"none","reason":"nothing (rule 8)"}"#;
                        format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).into_bytes()
                    } else {
                        b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n".to_vec()
                    };
                    let _ = tls.write_all(&answer);
                    tls.conn.send_close_notify();
                    let _ = tls.flush();
                });
            }
        });
        HttpsLab { url, pin, routes }
    }

    fn routes(&self) -> Vec<String> {
        self.routes.lock().unwrap().clone()
    }
}

#[test]
fn an_https_server_with_the_pinned_certificate_is_used() {
    let lab = HttpsLab::start();
    let dir = tempfile::tempdir().unwrap();
    let o = agent(
        dir.path(),
        &[
            "--server",
            &lab.url,
            "--pin",
            &lab.pin.to_string(),
            "--deployment",
            "LAB00009",
        ],
    );
    let (stdout, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{stderr}");
    assert!(
        stdout.contains("NETDEPLOY-AGENT-RESULT no-deployment"),
        "{stdout}"
    );
    assert_eq!(lab.routes(), ["/agent/policy", "/agent/status"]);
}

#[test]
fn an_https_server_with_another_certificate_is_refused_naming_both_pins() {
    let lab = HttpsLab::start();
    let wrong = format!("sha256:{}", "0f".repeat(32));
    let dir = tempfile::tempdir().unwrap();
    let o = agent(
        dir.path(),
        &[
            "--server",
            &lab.url,
            "--pin",
            &wrong,
            "--deployment",
            "LAB00009",
        ],
    );
    let (stdout, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout.contains("NETDEPLOY-AGENT-RESULT failure"),
        "{stdout}"
    );
    let said = format!("{stdout}{stderr}");
    assert!(said.contains(&wrong), "{said}");
    assert!(said.contains(&lab.pin.to_string()), "{said}");
    // Refused at once, not retried, and nothing reached the server.
    assert!(!said.contains("retrying"), "{said}");
    assert!(lab.routes().is_empty(), "{:?}", lab.routes());
}

#[test]
fn an_https_server_without_a_pin_is_a_configuration_failure() {
    let lab = HttpsLab::start();
    let dir = tempfile::tempdir().unwrap();
    let o = agent(
        dir.path(),
        &["--server", &lab.url, "--deployment", "LAB00009"],
    );
    let (stdout, _) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout.contains("configuration: --server: "), "{stdout}");
    assert!(stdout.contains("no certificate pin"), "{stdout}");
    assert!(lab.routes().is_empty(), "{:?}", lab.routes());
}

/// A task sequence that restarts the machine after its first steps: a variable, a file, the
/// restart, then a command that reads the variable.
fn restarting_policy(first: &Path, out: &Path, resume_at: usize) -> Value {
    json!({
        "action": "run", "reason": "required (rule 5)",
        "deployment": {"id": "LAB00007", "task_sequence": "ts", "name": "Restart",
                       "option": "download_on_demand"},
        "steps": [
            {"name": "name", "action": "set_variable", "variable": "OSDComputerName",
             "value": "pc7"},
            {"name": "first", "action": "write_file", "value": "before", "target": first},
            {"name": "restart", "action": "reboot"},
            {"name": "second", "action": "run_command",
             "command": format!("echo \"$OSDComputerName\" > {}", out.display())}
        ],
        "packages": {}, "warnings": [], "resume_at": resume_at
    })
}

#[test]
fn a_reboot_in_the_middle_reports_rebooting_and_the_next_run_continues_at_the_next_step() {
    let lab = Lab::start();
    let (first, out) = (lab.path("first"), lab.path("out"));
    lab.set_policy(restarting_policy(&first, &out, 0));
    let root = lab.machine(&lab.pxe_cmdline("LAB00007"));
    let o = agent(&root, &[]);
    let (stdout, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(
        stdout,
        "NETDEPLOY-AGENT-RESULT restarting deployment=LAB00007 next_step=4\n"
    );
    assert!(stderr.contains("would reboot now"), "{stderr}");
    assert!(first.exists() && !out.exists());
    let rebooting = lab.statuses().pop().unwrap();
    assert_eq!(rebooting["kind"], "rebooting");
    assert_eq!(rebooting["step_index"], 2);
    assert_eq!(rebooting["step"], "restart");
    assert_eq!(lab.kinds(), ["started", "step", "step", "rebooting"]);

    // The next boot's policy continues at step 3 (0-based): the steps before it do not run
    // again, but the variable they set is set.
    std::fs::remove_file(&first).unwrap();
    lab.set_policy(restarting_policy(&first, &out, 3));
    let o = agent(&root, &[]);
    let (stdout, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(
        stdout,
        "NETDEPLOY-AGENT-RESULT success deployment=LAB00007\n"
    );
    assert!(
        stderr.contains("continuing after a restart at step 4/4"),
        "{stderr}"
    );
    assert!(!stderr.contains("would reboot now"), "{stderr}");
    assert!(!first.exists(), "a step before the restart ran again");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "pc7\n");
    assert_eq!(
        lab.kinds(),
        [
            "started",
            "step",
            "step",
            "rebooting",
            "started",
            "step",
            "succeeded"
        ]
    );
}

#[test]
fn full_media_keep_where_a_restarted_run_continues_on_the_medium() {
    let dir = tempfile::tempdir().unwrap();
    let root = machine_without_nic(dir.path());
    let (first, out) = (dir.path().join("first"), dir.path().join("out"));
    let media = full_media(&root, "", &restarting_policy(&first, &out, 0), &[]);
    let resume = media.join("resume/machine.json");
    let o = agent(&root, &[]);
    let (stdout, _) = text(&o);
    assert_eq!(o.status.code(), Some(0));
    assert!(
        stdout.contains("restarting deployment=LAB00007 next_step=4"),
        "{stdout}"
    );
    let kept: Value = serde_json::from_slice(&std::fs::read(&resume).unwrap()).unwrap();
    assert_eq!(kept, json!({"deployment": "LAB00007", "resume_at": 3}));

    std::fs::remove_file(&first).unwrap();
    let o = agent(&root, &[]);
    let (stdout, _) = text(&o);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(
        stdout,
        "NETDEPLOY-AGENT-RESULT success deployment=LAB00007\n"
    );
    assert!(!first.exists(), "a step before the restart ran again");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "pc7\n");
    assert!(
        !resume.exists(),
        "the end of the run forgets the resume point"
    );
    assert_eq!(
        status_kinds(&media.join("status/machine.jsonl")),
        [
            "started",
            "step",
            "step",
            "rebooting",
            "started",
            "step",
            "succeeded"
        ]
    );
}
