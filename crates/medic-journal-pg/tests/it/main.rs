//! medic-journal-pg's integration tests, on a real PostgreSQL started for the test.

mod contract;
mod pg;
