//! The Windows build of the agent (`netdeploy-agent.exe`, target `x86_64-pc-windows-gnu`) under
//! Wine, against a real netdeploy server on loopback: the same path as Windows PE booted over
//! the network. The test takes the `netdeploy.ini` that the iPXE script of a `winpe`
//! deployment injects through wimboot, and the agent runs with only that file: it asks for its
//! policy with the run token the file carries, downloads and verifies a package file, runs
//! `cmd.exe` commands that see the task sequence variables, writes files, and reports; the
//! server then counts the machine as compliant.
//!
//! Wine 8 (Debian 12) lacks `bcryptprimitives.dll`, which Windows PE has; the test builds the
//! stand-in in `tests/wine/` with MinGW and puts it beside the executable.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::harness::{boot_script, cli_ok, loopback_config, Server};

const MAC: &str = "52:54:00:0e:01:01";

/// `target/x86_64-pc-windows-gnu/debug/netdeploy-agent.exe`, built by lab/test.sh.
fn windows_agent() -> PathBuf {
    let target = Path::new(crate::harness::binary())
        .ancestors()
        .nth(2)
        .expect("the target directory")
        .to_owned();
    let exe = target.join("x86_64-pc-windows-gnu/debug/netdeploy-agent.exe");
    assert!(
        exe.is_file(),
        "{} is missing: build it with `cargo build --target x86_64-pc-windows-gnu -p \
         netdeploy-agent` (lab/test.sh does)",
        exe.display()
    );
    exe
}

/// Wine's path for a Linux path: its drive Z: is the root.
fn wine_path(p: &Path) -> String {
    format!("Z:{}", p.display()).replace('/', "\\")
}

/// The agent and the DLL stand-in in `dir`, ready to run.
fn install_agent(dir: &Path) -> PathBuf {
    let exe = dir.join("netdeploy-agent.exe");
    std::fs::copy(windows_agent(), &exe).unwrap();
    let shim = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/wine/bcryptprimitives.c");
    let out = Command::new("x86_64-w64-mingw32-gcc")
        .args(["-shared", "-O2", "-o"])
        .arg(dir.join("bcryptprimitives.dll"))
        .arg(&shim)
        .arg("-ladvapi32")
        .output()
        .expect("x86_64-w64-mingw32-gcc (Debian package gcc-mingw-w64-x86-64)");
    assert!(out.status.success(), "{out:?}");
    exe
}

/// Runs `exe` under 64-bit Wine with its own prefix in `dir`, then stops that prefix's
/// wineserver.
fn wine(dir: &Path, exe: &Path, args: &[&str]) -> Output {
    let prefix = dir.join("wineprefix");
    let run = |program: &str, args: &[&str]| {
        Command::new(program)
            .args(args)
            .env("WINEPREFIX", &prefix)
            .env("WINEDEBUG", "-all")
            .env("WINEDLLOVERRIDES", "mscoree,mshtml=")
            .env_remove("DISPLAY")
            .output()
            .unwrap_or_else(|e| panic!("{program}: {e} (Debian package wine64)"))
    };
    let mut argv = vec![exe.to_str().unwrap()];
    argv.extend_from_slice(args);
    let out = run("/usr/lib/wine/wine64", &argv);
    run("/usr/lib/wine/wineserver64", &["-k"]);
    out
}

fn write_site(dir: &Path, out: &Path) -> PathBuf {
    for (name, bytes) in [
        ("wimboot", "wimboot binary"),
        ("bootmgr", "bootmgr bytes"),
        ("BCD", "bcd store"),
        ("boot.sdi", "sdi"),
        ("boot.wim", "a windows image"),
    ] {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
    std::fs::create_dir_all(dir.join("tools")).unwrap();
    std::fs::write(dir.join("tools/unattend.xml"), "<unattend/>\r\n").unwrap();
    let out = |name: &str| format!("{}\\{name}", wine_path(out));
    let site = format!(
        r#"site_code = "LAB"
[[device]]
name = "pc1"
macs = ["{MAC}"]

[[collection]]
id = "lab"
members = ["pc1"]

[[package]]
id = "tools"
from = "tools"

[[boot_image]]
id = "winpe-x64"
arch = "x64"
kind = "winpe"
wimboot = "wimboot"
bootmgr = "bootmgr"
bcd = "BCD"
boot_sdi = "boot.sdi"
boot_wim = "boot.wim"

[[task_sequence]]
id = "windows"
name = "Windows"
boot_image = "winpe-x64"
steps = [
    {{ name = "computer name", action = "set_variable", variable = "OSDComputerName", value = "PC-WINE" }},
    {{ name = "say", action = "run_command", command = 'echo %OSDComputerName% %NETDEPLOY_DEPLOYMENT%> {said}' }},
    {{ name = "answer file", action = "write_file", package = "tools", file = "unattend.xml", target = {unattend:?} }},
    {{ name = "note", action = "write_file", value = "imaged by netdeploy", target = {note:?} }},
    {{ name = "check", action = "run_command", command = 'if not exist {unattend} exit /b 9' }},
]

[[deployment]]
id = "LAB00001"
task_sequence = "windows"
collection = "lab"
purpose = "required"
available_to = "media_pxe"
"#,
        said = out("said.txt"),
        unattend = out("unattend.xml"),
        note = out("note.txt"),
    );
    let path = dir.join("site.toml");
    std::fs::write(&path, site).unwrap();
    path
}

/// A Windows PE run from the `netdeploy.ini` the iPXE script injects, with `config_extra`
/// added to the server's configuration; returns the agent's console.
fn winpe_run(config_extra: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let data = dir.path().join("data");
    let site = write_site(dir.path(), &out);
    cli_ok(&data, &["site", "apply", site.to_str().unwrap()]);
    let server = Server::start(
        dir.path(),
        &loopback_config(dir.path(), "proxy", config_extra),
    );

    // What Windows PE gets: the netdeploy.ini of the deployment's iPXE script.
    let (bin, root, exe) = agent_dirs(dir.path());
    let ini = boot_and_take_ini(&server, &bin);
    assert!(ini.contains("NetdeployRunToken="), "{ini}");
    let console = run_agent(dir.path(), &exe, &bin, &root);
    assert!(
        console.contains("machine mac=52:54:00:0e:01:01"),
        "{console}"
    );
    assert!(
        console.contains("context=pxe deployment=LAB00001"),
        "{console}"
    );

    // cmd.exe ran the commands with the task sequence variables in their environment.
    assert_eq!(
        std::fs::read_to_string(out.join("said.txt")).unwrap(),
        "PC-WINE LAB00001\r\n"
    );
    // The package file was downloaded and verified; the text was written.
    assert_eq!(
        std::fs::read(out.join("unattend.xml")).unwrap(),
        b"<unattend/>\r\n"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("note.txt")).unwrap(),
        "imaged by netdeploy"
    );
    // The server took the reports: the machine is compliant.
    let status: serde_json::Value =
        serde_json::from_str(&cli_ok(&server.data_dir(), &["status", "--json"])).unwrap();
    let d = status["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["deployment"] == "LAB00001")
        .unwrap();
    assert_eq!(d["counts"]["compliant"], 1, "{status:#}\n{console}");
    console
}

#[test]
fn windows_agent_under_wine_runs_a_winpe_deployment_from_its_netdeploy_ini() {
    let console = winpe_run("");
    assert!(console.contains("server from SMSTSServerURL"), "{console}");
}

#[test]
fn windows_agent_under_wine_pins_the_servers_certificate_over_https() {
    // The variables file carries the https URL and the pin; the agent trusts nothing else.
    let console = winpe_run("[http.tls]\nport = 0\n");
    assert!(console.contains("https://127.0.0.1:"), "{console}");
}

/// The recorders `diskpart.exe`, `dism.exe` and `bcdboot.exe` built from
/// `tests/wine/recorder.c` into `dir`, beside the agent, where Windows looks first for a
/// program run by name. Each appends its arguments (and diskpart its script) to
/// `dir/calls.txt` and exits 0.
fn install_recorders(dir: &Path) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/wine/recorder.c");
    for tool in ["diskpart", "dism", "bcdboot"] {
        let out = Command::new("x86_64-w64-mingw32-gcc")
            .args(["-O2", "-o"])
            .arg(dir.join(format!("{tool}.exe")))
            .arg(&src)
            .output()
            .expect("x86_64-w64-mingw32-gcc (Debian package gcc-mingw-w64-x86-64)");
        assert!(out.status.success(), "{out:?}");
    }
}

/// A Windows PE deployment of the disk steps under Wine, the tools replaced by recorders.
/// Returns the recorded calls, the agent's machine root, its console, and the directory
/// that holds them.
fn winpe_disk_run() -> (String, PathBuf, String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let disk = r#"disk = { path = '\\.\PhysicalDrive0' }"#;
    let steps = format!(
        r#"    {{ name = "lay out", action = "partition_disk", {disk}, layout = {{ table = "gpt", partitions = [
        {{ role = "esp", size = "260MiB", label = "System" }},
        {{ role = "msr", size = "16MiB" }},
        {{ role = "windows", size = "rest", label = "Windows" }} ] }} }},
    {{ name = "reformat", action = "format", {disk}, partition = 3, filesystem = "ntfs" }},
    {{ name = "windows", action = "apply_image", package = "os", file = "install.wim", {disk}, partition = 3 }},
    {{ name = "boot files", action = "bcdboot" }},"#
    );
    let wim = b"MSWIM\0\0\0 a windows image".to_vec();
    let site = write_steps_site(d, &steps, &[("os", "install.wim", wim)]);
    cli_ok(&d.join("data"), &["site", "apply", site.to_str().unwrap()]);
    let server = Server::start(d, &loopback_config(d, "proxy", ""));
    let (bin, root, exe) = agent_dirs(d);
    boot_and_take_ini(&server, &bin);
    install_recorders(&bin);
    let console = run_agent(d, &exe, &bin, &root);
    let calls = std::fs::read_to_string(bin.join("calls.txt")).unwrap_or_default();
    (calls, root, console, dir)
}

#[test]
fn winpe_disk_steps_run_diskpart_dism_and_bcdboot_with_the_generated_scripts_recorder() {
    let (calls, root, console, _dir) = winpe_disk_run();
    // The agent's state directory under `--root`, as the agent spells it.
    let state = format!("{}\\var/lib/netdeploy", wine_path(&root));
    let cache = format!("{state}/packages\\os\\install.wim");
    let want = format!(
        "diskpart /s {state}\\diskpart-partition.txt\n\
         select disk 0\r\nclean\r\nconvert gpt\r\n\
         create partition efi size=260\r\n\
         format quick fs=fat32 label=\"System\"\r\n\
         assign letter=S\r\n\
         create partition msr size=16\r\n\
         create partition primary\r\n\
         format quick fs=ntfs label=\"Windows\"\r\n\
         assign letter=W\r\n\
         exit\r\n----\n\
         diskpart /s {state}\\diskpart-format.txt\n\
         select disk 0\r\nselect partition 3\r\nformat quick fs=ntfs label=\"Windows\"\r\nexit\r\n----\n\
         dism /Apply-Image /ImageFile:{cache} /Index:1 /ApplyDir:W:\\\n\
         bcdboot W:\\Windows /s S: /f ALL\n"
    );
    // The system partition is the ESP the layout made. Wine 8's kernel32 has no
    // GetFirmwareType, so the agent asks bcdboot for both firmwares' boot files.
    assert_eq!(calls, want, "{console}");
    assert!(console.contains("step 4/4 \"boot files\": ok"), "{console}");
}

/// What Windows PE has in `X:\Windows\System32`, and the API sets Windows resolves itself.
const WINPE_DLLS: &[&str] = &[
    "kernel32.dll",
    "ntdll.dll",
    "msvcrt.dll",
    "userenv.dll",
    "ws2_32.dll",
    "iphlpapi.dll",
    "bcryptprimitives.dll",
    "bcrypt.dll",
    "advapi32.dll",
];

#[test]
fn the_windows_agent_imports_no_dll_beyond_what_windows_pe_has() {
    let out = Command::new("x86_64-w64-mingw32-objdump")
        .arg("-p")
        .arg(windows_agent())
        .output()
        .expect("x86_64-w64-mingw32-objdump (Debian package binutils-mingw-w64-x86-64)");
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let dlls: Vec<String> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("DLL Name: "))
        .map(str::to_ascii_lowercase)
        .collect();
    assert!(dlls.contains(&"kernel32.dll".to_owned()), "{text}");
    for dll in &dlls {
        assert!(
            WINPE_DLLS.contains(&dll.as_str()) || dll.starts_with("api-ms-win-core-"),
            "netdeploy-agent.exe imports {dll}, which Windows PE does not have; all: {dlls:?}"
        );
    }
}

/// The site of [`write_site`] with `steps` (TOML array items) in place of its own, and a
/// package of one file for each `(package, file, bytes)`.
fn write_steps_site(dir: &Path, steps: &str, files: &[(&str, &str, Vec<u8>)]) -> PathBuf {
    let mut packages = String::new();
    for (id, file, bytes) in files {
        std::fs::create_dir_all(dir.join(id)).unwrap();
        std::fs::write(dir.join(id).join(file), bytes).unwrap();
        packages.push_str(&format!("[[package]]\nid = {id:?}\nfrom = {id:?}\n\n"));
    }
    let text = std::fs::read_to_string(write_site(dir, &dir.join("out")))
        .unwrap()
        .replace("[[boot_image]]", &format!("{packages}[[boot_image]]"));
    let start = text.find("steps = [").unwrap();
    let end = start + text[start..].find("\n]\n").unwrap() + 3;
    let text = format!("{}steps = [\n{steps}\n]\n{}", &text[..start], &text[end..]);
    let path = dir.join("site.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// The `netdeploy.ini` a new network boot of the machine gets, written into `bin`.
fn boot_and_take_ini(server: &Server, bin: &Path) -> String {
    let script = boot_script(server, "/boot.ipxe?mac=52-54-00-0e-01-01&arch=7");
    let url = server.url();
    let ini_path = script
        .lines()
        .find(|l| l.contains("--name netdeploy.ini"))
        .and_then(|l| l.split_whitespace().find(|w| w.starts_with("http://")))
        .and_then(|u| u.strip_prefix(&url))
        .unwrap_or_else(|| panic!("no netdeploy.ini in:\n{script}"))
        .to_owned();
    let ini = crate::harness::http_get(server.http_addr(), &ini_path);
    std::fs::write(bin.join("netdeploy.ini"), &ini).unwrap();
    ini
}

/// `bin` with the agent installed, and an empty machine root, below `d`.
fn agent_dirs(d: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let (bin, root) = (d.join("bin"), d.join("root"));
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::create_dir_all(&root).unwrap();
    let exe = install_agent(&bin);
    (bin, root, exe)
}

fn run_agent(dir: &Path, exe: &Path, bin: &Path, root: &Path) -> String {
    let o = wine(
        dir,
        exe,
        &[
            "run",
            "--vars",
            &wine_path(&bin.join("netdeploy.ini")),
            "--root",
            &wine_path(root),
        ],
    );
    let console = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "{console}");
    console
}

#[test]
fn windows_agent_under_wine_restarts_mid_sequence_and_the_next_boot_continues_at_the_next_step() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = d.join("out");
    std::fs::create_dir_all(&out).unwrap();
    let o = |name: &str| format!("{}\\{name}", wine_path(&out));
    let steps = format!(
        r#"    {{ name = "name", action = "set_variable", variable = "OSDComputerName", value = "PC-WINE" }},
    {{ name = "before", action = "run_command", command = 'echo before>> {runs}' }},
    {{ name = "restart", action = "reboot" }},
    {{ name = "after", action = "run_command", command = 'echo after %OSDComputerName%>> {runs}' }},"#,
        runs = o("runs.txt")
    );
    let site = write_steps_site(d, &steps, &[]);
    let data = d.join("data");
    cli_ok(&data, &["site", "apply", site.to_str().unwrap()]);
    let server = Server::start(d, &loopback_config(d, "proxy", ""));
    let (bin, root, exe) = agent_dirs(d);

    // First boot: steps 1 and 2, then the restart (the test root performs no power action).
    boot_and_take_ini(&server, &bin);
    let first = run_agent(d, &exe, &bin, &root);
    assert!(
        first.contains("NETDEPLOY-AGENT-RESULT restarting deployment=LAB00001 next_step=4"),
        "{first}"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("runs.txt")).unwrap(),
        "before\r\n"
    );

    // The next network boot is offered again past the loop guard, with a new run token, and
    // the run continues at step 4 with the variable set again.
    let ini = boot_and_take_ini(&server, &bin);
    assert!(ini.contains("NetdeployRunToken="), "{ini}");
    let second = run_agent(d, &exe, &bin, &root);
    assert!(
        second.contains("NETDEPLOY-AGENT-RESULT success"),
        "{second}"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("runs.txt")).unwrap(),
        "before\r\nafter PC-WINE\r\n",
        "{second}"
    );
    let status: serde_json::Value =
        serde_json::from_str(&cli_ok(&server.data_dir(), &["status", "--json"])).unwrap();
    let dep = status["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["deployment"] == "LAB00001")
        .unwrap()
        .clone();
    assert_eq!(dep["counts"]["compliant"], 1, "{status:#}");
}

/// A proxy on `l` in front of `to` that cuts the first answer to a `/content/` request after
/// half of its body; returns the requests' heads as they came.
fn cutting_proxy(
    l: std::net::TcpListener,
    to: std::net::SocketAddr,
) -> std::sync::Arc<std::sync::Mutex<Vec<String>>> {
    use std::io::{Read as _, Write as _};
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        let mut cut = false;
        // Bounded: the agent makes a handful of requests.
        for conn in l.incoming().take(64) {
            let Ok(mut c) = conn else { continue };
            let mut head = Vec::new();
            let mut b = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                match c.read(&mut b) {
                    Ok(1) => head.push(b[0]),
                    _ => break,
                }
            }
            let text = String::from_utf8_lossy(&head).into_owned();
            let len = text
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                })
                .unwrap_or(0);
            let mut body = vec![0u8; len];
            let _ = c.read_exact(&mut body);
            log.lock().unwrap().push(text.clone());
            // One request per connection upstream, closed after its answer.
            let forwarded = text
                .replacen("\r\n\r\n", "\r\nConnection: close\r\n\r\n", 1)
                .replace("Connection: keep-alive\r\n", "");
            let Ok(mut up) = std::net::TcpStream::connect(to) else {
                continue;
            };
            let _ = up.write_all(forwarded.as_bytes());
            let _ = up.write_all(&body);
            let mut answer = Vec::new();
            let _ = up.read_to_end(&mut answer);
            let is_content = text
                .split_whitespace()
                .nth(1)
                .is_some_and(|p| p.starts_with("/content/"));
            if is_content && !cut && answer.len() > 4096 {
                cut = true;
                let _ = c.write_all(&answer[..answer.len() / 2]);
            } else {
                let _ = c.write_all(&answer);
            }
        }
    });
    seen
}

#[test]
fn windows_agent_under_wine_resumes_a_cut_download_with_range_and_verifies_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = d.join("out");
    std::fs::create_dir_all(&out).unwrap();
    let steps = format!(
        r#"    {{ name = "payload", action = "write_file", package = "big", file = "data.bin", target = {t:?} }},"#,
        t = format!("{}\\data.bin", wine_path(&out))
    );
    let big: Vec<u8> = (0..1usize << 20).map(|i| (i * 7 + i / 251) as u8).collect();
    let site = write_steps_site(d, &steps, &[("big", "data.bin", big)]);
    let data = d.join("data");
    cli_ok(&data, &["site", "apply", site.to_str().unwrap()]);
    // Windows PE reaches the server through the proxy: the server names it in its URLs.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy = listener.local_addr().unwrap();
    let server = Server::start(
        d,
        &loopback_config(d, "proxy", "").replace(
            "[http]\n",
            &format!("[http]\npublic_url = \"http://{proxy}\"\n"),
        ),
    );
    let seen = cutting_proxy(listener, server.http_addr());
    let (bin, root, exe) = agent_dirs(d);
    boot_and_take_ini(&server, &bin);
    let console = run_agent(d, &exe, &bin, &root);
    assert!(
        console.contains("NETDEPLOY-AGENT-RESULT success"),
        "{console}"
    );
    assert_eq!(
        std::fs::read(out.join("data.bin")).unwrap(),
        std::fs::read(d.join("big/data.bin")).unwrap()
    );
    let heads = seen.lock().unwrap().clone();
    let content: Vec<&String> = heads
        .iter()
        .filter(|h| {
            h.split_whitespace()
                .nth(1)
                .is_some_and(|p| p.starts_with("/content/"))
        })
        .collect();
    assert!(content.len() >= 2, "{heads:#?}");
    assert!(
        content[1..]
            .iter()
            .any(|h| h.to_ascii_lowercase().contains("range: bytes=")),
        "the second request resumes with Range:\n{heads:#?}\n{console}"
    );
}
