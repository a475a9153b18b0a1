//! What only the PostgreSQL journal has: schema migrations, a database of many runs,
//! passwords from the environment.

use medic_journal::{JournalError, JournalRead};
use medic_journal_pg::server::TestServer;
use medic_journal_pg::{PgJournal, PgReader, PgTarget, SCHEMA_VERSION, Source, list_runs};

fn target(s: &TestServer) -> PgTarget {
    PgTarget::parse(&s.url_with_password(), Source::Environment).expect("target")
}

#[test]
fn migrations_are_versioned_applied_once_and_a_newer_schema_is_refused() {
    let s = TestServer::start().expect("server");
    let t = target(&s);
    // A reader of a database no medic has used says so; it never creates anything.
    let none = PgReader::open(&t.with_run("x"))
        .err()
        .expect("empty database");
    assert!(matches!(none, JournalError::NotAJournal { .. }), "{none:?}");
    assert_eq!(
        s.psql("SELECT to_regclass('medic.runs') IS NULL")
            .expect("psql"),
        "t"
    );

    drop(PgJournal::create(&t, "r1", &[], &[]).expect("create migrates"));
    drop(PgJournal::create(&t, "r2", &[], &[]).expect("a second run migrates nothing"));
    assert_eq!(
        s.psql("SELECT string_agg(version::text, ',' ORDER BY version) FROM medic.schema_version")
            .expect("psql"),
        (1..=SCHEMA_VERSION)
            .map(|v| v.to_string())
            .collect::<Vec<_>>()
            .join(",")
    );
    assert_eq!(list_runs(&t).expect("runs"), ["r1", "r2"]);
    // Two runs and none named: refused, naming them.
    let which = PgReader::open(&t).err().expect("ambiguous");
    assert!(which.to_string().contains("?run="), "{which}");
    assert!(which.to_string().contains("r2"), "{which}");

    // A database a newer medic migrated is refused by every way in, naming both versions.
    s.psql("INSERT INTO medic.schema_version VALUES (99, 0)")
        .expect("psql");
    let errs = [
        PgJournal::create(&t, "r3", &[], &[]).err().expect("create"),
        PgJournal::open_existing(&t.with_run("r1"))
            .err()
            .expect("open"),
        PgReader::open(&t.with_run("r1")).err().expect("reader"),
    ];
    for e in errs {
        assert!(
            matches!(e, JournalError::UnsupportedVersion { found: 99, .. }),
            "{e:?}"
        );
    }
    assert_eq!(
        s.psql("SELECT count(*) FROM medic.runs").expect("psql"),
        "2"
    );
}

#[test]
fn the_password_comes_from_the_environment_and_is_never_stored() {
    let s = TestServer::start().expect("server");
    // Without a password, the server (scram-sha-256 on TCP) refuses the login.
    let bare = PgTarget::parse(&s.url(), Source::Argument).expect("target");
    let err = PgJournal::create(&bare, "r", &[], &[])
        .err()
        .expect("no password");
    assert!(err.to_string().contains("password"), "{err}");
    let j = PgJournal::create(&target(&s), "r", &[("inputs", "{}")], &[]).expect("create");
    assert!(
        !j.meta("inputs")
            .expect("meta")
            .unwrap_or_default()
            .contains(s.password())
    );
    drop(j);
    let dump = s
        .psql("SELECT string_agg(coalesce(value, ''), ' ') FROM medic.meta")
        .expect("psql");
    assert!(!dump.contains(s.password()), "{dump}");
    let loc = medic_journal::JournalStore::location(
        &PgJournal::open_existing(&target(&s).with_run("r")).expect("open"),
    )
    .display()
    .to_string();
    assert_eq!(loc, format!("{}?run=r", s.url()));
}
