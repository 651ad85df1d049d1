//! Where a file's bytes come from: the server over HTTP, or a file already downloaded.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::PathBuf;

use super::decide::Reply;
use crate::http::{Client, Url};

/// Bytes of one file, from an offset.
pub trait Source {
    /// Asks for the bytes from `from`; `Err` is a failure worth retrying (connection refused,
    /// timeout), the reply says the rest.
    fn open(&mut self, from: u64) -> Result<(Reply, Box<dyn Read + '_>), String>;

    /// Where the bytes come from, for messages.
    fn describe(&self) -> String;
}

/// A file on the server.
pub struct HttpSource<'a> {
    pub client: &'a Client,
    pub url: Url,
}

impl Source for HttpSource<'_> {
    fn open(&mut self, from: u64) -> Result<(Reply, Box<dyn Read + '_>), String> {
        let resp = self
            .client
            .get(&self.url, (from > 0).then_some(from))
            .map_err(|e| e.to_string())?;
        let reply = match resp.status() {
            200 => Reply::Full {
                length: resp.content_length(),
            },
            206 => match resp.content_range() {
                Some(r) => Reply::Partial {
                    start: r.start,
                    total: r.total,
                },
                // A 206 without a byte range cannot be placed in the file.
                None => Reply::Status(206),
            },
            404 => Reply::NotFound,
            416 => Reply::RangeNotSatisfiable,
            s => Reply::Status(s),
        };
        Ok((reply, Box::new(resp)))
    }

    fn describe(&self) -> String {
        self.url.to_string()
    }
}

/// A file on a local disk: content downloaded before the first step, or on a full media.
pub struct LocalSource {
    pub path: PathBuf,
}

impl Source for LocalSource {
    fn open(&mut self, from: u64) -> Result<(Reply, Box<dyn Read + '_>), String> {
        let mut f = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Ok((Reply::NotFound, Box::new(io::empty())))
            }
            Err(e) => return Err(format!("cannot open {}: {e}", self.path.display())),
        };
        let len = f
            .metadata()
            .map_err(|e| format!("cannot stat {}: {e}", self.path.display()))?
            .len();
        f.seek(SeekFrom::Start(from))
            .map_err(|e| format!("cannot seek in {}: {e}", self.path.display()))?;
        Ok((
            Reply::Partial {
                start: from,
                total: Some(len),
            },
            Box::new(f),
        ))
    }

    fn describe(&self) -> String {
        self.path.display().to_string()
    }
}
