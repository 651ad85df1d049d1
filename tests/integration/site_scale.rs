//! `site apply` at fleet scale: a generated site file of 100,000 devices (benches/site_gen.rs)
//! lands whole, re-applies as no change or as the one change it makes, and a bad one changes
//! nothing. Correctness only: benches/site_apply.sh measures the time.

use std::path::Path;
use std::process::Command;

use crate::harness::{binary, cli, cli_ok};

#[path = "../../benches/site_gen.rs"]
#[allow(dead_code)]
mod site_gen;

/// `netdeploy site show` as JSON (stdout only: stderr may say that a catalog was created).
fn site_show(data: &Path) -> serde_json::Value {
    let out = Command::new(binary())
        .arg("--data-dir")
        .arg(data)
        .args(["site", "show"])
        .output()
        .expect("run netdeploy");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("site show prints JSON")
}

fn lines_starting(out: &str, prefix: &str) -> usize {
    out.lines().filter(|l| l.starts_with(prefix)).count()
}

#[test]
fn a_site_of_100000_devices_lands_whole_and_reapplies_as_no_change_or_its_one_change() {
    const DEVICES: usize = 100_000;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let site = site_gen::write(&dir.path().join("site"), DEVICES, false).unwrap();
    let site = site.to_str().unwrap();
    let (collections, deployments) = site_gen::shape(DEVICES);
    assert_eq!((collections, deployments), (1000, 500));

    let out = cli_ok(&data, &["site", "apply", site]);
    assert_eq!(lines_starting(&out, "created  device "), DEVICES);
    assert_eq!(lines_starting(&out, "created  collection "), collections);
    assert_eq!(lines_starting(&out, "created  deployment "), deployments);
    assert_eq!(lines_starting(&out, "changed  "), 0, "default settings");
    assert_eq!(lines_starting(&out, "removed  "), 0);
    // Collection building-0000 holds 120 devices, pc-0000000 a server among them.
    assert!(
        out.contains(
            "warning  deployment BIG00001: high-risk: collection building-0000 holds servers pc-0000000"
        ),
        "{}",
        &out[out.len().saturating_sub(2000)..]
    );

    let shown = site_show(&data);
    let catalog = &shown["catalog"];
    let devices = catalog["devices"].as_array().unwrap();
    assert_eq!(devices.len(), DEVICES);
    // Every device, as the file declares it (the store lists them by name, as generated).
    for (i, d) in devices.iter().enumerate() {
        assert_eq!(d["name"], site_gen::device_name(i), "device {i}");
        let macs: Vec<&str> = d["macs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m.as_str().unwrap())
            .collect();
        assert_eq!(macs, site_gen::device_macs(i), "device {i}");
        assert_eq!(
            d["uuid"].as_str().map(str::to_owned),
            site_gen::device_uuid(i),
            "device {i}"
        );
        assert_eq!(
            d["server"],
            site_gen::device_is_server(i, false),
            "device {i}"
        );
    }
    let stored = catalog["collections"].as_array().unwrap();
    assert_eq!(stored.len(), collections + 2, "with the two built-in ones");
    for c in [0, 1, 9, 10, 499, 990, collections - 1] {
        let id = site_gen::collection_id(c);
        let col = stored.iter().find(|x| x["id"] == id).expect(&id);
        let members: Vec<&str> = col["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m.as_str().unwrap())
            .collect();
        let want: Vec<String> = site_gen::collection_members(c, DEVICES)
            .into_iter()
            .map(site_gen::device_name)
            .collect();
        assert_eq!(members, want, "{id}");
    }
    let stored = catalog["deployments"].as_array().unwrap();
    assert_eq!(stored.len(), deployments);
    for k in [0, 1, 2, 3, 250, deployments - 1] {
        let (id, ts, collection, purpose, to) = site_gen::deployment(k, DEVICES);
        let d = stored.iter().find(|x| x["id"] == id).expect(&id);
        assert_eq!(d["task_sequence"], ts, "{id}");
        assert_eq!(d["collection"], collection.as_str(), "{id}");
        assert_eq!(d["purpose"], purpose, "{id}");
        assert_eq!(d["available_to"], to, "{id}");
    }

    let again = cli_ok(&data, &["site", "apply", site]);
    assert_eq!(again.trim(), "site BIG: no change");

    let one = site_gen::write(&dir.path().join("one"), DEVICES, true).unwrap();
    let out = cli_ok(&data, &["site", "apply", one.to_str().unwrap()]);
    assert_eq!(out.trim(), "changed  device pc-0000001");
    assert_eq!(site_show(&data)["catalog"]["devices"][1]["server"], true);

    // A MAC declared twice, at the end of the file: refused by name, nothing written.
    let before = site_show(&data);
    // Next to the generated file, whose relative paths it keeps.
    let bad_site = dir.path().join("one").join("bad.toml");
    let text = std::fs::read_to_string(&one).unwrap();
    let mac = &site_gen::device_macs(1)[0];
    std::fs::write(
        &bad_site,
        format!("{text}\n[[device]]\nname = \"late\"\nmacs = [\"{mac}\"]\n"),
    )
    .unwrap();
    let (ok, out) = cli(&data, &["site", "apply", bad_site.to_str().unwrap()]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("device \"late\".macs[0]") && out.contains("\"pc-0000001\""),
        "{out}"
    );
    assert_eq!(site_show(&data), before);
}

#[test]
fn site_apply_shows_its_phases_on_a_terminal_and_nothing_extra_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let site = site_gen::write(&dir.path().join("site"), 1_000, false).unwrap();
    let site = site.to_str().unwrap();

    // Not a terminal: stdout is the change summary, stderr only says a catalog was created.
    let data = dir.path().join("plain");
    let out = Command::new(binary())
        .arg("--data-dir")
        .arg(&data)
        .args(["site", "apply", site])
        .output()
        .unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("new catalog at"), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.lines().all(|l| l.starts_with("created  ")
            || l.starts_with("changed  ")
            || l.starts_with("warning  ")),
        "{stdout}"
    );

    // A terminal (script(1) gives the command one): each phase leaves a line with its count.
    let data = dir.path().join("tty");
    let command = format!(
        "{} --data-dir {} site apply {site} > /dev/null",
        binary(),
        data.display()
    );
    let out = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .output()
        .expect("script(1), from Debian's bsdutils");
    assert!(out.status.success());
    let tty = String::from_utf8_lossy(&out.stdout);
    let objects = 1_000 + 10 + 1 + 1 + 2 + 5;
    for phase in [
        "   parse ".to_string(),
        format!("validate {objects} in "),
        format!("  import {objects} in "),
        " compare ".into(),
        "   check 5 in ".into(),
        "   write ".into(),
    ] {
        assert!(tty.contains(&phase), "{phase:?} not in {tty:?}");
    }
}

#[test]
fn a_site_file_named_by_a_relative_path_imports_the_files_of_its_packages() {
    let dir = tempfile::tempdir().unwrap();
    site_gen::write(&dir.path().join("site"), 100, false).unwrap();
    let out = Command::new(binary())
        .current_dir(dir.path())
        .args(["--data-dir", "data", "site", "apply", "site/site.toml"])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("created  package disk"), "{text}");
    let shown = site_show(&dir.path().join("data"));
    let files = &shown["catalog"]["packages"][0]["files"];
    assert_eq!(files[0]["path"], "disk.img", "{files}");
    assert_eq!(
        files[0]["size"],
        b"disk image of the scale site".len(),
        "{files}"
    );
}
