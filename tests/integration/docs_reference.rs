//! The reference pages under `docs/` against the code they describe: the admin API page and
//! its OpenAPI document list every route the router serves and no other, every page is linked
//! from the README, and every link between pages leads to a file of the repository.

use std::path::Path;

const ADMIN_PAGE: &str = include_str!("../../docs/admin-api.md");
const OPENAPI: &str = include_str!("../../docs/admin-api.openapi.json");
const ADMIN_ROUTES: &str = include_str!("../../src/http/admin.rs");
const HTTP_ROUTES: &str = include_str!("../../src/http/mod.rs");
const README: &str = include_str!("../../README.md");

const METHODS: [&str; 5] = ["get", "post", "put", "delete", "patch"];

/// `(METHOD, path)` of every `.route("path", get(..).post(..))` in a router's source.
fn routes(source: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for chunk in source.split(".route(").skip(1) {
        // rustfmt puts the path on a line of its own when the handlers are long.
        let chunk = chunk.trim_start().strip_prefix('"').expect("a quoted path");
        let (path, rest) = chunk.split_once('"').expect("a quoted path");
        // The handlers of this route: up to the next route or the end of the router.
        let handlers = rest
            .split(".route")
            .next()
            .unwrap_or(rest)
            .split(".merge(")
            .next()
            .unwrap_or(rest);
        for m in METHODS {
            let call = format!("{m}(");
            let found = handlers.match_indices(&call).any(|(i, _)| {
                // A method call, not the end of a longer name (`axum::routing::post(` counts).
                i == 0 || !handlers.as_bytes()[i - 1].is_ascii_alphanumeric()
            });
            if found {
                out.push((m.to_ascii_uppercase(), path.to_string()));
            }
        }
    }
    out
}

/// `(METHOD, path)` of every operation of an OpenAPI document, sorted.
pub fn operations(doc: &serde_json::Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("an object of paths") {
        for m in METHODS {
            if item.get(m).is_some() {
                out.push((m.to_ascii_uppercase(), path.clone()));
            }
        }
    }
    out.sort();
    out
}

/// Every `"$ref"` string in a JSON value.
fn refs<'a>(v: &'a serde_json::Value, out: &mut Vec<&'a str>) {
    match v {
        serde_json::Value::Object(o) => {
            for (k, v) in o {
                match (k.as_str(), v.as_str()) {
                    ("$ref", Some(r)) => out.push(r),
                    _ => refs(v, out),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

/// Whether a documented path (`/api/v1/devices/{name}`, `/api/v1/explain?mac=`) is served
/// by a route (`/api/v1/{kind}/{id}`): same segments, `{..}` matching any one.
fn served_by(documented: &str, route: &str) -> bool {
    let documented = documented.split('?').next().unwrap_or(documented);
    let (a, b): (Vec<&str>, Vec<&str>) =
        (documented.split('/').collect(), route.split('/').collect());
    a.len() == b.len()
        && a.iter()
            .zip(&b)
            .all(|(d, r)| d == r || (r.starts_with('{') && r.ends_with('}')))
}

/// `(METHOD, path)` of every "`METHOD /api/v1/...`" the page documents.
fn documented(page: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for m in METHODS {
        let marker = format!("`{} /api/v1", m.to_ascii_uppercase());
        for (i, _) in page.match_indices(&marker) {
            let rest = &page[i + marker.len() - "/api/v1".len()..];
            let path: String = rest
                .chars()
                .take_while(|c| !matches!(c, '`' | ' ' | ','))
                .collect();
            out.push((m.to_ascii_uppercase(), path));
        }
    }
    out
}

#[test]
fn the_admin_api_page_documents_every_admin_route_and_no_other() {
    let served = routes(ADMIN_ROUTES);
    assert!(
        served.len() >= 10,
        "the routes of src/http/admin.rs were not found: {served:?}"
    );
    let docs = documented(ADMIN_PAGE);
    for (method, route) in &served {
        let documented_path = format!("`{method} {route}");
        assert!(
            ADMIN_PAGE.contains(&documented_path)
                || docs.iter().any(|(m, p)| m == method && p == route),
            "docs/admin-api.md does not document {method} {route}"
        );
    }
    for (method, path) in &docs {
        assert!(
            served
                .iter()
                .any(|(m, r)| m == method && served_by(path, r)),
            "docs/admin-api.md documents {method} {path}, which the router does not serve"
        );
    }
    // The kinds of objects the page names are the ones the API knows.
    let kinds = ADMIN_ROUTES
        .split("fn store_kind")
        .nth(1)
        .expect("store_kind")
        .split("_ => return None")
        .next()
        .unwrap();
    for line in kinds.lines().filter(|l| l.contains("=>")) {
        let kind = line.trim().split('"').nth(1).expect("a quoted kind");
        assert!(
            ADMIN_PAGE.contains(&format!("`{kind}`")),
            "docs/admin-api.md does not name the kind {kind}"
        );
    }
}

#[test]
fn the_openapi_document_lists_every_admin_route_and_no_other() {
    let doc: serde_json::Value =
        serde_json::from_str(OPENAPI).expect("docs/admin-api.openapi.json is JSON");
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "not OpenAPI 3.x: {}",
        doc["openapi"]
    );
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());
    let mut served = routes(ADMIN_ROUTES);
    served.sort();
    assert!(
        served.len() >= 10,
        "the routes of src/http/admin.rs were not found: {served:?}"
    );
    assert_eq!(
        operations(&doc),
        served,
        "docs/admin-api.openapi.json and the routes of src/http/admin.rs differ"
    );
    // Every `{parameter}` of a path is declared, on the path or on each of its operations.
    for (method, path) in &served {
        let item = &doc["paths"][path];
        let declared = |list: &serde_json::Value, name: &str| {
            list.as_array().is_some_and(|l| {
                l.iter().any(|p| {
                    let p = match p["$ref"].as_str() {
                        Some(r) => doc.pointer(&r[1..]).unwrap_or(p),
                        None => p,
                    };
                    p["in"] == "path" && p["name"] == name
                })
            })
        };
        for name in path
            .split('{')
            .skip(1)
            .map(|s| s.split('}').next().unwrap())
        {
            assert!(
                declared(&item["parameters"], name)
                    || declared(&item[method.to_ascii_lowercase()]["parameters"], name),
                "{method} {path}: the path parameter {name} is not declared"
            );
        }
    }
    let mut found = Vec::new();
    refs(&doc, &mut found);
    assert!(!found.is_empty());
    for r in found {
        assert!(
            r.strip_prefix('#').and_then(|p| doc.pointer(p)).is_some(),
            "docs/admin-api.openapi.json refers to {r}, which it does not hold"
        );
    }
}

#[test]
fn the_admin_api_page_names_every_endpoint_that_needs_no_token() {
    let open = ADMIN_PAGE
        .split("## Endpoints without a token")
        .nth(1)
        .expect("the section on endpoints without a token");
    for (_, route) in routes(HTTP_ROUTES) {
        // `/content/{sha256}` is written `/content/<sha256>` on the page.
        let prefix = route.split('{').next().unwrap();
        assert!(
            open.contains(&format!("`{prefix}")),
            "docs/admin-api.md does not list {route} among the endpoints without a token"
        );
    }
}

#[test]
fn the_readme_links_every_reference_page_and_every_link_leads_somewhere() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut pages: Vec<_> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".md"))
        .collect();
    pages.sort();
    assert!(!pages.is_empty());
    for page in &pages {
        assert!(
            README.contains(&format!("](docs/{page})")),
            "README.md does not link docs/{page}"
        );
        let text = std::fs::read_to_string(root.join("docs").join(page)).unwrap();
        for link in text.split("](").skip(1) {
            let target = link.split(')').next().unwrap();
            if target.starts_with("http") || target.starts_with('#') {
                continue;
            }
            let file = target.split('#').next().unwrap();
            assert!(
                root.join("docs").join(file).exists(),
                "docs/{page} links {target}, which does not exist"
            );
        }
    }
}

/// `netdeploy ARGS --help` (`netdeploy help media`: `media --help` is the media builder's).
fn help(args: &[&str]) -> String {
    let mut full: Vec<&str> = args.to_vec();
    match args {
        ["media"] => full.insert(0, "help"),
        _ => full.push("--help"),
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_netdeploy"))
        .args(&full)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "netdeploy {full:?} failed");
    String::from_utf8(out.stdout).unwrap()
}

/// The subcommands a help text lists, but `help`.
fn subcommands(help: &str) -> Vec<String> {
    let Some(list) = help.split("\nCommands:\n").nth(1) else {
        return Vec::new();
    };
    list.lines()
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| *n != "help")
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_command_help_ends_with_its_reference_pages_and_they_exist() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let installed = "/usr/share/doc/netdeploy/docs/";
    let packaging = std::fs::read_to_string(root.join("packaging/build-deb.sh")).unwrap();
    assert!(
        packaging.contains(r#""$repo"/docs/*.md"#)
            && packaging.contains(&format!("$root{}", installed.trim_end_matches('/'))),
        "packaging/build-deb.sh no longer installs docs/ in {installed}"
    );
    let mut pending: Vec<Vec<String>> = subcommands(&help(&[]))
        .into_iter()
        .map(|c| vec![c])
        .collect();
    assert!(pending.len() >= 15, "{pending:?}");
    let mut seen = std::collections::BTreeMap::new();
    while let Some(command) = pending.pop() {
        let args: Vec<&str> = command.iter().map(String::as_str).collect();
        let text = help(&args);
        let last = text.lines().rev().find(|l| !l.trim().is_empty()).unwrap();
        let pages = last
            .strip_prefix("Reference: ")
            .and_then(|l| l.strip_suffix(&format!(" (installed in {installed})")))
            .unwrap_or_else(|| panic!("netdeploy {args:?} --help ends with {last:?}"));
        for page in pages.split(", ") {
            let name = page
                .strip_prefix("docs/")
                .unwrap_or_else(|| panic!("{page} is not under docs/"));
            assert!(
                name.ends_with(".md") && root.join("docs").join(name).is_file(),
                "netdeploy {args:?} --help names {page}, which does not exist"
            );
        }
        seen.insert(command.join(" "), pages.to_owned());
        if command[0] != "media" {
            for sub in subcommands(&text) {
                pending.push([command.clone(), vec![sub]].concat());
            }
        }
    }
    assert_eq!(seen["site apply"], "docs/site-file.md");
    assert_eq!(seen["deployment create"], "docs/deployment-checks.md");
    assert_eq!(
        seen["pxe clear"],
        "docs/selection-rules.md, docs/operating.md"
    );
    assert_eq!(seen["serve"], "docs/configuration.md");
    assert!(seen.len() > 40, "{seen:?}");
}
