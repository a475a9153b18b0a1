//! The Deep Security Manager REST API ("Deep Security API", v1): a client, the `dsm` driver
//! and the inventory import.
//!
//! Why one client for all three: a Manager is one shared endpoint with a rate limit per API
//! key, so every caller in a run must go through the same connection pool, the same token
//! bucket and the same backoff when it answers 429. The client also reads the Manager's
//! build from `X-DSM-Version` on every answer.
//!
//! - [`DsmClient`] ([`DsmConfig`]): base URL (`https://dsm:4119/api`), `api-version: v1`,
//!   `api-secret-key` held as a [`secrecy::SecretString`] (from `MEDIC_DSM_API_KEY` or a
//!   file: [`load_api_key`]; never logged, never in an error), TLS verification always on
//!   with an optional private CA bundle (PEM), connect and read timeouts, 429 and 5xx
//!   retried with exponential backoff, a shared token bucket.
//! - [`DsmDriver`]: `security-update` (a run-now `check-for-security-updates` task per
//!   computer, completion polled by one batched search per poll interval for every pending
//!   computer of the driver), `security-status`, `agent-status`, `agent-version`,
//!   `manager-version`.
//! - [`import_inventory`]: an inventory from a paged computer search, in a handful
//!   of requests whatever the fleet size.

mod client;
mod driver;
mod import;
mod limit;
mod model;

pub use client::{
    API_KEY_ENV, DIRECT_DOWNLOAD_SETTING, DsmClient, DsmConfig, DsmError, RateLimit, RetryPolicy,
    load_api_key,
};
pub use driver::{DsmDriver, DsmDriverConfig};
pub use import::{ImportOptions, Imported, RelayGroupHint, RelayGroupHintError, import_inventory};
pub use model::{Computer, ComputerGroup};
