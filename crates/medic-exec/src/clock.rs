//! Wall-clock time for change windows and durable timers, derived from tokio's clock so
//! that tests can pause and advance time instead of sleeping.

use tokio::time::Instant;

#[derive(Clone, Copy, Debug)]
pub struct Clock {
    base_wall_ms: i64,
    base: Instant,
}

impl Clock {
    /// The real time.
    pub fn system() -> Clock {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        Clock {
            base_wall_ms: ms,
            base: Instant::now(),
        }
    }

    /// A clock that reads `wall_ms` now and advances with tokio's (possibly paused) time.
    pub fn starting_at(wall_ms: i64) -> Clock {
        Clock {
            base_wall_ms: wall_ms,
            base: Instant::now(),
        }
    }

    pub fn wall_ms(&self) -> i64 {
        self.base_wall_ms + self.base.elapsed().as_millis() as i64
    }

    /// The instant at which the wall clock reads `wall_ms` (now if that is past).
    pub fn instant_at(&self, wall_ms: i64) -> Instant {
        let delta = (wall_ms - self.wall_ms()).max(0) as u64;
        Instant::now() + std::time::Duration::from_millis(delta)
    }
}
