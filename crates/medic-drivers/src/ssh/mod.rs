//! The `ssh` driver: Deep Security actions run on Linux and Windows hosts over SSH.
//!
//! Layers, each replaceable alone:
//! - [`SshDriver`] (`driver.rs`): playbook actions -> ops -> facts, reboot-and-wait,
//!   security-update polling;
//! - [`packages`]: which staged agent package belongs to which Linux host;
//! - `preflight.rs`: the read-only checks a pre-flight runs per host (reachable with a
//!   known key, live build and relay role, package present, privilege escalation works);
//! - [`commands`]: the one table of Deep Security command lines per platform, with their
//!   sources, and the parsers of their output;
//! - [`quote`]: POSIX and PowerShell quoting, so every argument arrives literally;
//! - [`Transport`] (`transport.rs`): "run this line there before this deadline", with
//!   [`Ssh2Transport`] (`libssh2/`) as the implementation: one actor thread per
//!   connection, bounded, strict host keys ([`known_hosts`]), deadlines that unblock.
//!
//! Construct the driver from an [`SshConfig`]:
//!
//! ```no_run
//! use medic_drivers::ssh::{SshConfig, SshDriver, secret_from_env};
//! let mut cfg = SshConfig::new();
//! cfg.known_hosts = Some("fleet/known_hosts".into());
//! cfg.passphrase = secret_from_env("MEDIC_SSH_PASSPHRASE").ok();
//! let driver = SshDriver::new(cfg)?;
//! # Ok::<(), medic_drivers::ssh::SshConfigError>(())
//! ```

mod capture;
pub mod commands;
mod config;
mod driver;
mod identity;
pub mod known_hosts;
mod libssh2;
pub mod packages;
mod preflight;
pub mod quote;
mod transport;

pub use capture::Captured;
pub use config::{
    LinuxLayout, SshConfig, SshConfigError, WindowsLayout, secret_from_env, secret_from_file,
};
pub use driver::SshDriver;
pub(crate) use driver::last_lines;
pub use identity::{Identity, IdentityError};
pub use known_hosts::{HostKeyError, HostKeyEvents};
pub use libssh2::{Ssh2Transport, TransportStats};
pub use preflight::{LiveAgent, PackageCheck, PrivilegeCheck, Reachability, WindowsFilesCheck};
pub use transport::{
    Endpoint, ExecOutput, Exit, RemoteCommand, Transport, TransportError, TransportFuture,
};
