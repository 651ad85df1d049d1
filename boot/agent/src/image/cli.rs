//! `netdeploy-agent capture` and `netdeploy-agent apply-image`: the library's capture and
//! apply from a shell, for operators and the imaging benchmark. The exit code is 0 on
//! success, 1 on failure (said on stderr), 2 for operands that cannot be understood.

use std::path::{Path, PathBuf};

use netdeploy_wire::image::INDEX_FILE;

use super::apply::apply as apply_image;
use super::capture::capture as capture_image;
use super::{ApplyOptions, CaptureOptions, ImageRef, Store};
use crate::console::say;
use crate::hash;
use crate::http::{Client, Url};

/// Captures `source` into `out`; prints `image.ndimg <sha256> <size>` on stdout.
pub fn capture(source: &Path, out: &Path) -> i32 {
    match capture_image(source, out, &CaptureOptions::default()) {
        Ok(c) => {
            println!(
                "{INDEX_FILE} {} {}",
                hash::to_hex(&c.index_sha256),
                c.index_len
            );
            0
        }
        Err(e) => {
            say(e);
            1
        }
    }
}

/// The journal of an apply onto `target` started from a shell: in the temporary directory,
/// named after the target, so that running the same command again resumes.
fn journal_for(target: &Path) -> PathBuf {
    let name = target
        .to_string_lossy()
        .trim_start_matches('/')
        .replace('/', "_");
    std::env::temp_dir().join(format!("netdeploy-apply-{name}.journal"))
}

/// Applies the image whose index is `sha256` (`size` bytes) from `from` onto `target`.
pub fn apply(from: &str, sha256: &str, size: &str, target: &Path) -> i32 {
    let (Some(sha), Ok(size)) = (hash::parse_hex(sha256), size.parse::<u64>()) else {
        say(format!(
            "apply-image: {sha256:?} is not a SHA-256 or {size:?} not a size (see --help)"
        ));
        return 2;
    };
    let client = Client::default();
    let store = if from.starts_with("http://") {
        match Url::parse(from) {
            Ok(base) => Store::Http {
                client: &client,
                base,
            },
            Err(e) => {
                say(format!("apply-image: {from}: {e}"));
                return 2;
            }
        }
    } else {
        Store::Dir(PathBuf::from(from))
    };
    let image = ImageRef {
        name: INDEX_FILE,
        index_size: size,
        index_sha256: Some(sha),
    };
    match apply_image(
        &store,
        &image,
        target,
        &ApplyOptions::new(journal_for(target)),
    ) {
        Ok(_) => 0,
        Err(e) => {
            say(e);
            1
        }
    }
}
