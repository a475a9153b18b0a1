//! A token bucket shared by every request to one Manager, with a pause that a 429 sets for
//! everyone: when the Manager says "too many", the other callers must slow down too, not
//! only the one that was told.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug)]
pub(crate) struct TokenBucket {
    /// Tokens per second; `None` means no limit.
    rate: Option<f64>,
    burst: f64,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    tokens: f64,
    last: Instant,
    paused_until: Option<Instant>,
}

impl TokenBucket {
    pub(crate) fn new(per_second: f64, burst: u32) -> TokenBucket {
        let burst = f64::from(burst.max(1));
        TokenBucket {
            rate: (per_second.is_finite() && per_second > 0.0).then_some(per_second),
            burst,
            state: Mutex::new(State {
                tokens: burst,
                last: Instant::now(),
                paused_until: None,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is two numbers updated together: always consistent.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Waits for a token (and for any pause to end).
    pub(crate) async fn acquire(&self) {
        loop {
            let wait = {
                let mut s = self.lock();
                let now = Instant::now();
                match s.paused_until {
                    Some(p) if p > now => p - now,
                    _ => {
                        let Some(rate) = self.rate else {
                            return;
                        };
                        let elapsed = now.saturating_duration_since(s.last).as_secs_f64();
                        s.tokens = (s.tokens + elapsed * rate).min(self.burst);
                        s.last = now;
                        if s.tokens >= 1.0 {
                            s.tokens -= 1.0;
                            return;
                        }
                        Duration::from_secs_f64((1.0 - s.tokens) / rate)
                    }
                }
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// Nobody gets a token for `d` (from now, or later if a longer pause is on).
    pub(crate) fn pause(&self, d: Duration) {
        let until = Instant::now() + d;
        let mut s = self.lock();
        if s.paused_until.is_none_or(|p| p < until) {
            s.paused_until = Some(until);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_rate_holds_after_the_burst() {
        let b = TokenBucket::new(10.0, 5);
        let start = Instant::now();
        for _ in 0..25 {
            b.acquire().await;
        }
        // 5 at once, then 20 at 10/s.
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(1990) && took <= Duration::from_millis(2100),
            "{took:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_stops_everyone() {
        let b = TokenBucket::new(0.0, 1);
        let start = Instant::now();
        b.pause(Duration::from_secs(3));
        b.acquire().await;
        assert!(start.elapsed() >= Duration::from_secs(3));
    }
}
