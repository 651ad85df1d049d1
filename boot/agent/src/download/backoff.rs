//! How long to wait before retrying a transfer that broke, and when to give up.

use std::time::Duration;

/// Retries with a doubling delay, bounded in count and in total waiting time. Both bounds
/// count failures in a row: an attempt that moved bytes starts the count again, so a long
/// transfer over a flaky link finishes while a dead server is given up on in minutes.
#[derive(Debug, Clone)]
pub struct Backoff {
    /// Failed attempts in a row before giving up.
    pub attempts: u32,
    /// Delay after the first failure; doubled after each further one.
    pub first: Duration,
    /// Longest single delay.
    pub max: Duration,
    /// Longest time spent failing in a row.
    pub total: Duration,
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff {
            attempts: 10,
            first: Duration::from_millis(500),
            max: Duration::from_secs(5),
            total: Duration::from_secs(120),
        }
    }
}

impl Backoff {
    /// The delay before the next attempt after `failures` failures in a row (1 after the
    /// first), which began `failing_for` ago; `None` when it is time to give up.
    pub fn delay(&self, failures: u32, failing_for: Duration) -> Option<Duration> {
        if failures == 0 || failures >= self.attempts {
            return None;
        }
        let d = self
            .first
            .saturating_mul(1u32 << (failures - 1).min(20))
            .min(self.max);
        (failing_for + d <= self.total).then_some(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_maximum_then_gives_up() {
        let b = Backoff::default();
        let delays: Vec<_> = (1..=10)
            .map(|n| b.delay(n, Duration::ZERO).map(|d| d.as_millis()))
            .collect();
        assert_eq!(
            delays,
            [
                Some(500),
                Some(1000),
                Some(2000),
                Some(4000),
                Some(5000),
                Some(5000),
                Some(5000),
                Some(5000),
                Some(5000),
                None
            ]
        );
        let worst: Duration = (1..10).filter_map(|n| b.delay(n, Duration::ZERO)).sum();
        assert!(worst <= b.total, "{worst:?}");
    }

    #[test]
    fn gives_up_when_the_total_time_is_spent() {
        let b = Backoff::default();
        assert_eq!(
            b.delay(2, Duration::from_secs(118)),
            Some(Duration::from_secs(1))
        );
        assert_eq!(b.delay(2, Duration::from_millis(119_500)), None);
    }
}
