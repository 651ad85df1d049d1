//! One run of the agent, end to end: configuration, media password, identity, policy (from
//! the server, or from a full media), steps, status, and the power action of the last step.

use std::io::Write;
use std::time::Instant;

use crate::cli::RunFlags;
use crate::config::{self, Config, MediaType};
use crate::console::{self, say};
use crate::download::Backoff;
use crate::full_media::{self, Layout};
use crate::http::{self, Client, RunToken, Url};
use crate::identity;
use crate::media_password::prompt;
use crate::menu;
use crate::plan::{self, ContentFrom, Op, Plan};
use crate::policy::{self, ContentOption, Policy, RunPolicy};
use crate::power;
use crate::sequence::{Runner, StepFailure};
use crate::status::{self, Reporter, StatusKind, StatusMessage};
use netdeploy_wire::run_token::RESPONSE_HEADER;

/// Largest policy accepted.
const MAX_POLICY: usize = 16 << 20;

/// Where packages are downloaded, under the root.
pub const PACKAGE_CACHE: &str = "/var/lib/netdeploy/packages";

/// Runs the task sequence; returns the exit code (0 success or nothing deployed, 1 failure).
pub fn run(flags: &RunFlags) -> i32 {
    say(format!("version {} starting", env!("CARGO_PKG_VERSION")));
    let config = match config::load(flags) {
        Ok(c) => c,
        Err(e) => {
            let reason = format!("configuration: {e}");
            say(&reason);
            println!("{}", console::failure_line("", "", &reason));
            return 1;
        }
    };
    say(format!("configuration: {}", config.sources.join(", ")));
    // docs/media.md: a protected medium does nothing, not even ask a server, until the
    // password is given.
    let mut password = None;
    if let Some(stored) = &config.media_password {
        say("this medium is protected by a password");
        match prompt::ask_on_console(stored) {
            Ok(typed) => password = Some(typed),
            Err(e) => {
                let reason = e.to_string();
                say(&reason);
                println!(
                    "{}",
                    console::failure_line(config.deployment.as_deref().unwrap_or(""), "", &reason)
                );
                return 1;
            }
        }
    }
    let id = crate::platform::identity(&config.root);
    let mac = config
        .mac
        .as_deref()
        .and_then(identity::normalize_mac)
        .or_else(|| id.primary_mac());
    say(format!(
        "machine mac={} uuid={} context={} deployment={}",
        mac.map_or("none".into(), |m| m.to_string()),
        id.uuid.map_or("none".into(), |u| u.to_string()),
        config.context.as_str(),
        config.deployment.as_deref().unwrap_or("none"),
    ));
    let mut reporter = Reporter::new(
        config.server.as_ref(),
        config.status_file.clone(),
        mac,
        id.uuid,
    )
    .with_pin(config.pin);
    let requested = config.deployment.clone().unwrap_or_default();
    if !requested.is_empty() {
        reporter.set_deployment(&requested);
    }
    let mut token = config.token.clone();
    reporter.set_token(token.clone());
    if config.media_type == Some(MediaType::FullMedia) {
        return run_full_media(&config, reporter, &requested, password.as_deref());
    }
    let Some(server) = config.server.clone() else {
        let reason = "no server: set netdeploy.server=URL on the kernel command line or \
                      SMSTSServerURL in the media variables file";
        return failed(&reporter, &requested, None, &StepFailure::reason(reason));
    };

    let (mac_text, uuid_text) = (mac.map(|m| m.to_string()), id.uuid.map(|u| u.to_string()));
    let mut query: Vec<(&str, &str)> = Vec::new();
    if let Some(m) = &mac_text {
        query.push(("mac", m));
    }
    if let Some(u) = &uuid_text {
        query.push(("uuid", u));
    }
    query.push(("context", config.context.as_str()));
    let policy_url = |deployment: &str| {
        let mut query = query.clone();
        if !deployment.is_empty() {
            query.push(("deployment", deployment));
        }
        server
            .join("/agent/policy")
            .map(|u| u.with_query(&http::url::query(&query)))
    };
    let client = Client::default().with_pin(config.pin);
    let backoff = Backoff::default();
    let mut requested = requested;
    // At most two rounds: the policy, and after a menu the policy of the one chosen.
    for round in 0..2 {
        let url = match policy_url(&requested) {
            Ok(u) => u,
            Err(e) => {
                return failed(
                    &reporter,
                    &requested,
                    None,
                    &StepFailure::reason(e.to_string()),
                )
            }
        };
        say(format!("asking {url} for the policy"));
        // A boot medium's first request has no run token yet: it presents the medium's key.
        let authorization = match (&token, &config.medium_key) {
            (Some(t), _) => Some(t.authorization()),
            (None, Some(k)) => Some(k.authorization()),
            (None, None) => None,
        };
        let fetched =
            fetch_policy(&client, &url, authorization.as_deref(), &backoff).map(|(p, t)| {
                // The server may hand this run a new token with its policy (a boot medium's
                // first, or the one of the deployment it decided): it is the run's from now on.
                if t.is_some() {
                    token = t;
                    reporter.set_token(token.clone());
                }
                p
            });
        match fetched {
            Ok(Policy::Nothing { reason }) => return nothing_deployed(&reporter, &reason),
            Ok(Policy::Run(p)) => {
                return run_policy(
                    &config,
                    &ContentFrom::Server(server.clone()),
                    &client,
                    backoff,
                    &mut reporter,
                    &requested,
                    p,
                    &Continuation::Server,
                )
            }
            Ok(Policy::Menu { reason, entries }) if round == 0 && !entries.is_empty() => {
                say(format!("the server offers a menu: {reason}"));
                match menu::ask_on_console(&entries, config.menu_timeout) {
                    Some(e) => {
                        requested = e.id.clone();
                        reporter.set_deployment(&requested);
                    }
                    None => return nothing_chosen(config.menu_timeout),
                }
            }
            Ok(Policy::Menu { entries, .. }) => {
                let reason = match entries.is_empty() {
                    true => "the server offered an empty menu".to_owned(),
                    false => format!(
                        "the server answered a menu again for the chosen deployment {requested}"
                    ),
                };
                return failed(&reporter, &requested, None, &StepFailure::reason(reason));
            }
            Err(reason) => {
                return failed(&reporter, &requested, None, &StepFailure::reason(reason))
            }
        }
    }
    unreachable!("the second round returns")
}

/// Nobody chose from the menu in time: nothing runs, nothing is reported, the machine is
/// left as it was (rule 6: the default after the timeout is the local disk); exit code 0.
fn nothing_chosen(timeout: std::time::Duration) -> i32 {
    let reason = format!(
        "no deployment was chosen within {} s: nothing runs",
        timeout.as_secs()
    );
    say(&reason);
    println!("{}", console::no_deployment_line(&reason));
    0
}

/// docs/media.md: the task sequence of a full media runs from the medium alone. Its policy
/// and content sit next to the variables file ([`full_media`]); nothing is fetched from the
/// network, and status messages reach the server only when it can be reached.
fn run_full_media(
    config: &Config,
    reporter: Reporter,
    requested: &str,
    password: Option<&str>,
) -> i32 {
    let mut reporter = match (&config.status_file, &config.media_dir) {
        (Some(_), _) => reporter.echoing(),
        // Kept on the medium when it can be written (a USB stick), for `netdeploy status
        // import`; else in the boot environment's memory, shown on the console.
        (None, Some(dir)) => {
            let name = reporter.identity_file_name();
            let on_media = dir.join("status").join(format!("{name}.jsonl"));
            let fallback = if writable(&on_media) {
                on_media
            } else {
                config.under_root(status::MEDIA_STATUS_FILE)
            };
            reporter.with_fallback(fallback)
        }
        (None, None) => reporter.with_fallback(config.under_root(status::MEDIA_STATUS_FILE)),
    };
    let Some(dir) = &config.media_dir else {
        let reason = "full media: SMSTSMediaType=FullMedia, but no variables file names the \
                      media directory";
        return failed(&reporter, requested, None, &StepFailure::reason(reason));
    };
    let layout = Layout::of(dir);
    say(format!(
        "full media: task sequence from {}, content from {}, nothing from the network",
        layout.policy.display(),
        layout.content.display()
    ));
    say(reporter.describe());
    match full_media::read_policy(&layout.policy, MAX_POLICY) {
        Ok(Policy::Nothing { reason }) => nothing_deployed(&reporter, &reason),
        Ok(Policy::Menu { .. }) => failed(
            &reporter,
            requested,
            None,
            &StepFailure::reason("full media carry one deployment, but their policy is a menu"),
        ),
        Ok(Policy::Run(mut p)) => {
            if let Err(reason) = full_media::open_sealed(&mut p.steps, password) {
                return failed(&reporter, requested, None, &StepFailure::reason(reason));
            }
            // No server keeps where a run restarted: the medium does, per machine.
            let resume = full_media::resume_file(dir, &reporter.identity_file_name());
            p.resume_at = full_media::read_resume(&resume, &p.deployment.id);
            run_policy(
                config,
                &ContentFrom::Media(layout.content),
                &Client::default(),
                Backoff::default(),
                &mut reporter,
                requested,
                p,
                &Continuation::Medium(resume),
            )
        }
        Err(reason) => failed(&reporter, requested, None, &StepFailure::reason(reason)),
    }
}

/// Reports that nothing is deployed; exit code 0.
fn nothing_deployed(reporter: &Reporter, reason: &str) -> i32 {
    say(format!("nothing is deployed to this machine: {reason}"));
    reporter.send(StatusMessage {
        kind: StatusKind::NoDeployment,
        reason: Some(reason.to_owned()),
        ..StatusMessage::new(StatusKind::Started)
    });
    println!("{}", console::no_deployment_line(reason));
    0
}

/// Where a run that restarts the machine in the middle of its task sequence is continued from.
enum Continuation {
    /// The server: it records the `rebooting` status and answers the next policy request
    /// with `resume_at` (docs/agent-http.md).
    Server,
    /// A full medium: a file on it names the deployment and the step (docs/media.md).
    Medium(std::path::PathBuf),
}

impl Continuation {
    /// Keeps that `deployment` continues at `step` after the restart.
    fn save(&self, deployment: &str, step: usize) -> Result<(), String> {
        match self {
            Continuation::Server => Ok(()),
            Continuation::Medium(file) => {
                full_media::write_resume(file, deployment, step).map_err(|e| {
                    format!(
                        "a reboot in the middle of a full media's task sequence needs a \
                         writable medium to continue from, and {} cannot be written: {e}",
                        file.display()
                    )
                })
            }
        }
    }

    /// Forgets it: the run ended.
    fn clear(&self) {
        if let Continuation::Medium(file) = self {
            let _ = std::fs::remove_file(file);
        }
    }
}

/// How the steps of a run ended.
enum Ran {
    /// Every step ran, or one failed: the exit code.
    Ended(i32),
    /// A `reboot` step in the middle: the machine restarts and continues.
    Restart,
}

// One run's context, each from a different layer; a struct would only be filled once here.
#[allow(clippy::too_many_arguments)]
fn run_policy(
    config: &Config,
    from: &ContentFrom,
    client: &Client,
    backoff: Backoff,
    reporter: &mut Reporter,
    requested: &str,
    p: RunPolicy,
    continuation: &Continuation,
) -> i32 {
    let id = p.deployment.id.clone();
    let source = match from {
        ContentFrom::Server(_) => "the server",
        ContentFrom::Media(_) => "the media's policy",
    };
    if !requested.is_empty() && requested != id {
        say(format!(
            "{source} chose deployment {id} rather than {requested}"
        ));
    }
    reporter.set_deployment(&id);
    for w in &p.warnings {
        say(format!("warning from {source}: {w}"));
    }
    match (from, &p.option) {
        (ContentFrom::Server(_), ContentOption::DirectAccess) => say(
            "warning: direct_access: content is streamed from the server and its SHA-256 is NOT verified",
        ),
        (ContentFrom::Media(_), ContentOption::DirectAccess) => {
            say("direct_access on full media: content is read from the medium and verified")
        }
        _ => {}
    }
    say(format!(
        "deployment {id} \"{}\" (task sequence {}): {} steps, content option {}{}",
        p.deployment.name,
        p.deployment.task_sequence,
        p.steps.len(),
        p.option.as_str(),
        if p.reason.is_empty() {
            String::new()
        } else {
            format!("; {}", p.reason)
        }
    ));
    reporter.send(StatusMessage {
        kind: StatusKind::Started,
        ..StatusMessage::new(StatusKind::Started)
    });
    let plan = match plan::plan(&p, from) {
        Ok(plan) => plan,
        Err(reason) => return failed(reporter, &id, None, &StepFailure::reason(reason)),
    };
    // Commands see the server in NETDEPLOY_SERVER; a full media passes the one it names.
    let server_text = match from {
        ContentFrom::Server(server) => server.to_string(),
        ContentFrom::Media(_) => config
            .server
            .as_ref()
            .map(Url::to_string)
            .unwrap_or_default(),
    };
    let mut runner = Runner::new(
        client.clone(),
        backoff,
        config.under_root(PACKAGE_CACHE),
        server_text.trim_end_matches('/'),
        &id,
    );
    runner.mask(&plan.secrets);
    runner.disks_under(config.under_root("/sys/block"));
    runner.set_capture(crate::capture_image::CaptureSetup {
        sys_block: config.under_root("/sys/block"),
        scratch: config.under_root("/var/lib/netdeploy/capture"),
        upload: match from {
            ContentFrom::Server(server) => Some(crate::capture_image::Upload {
                client: client.clone(),
                server: server.clone(),
                token: reporter.token().cloned(),
                query: reporter.run_query(),
            }),
            ContentFrom::Media(_) => None,
        },
    });
    if let (ContentFrom::Server(server), true) = (from, p.deployment.multicast) {
        runner.set_multicast(crate::multicast::session::SessionServer {
            client: client.clone(),
            server: server.clone(),
            token: reporter.token().cloned(),
            query: reporter.run_query(),
        });
    }
    let (code, action) = match run_plan(&plan, &mut runner, reporter, &id, continuation) {
        Ran::Ended(code) => {
            continuation.clear();
            (code, plan.end)
        }
        Ran::Restart => (0, Some(power::EndAction::Reboot)),
    };
    if let Some(action) = action {
        let _ = std::io::stdout().flush();
        power::perform(action, !config.is_test_root());
    }
    code
}

fn run_plan(
    plan: &Plan,
    runner: &mut Runner,
    reporter: &Reporter,
    id: &str,
    continuation: &Continuation,
) -> Ran {
    if !plan.predownload.is_empty() {
        let bytes: u64 = plan.predownload.iter().map(|f| f.size).sum();
        let verb = match plan.predownload.first().map(|f| &f.origin) {
            Some(plan::Origin::Media(_)) => "verifying",
            _ => "fetching",
        };
        say(format!(
            "download_all: {verb} {} files ({:.1} MiB) before the first step",
            plan.predownload.len(),
            bytes as f64 / (1024.0 * 1024.0)
        ));
        if let Err(f) = runner.predownload(&plan.predownload) {
            return Ran::Ended(failed(reporter, id, None, &masked(plan, f)));
        }
    }
    let n = plan.steps.len();
    let start = plan.resume_at;
    if start > 0 {
        say(format!(
            "deployment {id}: continuing after a restart at step {}/{n}",
            start + 1
        ));
        // The variables the steps before the restart set: `set_variable` has no side
        // effect, so running those steps again gives later steps the same values.
        for step in &plan.steps[..start] {
            if let Op::SetVariable { .. } = &step.op {
                say(plan.mask(&format!(
                    "again, for the steps after the restart: {}",
                    step.op.describe(&step.action)
                )));
                if let Err(f) = runner.run(&step.op) {
                    return Ran::Ended(failed(reporter, id, None, &masked(plan, f)));
                }
            }
        }
    }
    for (i, step) in plan.steps.iter().enumerate().skip(start) {
        let label = format!("step {}/{n} \"{}\"", i + 1, step.name);
        say(plan.mask(&format!("{label}: {}", step.op.describe(&step.action))));
        if let Op::Restart = &step.op {
            if let Err(reason) = continuation.save(id, i + 1) {
                say(format!("{label} failed: {reason}"));
                return Ran::Ended(failed(
                    reporter,
                    id,
                    Some((i, &step.name)),
                    &StepFailure::reason(reason),
                ));
            }
            say(format!(
                "{label}: restarting; the task sequence continues at step {}/{n}",
                i + 2
            ));
            reporter.send(StatusMessage {
                kind: StatusKind::Rebooting,
                step: Some(step.name.clone()),
                step_index: Some(i),
                ..StatusMessage::new(StatusKind::Started)
            });
            println!("{}", console::restarting_line(id, i + 2));
            return Ran::Restart;
        }
        let started = Instant::now();
        match runner.run(&step.op) {
            Ok(()) => {
                say(format!(
                    "{label}: ok ({:.1} s)",
                    started.elapsed().as_secs_f64()
                ));
                reporter.send(StatusMessage {
                    kind: StatusKind::Step,
                    step: Some(step.name.clone()),
                    step_index: Some(i),
                    ok: Some(true),
                    // How the step was done, when it says: the path an image took.
                    reason: runner.take_note(),
                    ..StatusMessage::new(StatusKind::Started)
                });
            }
            Err(f) => {
                let f = masked(plan, f);
                say(format!("{label} failed: {}", f.reason));
                return Ran::Ended(failed(reporter, id, Some((i, &step.name)), &f));
            }
        }
    }
    say(format!("deployment {id}: all {n} steps succeeded"));
    reporter.send(StatusMessage {
        kind: StatusKind::Succeeded,
        ..StatusMessage::new(StatusKind::Started)
    });
    println!("{}", console::success_line(id));
    Ran::Ended(0)
}

/// A failure as it may be printed and reported: the task sequence's secrets masked.
fn masked(plan: &Plan, f: StepFailure) -> StepFailure {
    StepFailure {
        reason: plan.mask(&f.reason),
        ..f
    }
}

/// Reports the failure, prints the result line; returns the exit code 1.
fn failed(
    reporter: &Reporter,
    deployment: &str,
    step: Option<(usize, &str)>,
    f: &StepFailure,
) -> i32 {
    if step.is_none() {
        say(format!("failed: {}", f.reason));
    }
    reporter.send(StatusMessage {
        kind: StatusKind::Failed,
        step: step.map(|(_, name)| name.to_owned()),
        step_index: step.map(|(i, _)| i),
        file: f.file.clone(),
        reason: Some(f.reason.clone()),
        code: f.code,
        ..StatusMessage::new(StatusKind::Started)
    });
    println!(
        "{}",
        console::failure_line(deployment, step.map(|(_, n)| n).unwrap_or(""), &f.reason)
    );
    1
}

/// GETs and parses the policy, presenting the run's token or the medium's key, retrying while the server cannot
/// be reached or answers 5xx (the network may have just come up); a 4xx or a policy that does
/// not parse fails at once. Also returns the run token the response carries, if any.
fn fetch_policy(
    client: &Client,
    url: &Url,
    authorization: Option<&str>,
    backoff: &Backoff,
) -> Result<(Policy, Option<RunToken>), String> {
    let started = Instant::now();
    let mut failures = 0;
    loop {
        let failure = match client.get_authorized(url, authorization) {
            Ok(r) if r.status() == 200 => {
                let given = match r.header(RESPONSE_HEADER).map(str::parse::<RunToken>) {
                    None => None,
                    Some(Ok(t)) => Some(t),
                    Some(Err(e)) => return Err(format!("the policy's run token: {e}")),
                };
                match r.read_body(MAX_POLICY) {
                    Ok(body) => {
                        return policy::parse(&body)
                            .map(|p| (p, given))
                            .map_err(|e| e.to_string())
                    }
                    Err(e) => format!("reading the policy: {e}"),
                }
            }
            Ok(r) if r.status() >= 500 => format!("the server answered HTTP {}", r.status()),
            Ok(r) => {
                let status = r.status();
                let body = r.read_body(64 * 1024).unwrap_or_default();
                let text = String::from_utf8_lossy(&body);
                let text: String = text.trim().chars().take(300).collect();
                return Err(format!(
                    "the server answered HTTP {status} to the policy request{}",
                    if text.is_empty() {
                        String::new()
                    } else {
                        format!(": {text}")
                    }
                ));
            }
            // Another server, or no way to tell: asking again cannot make it ours.
            Err(e) if e.refuses_server() => return Err(e.to_string()),
            Err(e) => e.to_string(),
        };
        failures += 1;
        match backoff.delay(failures, started.elapsed()) {
            Some(d) => {
                say(format!(
                    "policy: {failure}; retrying in {:.1} s",
                    d.as_secs_f64()
                ));
                std::thread::sleep(d);
            }
            None => {
                return Err(format!(
                    "no policy from {url} after {failures} attempts: {failure}"
                ))
            }
        }
    }
}

/// True when `file` can be created or appended to (its directory is made if missing). A file
/// created only to find out is removed again: messages the server takes leave nothing behind.
fn writable(file: &std::path::Path) -> bool {
    let existed = file.exists();
    let ok = status::open_append(file).is_ok();
    if ok && !existed {
        let _ = std::fs::remove_file(file);
    }
    ok
}
