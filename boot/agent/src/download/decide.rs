//! The resume rules of a download (docs/content.md): where to start from a part file left by
//! an earlier attempt, and what a server's answer to a request from an offset means.

/// Where a transfer starts, given the bytes already in its part file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Nothing there: ask for the whole file.
    Fresh,
    /// Ask for the rest with `Range: bytes=N-`.
    Resume(u64),
    /// All bytes are there: only the hash is left to check.
    Complete,
    /// More bytes than the file has: not this file, start over.
    Discard,
}

/// Where to start with `existing` bytes of a file of `expected` bytes.
pub fn start(existing: u64, expected: u64) -> Start {
    match existing {
        0 if expected > 0 => Start::Fresh,
        n if n < expected => Start::Resume(n),
        n if n == expected => Start::Complete,
        _ => Start::Discard,
    }
}

/// A server's answer, reduced to what the resume rules look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// 200: the whole file, `length` bytes when known.
    Full { length: Option<u64> },
    /// 206: from byte `start`; `total` is the file size when known.
    Partial { start: u64, total: Option<u64> },
    /// 416.
    RangeNotSatisfiable,
    /// 404.
    NotFound,
    /// Any other status.
    Status(u16),
}

/// What to do with a reply to a request from byte `requested` of a file of `expected` bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// The body continues the bytes already written.
    Append,
    /// The body is the whole file: drop what was written and write it from the start.
    StartOver,
    /// Drop what was written and ask again for the whole file (counts as a failed attempt).
    DiscardAndRetry(String),
    /// Ask again later (counts as a failed attempt).
    Retry(String),
    /// Give up on this file.
    Fail(Fatal),
}

/// Answers no retry can fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fatal {
    NotFound,
    /// The server's file has another size than the policy says.
    Size {
        server: u64,
    },
    Status(u16),
}

/// The resume rules: a 206 from the requested byte is appended; a 200 to a Range request
/// starts over; a 416 or a 206 from another byte discards the part and asks again; a size
/// other than the policy's fails, since no retry can make the hash match.
pub fn on_reply(requested: u64, reply: Reply, expected: u64) -> Action {
    match reply {
        Reply::Full { length: Some(n) } if n != expected => Action::Fail(Fatal::Size { server: n }),
        Reply::Full { .. } if requested == 0 => Action::Append,
        Reply::Full { .. } => Action::StartOver,
        Reply::Partial { total: Some(n), .. } if n != expected => {
            Action::Fail(Fatal::Size { server: n })
        }
        Reply::Partial { start, .. } if start == requested => Action::Append,
        Reply::Partial { start, .. } => Action::DiscardAndRetry(format!(
            "the server answered from byte {start} instead of {requested}"
        )),
        Reply::RangeNotSatisfiable if requested > 0 => Action::DiscardAndRetry(format!(
            "the server refused the range from byte {requested} (416)"
        )),
        Reply::RangeNotSatisfiable => Action::Fail(Fatal::Status(416)),
        Reply::NotFound => Action::Fail(Fatal::NotFound),
        Reply::Status(s) if s >= 500 || s == 408 || s == 429 => {
            Action::Retry(format!("the server answered HTTP {s}"))
        }
        Reply::Status(s) => Action::Fail(Fatal::Status(s)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_from_the_part_file() {
        assert_eq!(start(0, 10), Start::Fresh);
        assert_eq!(start(4, 10), Start::Resume(4));
        assert_eq!(start(10, 10), Start::Complete);
        assert_eq!(start(11, 10), Start::Discard);
        assert_eq!(start(0, 0), Start::Complete);
    }

    #[test]
    fn appends_a_206_from_the_requested_byte() {
        let r = Reply::Partial {
            start: 4,
            total: Some(10),
        };
        assert_eq!(on_reply(4, r, 10), Action::Append);
        let r = Reply::Partial {
            start: 4,
            total: None,
        };
        assert_eq!(on_reply(4, r, 10), Action::Append);
    }

    #[test]
    fn a_200_to_a_range_request_starts_over() {
        let r = Reply::Full { length: Some(10) };
        assert_eq!(on_reply(4, r, 10), Action::StartOver);
        assert_eq!(on_reply(0, r, 10), Action::Append);
        assert_eq!(
            on_reply(4, Reply::Full { length: None }, 10),
            Action::StartOver
        );
    }

    #[test]
    fn a_416_or_another_start_discards_the_part() {
        assert!(matches!(
            on_reply(4, Reply::RangeNotSatisfiable, 10),
            Action::DiscardAndRetry(_)
        ));
        assert!(matches!(
            on_reply(
                4,
                Reply::Partial {
                    start: 0,
                    total: Some(10)
                },
                10
            ),
            Action::DiscardAndRetry(_)
        ));
        assert_eq!(
            on_reply(0, Reply::RangeNotSatisfiable, 10),
            Action::Fail(Fatal::Status(416))
        );
    }

    #[test]
    fn another_size_or_a_client_error_fails() {
        assert_eq!(
            on_reply(0, Reply::Full { length: Some(11) }, 10),
            Action::Fail(Fatal::Size { server: 11 })
        );
        assert_eq!(
            on_reply(
                4,
                Reply::Partial {
                    start: 4,
                    total: Some(9)
                },
                10
            ),
            Action::Fail(Fatal::Size { server: 9 })
        );
        assert_eq!(
            on_reply(0, Reply::NotFound, 10),
            Action::Fail(Fatal::NotFound)
        );
        assert_eq!(
            on_reply(0, Reply::Status(403), 10),
            Action::Fail(Fatal::Status(403))
        );
    }

    #[test]
    fn server_errors_are_retried() {
        assert!(matches!(
            on_reply(0, Reply::Status(503), 10),
            Action::Retry(_)
        ));
        assert!(matches!(
            on_reply(3, Reply::Status(429), 10),
            Action::Retry(_)
        ));
    }
}
