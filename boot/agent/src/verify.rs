//! `netdeploy-agent verify FILE SHA256`: the agent's hash rate on this machine, for the
//! benchmark, with the same hashing code that verifies downloads.

use std::path::Path;
use std::time::Instant;

use crate::hash;

/// Hashes `file`, compares with `sha256` and prints one line of `key=value` fields; returns
/// the exit code: 0 on a match, 1 on a mismatch, 2 when the file cannot be read.
pub fn run(file: &Path, sha256: &str) -> i32 {
    let Some(expected) = hash::parse_hex(sha256) else {
        eprintln!("netdeploy-agent verify: {sha256:?} is not a SHA-256 (64 hex digits)");
        return 2;
    };
    let started = Instant::now();
    let (actual, bytes) = match hash::hash_file(file) {
        Ok(r) => r,
        Err(e) => {
            eprintln!(
                "netdeploy-agent verify: cannot read {}: {e}",
                file.display()
            );
            return 2;
        }
    };
    let secs = started.elapsed().as_secs_f64();
    let ok = actual == expected;
    println!("{}", line(ok, file, bytes, secs, &actual, &expected));
    if ok {
        0
    } else {
        1
    }
}

fn line(
    ok: bool,
    file: &Path,
    bytes: u64,
    secs: f64,
    actual: &hash::Sha256Digest,
    expected: &hash::Sha256Digest,
) -> String {
    let rate = if secs > 0.0 {
        bytes as f64 / secs / 1e6
    } else {
        0.0
    };
    let mut s = format!(
        "netdeploy-agent verify: {} file={} bytes={bytes} seconds={secs:.3} MB/s={rate:.1} sha256={}",
        if ok { "ok" } else { "mismatch" },
        file.display(),
        hash::to_hex(actual),
    );
    if !ok {
        s.push_str(&format!(" expected={}", hash::to_hex(expected)));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_rate_and_hashes() {
        let l = line(true, Path::new("/f"), 2_000_000, 0.5, &[0; 32], &[0; 32]);
        assert_eq!(
            l,
            format!(
                "netdeploy-agent verify: ok file=/f bytes=2000000 seconds=0.500 MB/s=4.0 sha256={}",
                "0".repeat(64)
            )
        );
        let l = line(false, Path::new("/f"), 1, 1.0, &[0; 32], &[1; 32]);
        assert!(l.contains(" mismatch "));
        assert!(l.ends_with(&format!("expected={}", "01".repeat(32))));
    }

    #[test]
    fn exit_codes() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, b"hello").unwrap();
        let good = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
        assert_eq!(run(&f, good), 0);
        assert_eq!(run(&f, &"0".repeat(64)), 1);
        assert_eq!(run(&f, "xyz"), 2);
        assert_eq!(run(&dir.path().join("missing"), good), 2);
    }
}
