//! Executor tests on small plans, with a scripted driver, the in-memory journal and tokio's
//! paused clock (no real-time sleeps): order, limits, budgets, gates, windows, retries,
//! timeouts, cancel and resume, approvals from the terminal and from another process, and
//! a journal that fails. The SQLite journal's own tests are medic-journal's; runs on it
//! are the CLI's.

mod inputs;
mod manual;
mod runs;
mod util;
