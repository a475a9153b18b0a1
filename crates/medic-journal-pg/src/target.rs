//! Which database and run a `postgres://` journal names, where its password comes from,
//! and whether the connection may go without TLS.
//!
//! A URL on the command line never carries a password (it would be in the shell's history
//! and every process listing); the password comes from `MEDIC_JOURNAL_URL`, `PGPASSWORD` or
//! a password file (`PGPASSFILE`, default `~/.pgpass`, libpq's format). The URL shown in
//! messages and commands (the journal's location) never holds one.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use tokio_postgres::config::{Host, SslMode};

/// The environment variable that may hold a whole journal URL, password included.
pub const URL_ENV: &str = "MEDIC_JOURNAL_URL";

/// Whether a text names a PostgreSQL journal rather than a file.
pub fn is_postgres_url(s: &str) -> bool {
    s.starts_with("postgres://") || s.starts_with("postgresql://")
}

/// Where a URL came from: a password is accepted only from the environment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// `--journal` (or any other command-line value).
    Argument,
    /// [`URL_ENV`].
    Environment,
}

/// Why a journal URL cannot be used. Each says what to do instead.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error(
        "the journal URL holds a password, and a command line is no place for one (shell history, process listings); put the URL with its password in {URL_ENV}, or the password in PGPASSWORD or a password file (PGPASSFILE, default ~/.pgpass)"
    )]
    PasswordInArgument,
    #[error("{url} is not a usable PostgreSQL URL: {detail}")]
    Malformed { url: String, detail: String },
    #[error(
        "{url}: a connection to {host} without TLS would send the journal in clear; only loopback and Unix sockets may go without it: drop sslmode=disable (TLS is verified against the system's roots, or sslrootcert=FILE)"
    )]
    PlainRemote { url: String, host: String },
    #[error("password file {}: {detail}", .path.display())]
    Passfile { path: PathBuf, detail: String },
    #[error("{url}: the TLS roots cannot be loaded: {detail}")]
    Roots { url: String, detail: String },
}

/// A PostgreSQL journal: the connection settings, the run (if named) and how the
/// connection is protected.
#[derive(Clone)]
pub struct PgTarget {
    pub(crate) config: tokio_postgres::Config,
    /// The run id of `?run=`; `None` for a new run, or to find the database's only run.
    pub(crate) run: Option<String>,
    /// Without the password and the run: what a location is made from.
    base: String,
    pub(crate) tls: Tls,
}

impl std::fmt::Debug for PgTarget {
    // By hand: the config holds the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgTarget")
            .field("location", &self.location())
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Debug)]
pub(crate) enum Tls {
    /// Loopback or a Unix socket, without `sslmode=require`.
    Plain,
    /// Verified against these roots (`sslrootcert`, or the system's).
    Verified { root_file: Option<PathBuf> },
}

impl PgTarget {
    /// Reads a journal URL. `postgres://USER@HOST[:PORT]/DB[?run=RUN-ID&sslmode=..&sslrootcert=FILE]`.
    pub fn parse(url: &str, source: Source) -> Result<PgTarget, TargetError> {
        let malformed = |detail: String| TargetError::Malformed {
            url: redact(url),
            detail,
        };
        if !is_postgres_url(url) {
            return Err(malformed(
                "it does not start with postgres:// or postgresql://".to_owned(),
            ));
        }
        let (head, query) = match url.split_once('?') {
            Some((h, q)) => (h, Some(q)),
            None => (url, None),
        };
        let mut run = None;
        let mut root_file = None;
        let mut kept = Vec::new();
        let mut password_param = false;
        for pair in query.into_iter().flat_map(|q| q.split('&')) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            match k {
                "run" if !v.is_empty() => run = Some(v.to_owned()),
                "run" => return Err(malformed("`run=` names no run".to_owned())),
                // libpq's name; tokio-postgres does not know it.
                "sslrootcert" => root_file = Some(PathBuf::from(v)),
                "password" => {
                    password_param = true;
                    kept.push(pair);
                }
                _ => kept.push(pair),
            }
        }
        let for_driver = if kept.is_empty() {
            head.to_owned()
        } else {
            format!("{head}?{}", kept.join("&"))
        };
        let mut config =
            tokio_postgres::Config::from_str(&for_driver).map_err(|e| malformed(e.to_string()))?;
        if (config.get_password().is_some() || password_param) && source == Source::Argument {
            return Err(TargetError::PasswordInArgument);
        }
        if config.get_user().is_none() {
            return Err(malformed(
                "it names no user: postgres://USER@HOST/DB".to_owned(),
            ));
        }
        if config.get_dbname().is_none() {
            return Err(malformed(
                "it names no database: postgres://USER@HOST/DB".to_owned(),
            ));
        }
        if config.get_hosts().is_empty() {
            return Err(malformed(
                "it names no host: postgres://USER@HOST/DB".to_owned(),
            ));
        }
        let base = redact(&for_driver);
        let local = config.get_hosts().iter().all(is_local);
        let tls = match config.get_ssl_mode() {
            SslMode::Disable if !local => {
                return Err(TargetError::PlainRemote {
                    url: base,
                    host: remote_host(&config),
                });
            }
            SslMode::Require => Tls::Verified { root_file },
            _ if local => Tls::Plain,
            _ => Tls::Verified { root_file },
        };
        if let Tls::Verified { .. } = tls {
            // Never fall back to plain text, whatever `prefer` would allow.
            config.ssl_mode(SslMode::Require);
        }
        if config.get_password().is_none()
            && let Some(p) = password_from_env(&config)?
        {
            config.password(p);
        }
        config.application_name("medic");
        Ok(PgTarget {
            config,
            run,
            base,
            tls,
        })
    }

    /// The same database, naming `run`.
    pub fn with_run(&self, run: &str) -> PgTarget {
        PgTarget {
            run: Some(run.to_owned()),
            ..self.clone()
        }
    }

    /// The run this target names, if any.
    pub fn run(&self) -> Option<&str> {
        self.run.as_deref()
    }

    /// The URL as an operator passes it to `--journal`: never a password, the run when
    /// one is named.
    pub fn location(&self) -> String {
        match &self.run {
            Some(run) => {
                let sep = if self.base.contains('?') { '&' } else { '?' };
                format!("{}{sep}run={run}", self.base)
            }
            None => self.base.clone(),
        }
    }
}

fn is_local(h: &Host) -> bool {
    match h {
        Host::Unix(_) => true,
        Host::Tcp(name) => {
            name == "localhost"
                || name
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
    }
}

fn remote_host(config: &tokio_postgres::Config) -> String {
    config
        .get_hosts()
        .iter()
        .find(|h| !is_local(h))
        .map(|h| match h {
            Host::Tcp(n) => n.clone(),
            Host::Unix(p) => p.display().to_string(),
        })
        .unwrap_or_default()
}

/// The URL without the password of its user part or its `password=` parameter.
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let cut = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(cut);
    let authority = match authority.rsplit_once('@') {
        Some((user, hosts)) => {
            let user = user.split_once(':').map_or(user, |(u, _)| u);
            format!("{user}@{hosts}")
        }
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, q)) => {
            let kept: Vec<&str> = q
                .split('&')
                .filter(|p| !p.starts_with("password="))
                .collect();
            if kept.is_empty() {
                path.to_owned()
            } else {
                format!("{path}?{}", kept.join("&"))
            }
        }
        None => tail.to_owned(),
    };
    format!("{scheme}://{authority}{tail}")
}

/// The password of [`URL_ENV`] when it names the same user, database and server, else
/// `PGPASSWORD`, else the first matching line of the password file.
fn password_from_env(config: &tokio_postgres::Config) -> Result<Option<String>, TargetError> {
    if let Ok(url) = std::env::var(URL_ENV) {
        let head = url.split_once('?').map_or(url.as_str(), |(h, _)| h);
        if let Ok(env) = tokio_postgres::Config::from_str(head)
            && let Some(p) = env.get_password()
            && env.get_user() == config.get_user()
            && env.get_dbname() == config.get_dbname()
            && env.get_hosts() == config.get_hosts()
            && env.get_ports() == config.get_ports()
        {
            return Ok(Some(String::from_utf8_lossy(p).into_owned()));
        }
    }
    if let Ok(p) = std::env::var("PGPASSWORD")
        && !p.is_empty()
    {
        return Ok(Some(p));
    }
    let path = match std::env::var_os("PGPASSFILE") {
        Some(p) => PathBuf::from(p),
        None => match std::env::var_os("HOME") {
            Some(h) => Path::new(&h).join(".pgpass"),
            None => return Ok(None),
        },
    };
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(None);
    };
    passfile_check_mode(&path)?;
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        Some(Host::Unix(_)) | None => "localhost".to_owned(),
    };
    let port = config
        .get_ports()
        .first()
        .copied()
        .unwrap_or(5432)
        .to_string();
    let want = [
        host.as_str(),
        port.as_str(),
        config.get_dbname().unwrap_or_default(),
        config.get_user().unwrap_or_default(),
    ];
    Ok(passfile_lookup(&text, &want))
}

/// A password file others can read is refused, as libpq ignores one: it would be a
/// secret anyone on the machine reads.
fn passfile_check_mode(path: &Path) -> Result<(), TargetError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .map_err(|e| TargetError::Passfile {
            path: path.to_owned(),
            detail: e.to_string(),
        })?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(TargetError::Passfile {
            path: path.to_owned(),
            detail: format!(
                "it can be read by others (mode {:o}); run `chmod 600 {}`",
                mode & 0o777,
                path.display()
            ),
        });
    }
    Ok(())
}

/// libpq's format: `host:port:database:user:password`, `*` matches anything, `\` escapes
/// `:` and `\`, `#` starts a comment line.
pub(crate) fn passfile_lookup(text: &str, want: &[&str; 4]) -> Option<String> {
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let mut fields = Vec::with_capacity(5);
        let mut cur = String::new();
        let mut chars = line.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => cur.extend(chars.next()),
                ':' if fields.len() < 4 => fields.push(std::mem::take(&mut cur)),
                c => cur.push(c),
            }
        }
        fields.push(cur);
        if fields.len() == 5
            && fields[..4]
                .iter()
                .zip(want)
                .all(|(f, w)| f == "*" || f == w)
        {
            return fields.pop();
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_on_the_command_line_is_refused_and_never_shown() {
        for url in [
            "postgres://medic:s3cret@db.example/medic",
            "postgres://medic@db.example/medic?password=s3cret",
        ] {
            let err = PgTarget::parse(url, Source::Argument).expect_err(url);
            let text = err.to_string();
            assert!(text.contains(URL_ENV), "{text}");
            assert!(!text.contains("s3cret"), "{text}");
        }
        let t = PgTarget::parse(
            "postgres://medic:s3cret@127.0.0.1:5433/medic?run=r1",
            Source::Environment,
        )
        .expect("from the environment");
        assert_eq!(t.location(), "postgres://medic@127.0.0.1:5433/medic?run=r1");
        assert!(!format!("{t:?}").contains("s3cret"));
        assert_eq!(t.config.get_password(), Some(&b"s3cret"[..]));
    }

    #[test]
    fn only_loopback_and_sockets_go_without_tls() {
        let plain = [
            "postgres://u@127.0.0.1/d",
            "postgres://u@localhost:5/d",
            "postgres://u@[::1]/d",
        ];
        for url in plain {
            let t = PgTarget::parse(url, Source::Argument).expect(url);
            assert!(matches!(t.tls, Tls::Plain), "{url}");
        }
        let t = PgTarget::parse("postgres://u@db.example/d", Source::Argument).expect("remote");
        assert!(matches!(t.tls, Tls::Verified { root_file: None }));
        assert_eq!(t.config.get_ssl_mode(), SslMode::Require);
        let t = PgTarget::parse(
            "postgres://u@db.example/d?sslrootcert=/etc/ca.pem",
            Source::Argument,
        )
        .expect("own roots");
        assert!(
            matches!(&t.tls, Tls::Verified { root_file: Some(p) } if p == Path::new("/etc/ca.pem"))
        );
        let err = PgTarget::parse("postgres://u@10.0.0.5/d?sslmode=disable", Source::Argument)
            .expect_err("plain remote");
        assert!(err.to_string().contains("10.0.0.5"), "{err}");
        let t = PgTarget::parse("postgres://u@127.0.0.1/d?sslmode=require", Source::Argument)
            .expect("tls on loopback when asked");
        assert!(matches!(t.tls, Tls::Verified { .. }));
    }

    #[test]
    fn incomplete_urls_say_what_is_missing() {
        for (url, what) in [
            ("postgres://127.0.0.1/d", "no user"),
            ("postgres://u@127.0.0.1", "no database"),
            ("postgres://u@127.0.0.1/d?run=", "names no run"),
            ("postgres://u@127.0.0.1/d?bogus=1", "bogus"),
        ] {
            let err = PgTarget::parse(url, Source::Argument).expect_err(url);
            assert!(err.to_string().contains(what), "{url}: {err}");
        }
    }

    #[test]
    fn password_file_lines_match_as_libpq_reads_them() {
        let text = "# comment\nother:5432:*:*:no\n127.0.0.1:*:medic:me:p\\:w\n*:*:*:*:last\n";
        assert_eq!(
            passfile_lookup(text, &["127.0.0.1", "5432", "medic", "me"]).as_deref(),
            Some("p:w")
        );
        assert_eq!(
            passfile_lookup(text, &["h", "1", "x", "y"]).as_deref(),
            Some("last")
        );
        assert_eq!(passfile_lookup("a:b:c:d", &["a", "b", "c", "d"]), None);
    }
}
