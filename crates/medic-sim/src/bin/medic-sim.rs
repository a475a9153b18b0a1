//! `medic-sim serve`: the DSM simulator as a process, for the contract tests (the official
//! Python SDK talks to it), the e2e harness and manual exploration with curl.
//!
//! It prints the API's base URL (e.g. `https://127.0.0.1:41234/api`) as the only line on
//! stdout once it listens, so a script can start it with `--listen 127.0.0.1:0` and read the
//! port; everything else goes to stderr. It serves until SIGINT or SIGTERM.
//!
//! Exit codes: 0 stopped by a signal, 1 failed while serving, 2 bad input.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use medic_sim::server::{HttpFault, ServerConfig, TlsSetup, serve};
use medic_sim::{SimConfig, SimFleet, demo_inventory_yaml};
use secrecy::SecretString;

/// The environment variable that holds the API key (the same one medic reads).
const KEY_ENV: &str = "MEDIC_DSM_API_KEY";

#[derive(Parser)]
#[command(
    name = "medic-sim",
    version,
    about = "medic's simulated Deep Security fleet, served as a Manager REST API on loopback"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve the DSM REST API (`/api/...`) over a simulated fleet.
    Serve(ServeArgs),
}

#[derive(Args)]
struct ServeArgs {
    /// Inventory v1 of the simulated fleet (default: the built-in demo fleet).
    #[arg(long, value_name = "FILE")]
    inventory: Option<PathBuf>,
    /// Loopback address to listen on; port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:0", value_name = "ADDR")]
    listen: SocketAddr,
    /// File holding the API key that clients must send (default: $MEDIC_DSM_API_KEY).
    #[arg(long, value_name = "FILE")]
    api_key_file: Option<PathBuf>,
    /// PEM certificate chain for HTTPS (with --tls-key).
    #[arg(
        long,
        value_name = "FILE",
        requires = "tls_key",
        conflicts_with = "tls_self_signed"
    )]
    tls_cert: Option<PathBuf>,
    /// PEM private key for HTTPS (with --tls-cert).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// HTTPS with a CA and a certificate for localhost/127.0.0.1 generated at start.
    #[arg(long)]
    tls_self_signed: bool,
    /// Where to write the generated CA certificate (PEM), for the clients' --dsm-ca.
    #[arg(long, value_name = "FILE", requires = "tls_self_signed")]
    ca_out: Option<PathBuf>,
    /// Inject a fault: 429-storm[=N[@AFTER]], 429-for=MS[@AFTER], 5xx[=N[@AFTER]],
    /// latency=MS, wrong-cert.
    #[arg(long = "fault", value_name = "SPEC")]
    faults: Vec<HttpFault>,
    /// Seed of the simulated fleet (durations, reboots).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Divides simulated durations: 300 makes a 5-minute security update take 1 s.
    #[arg(long, default_value_t = 300.0)]
    time_scale: f64,
    /// Make the fleet durable in this effect log (replayed if it exists).
    #[arg(long, value_name = "FILE")]
    state: Option<PathBuf>,
}

fn fail(code: u8, message: impl std::fmt::Display) -> ExitCode {
    eprintln!("medic-sim: error: {message}");
    ExitCode::from(code)
}

fn api_key(file: Option<&PathBuf>) -> Result<SecretString, String> {
    let raw = match file {
        Some(p) => std::fs::read_to_string(p)
            .map_err(|e| format!("cannot read the API key file {}: {e}", p.display()))?,
        None => std::env::var(KEY_ENV)
            .map_err(|_| format!("no API key: set {KEY_ENV} or pass --api-key-file FILE"))?,
    };
    let key = raw.trim();
    if key.is_empty() {
        return Err("the API key is empty".to_owned());
    }
    Ok(SecretString::from(key.to_owned()))
}

#[tokio::main]
async fn main() -> ExitCode {
    let Cmd::Serve(args) = Cli::parse().cmd;
    let key = match api_key(args.api_key_file.as_ref()) {
        Ok(k) => k,
        Err(m) => return fail(2, m),
    };
    let (name, text) = match &args.inventory {
        Some(p) => match std::fs::read_to_string(p) {
            Ok(t) => (p.display().to_string(), t),
            Err(e) => return fail(2, format!("cannot read {}: {e}", p.display())),
        },
        None => ("demo.yaml".to_owned(), demo_inventory_yaml().to_owned()),
    };
    let inventory = match medic_config::load_inventory(&name, &text) {
        Ok(i) => i,
        Err(problems) => return fail(2, format!("the inventory is not valid:\n{problems}")),
    };
    let fleet = match SimFleet::open(
        &inventory,
        SimConfig::demo(args.seed),
        args.state.as_deref(),
    ) {
        Ok(f) => f,
        Err(e) => return fail(2, e),
    };
    let mut config = ServerConfig::new(key);
    config.listen = args.listen;
    config.faults = args.faults;
    config.time_scale = args.time_scale;
    config.tls = match (args.tls_cert, args.tls_key, args.tls_self_signed) {
        (Some(cert), Some(key), _) => TlsSetup::Files { cert, key },
        (_, _, true) => TlsSetup::SelfSigned,
        _ => TlsSetup::Plain,
    };
    let server = match serve(fleet, &inventory, config).await {
        Ok(s) => s,
        Err(e) => return fail(2, e),
    };
    if let (Some(path), Some(pem)) = (&args.ca_out, server.ca_pem())
        && let Err(e) = std::fs::write(path, pem)
    {
        return fail(1, format!("cannot write {}: {e}", path.display()));
    }
    eprintln!(
        "medic-sim: serving {} computers of {name} at {}",
        inventory.hosts.len(),
        server.base_url()
    );
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{}", server.base_url())
        .and_then(|()| out.flush())
        .is_err()
    {
        return fail(1, "cannot write the URL to stdout");
    }
    drop(out);
    match stopped().await {
        Ok(()) => {
            eprintln!(
                "medic-sim: stopping after {} requests",
                server.requests().len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(1, format!("cannot wait for signals: {e}")),
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn stopped() -> std::io::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r,
        _ = term.recv() => Ok(()),
    }
}
