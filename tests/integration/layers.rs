//! The layers import downwards only: the pure model and rules (`catalog`, `decision`) know
//! nothing of the store, the services or the adapters above them.

use std::path::Path;

use crate::lab::repo;

/// Modules above the model and rules: the store, services and adapters.
const ABOVE_THE_MODEL: [&str; 11] = [
    "dhcp",
    "http",
    "cli",
    "store",
    "admin",
    "bootpath",
    "serve",
    "tftp",
    "monitoring",
    "wake",
    "alert_hooks",
];

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn the_model_and_rules_import_nothing_from_the_layers_above() {
    let mut files = Vec::new();
    for layer in ["src/catalog", "src/decision"] {
        rust_files(&repo().join(layer), &mut files);
    }
    assert!(files.len() >= 8, "found only {files:?}");
    let mut found = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            for module in ABOVE_THE_MODEL {
                if code.contains(&format!("crate::{module}::"))
                    || code.contains(&format!("crate::{module};"))
                    || code.contains(&format!("crate::{{{module}"))
                {
                    found.push(format!("{}:{}: {}", f.display(), n + 1, line.trim()));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "the model and rules import upwards:\n{}",
        found.join("\n")
    );
}
