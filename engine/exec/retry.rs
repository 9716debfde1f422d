//! What happens after a failed attempt: another attempt after a backoff delay, or give up.
//!
//! Pure, so the decision a resumed run makes about a failure journaled by a killed run is the
//! one the killed run would have made. The delay itself is journaled (`retry-scheduled`) and
//! slept with tokio's clock, so tests drive it with paused time.

use std::time::Duration;

use crate::plan::RetryPolicy;

/// The decision after attempt `attempt` failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    /// Try again as `next_attempt` after `delay`.
    Retry {
        /// The next attempt number.
        next_attempt: u32,
        /// The backoff delay before it.
        delay: Duration,
    },
    /// Retries will not fix it: the step fails.
    GiveUp,
}

/// Decides what follows a failed attempt. An attempt number above the policy's count (an
/// in-doubt rerun adds one) gives up after its own failure.
pub fn decide(policy: &RetryPolicy, attempt: u32, retryable: bool) -> AfterFailure {
    if !retryable || attempt >= policy.attempts {
        return AfterFailure::GiveUp;
    }
    let next_attempt = attempt + 1;
    AfterFailure::Retry {
        next_attempt,
        delay: policy.delay_before(next_attempt),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dsl::ast::Backoff;

    #[test]
    fn retries_with_exponential_backoff_then_gives_up() {
        let p = RetryPolicy {
            attempts: 4,
            backoff: Backoff::Exponential,
            delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(3),
        };
        let delays: Vec<_> = (1..=4)
            .map(|a| match decide(&p, a, true) {
                AfterFailure::Retry {
                    next_attempt,
                    delay,
                } => {
                    assert_eq!(next_attempt, a + 1);
                    delay.as_secs()
                }
                AfterFailure::GiveUp => 0,
            })
            .collect();
        assert_eq!(delays, [1, 2, 3, 0]);
        assert_eq!(decide(&p, 1, false), AfterFailure::GiveUp);
        assert_eq!(decide(&RetryPolicy::none(), 1, true), AfterFailure::GiveUp);
    }
}
