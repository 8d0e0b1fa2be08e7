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

mod statementwise;

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

/// Applies pending migrations of the connection's backend; returns how many
/// ran. On PostgreSQL one statement at a time (see [`statementwise`]: Citus
/// refuses some DDL sent as part of a longer text).
pub fn migrate(conn: &mut DbConnection) -> Result<usize, Error> {
    let applied = match conn {
        DbConnection::Postgres(c) => c
            .run_pending_migrations(statementwise::Statementwise(POSTGRES_MIGRATIONS))
            .map(|v| v.len()),
        DbConnection::Sqlite(c) => c.run_pending_migrations(SQLITE_MIGRATIONS).map(|v| v.len()),
    };
    applied.map_err(|e| Error::Migration(e.to_string()))
}

/// Writes a consistent copy of the SQLite database at `url` to `to`, while
/// others read and write it: `VACUUM INTO`, one read transaction, so the
/// copy holds exactly the transactions committed before it began, compacted,
/// as a standalone file (no `-wal` beside it). `to` must not exist unless
/// `force`, in which case it is replaced only once the copy is whole (the copy
/// is written beside it first). The schema is not migrated: the copy is of
/// the database as it is. PostgreSQL has `pg_dump` for this.
pub fn backup(url: &DatabaseUrl, to: &std::path::Path, force: bool) -> Result<u64, Error> {
    let from = match url {
        DatabaseUrl::Sqlite(path) => path,
        DatabaseUrl::SqliteMemory => {
            return Err(Error::Config(
                "an in-memory database (sqlite::memory:) has nothing to back up".into(),
            ))
        }
        DatabaseUrl::Postgres(_) => {
            return Err(Error::Config(
                "keyward backup copies a SQLite database; for PostgreSQL use pg_dump: \
                 pg_dump --format=custom --file=keyward.dump \"$KEYWARD_DATABASE_URL\" \
                 (restore with pg_restore --clean --if-exists --dbname=...)"
                    .into(),
            ))
        }
    };
    if !from.is_file() {
        return Err(Error::Config(format!(
            "there is no database at {}",
            from.display()
        )));
    }
    let exists = to.symlink_metadata().is_ok();
    if exists && !force {
        return Err(Error::Config(format!(
            "{} exists; remove it or pass --force to replace it",
            to.display()
        )));
    }
    let io = |what: &str, path: &std::path::Path, e: std::io::Error| {
        Error::Config(format!("cannot {what} {}: {e}", path.display()))
    };
    // When replacing, write beside the file first, so that it is replaced whole or not at all.
    let target = if exists {
        let mut name = to.file_name().unwrap_or_default().to_os_string();
        name.push(format!(".partial-{}", std::process::id()));
        to.with_file_name(name)
    } else {
        to.to_path_buf()
    };
    let DbConnection::Sqlite(mut conn) = establish(url)? else {
        return Err(Error::Internal(
            "a SQLite URL opened another backend".into(),
        ));
    };
    let copied = diesel::sql_query("VACUUM INTO ?")
        .bind::<diesel::sql_types::Text, _>(target.to_string_lossy().into_owned())
        .execute(&mut conn);
    if let Err(e) = copied {
        if exists {
            let _ = std::fs::remove_file(&target);
        }
        return Err(Error::Config(format!(
            "cannot back up to {}: {e}",
            to.display()
        )));
    }
    if exists {
        std::fs::rename(&target, to).map_err(|e| io("replace", to, e))?;
    }
    let size = std::fs::metadata(to).map_err(|e| io("read", to, e))?.len();
    Ok(size)
}

/// The answer of a `SELECT EXISTS (...) AS found`.
#[derive(QueryableByName)]
struct Found {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    found: bool,
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
/// `tenants` is small and read by every request: a copy on every node;
/// `usage_rollups` (the roll-up job's two progress rows) likewise.
/// The change signal's `change_log` is not here: it stays a plain table on
/// the coordinator, written by keyward in each write transaction
/// ([`note_change`]) and read by every instance's watch without touching a
/// shard.
const CITUS_LAYOUT: [(&str, Option<&str>); 15] = [
    ("tenants", None),
    ("users", Some("users")),
    ("api_keys", Some("users")),
    ("audit_events", Some("users")),
    ("webhook_endpoints", Some("users")),
    ("webhook_events", Some("users")),
    ("webhook_deliveries", Some("users")),
    ("webhook_attempts", Some("users")),
    ("key_notices", Some("users")),
    ("usage_minutes", Some("users")),
    ("usage_hours", Some("users")),
    ("usage_days", Some("users")),
    ("usage_rollups", None),
    ("rate_windows", Some("users")),
    ("credit_balances", Some("users")),
];

/// The change signal's triggers (migration 000005). Citus cannot run them in
/// its shards (statement triggers read transition tables the shards do not
/// have, and a shard's trigger cannot write the coordinator's `change_log`),
/// so distributing drops them; keyward's own writes signal themselves.
const SIGNAL_TRIGGERS: [(&str, &str); 9] = [
    ("tenants", "tenants_inserted"),
    ("tenants", "tenants_updated"),
    ("tenants", "tenants_deleted"),
    ("users", "users_inserted"),
    ("users", "users_updated"),
    ("users", "users_deleted"),
    ("api_keys", "api_keys_inserted"),
    ("api_keys", "api_keys_updated"),
    ("api_keys", "api_keys_deleted"),
];

/// Drops the change signal's triggers, as distributing on Citus must
/// ([`SIGNAL_TRIGGERS`]); keyward's own writes still signal themselves. Also
/// how the tests play a Citus database on plain PostgreSQL. Only those that
/// exist ([`signal_triggers`]): Citus refuses every trigger command on a
/// distributed or reference table, `DROP TRIGGER IF EXISTS` of one that is
/// not there included, and `migrate --citus` must run again after an upgrade.
pub fn drop_signal_triggers(conn: &mut DbConnection) -> Result<(), Error> {
    for (table, trigger) in signal_triggers(conn)? {
        conn.batch_execute(&format!("DROP TRIGGER {trigger} ON {table}"))?;
    }
    Ok(())
}

/// The change signal's triggers that exist, as `(table, trigger)`; none on
/// SQLite, whose triggers are its own and stay.
pub fn signal_triggers(
    conn: &mut DbConnection,
) -> Result<Vec<(&'static str, &'static str)>, Error> {
    let DbConnection::Postgres(pg) = conn else {
        return Ok(Vec::new());
    };
    let mut present = Vec::new();
    for (table, trigger) in SIGNAL_TRIGGERS {
        let found = diesel::sql_query(
            "SELECT EXISTS (SELECT 1 FROM pg_trigger \
             WHERE tgrelid = to_regclass($1) AND tgname = $2) AS found",
        )
        .bind::<diesel::sql_types::Text, _>(table)
        .bind::<diesel::sql_types::Text, _>(trigger)
        .get_result::<Found>(pg)?
        .found;
        if found {
            present.push((table, trigger));
        }
    }
    Ok(present)
}

/// How a table of [`CITUS_LAYOUT`] stands on Citus, from `pg_dist_partition`.
#[derive(QueryableByName, Debug, Clone, Copy, PartialEq, Eq)]
struct Placement {
    /// Hash-distributed (`partmethod = 'h'`).
    #[diesel(sql_type = diesel::sql_types::Bool)]
    hashed: bool,
    /// A reference table (`partmethod = 'n'` with replication model `t`).
    #[diesel(sql_type = diesel::sql_types::Bool)]
    reference: bool,
}

impl Placement {
    /// Whether the table stands as [`CITUS_LAYOUT`] says: a reference table
    /// when it names no table to co-locate with, else hash-distributed.
    fn as_laid_out(self, colocate_with: Option<&str>) -> bool {
        match colocate_with {
            None => self.reference,
            Some(_) => self.hashed,
        }
    }
}

/// Whether the `citus` extension is installed in the database.
fn citus_installed(pg: &mut PgConnection) -> Result<bool, Error> {
    Ok(diesel::sql_query(
        "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus') AS found",
    )
    .get_result::<Found>(pg)?
    .found)
}

/// The placement of each table of [`CITUS_LAYOUT`], in its order: one query
/// of Citus's catalog (so only where the extension is installed).
fn placements(pg: &mut PgConnection) -> Result<Vec<Placement>, Error> {
    let tables: Vec<&str> = CITUS_LAYOUT.iter().map(|(table, _)| *table).collect();
    let found = diesel::sql_query(
        "SELECT COALESCE(p.partmethod = 'h', false) AS hashed, \
         COALESCE(p.partmethod = 'n' AND p.repmodel = 't', false) AS reference \
         FROM unnest($1::text[]) WITH ORDINALITY AS t(name, n) \
         LEFT JOIN pg_dist_partition p ON p.logicalrelid = to_regclass(t.name) \
         ORDER BY t.n",
    )
    .bind::<diesel::sql_types::Array<diesel::sql_types::Text>, _>(tables)
    .load::<Placement>(pg)?;
    if found.len() != CITUS_LAYOUT.len() {
        return Err(Error::Internal(format!(
            "pg_dist_partition answered for {} tables of {}",
            found.len(),
            CITUS_LAYOUT.len()
        )));
    }
    Ok(found)
}

/// The tables of [`CITUS_LAYOUT`] not laid out as it says, given each one's
/// placement in its order, once at least one of them is (the operator chose
/// Citus); none while none is (plain PostgreSQL with the extension merely
/// installed, or not distributed yet).
fn lagging(placements: &[Placement]) -> Vec<&'static str> {
    let chosen = placements.iter().any(|p| p.hashed || p.reference);
    CITUS_LAYOUT
        .iter()
        .zip(placements)
        .filter(|((_, with), placement)| chosen && !placement.as_laid_out(*with))
        .map(|((table, _), _)| *table)
        .collect()
}

/// The tables `keyward migrate --citus` would still distribute (or make a
/// reference table) in a database where it already ran, as after an upgrade
/// whose migrations added tables: see [`lagging`]. Nothing to ask on SQLite,
/// and on PostgreSQL without the `citus` extension only `pg_extension`.
pub fn citus_lagging(conn: &mut DbConnection) -> Result<Vec<&'static str>, Error> {
    let DbConnection::Postgres(pg) = conn else {
        return Ok(Vec::new());
    };
    if !citus_installed(pg)? {
        return Ok(Vec::new());
    }
    Ok(lagging(&placements(pg)?))
}

/// At start (`serve`, `migrate`): one warning when the database is
/// distributed on Citus but some of keyward's tables are not yet
/// ([`citus_lagging`]); a failed check is a warning too, never a reason not
/// to start.
pub fn warn_if_citus_lagging(conn: &mut DbConnection) {
    match citus_lagging(conn) {
        Ok(tables) if tables.is_empty() => {}
        Ok(tables) => log::warn!(
            "keyward's tables are distributed on Citus here, but not {} (a table an upgrade \
             adds stays on the coordinator): run `keyward migrate --citus`",
            tables.join(", ")
        ),
        Err(e) => log::warn!("could not check how the tables are distributed on Citus: {e}"),
    }
}

/// On a PostgreSQL database with the `citus` extension, makes `tenants` a
/// reference table and the tenant tables distributed by `tenant_id`,
/// co-located with `users` (so a tenant's rows, and every query filtered by
/// tenant, live in one shard). Tables already done are skipped, so running it
/// again changes nothing; without the extension nothing is touched at all.
/// SQLite has no such thing: an error, so a misdirected URL is noticed.
pub fn distribute_for_citus(conn: &mut DbConnection) -> Result<CitusReport, Error> {
    use diesel::sql_types::Text;

    let DbConnection::Postgres(pg) = conn else {
        return Err(Error::Config(
            "--citus needs a PostgreSQL database (KEYWARD_DATABASE_URL=postgres://...)".into(),
        ));
    };
    let citus = citus_installed(pg)?;
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
    drop_signal_triggers(conn)?;
    let DbConnection::Postgres(pg) = conn else {
        return Ok(report);
    };
    let placed = placements(pg)?;
    for ((table, colocate_with), placement) in CITUS_LAYOUT.into_iter().zip(placed) {
        if placement.as_laid_out(colocate_with) {
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

/// Runs `f` in a write transaction (see [`write_transaction`]) that changes
/// the data of the tenant `tenant_id` (the tenant itself, its users or its
/// keys), and signals the change in the same transaction ([`note_change`]).
pub fn tenant_write<T>(
    conn: &mut DbConnection,
    tenant_id: &str,
    f: impl FnOnce(&mut DbConnection) -> Result<T, Error>,
) -> Result<T, Error> {
    write_transaction(conn, |conn| {
        let value = f(conn)?;
        note_change(conn, tenant_id)?;
        Ok(value)
    })
}

/// Signals, inside the current write transaction, that the tenant's data
/// changed. On plain PostgreSQL and SQLite the triggers of migration 000005
/// already did (for anyone's writes), and on PostgreSQL this finds their row
/// and adds nothing; on Citus, whose shards cannot run those triggers, this is
/// the signal. SQLite, never distributed, leaves it to its triggers.
pub fn note_change(conn: &mut DbConnection, tenant_id: &str) -> Result<(), Error> {
    if let DbConnection::Postgres(pg) = conn {
        diesel::sql_query("SELECT keyward_log_changes(ARRAY[$1::text])")
            .bind::<diesel::sql_types::Text, _>(tenant_id)
            .execute(pg)?;
    }
    Ok(())
}

/// Runs `f` in a transaction that is always rolled back, and returns what
/// `f` returned: for a probe that must leave nothing behind.
pub fn dry_run<T>(
    conn: &mut DbConnection,
    f: impl FnOnce(&mut DbConnection) -> Result<T, Error>,
) -> Result<T, Error> {
    type Manager = <DbConnection as Connection>::TransactionManager;
    Manager::begin_transaction(conn)?;
    let outcome = f(conn);
    Manager::rollback_transaction(conn)?;
    outcome
}

/// Whether the current transaction has signalled a change to the tenant:
/// on PostgreSQL its `change_log` row (of [`note_change`] or of a trigger);
/// on SQLite the tenant's row in `tenant_changes`, which the triggers write.
pub fn change_noted(conn: &mut DbConnection, tenant_id: &str) -> Result<bool, Error> {
    match conn {
        DbConnection::Postgres(pg) => Ok(diesel::sql_query(
            "SELECT EXISTS (SELECT 1 FROM change_log \
             WHERE tx = pg_current_xact_id()::text::bigint AND tenant_id = $1) AS found",
        )
        .bind::<diesel::sql_types::Text, _>(tenant_id)
        .get_result::<Found>(pg)?
        .found),
        DbConnection::Sqlite(c) => Ok(diesel::sql_query(
            "SELECT EXISTS (SELECT 1 FROM tenant_changes WHERE tenant_id = $1) AS found",
        )
        .bind::<diesel::sql_types::Text, _>(tenant_id)
        .get_result::<Found>(c)?
        .found),
    }
}

/// What the change signal said since a [`SignalCursor`] last read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Changed {
    /// These tenants' data changed (by tenant id).
    Tenants(Vec<String>),
    /// Anything may have changed: the first read, or one that names every tenant.
    Everything,
}

/// How far a change watch has read the change signal; see [`read_changes`].
#[derive(Debug, Default)]
pub struct SignalCursor(Option<Position>);

#[derive(Debug)]
enum Position {
    /// The connection's `PRAGMA data_version` and the highest change number
    /// seen at the last read.
    Sqlite { data_version: i64, number: i64 },
    /// The oldest transaction still running at the last read (every older
    /// one had ended, so its rows were there to be read), and the rows at or
    /// above it already read.
    Postgres {
        horizon: i64,
        seen: std::collections::HashSet<i64>,
    },
}

impl SignalCursor {
    /// Forgets where it was: the next read answers [`Changed::Everything`].
    pub fn reset(&mut self) {
        self.0 = None;
    }

    /// On PostgreSQL, the oldest transaction that was still running at the
    /// last read; for [`prune_changes`].
    pub fn horizon(&self) -> Option<i64> {
        match &self.0 {
            Some(Position::Postgres { horizon, .. }) => Some(*horizon),
            _ => None,
        }
    }
}

/// Reads what changed since `cursor`'s last read, at a cost that follows the
/// changes, not the number of tenants (migration 000005):
///
/// - SQLite: nothing at all unless `PRAGMA data_version` moved (another
///   connection committed); then the tenants whose change number is above
///   the highest seen, through an index. One writer at a time takes and
///   commits the numbers in order, so none can hide below that.
/// - PostgreSQL: the `change_log` rows of transactions at or above the oldest
///   one that was still running at the previous read, in the same statement
///   (so the same snapshot) as the new horizon: every transaction below a
///   horizon had ended when it was taken, so its rows were visible to that
///   read or an earlier one. Rows re-read while a long transaction holds the
///   horizon back are recognised by their number and not reported twice.
pub fn read_changes(conn: &mut DbConnection, cursor: &mut SignalCursor) -> Result<Changed, Error> {
    use diesel::sql_types::{BigInt, Text};

    #[derive(QueryableByName)]
    struct Number {
        #[diesel(sql_type = BigInt)]
        number: i64,
    }
    #[derive(QueryableByName)]
    struct SqliteRow {
        #[diesel(sql_type = Text)]
        tenant_id: String,
        #[diesel(sql_type = BigInt)]
        version: i64,
    }

    match conn {
        DbConnection::Sqlite(c) => {
            let now_version = DataVersion.get_result::<i64>(c)?;
            let (data_version, number) = match cursor.0 {
                Some(Position::Sqlite {
                    data_version,
                    number,
                }) => (data_version, number),
                _ => {
                    let number = diesel::sql_query(
                        "SELECT coalesce(max(version), 0) AS number FROM tenant_changes",
                    )
                    .get_result::<Number>(c)?
                    .number;
                    cursor.0 = Some(Position::Sqlite {
                        data_version: now_version,
                        number,
                    });
                    return Ok(Changed::Everything);
                }
            };
            if data_version == now_version {
                return Ok(Changed::Tenants(Vec::new()));
            }
            let rows = diesel::sql_query(
                "SELECT tenant_id, version FROM tenant_changes WHERE version > $1",
            )
            .bind::<BigInt, _>(number)
            .load::<SqliteRow>(c)?;
            let number = rows.iter().map(|r| r.version).max().unwrap_or(number);
            cursor.0 = Some(Position::Sqlite {
                data_version: now_version,
                number,
            });
            Ok(Changed::Tenants(
                rows.into_iter().map(|r| r.tenant_id).collect(),
            ))
        }
        DbConnection::Postgres(pg) => {
            let Some(Position::Postgres { horizon, seen }) = &mut cursor.0 else {
                let horizon = diesel::sql_query(
                    "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS number",
                )
                .get_result::<Number>(pg)?
                .number;
                cursor.0 = Some(Position::Postgres {
                    horizon,
                    seen: Default::default(),
                });
                return Ok(Changed::Everything);
            };
            let rows = ChangesSince(*horizon)
                .load::<(i64, Option<i64>, Option<i64>, Option<String>)>(pg)?;
            let new_horizon = rows.first().map_or(*horizon, |r| r.0);
            let mut tenants = Vec::new();
            let mut everything = false;
            let mut still_seen = std::collections::HashSet::new();
            for (_, seq, tx, tenant_id) in rows {
                let (Some(seq), Some(tx)) = (seq, tx) else {
                    continue;
                };
                if !seen.contains(&seq) {
                    match tenant_id {
                        Some(tenant) => tenants.push(tenant),
                        None => everything = true,
                    }
                }
                if tx >= new_horizon {
                    still_seen.insert(seq);
                }
            }
            *horizon = new_horizon;
            *seen = still_seen;
            Ok(match everything {
                true => Changed::Everything,
                false => Changed::Tenants(tenants),
            })
        }
    }
}

/// The change watch's poll on PostgreSQL (see [`read_changes`]): the new
/// horizon and the `change_log` rows at or above the old one, as a query of
/// fixed text with a static id, so the watch's connection keeps it prepared
/// (a `sql_query` is parsed and planned by the server on every poll).
#[derive(Debug, Clone, Copy, diesel::query_builder::QueryId)]
struct ChangesSince(i64);

impl diesel::query_builder::QueryFragment<diesel::pg::Pg> for ChangesSince {
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>,
    ) -> QueryResult<()> {
        out.push_sql(
            "SELECT h.horizon, c.seq, c.tx, c.tenant_id \
             FROM (SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS horizon) h \
             LEFT JOIN change_log c ON c.tx >= ",
        );
        out.push_bind_param::<diesel::sql_types::BigInt, _>(&self.0)
    }
}

impl diesel::query_builder::Query for ChangesSince {
    type SqlType = (
        diesel::sql_types::BigInt,
        diesel::sql_types::Nullable<diesel::sql_types::BigInt>,
        diesel::sql_types::Nullable<diesel::sql_types::BigInt>,
        diesel::sql_types::Nullable<diesel::sql_types::Text>,
    );
}

impl RunQueryDsl<diesel::PgConnection> for ChangesSince {}

/// Deletes the change signal's rows written before `before` by transactions
/// below `horizon`: a [`SignalCursor::horizon`] taken at least a minute ago,
/// so those transactions had ended a minute ago and every watch that has read
/// since has seen their rows (a watch that has not read for that long starts
/// afresh: `changes::ChangeWatch::poll`). SQLite keeps one row per tenant:
/// nothing to do.
pub fn prune_changes(
    conn: &mut DbConnection,
    horizon: i64,
    before: chrono::NaiveDateTime,
) -> Result<usize, Error> {
    match conn {
        DbConnection::Postgres(pg) => Ok(diesel::sql_query(
            "DELETE FROM change_log WHERE tx < $1 AND at < $2",
        )
        .bind::<diesel::sql_types::BigInt, _>(horizon)
        .bind::<diesel::sql_types::Timestamp, _>(before)
        .execute(pg)?),
        DbConnection::Sqlite(_) => Ok(0),
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

/// The markers of `n` bind parameters of raw SQL on `conn`'s backend, numbered
/// from `first`: `$1, $2` on PostgreSQL, `?1, ?2` on SQLite. (SQLite reads
/// `$1` as a *named* parameter and looks every name up among those before it:
/// a statement of thousands of parameters then spends its time comparing
/// names, quadratically; `?1` is a number it takes as it is.)
pub fn bind_markers(conn: &DbConnection, first: usize, n: usize) -> String {
    let sigil = match conn {
        DbConnection::Sqlite(_) => '?',
        DbConnection::Postgres(_) => '$',
    };
    let mut markers = String::with_capacity(n * 6);
    let mut digits = itoa::Buffer::new();
    for i in first..first + n {
        if i > first {
            markers.push_str(", ");
        }
        markers.push(sigil);
        markers.push_str(digits.format(i));
    }
    markers
}

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

/// Takes, until the enclosing write transaction ends, the lock of a job that
/// one instance at a time runs (`job`: the job's own constant); `false`
/// when another instance holds it, without waiting. PostgreSQL: a
/// transaction-level advisory lock (on Citus, held on the coordinator the
/// instances connect to), of this schema: deployments (or test runs) that
/// share a database in schemas of their own never skip each other's jobs.
/// SQLite: `BEGIN IMMEDIATE` already serializes every write transaction, so
/// always `true`.
pub fn try_job_lock(conn: &mut DbConnection, job: i32) -> Result<bool, Error> {
    match conn {
        DbConnection::Postgres(pg) => Ok(diesel::sql_query(
            "SELECT pg_try_advisory_xact_lock($1, hashtext(current_schema())) AS found",
        )
        .bind::<diesel::sql_types::Integer, _>(job)
        .get_result::<Found>(pg)?
        .found),
        DbConnection::Sqlite(_) => Ok(true),
    }
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

#[cfg(test)]
mod citus_tests {
    use super::{lagging, Placement, CITUS_LAYOUT};

    const PLAIN: Placement = Placement {
        hashed: false,
        reference: false,
    };

    /// Each table of the layout placed as `migrate --citus` leaves it.
    fn distributed() -> Vec<Placement> {
        CITUS_LAYOUT
            .iter()
            .map(|(_, with)| Placement {
                hashed: with.is_some(),
                reference: with.is_none(),
            })
            .collect()
    }

    #[test]
    fn nothing_lags_before_citus_is_chosen_nor_once_all_is_done() {
        assert_eq!(lagging(&[PLAIN; CITUS_LAYOUT.len()]), Vec::<&str>::new());
        assert_eq!(lagging(&distributed()), Vec::<&str>::new());
    }

    #[test]
    fn tables_left_on_the_coordinator_or_placed_otherwise_lag() {
        let table = |name: &str| CITUS_LAYOUT.iter().position(|(t, _)| *t == name).unwrap();
        // After an upgrade: two new tables, still plain.
        let mut placed = distributed();
        placed[table("rate_windows")] = PLAIN;
        placed[table("usage_rollups")] = PLAIN;
        assert_eq!(lagging(&placed), ["usage_rollups", "rate_windows"]);
        // tenants distributed instead of a reference table, users a reference table.
        let mut placed = distributed();
        placed[table("tenants")] = Placement {
            hashed: true,
            reference: false,
        };
        placed[table("users")] = Placement {
            hashed: false,
            reference: true,
        };
        assert_eq!(lagging(&placed), ["tenants", "users"]);
        // Only tenants done (an interrupted first run): everything else lags.
        let mut placed = vec![PLAIN; CITUS_LAYOUT.len()];
        placed[0] = distributed()[0];
        assert_eq!(lagging(&placed).len(), CITUS_LAYOUT.len() - 1);
    }
}

#[cfg(test)]
mod marker_tests {
    use diesel::prelude::*;
    use diesel::sql_types::BigInt;

    use super::{bind_markers, establish, MultiBackend};
    use crate::config::DatabaseUrl;

    #[derive(QueryableByName)]
    struct Sums {
        #[diesel(sql_type = BigInt)]
        firsts: i64,
        #[diesel(sql_type = BigInt)]
        lasts: i64,
    }

    #[test]
    fn sqlite_markers_are_numbered_and_bind_in_order() {
        let mut conn = establish(&DatabaseUrl::SqliteMemory).unwrap();
        assert_eq!(bind_markers(&conn, 3, 3), "?3, ?4, ?5");
        // As many parameters as a full usage flush (rows of 8), the nth bound to n.
        let rows: Vec<String> = (0..2000)
            .map(|r| format!("({})", bind_markers(&conn, r * 8 + 1, 8)))
            .collect();
        let sql = format!(
            "SELECT SUM(column1) AS firsts, SUM(column8) AS lasts FROM (VALUES {})",
            rows.join(", ")
        );
        let mut query = diesel::sql_query(sql).into_boxed::<MultiBackend>();
        for n in 1..=16_000_i64 {
            query = query.bind::<BigInt, _>(n);
        }
        let sums = query.get_result::<Sums>(&mut conn).unwrap();
        // Row r holds 8r+1 ..= 8r+8.
        assert_eq!(sums.firsts, (0..2000).map(|r| 8 * r + 1).sum::<i64>());
        assert_eq!(sums.lasts, (0..2000).map(|r| 8 * r + 8).sum::<i64>());
    }
}
