//! Exponential backoff with full jitter, honouring the server's `Retry-After`.

use std::time::Duration;

/// Retry timing with documented defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The first delay. Default 500 ms.
    pub initial: Duration,
    /// The longest delay between two attempts. Default 2 minutes, so an
    /// upload notices within minutes that the network is back.
    pub max: Duration,
    /// Growth per attempt. Default 2.
    pub factor: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { initial: Duration::from_millis(500), max: Duration::from_secs(120), factor: 2 }
    }
}

impl Backoff {
    /// The delay before attempt `attempt` (1 = the first retry): a random
    /// time up to the exponential bound ("full jitter", so many clients
    /// coming back online do not retry in step), but at least what the
    /// server asked for with `Retry-After`.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let exponent = attempt.saturating_sub(1).min(30);
        let bound = self.initial.saturating_mul(self.factor.saturating_pow(exponent)).min(self.max);
        let jittered = bound.mul_f64(rand::random_range(0.5..=1.0));
        match retry_after {
            Some(asked) => jittered.max(asked.min(self.max)),
            None => jittered,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_caps_and_honours_retry_after() {
        let backoff = Backoff::default();
        for _ in 0..100 {
            let first = backoff.delay(1, None);
            assert!(first >= Duration::from_millis(250) && first <= Duration::from_millis(500), "{first:?}");
            let late = backoff.delay(40, None);
            assert!(late <= backoff.max && late >= backoff.max / 2, "{late:?}");
            assert!(backoff.delay(1, Some(Duration::from_secs(7))) >= Duration::from_secs(7));
            assert_eq!(
                backoff.delay(1, Some(Duration::from_secs(3600))),
                backoff.max,
                "Retry-After is capped"
            );
        }
    }
}
