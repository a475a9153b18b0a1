//! Connections (plain only where [`crate::target`] allows it, else TLS verified) and the
//! schema's migrations.

use std::path::Path;
use std::sync::Arc;

use medic_journal::JournalError;
use tokio_postgres::{Client, GenericClient};

use crate::target::{PgTarget, Tls};

/// The migrations, numbered from 1; `medic.schema_version` holds the numbers applied.
/// Append only: a released file is never edited.
const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/0001_journal.sql"),
    include_str!("../migrations/0002_workers.sql"),
];

/// The schema version this build reads and writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Serialises concurrent migrators (two `medic apply` against a new database).
const MIGRATION_LOCK: i64 = 0x6d65_6469_6300_0001;

pub(crate) fn io_err(location: &Path, e: impl std::fmt::Display) -> JournalError {
    JournalError::Io {
        path: location.to_owned(),
        source: std::io::Error::other(e.to_string()),
    }
}

/// The server's own message when there is one (tokio-postgres' Display says only "db
/// error").
pub(crate) fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => {
            let mut s = e.to_string();
            let mut src = std::error::Error::source(e);
            while let Some(inner) = src {
                s.push_str(": ");
                s.push_str(&inner.to_string());
                src = inner.source();
            }
            s
        }
    }
}

/// Connects on the current runtime; the connection's task runs on it until the client is
/// dropped.
pub(crate) async fn connect(target: &PgTarget, location: &Path) -> Result<Client, JournalError> {
    let (client, task) = match &target.tls {
        Tls::Plain => {
            let (c, conn) = target
                .config
                .connect(tokio_postgres::NoTls)
                .await
                .map_err(|e| io_err(location, describe(&e)))?;
            (
                c,
                tokio::spawn(async move { conn.await.map_err(|e| e.to_string()) }),
            )
        }
        Tls::Verified { root_file } => {
            let tls = tokio_postgres_rustls::MakeRustlsConnect::new(client_config(
                root_file.as_deref(),
                location,
            )?);
            let (c, conn) = target
                .config
                .connect(tls)
                .await
                .map_err(|e| io_err(location, describe(&e)))?;
            (
                c,
                tokio::spawn(async move { conn.await.map_err(|e| e.to_string()) }),
            )
        }
    };
    // The connection task ends with the client; a broken connection shows as the next
    // query's error.
    drop(task);
    Ok(client)
}

fn client_config(
    root_file: Option<&Path>,
    location: &Path,
) -> Result<rustls::ClientConfig, JournalError> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    let root_file = root_file
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os("PGSSLROOTCERT").map(Into::into));
    match root_file {
        Some(file) => {
            let certs = CertificateDer::pem_file_iter(&file)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| io_err(location, format!("sslrootcert {}: {e}", file.display())))?;
            if certs.is_empty() {
                return Err(io_err(
                    location,
                    format!("sslrootcert {} holds no certificate", file.display()),
                ));
            }
            for c in certs {
                roots.add(c).map_err(|e| {
                    io_err(location, format!("sslrootcert {}: {e}", file.display()))
                })?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for c in found.certs {
                // One unreadable system root is no reason to refuse the others.
                let _ = roots.add(c);
            }
            if roots.is_empty() {
                return Err(io_err(
                    location,
                    "no system TLS roots found; pass sslrootcert=FILE in the URL",
                ));
            }
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map(|b| b.with_root_certificates(roots).with_no_client_auth())
        .map_err(|e| io_err(location, e))
}

/// Brings the schema to [`SCHEMA_VERSION`] in one transaction (under an advisory lock, so
/// two first runs do not race); refuses a database a newer medic migrated.
pub(crate) async fn migrate(client: &mut Client, location: &Path) -> Result<(), JournalError> {
    let e = |e: tokio_postgres::Error| io_err(location, describe(&e));
    let tx = client.transaction().await.map_err(e)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(e)?;
    tx.batch_execute(
        "CREATE SCHEMA IF NOT EXISTS medic;
         CREATE TABLE IF NOT EXISTS medic.schema_version(
             version BIGINT PRIMARY KEY, applied_ms BIGINT NOT NULL);",
    )
    .await
    .map_err(e)?;
    let found = current_version(&tx).await.map_err(e)?;
    if found > SCHEMA_VERSION {
        return Err(JournalError::UnsupportedVersion {
            path: location.to_owned(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    for (version, sql) in (found + 1..).zip(MIGRATIONS.iter().skip(found as usize)) {
        tx.batch_execute(sql).await.map_err(e)?;
        tx.execute(
            "INSERT INTO medic.schema_version(version, applied_ms) VALUES ($1, $2)",
            &[&version, &crate::now_ms()],
        )
        .await
        .map_err(e)?;
    }
    tx.commit().await.map_err(e)
}

pub(crate) async fn current_version(c: &impl GenericClient) -> Result<i64, tokio_postgres::Error> {
    let row = c
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM medic.schema_version",
            &[],
        )
        .await?;
    row.try_get(0)
}

/// For readers: the schema must be one this build reads (a reader never migrates). An
/// older one is read as it is: a migration only adds tables, and a reader of one that is
/// missing says so.
pub(crate) async fn check_version(client: &Client, location: &Path) -> Result<(), JournalError> {
    let exists: bool = client
        .query_one(
            "SELECT to_regclass('medic.schema_version') IS NOT NULL",
            &[],
        )
        .await
        .and_then(|r| r.try_get(0))
        .map_err(|e| io_err(location, describe(&e)))?;
    if !exists {
        return Err(JournalError::NotAJournal {
            path: location.to_owned(),
        });
    }
    let found = current_version(client)
        .await
        .map_err(|e| io_err(location, describe(&e)))?;
    if !(1..=SCHEMA_VERSION).contains(&found) {
        return Err(JournalError::UnsupportedVersion {
            path: location.to_owned(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    Ok(())
}
