//! The status web pages and their JSON (`/status.json`): the five states per deployment and
//! collection, failures over time as an inline SVG chart with its dates and counts, recent
//! status messages and the live PXE/TFTP counters. Each deployment opens its page
//! (`/status/deployment`) with the machines of each state; each machine opens its own
//! (`/status/machine`): every run, each step, its status messages and what `explain` says now.
//!
//! Server-rendered HTML that refreshes itself: no script, no build step. The HTML is built
//! with `maud`, which escapes every value it writes, so site-author and agent text (names,
//! comments, failure reasons) can never become markup.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use maud::{html, Markup, PreEscaped, DOCTYPE};
use serde::Deserialize;

use super::AppState;
use crate::alerts::Alert;
use crate::catalog::{Catalog, IdentityKey, MachineIdentity};
use crate::decision::Context;
use crate::monitoring::{self, MachineState, Overview, State as S};
use crate::multicast::live::SessionView;
use crate::store::catalog as stored;
use crate::store::StatusMessage;

#[derive(Debug, Deserialize)]
pub struct PageQuery {
    /// Show every deployment over this collection instead of its own.
    collection: Option<String>,
    /// Failures over the last N days (default 14; 2 or fewer: per hour).
    days: Option<i64>,
}

impl PageQuery {
    fn scope(&self) -> Option<&str> {
        self.collection.as_deref().filter(|c| !c.is_empty())
    }
}

type PageError = (StatusCode, String);

fn unavailable(e: impl std::fmt::Display) -> PageError {
    (StatusCode::SERVICE_UNAVAILABLE, e.to_string())
}

fn load(
    s: &AppState,
) -> Result<(Catalog, crate::catalog::site::Settings, Vec<StatusMessage>), PageError> {
    let (catalog, settings) = stored::load(&s.bootpath.store).map_err(unavailable)?;
    let messages = s
        .bootpath
        .store
        .statuses(None, 100_000)
        .map_err(unavailable)?;
    Ok((catalog, settings, messages))
}

fn check_scope(catalog: &Catalog, scope: Option<&str>) -> Result<(), PageError> {
    match scope {
        Some(c) if catalog.collection(c).is_none() => {
            Err((StatusCode::NOT_FOUND, format!("no collection {c:?}\n")))
        }
        _ => Ok(()),
    }
}

fn build(s: &AppState, q: &PageQuery) -> Result<(Overview, Catalog, Vec<Alert>), PageError> {
    let (catalog, settings, messages) = load(s)?;
    check_scope(&catalog, q.scope())?;
    let thresholds = crate::alerts::thresholds(&s.bootpath.store).map_err(unavailable)?;
    let alerts = crate::alerts::current(&catalog, &messages, &thresholds);
    let days = q.days.unwrap_or(14).clamp(1, 366);
    let o = monitoring::overview(
        &catalog,
        &messages,
        q.scope(),
        settings.pre_production_collection.as_deref(),
        crate::bootpath::now(),
        days,
    );
    Ok((o, catalog, alerts))
}

/// Runs a page builder on the blocking pool (it reads the store) and answers with its HTML.
async fn render_blocking(
    s: Arc<AppState>,
    f: impl FnOnce(&AppState) -> Result<Markup, PageError> + Send + 'static,
) -> Response {
    match tokio::task::spawn_blocking(move || f(&s)).await {
        Ok(Ok(m)) => Html(m.into_string()).into_response(),
        Ok(Err(r)) => r.into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

pub async fn json(State(s): State<Arc<AppState>>, Query(q): Query<PageQuery>) -> Response {
    let st = s.clone();
    match tokio::task::spawn_blocking(move || build(&st, &q)).await {
        Ok(Ok((o, _, alerts))) => Json(serde_json::json!({
            "overview": o,
            "alerts": alerts,
            "multicast_sessions": s.multicast.views(),
            "counters": s.counters.snapshot().into_iter().collect::<std::collections::BTreeMap<_, _>>(),
        }))
        .into_response(),
        Ok(Err(r)) => r.into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

const COLORS: [(&str, S); 5] = [
    ("#2e7d32", S::Compliant),
    ("#1565c0", S::InProgress),
    ("#f9a825", S::NonCompliant),
    ("#c62828", S::Failed),
    ("#9e9e9e", S::Unknown),
];

/// The state's key as the JSON writes it: `non_compliant`.
fn state_key(st: S) -> String {
    serde_json::to_value(st)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn color(st: S) -> &'static str {
    COLORS
        .iter()
        .find(|(_, s)| *s == st)
        .map(|(c, _)| *c)
        .unwrap_or("#9e9e9e")
}

const CSS: &str = "body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}\
table{border-collapse:collapse;margin:.5em 0 1.5em}\
td,th{border-bottom:1px solid #ddd;padding:.3em .7em;text-align:left;vertical-align:top}\
td.n{text-align:right;font-variant-numeric:tabular-nums}\
.k{display:inline-block;width:.8em;height:.8em;margin-right:.3em}h2{margin-top:1.5em}\
small{color:#666}tr.failed td{background:#fdecea}pre{background:#f6f6f6;padding:.8em;white-space:pre-wrap}";

fn layout(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta http-equiv="refresh" content="10";
                title { (title) }
                style { (PreEscaped(CSS)) }
            }
            body { (body) }
        }
    }
}

/// A query string, percent-encoded.
fn query(pairs: &[(&str, &str)]) -> String {
    serde_urlencoded::to_string(pairs).unwrap_or_default()
}

fn deployment_url(deployment: &str, scope: Option<&str>) -> String {
    let mut q = vec![("id", deployment)];
    q.extend(scope.map(|c| ("collection", c)));
    format!("/status/deployment?{}", query(&q))
}

fn machine_url(deployment: &str, machine: &str, scope: Option<&str>) -> String {
    let mut q = vec![("deployment", deployment), ("machine", machine)];
    q.extend(scope.map(|c| ("collection", c)));
    format!("/status/machine?{}", query(&q))
}

/// A time for people: `YYYY-MM-DD HH:MM:SS UTC`.
fn when(t: i64) -> String {
    format!("{}:{:02} UTC", format_time(t), t.rem_euclid(60))
}

/// A status message's body without what the row already shows.
fn details(m: &StatusMessage) -> String {
    match &m.body {
        serde_json::Value::Object(map) => map
            .iter()
            .filter(|(k, v)| {
                !matches!(k.as_str(), "kind" | "mac" | "uuid" | "deployment") && !v.is_null()
            })
            .map(|(k, v)| match (k.as_str(), v.as_i64()) {
                // Times people read, never epoch seconds.
                ("at", Some(t)) => format!("at={}", when(t)),
                _ => format!(
                    "{k}={}",
                    v.as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| v.to_string())
                ),
            })
            .collect::<Vec<_>>()
            .join(" "),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    }
}

pub async fn page(State(s): State<Arc<AppState>>, Query(q): Query<PageQuery>) -> Response {
    let counters = s.counters.snapshot();
    let sessions = s.multicast.views();
    render_blocking(s, move |s| {
        let (o, catalog, alerts) = build(s, &q)?;
        Ok(overview_page(
            &o, &catalog, &alerts, &q, &counters, &sessions,
        ))
    })
    .await
}

fn overview_page(
    o: &Overview,
    catalog: &Catalog,
    alerts: &[Alert],
    q: &PageQuery,
    counters: &[(&'static str, u64)],
    sessions: &[SessionView],
) -> Markup {
    let scope = q.scope();
    let days = q.days.unwrap_or(14).clamp(1, 366);
    let per = if o.period == 3600 { "hour" } else { "day" };
    layout(
        "netdeploy status",
        html! {
            h1 { "netdeploy status" }
            p { small {
                "Refreshes every 10 s. Scope: " (scope.unwrap_or("each deployment's own collection"))
                " · " a href="/status.json" { "JSON" }
            } }
            form method="get" {
                "Collection scope: "
                select name="collection" {
                    option value="" { "each deployment's own" }
                    @for c in &catalog.collections {
                        option value=(c.id) selected[scope == Some(c.id.as_str())] { (c.name) }
                    }
                }
                " days: " input name="days" size="3" value=(days);
                " " button { "Show" }
            }
            @if !alerts.is_empty() {
                section id="alerts" {
                    h2 { "Alerts (" (alerts.len()) ")" }
                    ul {
                        @for a in alerts {
                            li data-alert=(a.deployment) style="color:#c62828" {
                                a href=(deployment_url(&a.deployment, None)) { (a.deployment) } ": " (a.message)
                            }
                        }
                    }
                }
            }
            h2 { "Deployments" }
            table id="states" {
                tr {
                    th { "Deployment" } th { "Collection" }
                    @for (c, st) in COLORS {
                        th { span.k style={ "background:" (c) } {} (st.label()) }
                    }
                    th {}
                }
                @for d in &o.deployments {
                    tr data-deployment=(d.deployment) {
                        td { a href=(deployment_url(&d.deployment, scope)) { (d.deployment) } }
                        td { (d.collection) }
                        @for (_, st) in COLORS {
                            td.n data-state=(state_key(st)) { (d.counts[&st]) }
                        }
                        td { (state_bar(&d.counts)) }
                    }
                }
            }
            @if let Some(first) = o.pre_production.first() {
                h2 { "Pre-production (collection " (first.collection) ")" }
                table id="pre-production" {
                    tr { th { "Deployment" } @for (_, st) in COLORS { th { (st.label()) } } }
                    @for d in &o.pre_production {
                        tr {
                            td { a href=(deployment_url(&d.deployment, Some(&d.collection))) { (d.deployment) } }
                            @for (_, st) in COLORS { td.n { (d.counts[&st]) } }
                        }
                    }
                }
            }
            @if !sessions.is_empty() {
                h2 { "Multicast sessions" }
                (sessions_table(sessions))
            }
            h2 { "Failures per " (per) ", last " (days) " days" }
            (failure_chart(&o.failures, o.period))
            h2 { "Recent status messages" }
            (messages_table(o.recent.iter().rev(), true))
            h2 { "PXE and TFTP activity" }
            table id="counters" {
                @for (k, v) in counters {
                    tr { td { (k.replace('_', " ")) } td.n { (v) } }
                }
            }
        },
    )
}

/// A stacked bar of the five states.
/// Each multicast session: its image, group, phase, rate, bytes and repairs, then one row per
/// machine with its progress.
fn sessions_table(sessions: &[SessionView]) -> Markup {
    let mbit = |bytes_per_s: u64| format!("{:.1} Mbit/s", bytes_per_s as f64 * 8.0 / 1e6);
    let mib = |b: u64| format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0));
    html! {
        table id="multicast" {
            tr {
                th { "Session" } th { "Image" } th { "Group" } th { "State" } th { "Rate" }
                th { "Sent" } th { "Repairs" } th { "Machine" } th { "Progress" }
            }
            @for v in sessions {
                @let st = &v.state;
                @let phase = serde_json::to_value(st.phase).ok().and_then(|p| p.as_str().map(str::to_owned)).unwrap_or_default();
                tr data-session=(v.info.session) data-phase=(phase) {
                    td { (v.info.session) br; small { "since " (when(v.info.started_at)) } }
                    td { (v.info.package) "/" (v.info.file) br; small { (v.info.chunks) " chunks, " (mib(v.info.compressed_bytes)) } }
                    td { (v.info.group) }
                    td { (phase.replace('_', " ")) }
                    td.n { (mbit(st.rate)) }
                    td.n data-bytes-sent=(st.bytes_sent) {
                        (mib(st.bytes_sent)) " ("
                        (format!("{:.2}", st.bytes_sent as f64 / v.info.compressed_bytes.max(1) as f64))
                        "× the image)"
                    }
                    td.n data-repairs=(st.repairs) { (st.repairs) }
                    td colspan="2" { (st.members.len()) " machines" }
                }
                @for (id, m) in &st.members {
                    @let state = if m.done { "done" } else if m.fell_back { "continues over HTTP" } else if m.heard { "receiving" } else { "joined" };
                    tr data-member=(id) data-machine=(m.machine.as_deref().unwrap_or("")) data-state=(state) {
                        td colspan="7" {}
                        td { (m.machine.as_deref().unwrap_or("(from a shell)")) small { " receiver " (id) } }
                        td {
                            (m.chunks_held) " / " (v.info.chunks) " chunks, " (state)
                            @if m.loss_permille > 0 { ", loss " (format!("{:.1}", f64::from(m.loss_permille) / 10.0)) "%" }
                        }
                    }
                }
            }
        }
    }
}

fn state_bar(counts: &std::collections::BTreeMap<S, usize>) -> Markup {
    let total: usize = counts.values().sum();
    let mut x = 0.0;
    let mut rects = Vec::new();
    for (c, st) in COLORS {
        if total > 0 {
            let w = 200.0 * counts[&st] as f64 / total as f64;
            rects.push((format!("{x:.1}"), format!("{w:.1}"), c, st));
            x += w;
        }
    }
    html! {
        svg width="200" height="14" role="img" {
            @for (x, w, c, st) in &rects {
                rect x=(x) width=(w) height="14" fill=(c) {
                    title { (st.label()) ": " (counts[st]) }
                }
            }
        }
    }
}

/// The failures chart: a bar per period, each with its date below and its count above.
fn failure_chart(failures: &[(i64, usize)], period: i64) -> Markup {
    let max = failures.iter().map(|f| f.1).max().unwrap_or(0).max(1);
    let n = failures.len().max(1);
    let bw = (720 / n).max(4);
    // Label every period when they fit, else every k-th.
    let every = (44 / bw).max(1);
    let label = |t: i64| {
        let full = format_time(t);
        if period == 3600 {
            full[11..16].to_owned()
        } else {
            full[5..10].to_owned()
        }
    };
    html! {
        svg id="failures" width=(bw * n + 40) height="160" role="img"
            aria-label={ "failures per " (if period == 3600 { "hour" } else { "day" }) } {
            @for (i, (t, c)) in failures.iter().enumerate() {
                @let bh = 100 * c / max;
                @let x = 30 + i * bw;
                rect x=(x) y=(120 - bh) width=(bw.saturating_sub(2).max(1)) height=(bh) fill="#c62828" {
                    title { (format_time(*t)) " UTC: " (c) " failed" }
                }
                @if *c > 0 {
                    text x=(x + bw / 2) y=(116 - bh) font-size="11" text-anchor="middle" class="count" { (c) }
                }
                @if i % every == 0 {
                    text x=(x + bw / 2) y="136" font-size="10" text-anchor="middle" class="date" { (label(*t)) }
                }
            }
            text x="0" y="24" font-size="11" { (max) }
            text x="0" y="120" font-size="11" { "0" }
            line x1="28" y1="120" x2=(30 + bw * n) y2="120" stroke="#999" {}
        }
        @if failures.iter().any(|f| f.1 > 0) {
            table id="failures-by-date" {
                tr { th { "Period (UTC)" } th { "Failed" } }
                @for (t, c) in failures.iter().filter(|f| f.1 > 0) {
                    tr { td { (format_time(*t)) } td.n { (c) } }
                }
            }
        } @else {
            p { small { "No failures in this period." } }
        }
    }
}

fn messages_table<'a>(
    messages: impl Iterator<Item = &'a StatusMessage>,
    with_machine: bool,
) -> Markup {
    html! {
        table.messages {
            tr {
                th { "Time (UTC)" } th { "Source" } th { "Kind" }
                @if with_machine { th { "Machine" } }
                th { "Deployment" } th { "Details" }
            }
            @for m in messages {
                tr {
                    td { (when(m.at)) } td { (m.source) } td { (m.kind) }
                    @if with_machine {
                        td { (m.device.as_deref().or(m.identity.as_deref()).unwrap_or("")) }
                    }
                    td { (m.deployment.as_deref().unwrap_or("")) }
                    td { (details(m)) }
                }
            }
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct DeploymentQuery {
    id: String,
    collection: Option<String>,
}

/// `/status/deployment?id=ID`: the five states of one deployment, each with its machines.
pub async fn deployment(
    State(s): State<Arc<AppState>>,
    Query(q): Query<DeploymentQuery>,
) -> Response {
    render_blocking(s, move |s| {
        let (catalog, _, messages) = load(s)?;
        let scope = q.collection.as_deref().filter(|c| !c.is_empty());
        check_scope(&catalog, scope)?;
        let not_found = || (StatusCode::NOT_FOUND, format!("no deployment {:?}\n", q.id));
        let id = q.id.parse().map_err(|_| not_found())?;
        let d = catalog.deployment(&id).ok_or_else(not_found)?;
        let collection = scope.unwrap_or(&d.collection);
        let summary = monitoring::summarize(&catalog, &q.id, collection, &messages)
            .ok_or_else(|| (StatusCode::NOT_FOUND, format!("no collection {collection:?}\n")))?;
        let ts = catalog.task_sequence(&d.task_sequence);
        let thresholds = crate::alerts::thresholds(&s.bootpath.store).map_err(unavailable)?;
        let threshold = thresholds.iter().find(|t| t.deployment == id);
        let alert = crate::alerts::current(&catalog, &messages, &thresholds)
            .into_iter()
            .find(|a| a.deployment == q.id);
        Ok(layout(
            &format!("{} – netdeploy status", q.id),
            html! {
                p { a href="/status" { "← all deployments" } }
                h1 { "Deployment " (q.id) }
                p {
                    "Task sequence " (d.task_sequence)
                    @if let Some(ts) = ts { " (" (ts.name) ")" }
                    ", " (format!("{:?}", d.purpose).to_lowercase()) ", over collection " (collection) "."
                    @if !d.comments.is_empty() { br; small { (d.comments) } }
                }
                @if let Some(a) = &alert {
                    p id="alert" style="color:#c62828;font-weight:bold" { "Alert: " (a.message) }
                } @else if let Some(t) = threshold {
                    p { small {
                        "Alert at " (t.failure_percent) "% and at least " (t.min_failures)
                        " failed machine(s); not raised."
                    } }
                }
                @for st in S::ALL {
                    @let ms: Vec<&MachineState> = summary.machines.iter().filter(|m| m.state == st).collect();
                    section id=(state_key(st)) {
                        h2 { span.k style={ "background:" (color(st)) } {} (st.label()) " (" (ms.len()) ")" }
                        @if ms.is_empty() {
                            p { small { "No machine." } }
                        } @else {
                            table {
                                tr { th { "Machine" } th { "MAC / UUID" } th { "Last message" } th { "When" } }
                                @for m in ms {
                                    tr data-machine=(m.machine) {
                                        td { a href=(machine_url(&q.id, &m.machine, scope)) { (m.machine) } }
                                        td { (m.addresses.join(", ")) }
                                        td {
                                            @if let Some(l) = &m.last { (l.kind) " " small { (details(l)) } }
                                            @if let Some(r) = &m.reason { br; (r) }
                                        }
                                        td { @if let Some(l) = &m.last { (when(l.at)) } }
                                    }
                                }
                            }
                        }
                    }
                }
            },
        ))
    })
    .await
}

#[derive(Debug, Deserialize)]
pub struct MachineQuery {
    deployment: String,
    machine: String,
    collection: Option<String>,
}

/// The identity `explain` is asked about for a machine of the page.
fn identity_of(catalog: &Catalog, machine: &str) -> Option<MachineIdentity> {
    if let Some(d) = catalog.device(machine) {
        return Some(MachineIdentity {
            mac: d.macs.first().copied(),
            uuid: d.uuid,
        });
    }
    match machine.parse::<IdentityKey>().ok()? {
        IdentityKey::Uuid(u) => Some(MachineIdentity {
            mac: None,
            uuid: Some(u),
        }),
        IdentityKey::Mac(m) => Some(MachineIdentity {
            mac: Some(m),
            uuid: None,
        }),
    }
}

/// `/status/machine?deployment=ID&machine=NAME`: every run of the deployment on the machine,
/// each step, the machine's status messages and what `explain` says about it now.
pub async fn machine(State(s): State<Arc<AppState>>, Query(q): Query<MachineQuery>) -> Response {
    render_blocking(s, move |s| {
        let (catalog, _, messages) = load(s)?;
        let scope = q.collection.as_deref().filter(|c| !c.is_empty());
        check_scope(&catalog, scope)?;
        let not_found = || {
            (
                StatusCode::NOT_FOUND,
                format!("no machine {:?} under deployment {:?}\n", q.machine, q.deployment),
            )
        };
        let id = q.deployment.parse().map_err(|_| not_found())?;
        let d = catalog.deployment(&id).ok_or_else(not_found)?;
        let collection = scope.unwrap_or(&d.collection);
        let detail =
            monitoring::machine_detail(&catalog, &q.deployment, collection, &q.machine, &messages)
                .ok_or_else(not_found)?;
        let explained = identity_of(&catalog, &q.machine)
            .map(|m| {
                let password = s.config.boot.pxe_password.is_some();
                crate::admin::explain(&s.bootpath.store, m, None, Context::Pxe, None, password)
            })
            .transpose()
            .map_err(unavailable)?
            .map(|d| crate::decision::explain_text(&d));
        let st = &detail.state;
        Ok(layout(
            &format!("{} – {} – netdeploy status", q.machine, q.deployment),
            html! {
                p {
                    a href="/status" { "← all deployments" } " · "
                    a href=(deployment_url(&q.deployment, scope)) { "← deployment " (q.deployment) }
                }
                h1 { (q.machine) }
                p {
                    "MAC / UUID: " (st.addresses.join(", ")) br;
                    "Deployment " (q.deployment) ": "
                    strong data-state=(state_key(st.state)) { (st.state.label()) }
                    @if let Some(r) = &st.reason { " – " (r) }
                }
                h2 { "Runs" }
                @if detail.runs.is_empty() { p { small { "No run of this deployment." } } }
                @for (i, r) in detail.runs.iter().enumerate() {
                    section.run {
                        h3 {
                            "Run " (i + 1) ": started " (when(r.started_at)) " (" (r.via) ")"
                            @match (&r.outcome, r.ended_at) {
                                (Some(o), Some(at)) => { ", " (o) " " (when(at)) }
                                _ => { ", not ended" }
                            }
                        }
                        table.steps {
                            tr { th { "Step" } th { "Start" } th { "End" } th { "Result" } th { "Message" } }
                            @for step in &r.steps {
                                tr.failed[!step.ok] data-step=(step.name) {
                                    td { (step.name) }
                                    td { (when(step.started_at)) }
                                    td { (when(step.ended_at)) }
                                    td.result { @if step.ok { "succeeded" } @else { "failed" } }
                                    td { (step.message) }
                                }
                            }
                        }
                    }
                }
                h2 { "Status messages" }
                (messages_table(detail.messages.iter(), false))
                h2 { "What explain says now (PXE)" }
                @match &explained {
                    Some(text) => pre id="explain" { (text) },
                    None => p { small { "This machine cannot be named to explain." } },
                }
            },
        ))
    })
    .await
}

pub use crate::monitoring::format_time;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_civil_utc() {
        assert_eq!(format_time(0), "1970-01-01 00:00");
        assert_eq!(format_time(1_795_000_000), "2026-11-18 11:06");
        assert_eq!(format_time(951_782_400), "2000-02-29 00:00");
        assert_eq!(when(1_795_000_007), "2026-11-18 11:06:47 UTC");
    }

    #[test]
    fn the_failure_chart_names_its_dates_and_counts() {
        let day = 86_400;
        let start = 1_795_000_000 / day * day;
        let chart =
            failure_chart(&[(start, 0), (start + day, 3), (start + 2 * day, 0)], day).into_string();
        for date in ["11-18", "11-19", "11-20"] {
            assert!(
                chart.contains(&format!("class=\"date\">{date}<")),
                "{date} in {chart}"
            );
        }
        assert!(chart.contains("class=\"count\">3<"), "{chart}");
        assert!(
            chart.contains("<td>2026-11-19 00:00</td><td class=\"n\">3</td>"),
            "{chart}"
        );
    }

    #[test]
    fn site_author_text_is_escaped() {
        let m = StatusMessage {
            seq: 1,
            at: 0,
            source: "agent".into(),
            kind: "failed".into(),
            identity: None,
            device: Some("<b>pc</b>".into()),
            deployment: Some("LAB00001".into()),
            body: serde_json::json!({"reason": "<script>alert(1)</script>"}),
        };
        let html = messages_table(std::iter::once(&m), true).into_string();
        assert!(
            !html.contains("<script>") && !html.contains("<b>"),
            "{html}"
        );
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{html}"
        );
    }

    #[test]
    fn message_times_are_shown_in_utc_never_as_epoch_seconds() {
        // A message kept on full media carries the time it was written as `at`.
        let m = StatusMessage {
            seq: 1,
            at: 1_795_000_060,
            source: "agent".into(),
            kind: "started".into(),
            identity: None,
            device: Some("pc1".into()),
            deployment: Some("LAB00001".into()),
            body: serde_json::json!({"at": 1_795_000_007}),
        };
        let html = messages_table(std::iter::once(&m), true).into_string();
        assert!(html.contains("<td>2026-11-18 11:07:40 UTC</td>"), "{html}");
        assert!(html.contains("at=2026-11-18 11:06:47 UTC"), "{html}");
        assert!(!html.contains("1795000"), "{html}");
    }
}
