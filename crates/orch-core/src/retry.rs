//! Retry policy: how many attempts a task gets and how long to wait between them.

use std::time::Duration;

/// How a task is retried. Per-task values override the defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RetryPolicy {
    /// Runs a task may have before it ends `failed` (or `needs_review` on lost leases).
    pub max_attempts: u32,
    /// The wait after the first failure; doubled after each further failure.
    #[serde(with = "crate::duration_ms")]
    pub backoff_base: Duration,
    /// The wait never grows past this.
    #[serde(with = "crate::duration_ms")]
    pub backoff_max: Duration,
    /// Up to this much is added at random so that many failures do not retry in lockstep.
    #[serde(with = "crate::duration_ms")]
    pub jitter: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 3,
            backoff_base: Duration::from_secs(10),
            backoff_max: Duration::from_secs(10 * 60),
            jitter: Duration::from_secs(2),
        }
    }
}

impl RetryPolicy {
    /// The wait before the next attempt after `attempts_used` failed attempts.
    ///
    /// `jitter_unit` is a random number in `[0, 1)` chosen by the caller, so this stays
    /// deterministic: `min(base * 2^(attempts_used - 1), max) + jitter * jitter_unit`.
    pub fn backoff(&self, attempts_used: u32, jitter_unit: f64) -> Duration {
        let exponent = attempts_used.saturating_sub(1).min(30);
        let exponential = self
            .backoff_base
            .checked_mul(1u32 << exponent)
            .unwrap_or(self.backoff_max);
        let capped = exponential.min(self.backoff_max);
        let unit = if jitter_unit.is_finite() {
            jitter_unit.clamp(0.0, 1.0)
        } else {
            0.0
        };
        capped + self.jitter.mul_f64(unit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(base: u64, max: u64, jitter: u64) -> RetryPolicy {
        RetryPolicy {
            max_attempts: 5,
            backoff_base: Duration::from_secs(base),
            backoff_max: Duration::from_secs(max),
            jitter: Duration::from_secs(jitter),
        }
    }

    #[test]
    fn backoff_doubles_per_attempt_and_stops_at_the_cap() {
        let p = policy(1, 10, 0);
        let waits: Vec<u64> = (1..=6).map(|n| p.backoff(n, 0.0).as_secs()).collect();
        assert_eq!(waits, vec![1, 2, 4, 8, 10, 10]);
    }

    #[test]
    fn jitter_adds_at_most_its_bound() {
        let p = policy(4, 100, 2);
        assert_eq!(p.backoff(1, 0.0), Duration::from_secs(4));
        assert_eq!(p.backoff(1, 0.5), Duration::from_secs(5));
        assert_eq!(p.backoff(1, 1.0), Duration::from_secs(6));
        assert_eq!(p.backoff(1, f64::NAN), Duration::from_secs(4));
    }

    #[test]
    fn huge_attempt_counts_do_not_overflow() {
        let p = policy(u64::MAX / 4, u64::MAX / 2, 0);
        assert_eq!(p.backoff(u32::MAX, 0.0), Duration::from_secs(u64::MAX / 2));
    }
}
