//! Two things at once (used by the loader and the planner; no IO) on the machine's second core, when there is one to get.
//!
//! Results never depend on the threads: each caller splits work whose pieces are
//! independent and puts them back together in a fixed order. If no thread can be started,
//! both pieces run on the calling thread, one after the other.

use std::sync::Mutex;

/// Runs `a` on another thread and `b` on this one, and returns both results. A panic in
/// either is carried on to the caller.
pub fn join<RA: Send, RB>(a: impl FnOnce() -> RA + Send, b: impl FnOnce() -> RB) -> (RA, RB) {
    let a = Mutex::new(Some(a));
    let run_a = || {
        let f = a.lock().ok().and_then(|mut slot| slot.take());
        f.map(|f| f())
    };
    std::thread::scope(|s| {
        let handle = std::thread::Builder::new().spawn_scoped(s, run_a).ok();
        let rb = b();
        let ra = match handle.map(|h| h.join()) {
            Some(Ok(ra)) => ra,
            Some(Err(panic)) => std::panic::resume_unwind(panic),
            None => None,
        };
        // `a` did not run on the other thread (none could be started): run it here.
        match ra.or_else(run_a) {
            Some(ra) => (ra, rb),
            None => unreachable_run(),
        }
    })
}

#[cold]
fn unreachable_run() -> ! {
    // `run_a` only returns `None` once `a` was taken, and it is taken by whoever runs it.
    panic!("internal: a parallel task ran twice")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_sides_run_once() {
        let mut seen = Vec::new();
        let (a, b) = join(
            || (0..1000u64).sum::<u64>(),
            || {
                seen.push(1);
                "b"
            },
        );
        assert_eq!((a, b, seen), (499_500, "b", vec![1]));
    }

    #[test]
    fn a_panic_on_the_other_thread_reaches_the_caller() {
        let r = std::panic::catch_unwind(|| join(|| panic!("boom"), || 1));
        assert!(r.is_err());
    }
}
