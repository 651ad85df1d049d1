//! Transfer progress on the console: percent, amount and rate, at most once a second.

use std::time::{Duration, Instant};

use crate::console::say;

const MIB: f64 = 1024.0 * 1024.0;

/// Progress of one transfer.
pub struct Progress {
    label: String,
    total: u64,
    started: Instant,
    /// Bytes already there when the transfer started (a resumed part file).
    base: u64,
    last_print: Instant,
}

impl Progress {
    /// A transfer of `total` bytes named `label`, of which `base` are already done.
    pub fn new(label: impl Into<String>, total: u64, base: u64) -> Progress {
        let now = Instant::now();
        Progress {
            label: label.into(),
            total,
            started: now,
            base,
            last_print: now,
        }
    }

    /// Notes that `done` bytes are done; prints when a second has passed since the last line.
    pub fn update(&mut self, done: u64) {
        if self.last_print.elapsed() >= Duration::from_secs(1) {
            self.last_print = Instant::now();
            say(self.line(done));
        }
    }

    /// The final line: size, time and rate.
    pub fn summary(&self, done: u64) -> String {
        format_summary(
            &self.label,
            done,
            done.saturating_sub(self.base),
            self.started.elapsed(),
        )
    }

    /// Starts counting the rate again, after the transfer started over from `base`.
    pub fn restart(&mut self, base: u64) {
        self.base = base;
        self.started = Instant::now();
    }

    fn line(&self, done: u64) -> String {
        format_line(
            &self.label,
            done,
            self.total,
            done.saturating_sub(self.base),
            self.started.elapsed(),
        )
    }
}

/// `LABEL: 45% (1.8 of 4.0 MiB), 12.3 MB/s`; the rate counts the bytes moved in this run
/// (`moved`) over `elapsed`, in decimal megabytes like disk tools print.
pub fn format_line(label: &str, done: u64, total: u64, moved: u64, elapsed: Duration) -> String {
    let pct = if total == 0 {
        100
    } else {
        (done.min(total) as u128 * 100 / total as u128) as u64
    };
    let secs = elapsed.as_secs_f64();
    let rate = if secs > 0.0 {
        moved as f64 / secs / 1e6
    } else {
        0.0
    };
    format!(
        "{label}: {pct}% ({:.1} of {:.1} MiB), {rate:.1} MB/s",
        done as f64 / MIB,
        total as f64 / MIB
    )
}

/// `LABEL: 3.0 MiB in 0.6 s, 4.9 MB/s`, or `LABEL: 19 bytes` for a file under a MiB.
pub fn format_summary(label: &str, done: u64, moved: u64, elapsed: Duration) -> String {
    if done < 1 << 20 {
        return format!("{label}: {done} bytes");
    }
    let secs = elapsed.as_secs_f64();
    let rate = if secs > 0.0 {
        moved as f64 / secs / 1e6
    } else {
        0.0
    };
    format!(
        "{label}: {:.1} MiB in {secs:.1} s, {rate:.1} MB/s",
        done as f64 / MIB
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_percent_amount_and_rate() {
        assert_eq!(
            format_line(
                "disk.img",
                2 << 20,
                4 << 20,
                2_000_000,
                Duration::from_secs(2)
            ),
            "disk.img: 50% (2.0 of 4.0 MiB), 1.0 MB/s"
        );
        assert_eq!(
            format_line("empty", 0, 0, 0, Duration::ZERO),
            "empty: 100% (0.0 of 0.0 MiB), 0.0 MB/s"
        );
    }

    #[test]
    fn summarizes_size_time_and_rate() {
        assert_eq!(
            format_summary("disk.img", 3 << 20, 3 << 20, Duration::from_millis(500)),
            "disk.img: 3.0 MiB in 0.5 s, 6.3 MB/s"
        );
        assert_eq!(
            format_summary("etc/motd", 19, 19, Duration::from_millis(1)),
            "etc/motd: 19 bytes"
        );
    }
}
