//! The status web page (`/status`) and its JSON (`/status.json`): the five states per
//! deployment and collection, failures over time as an inline SVG chart, recent status
//! messages and the live PXE/TFTP counters. Server-rendered HTML that refreshes itself: no
//! script, no build step.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use super::AppState;
use crate::catalog::stored;
use crate::monitoring::{self, Overview, State as S};

#[derive(Debug, Deserialize)]
pub struct PageQuery {
    /// Show every deployment over this collection instead of its own.
    collection: Option<String>,
    /// Failures over the last N days (default 14; 2 or fewer: per hour).
    days: Option<i64>,
}

fn build(s: &AppState, q: &PageQuery) -> Result<Overview, (StatusCode, String)> {
    let (catalog, settings) = stored::load(&s.bootpath.store)
        .map_err(|e| (StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    let messages = s
        .bootpath
        .store
        .statuses(None, 100_000)
        .map_err(|e| (StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    if let Some(c) = &q.collection {
        if catalog.collection(c).is_none() {
            return Err((StatusCode::NOT_FOUND, format!("no collection {c:?}\n")));
        }
    }
    let days = q.days.unwrap_or(14).clamp(1, 366);
    Ok(monitoring::overview(
        &catalog,
        &messages,
        q.collection.as_deref(),
        settings.pre_production_collection.as_deref(),
        crate::bootpath::now(),
        days,
    ))
}

pub async fn json(State(s): State<Arc<AppState>>, Query(q): Query<PageQuery>) -> Response {
    let st = s.clone();
    match tokio::task::spawn_blocking(move || build(&st, &q)).await {
        Ok(Ok(o)) => Json(serde_json::json!({
            "overview": o,
            "counters": s.counters.snapshot().into_iter().collect::<std::collections::BTreeMap<_, _>>(),
        }))
        .into_response(),
        Ok(Err(r)) => r.into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

fn esc(t: &str) -> String {
    t.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const COLORS: [(&str, S); 5] = [
    ("#2e7d32", S::Compliant),
    ("#1565c0", S::InProgress),
    ("#f9a825", S::NonCompliant),
    ("#c62828", S::Failed),
    ("#9e9e9e", S::Unknown),
];

pub async fn page(State(s): State<Arc<AppState>>, Query(q): Query<PageQuery>) -> Response {
    let scope = q.collection.clone();
    let days = q.days.unwrap_or(14).clamp(1, 366);
    let st = s.clone();
    let o = match tokio::task::spawn_blocking(move || build(&st, &q)).await {
        Ok(Ok(o)) => o,
        Ok(Err(r)) => return r.into_response(),
        Err(_) => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    };
    let collections = stored::load(&s.bootpath.store)
        .map(|(c, _)| c.collections)
        .unwrap_or_default();
    let mut h = String::new();
    let _ = write!(
        h,
        "<!doctype html><html lang=en><head><meta charset=utf-8><meta http-equiv=refresh content=10>\
         <title>netdeploy status</title><style>\
         body{{font-family:system-ui,sans-serif;margin:1.5em;color:#222}}table{{border-collapse:collapse;margin:.5em 0 1.5em}}\
         td,th{{border-bottom:1px solid #ddd;padding:.3em .7em;text-align:left}}td.n{{text-align:right;font-variant-numeric:tabular-nums}}\
         .k{{display:inline-block;width:.8em;height:.8em;margin-right:.3em}}h2{{margin-top:1.5em}}small{{color:#666}}\
         </style></head><body><h1>netdeploy status</h1><p><small>Refreshes every 10 s. Scope: {} &middot; <a href=\"/status.json\">JSON</a></small></p>",
        esc(scope.as_deref().unwrap_or("each deployment's own collection"))
    );
    h.push_str("<form method=get>Collection scope: <select name=collection><option value=\"\">each deployment's own</option>");
    for c in &collections {
        let sel = if scope.as_deref() == Some(c.id.as_str()) {
            " selected"
        } else {
            ""
        };
        let _ = write!(
            h,
            "<option value=\"{0}\"{sel}>{1}</option>",
            esc(&c.id),
            esc(&c.name)
        );
    }
    let _ = write!(
        h,
        "</select> days: <input name=days size=3 value={days}> <button>Show</button></form>"
    );

    h.push_str("<h2>Deployments</h2><table id=states><tr><th>Deployment</th><th>Collection</th>");
    for (color, st) in COLORS {
        let _ = write!(
            h,
            "<th><span class=k style=\"background:{color}\"></span>{}</th>",
            st.label()
        );
    }
    h.push_str("<th></th></tr>");
    for d in &o.deployments {
        let total: usize = d.counts.values().sum();
        let _ = write!(
            h,
            "<tr data-deployment=\"{0}\"><td>{0}</td><td>{1}</td>",
            esc(&d.deployment),
            esc(&d.collection)
        );
        for (_, st) in COLORS {
            let _ = write!(
                h,
                "<td class=n data-state=\"{}\">{}</td>",
                serde_json::to_value(st)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                d.counts[&st]
            );
        }
        // A stacked bar of the five states.
        h.push_str("<td><svg width=200 height=14 role=img>");
        let mut x = 0.0;
        for (color, st) in COLORS {
            if total > 0 {
                let w = 200.0 * d.counts[&st] as f64 / total as f64;
                let _ = write!(h, "<rect x=\"{x:.1}\" width=\"{w:.1}\" height=14 fill=\"{color}\"><title>{}: {}</title></rect>", st.label(), d.counts[&st]);
                x += w;
            }
        }
        h.push_str("</svg></td></tr>");
    }
    h.push_str("</table>");

    if !o.pre_production.is_empty() {
        let _ = write!(h, "<h2>Pre-production (collection {})</h2><table id=pre-production><tr><th>Deployment</th>", esc(&o.pre_production[0].collection));
        for (_, st) in COLORS {
            let _ = write!(h, "<th>{}</th>", st.label());
        }
        h.push_str("</tr>");
        for d in &o.pre_production {
            let _ = write!(h, "<tr><td>{}</td>", esc(&d.deployment));
            for (_, st) in COLORS {
                let _ = write!(h, "<td class=n>{}</td>", d.counts[&st]);
            }
            h.push_str("</tr>");
        }
        h.push_str("</table>");
    }
    let per = if o.period == 3600 { "hour" } else { "day" };
    let _ = write!(h, "<h2>Failures per {per}, last {days} days</h2>");
    let max = o.failures.iter().map(|f| f.1).max().unwrap_or(0).max(1);
    let n = o.failures.len().max(1);
    let bw = (600 / n).max(2);
    let _ = write!(
        h,
        "<svg id=failures width=\"{}\" height=130 role=img aria-label=\"failures per {per}\">",
        bw * n + 40
    );
    for (i, (t, c)) in o.failures.iter().enumerate() {
        let bh = 100 * c / max;
        let _ = write!(
            h,
            "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{bh}\" fill=\"#c62828\"><title>{}: {c}</title></rect>",
            30 + i * bw,
            110 - bh,
            bw.saturating_sub(1).max(1),
            esc(&format_time(*t))
        );
    }
    let _ = write!(h, "<text x=0 y=14 font-size=11>{max}</text><text x=0 y=110 font-size=11>0</text><line x1=28 y1=110 x2=\"{}\" y2=110 stroke=#999 /></svg>", 30 + bw * n);

    h.push_str("<h2>Recent status messages</h2><table><tr><th>Time (UTC)</th><th>Source</th><th>Kind</th><th>Machine</th><th>Deployment</th><th>Details</th></tr>");
    for m in o.recent.iter().rev() {
        let details = match &m.body {
            serde_json::Value::Object(map) => map
                .iter()
                .filter(|(k, _)| !matches!(k.as_str(), "kind" | "mac" | "uuid" | "deployment"))
                .map(|(k, v)| {
                    format!(
                        "{k}={}",
                        v.as_str()
                            .map(str::to_owned)
                            .unwrap_or_else(|| v.to_string())
                    )
                })
                .collect::<Vec<_>>()
                .join(" "),
            other => other.to_string(),
        };
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&format_time(m.at)),
            esc(&m.source),
            esc(&m.kind),
            esc(m.device.as_deref().or(m.identity.as_deref()).unwrap_or("")),
            esc(m.deployment.as_deref().unwrap_or("")),
            esc(&details)
        );
    }
    h.push_str("</table><h2>PXE and TFTP activity</h2><table id=counters>");
    for (k, v) in s.counters.snapshot() {
        let _ = write!(
            h,
            "<tr><td>{}</td><td class=n>{v}</td></tr>",
            esc(&k.replace('_', " "))
        );
    }
    h.push_str("</table></body></html>\n");
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], h).into_response()
}

/// `YYYY-MM-DD HH:MM` in UTC, without a time zone library (civil-from-days).
pub fn format_time(t: i64) -> String {
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}",
        secs / 3600,
        secs % 3600 / 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_are_civil_utc() {
        assert_eq!(super::format_time(0), "1970-01-01 00:00");
        assert_eq!(super::format_time(1_795_000_000), "2026-11-18 11:06");
        assert_eq!(super::format_time(951_782_400), "2000-02-29 00:00");
    }
}
