//! Executor tests on small plans, with a scripted driver and tokio's paused clock (no
//! sleeps): order, limits, budgets, gates, windows, retries, timeouts, cancel and resume.

mod manual;
mod runs;
mod util;
