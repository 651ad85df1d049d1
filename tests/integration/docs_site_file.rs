//! The site-file reference (`docs/site-file.md`): its complete example is read from the page,
//! applied with the real `netdeploy site apply`, and every key of it is found again in the
//! stored catalog. A key the example gains that this test does not know fails the test, so the
//! page cannot document a key that is not checked.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value as Json;
use sha2::{Digest, Sha256};
use toml::Value as Toml;

use crate::harness::cli_ok;

const PAGE: &str = include_str!("../../docs/site-file.md");

/// The one ```toml block of the page.
fn example() -> String {
    let blocks: Vec<&str> = PAGE
        .split("```toml\n")
        .skip(1)
        .map(|rest| rest.split("\n```").next().expect("a closed block"))
        .collect();
    assert_eq!(
        blocks.len(),
        1,
        "docs/site-file.md must hold exactly one ```toml block, the complete example"
    );
    format!("{}\n", blocks[0])
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn tables<'a>(site: &'a Toml, key: &str) -> &'a [Toml] {
    site.get(key)
        .and_then(Toml::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

fn text(v: &Toml) -> &str {
    v.as_str().expect("a string")
}

/// A TOML value as the catalog's JSON holds it.
fn json_of(v: &Toml) -> Json {
    serde_json::to_value(v).expect("TOML values convert to JSON")
}

/// The file a path of the example names, written below `dir`, with contents that say which
/// file it is; returns its SHA-256.
fn make_file(dir: &Path, rel: &str) -> String {
    let path = dir.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let bytes = format!("contents of {rel}\n").into_bytes();
    std::fs::write(&path, &bytes).unwrap();
    sha256_hex(&bytes)
}

/// The stored object of `kind` whose `key` is `id`.
fn stored<'a>(catalog: &'a Json, kind: &str, key: &str, id: &str) -> &'a Json {
    catalog[kind]
        .as_array()
        .unwrap_or_else(|| panic!("no {kind} in the catalog"))
        .iter()
        .find(|o| o[key] == id)
        .unwrap_or_else(|| panic!("{kind} {id:?} did not land in the catalog"))
}

/// The stored file of an object by its name in the package or boot image.
fn stored_file<'a>(object: &'a Json, name: &str) -> &'a Json {
    object["files"]
        .as_array()
        .expect("files")
        .iter()
        .find(|f| f["path"] == name)
        .unwrap_or_else(|| panic!("file {name:?} missing from {object}"))
}

fn unknown(section: &str, key: &str) -> ! {
    panic!(
        "docs/site-file.md's example has {section} key {key:?}, which this test does not check: \
         teach tests/integration/docs_site_file.rs what it must become in the catalog"
    )
}

#[test]
fn the_site_file_reference_example_applies_and_every_key_lands() {
    let text_of_example = example();
    let site: Toml = toml::from_str(&text_of_example).expect("the example is TOML");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");

    // The files the example names: each package directory gets the files its steps read
    // (one more when none does), each boot image its files.
    let mut package_files: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for p in tables(&site, "package") {
        let id = text(&p["id"]).to_string();
        let from = text(&p["from"]);
        let mut names: Vec<String> = tables(&site, "task_sequence")
            .iter()
            .flat_map(|t| {
                t.get("steps")
                    .and_then(Toml::as_array)
                    .into_iter()
                    .flatten()
            })
            .filter(|s| s.get("package").and_then(Toml::as_str) == Some(id.as_str()))
            .filter_map(|s| s.get("file").and_then(Toml::as_str).map(String::from))
            .collect();
        names.push("README".into());
        names.sort();
        names.dedup();
        let files = names
            .into_iter()
            .map(|n| {
                let sha = make_file(dir.path(), &format!("{from}/{n}"));
                (n, sha)
            })
            .collect();
        package_files.insert(id, files);
    }
    let mut image_files: BTreeMap<String, String> = BTreeMap::new();
    for b in tables(&site, "boot_image") {
        for key in [
            "kernel", "initrd", "wimboot", "bootmgr", "bcd", "boot_sdi", "boot_wim",
        ] {
            if let Some(rel) = b.get(key).and_then(Toml::as_str) {
                image_files.insert(rel.to_string(), make_file(dir.path(), rel));
            }
        }
    }
    let file = dir.path().join("site.toml");
    std::fs::write(&file, &text_of_example).unwrap();

    // What apply prints on stdout; the note on stderr about the new catalog is not part of it.
    let applied: String = cli_ok(&data, &["site", "apply", file.to_str().unwrap()])
        .lines()
        .filter(|l| !l.starts_with("netdeploy: new catalog at "))
        .map(|l| format!("{l}\n"))
        .collect();
    let shown: Json =
        serde_json::from_str(&cli_ok(&data, &["site", "show"])).expect("site show prints JSON");
    let catalog = &shown["catalog"];
    let settings = &shown["settings"];

    let code = text(&site["site_code"]).to_ascii_uppercase();
    for (key, value) in site.as_table().unwrap() {
        match key.as_str() {
            "site_code" | "device" | "collection" | "package" | "boot_image" | "task_sequence"
            | "deployment" => {}
            "settings" => {
                for (k, v) in value.as_table().expect("[settings] is a table") {
                    match k.as_str() {
                        "default_size"
                        | "max_size"
                        | "block_site_systems"
                        | "unknown_computers"
                        | "pre_production_collection" => {
                            assert_eq!(settings[k], json_of(v), "settings.{k}")
                        }
                        _ => unknown("[settings]", k),
                    }
                }
            }
            _ => unknown("top-level", key),
        }
    }

    for d in tables(&site, "device") {
        let name = text(&d["name"]);
        let s = stored(catalog, "devices", "name", name);
        assert!(
            applied.contains(&format!("created  device {name}")),
            "{applied}"
        );
        for (k, v) in d.as_table().unwrap() {
            match k.as_str() {
                "name" => {}
                "macs" => {
                    let want: Vec<Json> = v
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|m| Json::from(text(m).to_ascii_lowercase()))
                        .collect();
                    assert_eq!(s["macs"], Json::from(want), "device {name} macs");
                }
                "uuid" => assert_eq!(s["uuid"], text(v).to_ascii_lowercase(), "device {name}"),
                "server" | "site_system" => assert_eq!(s[k], json_of(v), "device {name} {k}"),
                _ => unknown("[[device]]", k),
            }
        }
    }

    for c in tables(&site, "collection") {
        let id = text(&c["id"]);
        let s = stored(catalog, "collections", "id", id);
        assert!(
            applied.contains(&format!("created  collection {id}")),
            "{applied}"
        );
        assert_eq!(s["kind"], "custom", "collection {id}");
        for (k, v) in c.as_table().unwrap() {
            match k.as_str() {
                "id" => {}
                "name" | "members" => assert_eq!(s[k], json_of(v), "collection {id} {k}"),
                _ => unknown("[[collection]]", k),
            }
        }
    }

    for p in tables(&site, "package") {
        let id = text(&p["id"]);
        let s = stored(catalog, "packages", "id", id);
        assert!(
            applied.contains(&format!("created  package {id}")),
            "{applied}"
        );
        for (k, v) in p.as_table().unwrap() {
            match k.as_str() {
                "id" => {}
                "version" | "package_share" => {
                    assert_eq!(s[k], json_of(v), "package {id} {k}")
                }
                "from" => {
                    let want = &package_files[id];
                    let got: BTreeMap<String, String> = s["files"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|f| {
                            (
                                f["path"].as_str().unwrap().to_string(),
                                f["sha256"].as_str().unwrap().to_string(),
                            )
                        })
                        .collect();
                    assert_eq!(&got, want, "package {id}: the files of {}", text(v));
                }
                _ => unknown("[[package]]", k),
            }
        }
    }

    for b in tables(&site, "boot_image") {
        let id = text(&b["id"]);
        let s = stored(catalog, "boot_images", "id", id);
        assert!(
            applied.contains(&format!("created  boot_image {id}")),
            "{applied}"
        );
        if b.get("kind").is_none() {
            assert_eq!(
                s["kind"], "linux",
                "boot image {id}: kind defaults to linux"
            );
        }
        for (k, v) in b.as_table().unwrap() {
            let stored_name = match k.as_str() {
                "kernel" => "kernel",
                "initrd" => "initrd",
                "wimboot" => "wimboot",
                "bootmgr" => "bootmgr",
                "bcd" => "BCD",
                "boot_sdi" => "boot.sdi",
                "boot_wim" => "boot.wim",
                "id" => continue,
                "arch" | "kind" | "cmdline" | "pre_production" | "replaces" => {
                    assert_eq!(s[k], json_of(v), "boot image {id} {k}");
                    continue;
                }
                _ => unknown("[[boot_image]]", k),
            };
            assert_eq!(
                stored_file(s, stored_name)["sha256"],
                image_files[text(v)].as_str(),
                "boot image {id}: {k} = {v}"
            );
        }
    }

    for t in tables(&site, "task_sequence") {
        let id = text(&t["id"]);
        let s = stored(catalog, "task_sequences", "id", id);
        assert!(
            applied.contains(&format!("created  task_sequence {id}")),
            "{applied}"
        );
        if t.get("name").is_none() {
            assert_eq!(
                s["name"], id,
                "task sequence {id}: the name defaults to the id"
            );
        }
        for (k, v) in t.as_table().unwrap() {
            match k.as_str() {
                "id" => {}
                "name" | "boot_image" | "packages" => {
                    assert_eq!(s[k], json_of(v), "task sequence {id} {k}")
                }
                "steps" => {
                    let steps = v.as_array().unwrap();
                    assert_eq!(
                        s["steps"].as_array().unwrap().len(),
                        steps.len(),
                        "task sequence {id}: steps"
                    );
                    for (i, step) in steps.iter().enumerate() {
                        let secret = step.get("secret") == Some(&Toml::Boolean(true));
                        for (sk, sv) in step.as_table().unwrap() {
                            match sk.as_str() {
                                // `site show` masks a secret value; the store keeps it.
                                "value" if secret => assert_eq!(
                                    s["steps"][i][sk], "********",
                                    "task sequence {id} step {i}: a secret value is shown masked"
                                ),
                                "name" | "action" | "package" | "command" | "file" | "target"
                                | "variable" | "value" | "secret" => assert_eq!(
                                    s["steps"][i][sk],
                                    json_of(sv),
                                    "task sequence {id} step {i} {sk}"
                                ),
                                _ => unknown("step", sk),
                            }
                        }
                    }
                }
                _ => unknown("[[task_sequence]]", k),
            }
        }
    }

    for d in tables(&site, "deployment") {
        let id = text(&d["id"]).to_ascii_uppercase();
        assert!(
            id.starts_with(&code),
            "deployment {id} carries the site code {code}"
        );
        let s = stored(catalog, "deployments", "id", &id);
        assert!(
            applied.contains(&format!("created  deployment {id}")),
            "{applied}"
        );
        for (k, v) in d.as_table().unwrap() {
            match k.as_str() {
                "id" => {}
                "task_sequence" | "collection" | "purpose" | "available_to" | "option"
                | "wake_on_lan" | "comments" => {
                    assert_eq!(s[k], json_of(v), "deployment {id} {k}")
                }
                "rerun" | "available_at" | "expires_at" => {
                    assert_eq!(s["schedule"][k], json_of(v), "deployment {id} {k}")
                }
                "accept_high_risk" => {
                    assert_eq!(s["high_risk_accepted"], json_of(v), "deployment {id} {k}")
                }
                _ => unknown("[[deployment]]", k),
            }
        }
    }

    // Nothing else was created, and the page shows exactly what apply printed.
    let created = applied.lines().filter(|l| l.starts_with("created")).count();
    let declared = [
        "device",
        "collection",
        "package",
        "boot_image",
        "task_sequence",
    ]
    .iter()
    .chain(&["deployment"])
    .map(|k| tables(&site, k).len())
    .sum::<usize>();
    assert_eq!(created, declared, "{applied}");
    assert!(
        PAGE.contains(&format!("```\n{}```", applied)),
        "docs/site-file.md shows the output of applying its example; it now reads:\n{applied}"
    );

    let again = cli_ok(&data, &["site", "apply", file.to_str().unwrap()]);
    assert_eq!(again.trim(), format!("site {code}: no change"));
}
