//! Storage: one connection type over SQLite and PostgreSQL, its pool, and the
//! embedded migrations.
//!
//! Query functions elsewhere are plain `fn(&mut DbConnection, ..)`; they run on
//! actix's blocking pool (`web::block`), never on the async executor. This is
//! the only module that names a backend's own connection type: SQL that only
//! one backend speaks lives here, one `match` per operation.

use std::time::Duration;

use diesel::connection::{AnsiTransactionManager, SimpleConnection, TransactionManager};
use diesel::prelude::*;
use diesel::r2d2::{ConnectionManager, CustomizeConnection, Pool};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use crate::config::DatabaseUrl;
use crate::error::Error;

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// A connection to either backend. SQLite is declared last, as diesel's
/// multi-connection docs advise.
#[derive(diesel::MultiConnection)]
pub enum DbConnection {
    Postgres(PgConnection),
    Sqlite(SqliteConnection),
}

pub type DbPool = Pool<ConnectionManager<DbConnection>>;

/// Per-connection SQLite settings; `busy_timeout` first so the others wait on locks too.
#[derive(Debug)]
struct SqlitePragmas;

impl CustomizeConnection<DbConnection, diesel::r2d2::Error> for SqlitePragmas {
    fn on_acquire(&self, conn: &mut DbConnection) -> Result<(), diesel::r2d2::Error> {
        if let DbConnection::Sqlite(c) = conn {
            c.batch_execute(
                "PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;",
            )
            .map_err(diesel::r2d2::Error::QueryError)?;
        }
        Ok(())
    }
}

/// What the backend's driver is given to connect to `url`.
fn connection_string(url: &DatabaseUrl) -> String {
    match url {
        DatabaseUrl::Sqlite(path) => path.to_string_lossy().into_owned(),
        DatabaseUrl::SqliteMemory => ":memory:".to_owned(),
        DatabaseUrl::Postgres(url) => url.clone(),
    }
}

/// Opens a pool for `url`, creating the SQLite file (and its folder) if needed,
/// and brings the schema up to date.
pub fn connect(url: &DatabaseUrl, pool_size: u32) -> Result<DbPool, Error> {
    let pool_size = match url {
        DatabaseUrl::Sqlite(path) => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .map_err(|e| Error::Config(format!("cannot create {}: {e}", dir.display())))?;
            }
            pool_size
        }
        // Every connection to ":memory:" is its own database, so the pool holds one.
        DatabaseUrl::SqliteMemory => 1,
        DatabaseUrl::Postgres(_) => pool_size,
    };
    let manager = ConnectionManager::<DbConnection>::new(connection_string(url));
    let mut builder = Pool::builder()
        .max_size(pool_size)
        .connection_timeout(Duration::from_secs(5))
        // r2d2 pings every connection it hands out by default: a `SELECT 1`
        // (a round trip on PostgreSQL) per request. A connection that breaks
        // is dropped by `has_broken` after its failing query instead.
        .test_on_check_out(false)
        .connection_customizer(Box::new(SqlitePragmas));
    if *url == DatabaseUrl::SqliteMemory {
        builder = builder.idle_timeout(None).max_lifetime(None);
    }
    let pool = builder.build(manager)?;
    let mut conn = pool.get()?;
    if let DbConnection::Sqlite(c) = &mut *conn {
        // Persistent in the file: readers no longer block the writer.
        c.batch_execute("PRAGMA journal_mode = WAL;")?;
    }
    migrate(&mut conn)?;
    Ok(pool)
}

/// The PostgreSQL `application_name` of a dedicated connection.
pub const WATCH_APPLICATION_NAME: &str = "keyward-changes";

/// One connection outside the pool, for a task that holds it for good (the
/// change watch). The schema is the pool's business.
pub fn establish(url: &DatabaseUrl) -> Result<DbConnection, Error> {
    let mut target = connection_string(url);
    if let DatabaseUrl::Postgres(_) = url {
        // Named, so an operator sees it in pg_stat_activity.
        let sep = if target.contains('?') { '&' } else { '?' };
        target = format!("{target}{sep}application_name={WATCH_APPLICATION_NAME}");
    }
    let mut conn = DbConnection::establish(&target)
        .map_err(|e| Error::Unavailable(format!("cannot connect: {e}")))?;
    if let DbConnection::Sqlite(c) = &mut conn {
        c.batch_execute("PRAGMA busy_timeout = 5000;")?;
    }
    Ok(conn)
}

/// Read connections of their own for the threads that ask for one (the
/// async workers), so that a short read on SQLite runs where the request is,
/// without a hand-off to the blocking pool and back. Only for a SQLite file:
/// PostgreSQL work never runs on the async executor, and every connection to
/// `sqlite::memory:` is a database of its own.
///
/// Each connection is `query_only` (a write through it fails instead of
/// slipping past the pool's one write path) and reads, in WAL mode, the last
/// committed state without waiting for writers.
pub struct Readers {
    path: String,
    connections: thread_local::ThreadLocal<std::cell::RefCell<Option<DbConnection>>>,
}

impl std::fmt::Debug for Readers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Readers")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Readers {
    /// Readers for `url`, if its backend has them.
    pub fn new(url: &DatabaseUrl) -> Option<Self> {
        match url {
            DatabaseUrl::Sqlite(_) => Some(Self {
                path: connection_string(url),
                connections: thread_local::ThreadLocal::new(),
            }),
            DatabaseUrl::SqliteMemory | DatabaseUrl::Postgres(_) => None,
        }
    }

    /// Runs `f` on this thread's read connection, opening it first if needed.
    pub fn read<T>(
        &self,
        f: impl FnOnce(&mut DbConnection) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let cell = self.connections.get_or(Default::default);
        let mut slot = cell
            .try_borrow_mut()
            .map_err(|_| Error::Internal("a read connection was asked for twice".into()))?;
        let conn = match slot.as_mut() {
            Some(conn) => conn,
            None => slot.insert(self.open()?),
        };
        f(conn)
    }

    fn open(&self) -> Result<DbConnection, Error> {
        let mut conn = SqliteConnection::establish(&self.path)
            .map_err(|e| Error::Unavailable(format!("cannot open the database: {e}")))?;
        conn.batch_execute("PRAGMA busy_timeout = 5000; PRAGMA query_only = ON;")?;
        Ok(DbConnection::Sqlite(conn))
    }
}

/// A `TIMESTAMP` column, read without diesel's general SQLite parser: SQLite
/// keeps timestamps as text, and diesel tries its formats one by one, each
/// parsed anew (a tenth of a listing's time in perf). keyward writes
/// `YYYY-MM-DD HH:MM:SS[.ffffff]`, read here digit by digit; anything else
/// falls back to diesel. PostgreSQL's binary timestamps pass through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, diesel::deserialize::FromSqlRow)]
pub struct Stamp(pub chrono::NaiveDateTime);

impl Stamp {
    /// `YYYY-MM-DD HH:MM:SS`, optionally with `.` and 1 to 9 fraction digits.
    fn parse(text: &str) -> Option<chrono::NaiveDateTime> {
        let b = text.as_bytes();
        let digits = |range: std::ops::Range<usize>| -> Option<u32> {
            b.get(range)?.iter().try_fold(0u32, |n, &d| {
                d.is_ascii_digit().then(|| n * 10 + u32::from(d - b'0'))
            })
        };
        if b.len() < 19
            || b[4] != b'-'
            || b[7] != b'-'
            || b[10] != b' '
            || b[13] != b':'
            || b[16] != b':'
        {
            return None;
        }
        let nanos = match &b[19..] {
            [] => 0,
            [b'.', fraction @ ..] if (1..=9).contains(&fraction.len()) => {
                let value = digits(20..b.len())?;
                value * 10u32.pow(9 - fraction.len() as u32)
            }
            _ => return None,
        };
        let date = chrono::NaiveDate::from_ymd_opt(
            i32::try_from(digits(0..4)?).ok()?,
            digits(5..7)?,
            digits(8..10)?,
        )?;
        let time = chrono::NaiveTime::from_hms_nano_opt(
            digits(11..13)?,
            digits(14..16)?,
            digits(17..19)?,
            nanos,
        )?;
        Some(date.and_time(time))
    }
}

impl diesel::deserialize::FromSql<diesel::sql_types::Timestamp, diesel::sqlite::Sqlite> for Stamp {
    fn from_sql(
        mut value: diesel::sqlite::SqliteValue<'_, '_, '_>,
    ) -> diesel::deserialize::Result<Self> {
        if let Some(at) = Self::parse(value.read_text()) {
            return Ok(Self(at));
        }
        <chrono::NaiveDateTime as diesel::deserialize::FromSql<
            diesel::sql_types::Timestamp,
            diesel::sqlite::Sqlite,
        >>::from_sql(value)
        .map(Self)
    }
}

impl diesel::deserialize::FromSql<diesel::sql_types::Timestamp, diesel::pg::Pg> for Stamp {
    fn from_sql(value: diesel::pg::PgValue<'_>) -> diesel::deserialize::Result<Self> {
        <chrono::NaiveDateTime as diesel::deserialize::FromSql<
            diesel::sql_types::Timestamp,
            diesel::pg::Pg,
        >>::from_sql(value)
        .map(Self)
    }
}

impl diesel::deserialize::FromSql<diesel::sql_types::Timestamp, MultiBackend> for Stamp {
    fn from_sql(value: MultiRawValue<'_>) -> diesel::deserialize::Result<Self> {
        value.from_sql::<Self, diesel::sql_types::Timestamp>()
    }
}

/// Applies pending migrations of the connection's backend; returns how many ran.
pub fn migrate(conn: &mut DbConnection) -> Result<usize, Error> {
    let applied = match conn {
        DbConnection::Postgres(c) => c
            .run_pending_migrations(POSTGRES_MIGRATIONS)
            .map(|v| v.len()),
        DbConnection::Sqlite(c) => c.run_pending_migrations(SQLITE_MIGRATIONS).map(|v| v.len()),
    };
    applied.map_err(|e| Error::Migration(e.to_string()))
}

/// What `keyward migrate --citus` found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CitusReport {
    /// Whether the `citus` extension is installed in the database.
    pub citus: bool,
    /// The tables this run distributed (or made a reference table), in order.
    pub distributed: Vec<&'static str>,
}

/// How each table is spread over a Citus cluster, in the order it must be done:
/// a table's foreign keys may only point at tables distributed before it.
/// `tenants` is small and read by every request: a copy on every node.
const CITUS_LAYOUT: [(&str, Option<&str>); 10] = [
    ("tenants", None),
    ("users", Some("users")),
    ("api_keys", Some("users")),
    ("audit_events", Some("users")),
    ("tenant_changes", Some("users")),
    ("webhook_endpoints", Some("users")),
    ("webhook_events", Some("users")),
    ("webhook_deliveries", Some("users")),
    ("webhook_attempts", Some("users")),
    ("key_notices", Some("users")),
];

/// On a PostgreSQL database with the `citus` extension, makes `tenants` a
/// reference table and the tenant tables distributed by `tenant_id`,
/// co-located with `users` (so a tenant's rows, and every query filtered by
/// tenant, live in one shard). Tables already done are skipped, so running it
/// again changes nothing; without the extension nothing is touched at all.
/// SQLite has no such thing: an error, so a misdirected URL is noticed.
pub fn distribute_for_citus(conn: &mut DbConnection) -> Result<CitusReport, Error> {
    use diesel::sql_types::{Bool, Nullable, Text};

    #[derive(QueryableByName)]
    struct Found {
        #[diesel(sql_type = Bool)]
        found: bool,
    }

    let DbConnection::Postgres(pg) = conn else {
        return Err(Error::Config(
            "--citus needs a PostgreSQL database (KEYWARD_DATABASE_URL=postgres://...)".into(),
        ));
    };
    let citus = diesel::sql_query(
        "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus') AS found",
    )
    .get_result::<Found>(pg)?
    .found;
    let mut report = CitusReport {
        citus,
        distributed: Vec::new(),
    };
    if !citus {
        return Ok(report);
    }
    // Otherwise `create_reference_table('tenants')` quietly turns the tables
    // that refer to it into Citus-local tables, and distributing them fails.
    pg.batch_execute("SET citus.enable_local_reference_table_foreign_keys = off")?;
    // The change signal's triggers (migration 000004) bump `tenant_changes`
    // in the same shard as the row they fire for: co-located, so Citus may
    // run them there.
    pg.batch_execute("SET citus.enable_unsafe_triggers = on")?;
    for (table, colocate_with) in CITUS_LAYOUT {
        // `h`: hash-distributed; `n` with replication model `t`: a reference table.
        let done = diesel::sql_query(
            "SELECT EXISTS (SELECT 1 FROM pg_dist_partition \
             WHERE logicalrelid = to_regclass($1) \
             AND CASE WHEN $2::text IS NULL THEN partmethod = 'n' AND repmodel = 't' \
             ELSE partmethod = 'h' END) AS found",
        )
        .bind::<Text, _>(table)
        .bind::<Nullable<Text>, _>(colocate_with)
        .get_result::<Found>(pg)?
        .found;
        if done {
            continue;
        }
        match colocate_with {
            None => diesel::sql_query("SELECT create_reference_table($1::regclass)")
                .bind::<Text, _>(table)
                .execute(pg)?,
            Some(with) if with == table => {
                diesel::sql_query("SELECT create_distributed_table($1::regclass, 'tenant_id')")
                    .bind::<Text, _>(table)
                    .execute(pg)?
            }
            Some(with) => diesel::sql_query(
                "SELECT create_distributed_table($1::regclass, 'tenant_id', colocate_with => $2)",
            )
            .bind::<Text, _>(table)
            .bind::<Text, _>(with)
            .execute(pg)?,
        };
        report.distributed.push(table);
    }
    Ok(report)
}

/// Runs `f` in a transaction that may write (a savepoint when one is already
/// open). On SQLite the outermost one begins `IMMEDIATE`,
/// taking the write lock up front: a deferred transaction that reads and then
/// writes fails at once with SQLITE_BUSY when another writer got there first,
/// instead of waiting out `busy_timeout`.
pub fn write_transaction<T>(
    conn: &mut DbConnection,
    f: impl FnOnce(&mut DbConnection) -> Result<T, Error>,
) -> Result<T, Error> {
    type Manager = <DbConnection as Connection>::TransactionManager;
    let outermost = Manager::transaction_manager_status_mut(conn)
        .transaction_depth()?
        .is_none();
    match conn {
        DbConnection::Sqlite(c) if outermost => {
            AnsiTransactionManager::begin_transaction_sql(c, "BEGIN IMMEDIATE")?
        }
        // Nested: a savepoint inside the enclosing transaction.
        _ => Manager::begin_transaction(conn)?,
    }
    match f(conn) {
        Ok(value) => {
            Manager::commit_transaction(conn)?;
            Ok(value)
        }
        Err(e) => {
            // The change's own error is the one worth reporting.
            let _ = Manager::rollback_transaction(conn);
            Err(e)
        }
    }
}

/// Locks, until the enclosing write transaction ends, the tenant's active users
/// whose stored roles match `roles_like`, so that changes which count those
/// users (the last-administrator guard) are serialized per tenant.
///
/// SQLite: nothing to do, `BEGIN IMMEDIATE` already holds the database's write
/// lock. PostgreSQL: row locks on those users. They live in the tenant's own
/// shard when `users` is distributed by `tenant_id` (Citus), so tenants never
/// wait for each other; a lock on the `tenants` row would lock the whole
/// reference table there, and an advisory lock is local to the node a client
/// happens to be connected to. A row that stops matching while its lock is
/// awaited is dropped from the set on PostgreSQL's recheck, and the caller
/// counts afresh after this returns. `ORDER BY` takes the locks in one order
/// in every transaction, so two of them cannot deadlock.
pub fn lock_users_with_roles(
    conn: &mut DbConnection,
    tenant_id: &str,
    roles_like: &str,
) -> Result<(), Error> {
    if let DbConnection::Postgres(pg) = conn {
        diesel::sql_query(
            "SELECT id FROM users WHERE tenant_id = $1 AND active AND roles LIKE $2 \
             ORDER BY id FOR UPDATE",
        )
        .bind::<diesel::sql_types::Text, _>(tenant_id)
        .bind::<diesel::sql_types::Text, _>(roles_like)
        .execute(pg)?;
    }
    Ok(())
}

/// SQLite's `PRAGMA data_version` on this connection: it differs from the
/// last answer exactly when another connection committed since. `None` on
/// PostgreSQL, which has no such counter.
pub fn data_version(conn: &mut DbConnection) -> Result<Option<i64>, Error> {
    match conn {
        DbConnection::Sqlite(c) => Ok(Some(DataVersion.get_result::<i64>(c)?)),
        DbConnection::Postgres(_) => Ok(None),
    }
}

/// `PRAGMA data_version` as a query of fixed text with a static query id, so
/// the connection keeps it prepared (a `sql_query` is parsed on every run, and
/// the hot listing asks on every request).
#[derive(Debug, Clone, Copy, diesel::query_builder::QueryId)]
struct DataVersion;

impl diesel::query_builder::QueryFragment<diesel::sqlite::Sqlite> for DataVersion {
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, diesel::sqlite::Sqlite>,
    ) -> QueryResult<()> {
        out.push_sql("PRAGMA data_version");
        Ok(())
    }
}

impl diesel::query_builder::Query for DataVersion {
    type SqlType = diesel::sql_types::BigInt;
}

impl RunQueryDsl<diesel::SqliteConnection> for DataVersion {}

/// Whether the database answers; for `/readiness`.
pub fn ping(conn: &mut DbConnection) -> Result<(), Error> {
    conn.batch_execute("SELECT 1").map_err(Error::from)
}

/// Locks one user's row until the write transaction ends, so that changes to
/// the user (a deactivation, say) happen one after the other. SQLite's
/// `BEGIN IMMEDIATE` already serializes every write transaction.
pub fn lock_user(conn: &mut DbConnection, tenant_id: &str, id: &str) -> Result<(), Error> {
    if let DbConnection::Postgres(pg) = conn {
        diesel::sql_query("SELECT 1 FROM users WHERE tenant_id = $1 AND id = $2 FOR UPDATE")
            .bind::<diesel::sql_types::Text, _>(tenant_id)
            .bind::<diesel::sql_types::Text, _>(id)
            .execute(pg)?;
    }
    Ok(())
}

/// Locks one key's row until the write transaction ends, so that changes to
/// the key (revocation, rotation, edits) happen one after the other. SQLite's
/// `BEGIN IMMEDIATE` already serializes every write transaction.
pub fn lock_key(conn: &mut DbConnection, tenant_id: &str, id: &str) -> Result<(), Error> {
    match conn {
        DbConnection::Postgres(pg) => {
            diesel::sql_query("SELECT 1 FROM api_keys WHERE tenant_id = $1 AND id = $2 FOR UPDATE")
                .bind::<diesel::sql_types::Text, _>(tenant_id)
                .bind::<diesel::sql_types::Text, _>(id)
                .execute(pg)?;
        }
        DbConnection::Sqlite(_) => {}
    }
    Ok(())
}

#[cfg(test)]
mod stamp_tests {
    use super::Stamp;
    use chrono::NaiveDateTime;

    #[test]
    fn stamps_read_like_diesels_parser() {
        for text in [
            "2026-11-30 12:34:56",
            "2026-11-30 12:34:56.5",
            "2026-11-30 12:34:56.123456",
            "2026-11-30 12:34:56.123456789",
            "0001-01-01 00:00:00",
            "9999-12-31 23:59:59.999999",
        ] {
            let chrono = NaiveDateTime::parse_from_str(text, "%F %T%.f").unwrap();
            assert_eq!(Stamp::parse(text), Some(chrono), "{text}");
        }
        for text in [
            "",
            "2026-11-30",
            "2026-11-30T12:34:56",
            "2026-11-30 12:34:56Z",
            "2026-11-30 12:34:56.",
            "2026-11-30 12:34:56.1234567890",
            "2026-13-30 12:34:56",
            "2026-02-30 12:34:56",
            "2026-11-30 24:00:00",
            "2026-1a-30 12:34:56",
            "+026-11-30 12:34:56",
        ] {
            assert_eq!(Stamp::parse(text), None, "{text}");
        }
    }
}
