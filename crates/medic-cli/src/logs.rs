//! The diagnostic log: the `tracing` subscriber behind `--log-level`, `--log-format` and
//! `--log-file` (or $MEDIC_LOG / $RUST_LOG). The executor opens a span per step attempt
//! (run, step, host, action, attempt), so a driver's line says which attempt it is about.
//! Progress bars are suspended while a line is written to standard error, so the two never
//! share a terminal line.

use std::fs::File;
use std::io::{IsTerminal as _, Write};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use indicatif::{MultiProgress, ProgressBar};
use medic_config::{Problem, Problems, SourceFile};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::Failure;
use crate::args::{LogArgs, LogFormat, LogLevel};

/// The bars on standard error while they are drawn.
enum Bars {
    Multi(MultiProgress),
    Bar(ProgressBar),
}

static BARS: Mutex<Option<Bars>> = Mutex::new(None);

/// Log lines written to standard error from now on are drawn above `m`'s bars.
pub(crate) fn attach_bars(m: &MultiProgress) {
    *BARS.lock().unwrap_or_else(PoisonError::into_inner) = Some(Bars::Multi(m.clone()));
}

/// Like [`attach_bars`], for a single bar.
pub(crate) fn attach_bar(b: &ProgressBar) {
    *BARS.lock().unwrap_or_else(PoisonError::into_inner) = Some(Bars::Bar(b.clone()));
}

/// medic's own crates (the binary's target is `medic`). A bare level applies to these
/// only: `debug` for every crate would also log what the HTTP and TLS libraries do,
/// which is noise to an operator.
const OWN: [&str; 8] = [
    "medic",
    "medic_exec",
    "medic_drivers",
    "medic_sim",
    "medic_journal",
    "medic_plan",
    "medic_config",
    "medic_model",
];

fn level_word(l: LogLevel) -> &'static str {
    match l {
        LogLevel::Error => "error",
        LogLevel::Warn => "warn",
        LogLevel::Info => "info",
        LogLevel::Debug => "debug",
        LogLevel::Trace => "trace",
    }
}

fn own_directives(level: &str) -> String {
    let others = if level == "error" { "error" } else { "warn" };
    let mut d = others.to_owned();
    for c in OWN {
        d.push_str(&format!(",{c}={level}"));
    }
    d
}

fn bad(source: &str, msg: String, help: &str) -> Failure {
    let file = SourceFile::new(source.to_owned(), "");
    Failure::BadInput(Problems(vec![
        Problem::new(&file, None, "medic::cli::log", msg).help(help.to_owned()),
    ]))
}

/// --log-level, else $MEDIC_LOG, else $RUST_LOG, else info.
fn filter(a: &LogArgs) -> Result<EnvFilter, Failure> {
    if let Some(l) = a.log_level {
        return Ok(EnvFilter::new(own_directives(level_word(l))));
    }
    for var in ["MEDIC_LOG", "RUST_LOG"] {
        let Ok(v) = std::env::var(var) else { continue };
        let v = v.trim();
        if v.is_empty() {
            continue;
        }
        let word = v.to_ascii_lowercase();
        if ["error", "warn", "info", "debug", "trace"].contains(&word.as_str()) {
            return Ok(EnvFilter::new(own_directives(&word)));
        }
        if word == "off" {
            return Ok(EnvFilter::new("off"));
        }
        return EnvFilter::builder().parse(v).map_err(|e| {
            bad(
                &format!("${var}"),
                format!("not a log filter: {e}"),
                "write a level (error, warn, info, debug, trace) or tracing directives such as `medic_drivers=debug`",
            )
        });
    }
    Ok(EnvFilter::new(own_directives("info")))
}

/// Where log lines go.
#[derive(Clone)]
enum Sink {
    Stderr,
    File(Arc<Mutex<File>>),
}

impl<'a> MakeWriter<'a> for Sink {
    type Writer = Sink;
    fn make_writer(&'a self) -> Sink {
        self.clone()
    }
}

impl Write for Sink {
    // The formatter hands over one whole line per call, so a line is never split by a bar.
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Sink::File(f) => f
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .write_all(buf)?,
            Sink::Stderr => {
                // A closed standard error loses the line; it is never a panic, and `out.rs`
                // stops a run whose output went away.
                let put = || {
                    let _ = std::io::stderr().lock().write_all(buf);
                };
                match &*BARS.lock().unwrap_or_else(PoisonError::into_inner) {
                    Some(Bars::Multi(m)) => m.suspend(put),
                    Some(Bars::Bar(b)) => b.suspend(put),
                    None => put(),
                }
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Sink::File(f) => f.lock().unwrap_or_else(PoisonError::into_inner).flush(),
            Sink::Stderr => Ok(()),
        }
    }
}

fn open(path: &Path) -> Result<File, Failure> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| {
            let why = match e.kind() {
                std::io::ErrorKind::NotFound => "its directory does not exist".to_owned(),
                std::io::ErrorKind::PermissionDenied => "permission denied".to_owned(),
                std::io::ErrorKind::IsADirectory => "it is a directory".to_owned(),
                _ => e.to_string(),
            };
            bad(
                "--log-file",
                format!("cannot open the log file {}: {why}", path.display()),
                "pass a file in a writable directory (lines are appended)",
            )
        })
}

/// Installs the subscriber for the whole process; the first thing a command does.
pub(crate) fn init(a: &LogArgs) -> Result<(), Failure> {
    let filter = filter(a)?;
    let sink = match &a.log_file {
        Some(p) => Sink::File(Arc::new(Mutex::new(open(p)?))),
        None => Sink::Stderr,
    };
    let colour = matches!(sink, Sink::Stderr)
        && std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none();
    let installed = match a.log_format {
        LogFormat::Text => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(sink)
            .with_ansi(colour)
            .try_init(),
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_env_filter(filter)
            .with_writer(sink)
            .try_init(),
    };
    installed.map_err(|e| Failure::Internal(format!("cannot install the log: {e}")))
}
