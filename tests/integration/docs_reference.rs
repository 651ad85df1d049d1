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
