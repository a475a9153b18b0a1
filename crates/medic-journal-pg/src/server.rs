//! A throwaway PostgreSQL server for tests and benchmarks: `initdb` in a temporary
//! directory, listening on 127.0.0.1 and a private Unix socket only, with a password for
//! TCP logins (so the tests go through the password's real path), stopped and removed
//! when dropped.
//!
//! PostgreSQL refuses to run as root; as root (CI), the server runs as `nobody` through
//! `runuser`, and its directory is given to that user.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The superuser and database the server is made with.
pub const USER: &str = "medic";
pub const DATABASE: &str = "medic";

/// A running throwaway server; stopped (immediate) and deleted on drop.
pub struct TestServer {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    password: String,
    run_as: Option<&'static str>,
}

impl std::fmt::Debug for TestServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestServer")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

/// The directory of PostgreSQL's programs (`initdb`, `pg_ctl`, `createdb`, `psql`):
/// Debian's newest `/usr/lib/postgresql/N/bin`, else the first on PATH that has them all.
pub fn bindir() -> Option<PathBuf> {
    let complete = |d: &Path| {
        ["initdb", "pg_ctl", "createdb", "psql"]
            .iter()
            .all(|t| d.join(t).is_file())
    };
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let e = e.ok()?;
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            complete(&bin).then_some((v, bin))
        })
        .collect();
    found.sort();
    if let Some((_, b)) = found.pop() {
        return Some(b);
    }
    std::env::split_paths(&std::env::var_os("PATH")?).find(|d| complete(d))
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

fn check(what: &str, out: std::io::Result<Output>) -> Result<Output, String> {
    let out = out.map_err(|e| format!("{what}: {e}"))?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(format!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

impl TestServer {
    /// Starts a new server, or says why it cannot (no PostgreSQL installed: `.ci/run`
    /// installs Debian's `postgresql`).
    pub fn start() -> Result<TestServer, String> {
        let bin = bindir().ok_or(
            "PostgreSQL is not installed (no initdb on PATH or in /usr/lib/postgresql/*/bin): apt-get install postgresql",
        )?;
        let run_as = is_root().then_some("nobody");
        let dir = tempfile::Builder::new()
            .prefix("medic-pg-")
            .tempdir()
            .map_err(|e| format!("temporary directory: {e}"))?;
        let password = format!("pw-{:x}-{:x}", std::process::id(), crate::now_ms());
        let pwfile = dir.path().join("pwfile");
        std::fs::write(&pwfile, &password).map_err(|e| format!("pwfile: {e}"))?;
        if let Some(user) = run_as {
            check(
                "chown",
                Command::new("chown")
                    .args(["-R", user])
                    .arg(dir.path())
                    .output(),
            )?;
        }
        let mut server = TestServer {
            dir,
            bin,
            port: 0,
            password,
            run_as,
        };
        let data = server.data();
        server.run(
            "initdb",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-U".as_ref(),
                USER.as_ref(),
                "--pwfile".as_ref(),
                pwfile.as_os_str(),
                "--auth-local=trust".as_ref(),
                "--auth-host=scram-sha-256".as_ref(),
                "-E".as_ref(),
                "UTF8".as_ref(),
                "--no-sync".as_ref(),
            ],
        )?;
        let _ = std::fs::remove_file(&pwfile);
        // A port free now may be taken before the server binds it: try a few.
        let mut last = String::new();
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map_err(|e| format!("free port: {e}"))?
                .port();
            let opts = format!(
                "-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={}",
                server.dir.path().display()
            );
            let log = server.dir.path().join("server.log");
            let started = server.run(
                "pg_ctl",
                &[
                    "-D".as_ref(),
                    data.as_os_str(),
                    "-l".as_ref(),
                    log.as_os_str(),
                    "-w".as_ref(),
                    "-o".as_ref(),
                    opts.as_ref(),
                    "start".as_ref(),
                ],
            );
            match started {
                Ok(_) => {
                    server.port = port;
                    let p = port.to_string();
                    server.run(
                        "createdb",
                        &[
                            "-h".as_ref(),
                            server.dir.path().as_os_str(),
                            "-p".as_ref(),
                            p.as_ref(),
                            "-U".as_ref(),
                            USER.as_ref(),
                            DATABASE.as_ref(),
                        ],
                    )?;
                    return Ok(server);
                }
                Err(e) => {
                    last = format!("{e}\n{}", std::fs::read_to_string(&log).unwrap_or_default())
                }
            }
        }
        Err(last)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn run(&self, tool: &str, args: &[&std::ffi::OsStr]) -> Result<Output, String> {
        let exe = self.bin.join(tool);
        let mut cmd = match self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&exe);
                c
            }
            None => Command::new(&exe),
        };
        // Inside the server's directory: `nobody` may not read the caller's.
        cmd.args(args).current_dir(self.dir.path());
        check(tool, cmd.output())
    }

    /// The journal URL of the database, without a password (the caller passes
    /// [`TestServer::password`] as `PGPASSWORD`).
    pub fn url(&self) -> String {
        format!("postgres://{USER}@127.0.0.1:{}/{DATABASE}", self.port)
    }

    /// The URL with the password in it, as `MEDIC_JOURNAL_URL` may hold one.
    pub fn url_with_password(&self) -> String {
        format!(
            "postgres://{USER}:{}@127.0.0.1:{}/{DATABASE}",
            self.password, self.port
        )
    }

    pub fn password(&self) -> &str {
        &self.password
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory of the server's Unix socket.
    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Runs `psql` against the database over the Unix socket (no password): for tests that
    /// look at the tables themselves.
    pub fn psql(&self, sql: &str) -> Result<String, String> {
        let p = self.port.to_string();
        let out = self.run(
            "psql",
            &[
                "-h".as_ref(),
                self.dir.path().as_os_str(),
                "-p".as_ref(),
                p.as_ref(),
                "-U".as_ref(),
                USER.as_ref(),
                "-d".as_ref(),
                DATABASE.as_ref(),
                "-At".as_ref(),
                "-v".as_ref(),
                "ON_ERROR_STOP=1".as_ref(),
                "-c".as_ref(),
                sql.as_ref(),
            ],
        )?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if self.port != 0 {
            let data = self.data();
            let _ = self.run(
                "pg_ctl",
                &[
                    "-D".as_ref(),
                    data.as_os_str(),
                    "-m".as_ref(),
                    "immediate".as_ref(),
                    "stop".as_ref(),
                ],
            );
        }
    }
}
