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

/// Opens a pool for `url`, creating the SQLite file (and its folder) if needed,
/// and brings the schema up to date.
pub fn connect(url: &DatabaseUrl, pool_size: u32) -> Result<DbPool, Error> {
    let (conn_url, pool_size) = match url {
        DatabaseUrl::Sqlite(path) => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .map_err(|e| Error::Config(format!("cannot create {}: {e}", dir.display())))?;
            }
            (path.to_string_lossy().into_owned(), pool_size)
        }
        // Every connection to ":memory:" is its own database, so the pool holds one.
        DatabaseUrl::SqliteMemory => (":memory:".to_owned(), 1),
        DatabaseUrl::Postgres(url) => (url.clone(), pool_size),
    };
    let manager = ConnectionManager::<DbConnection>::new(conn_url);
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
    let url = match url {
        DatabaseUrl::Sqlite(path) => path.to_string_lossy().into_owned(),
        DatabaseUrl::SqliteMemory => ":memory:".to_owned(),
        // Named, so an operator sees it in pg_stat_activity.
        DatabaseUrl::Postgres(url) => {
            let sep = if url.contains('?') { '&' } else { '?' };
            format!("{url}{sep}application_name={WATCH_APPLICATION_NAME}")
        }
    };
    let mut conn = DbConnection::establish(&url)
        .map_err(|e| Error::Unavailable(format!("cannot connect: {e}")))?;
    if let DbConnection::Sqlite(c) = &mut conn {
        c.batch_execute("PRAGMA busy_timeout = 5000;")?;
    }
    Ok(conn)
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

/// Whether the database answers; for `/readiness`.
pub fn ping(conn: &mut DbConnection) -> Result<(), Error> {
    conn.batch_execute("SELECT 1").map_err(Error::from)
}

/// Serializes a tenant's changes that read before they write (the last-admin
/// guard), inside the caller's write transaction. SQLite's `BEGIN IMMEDIATE`
/// already holds the database's write lock; PostgreSQL locks the tenant row.
pub fn lock_tenant(conn: &mut DbConnection, tenant_id: &str) -> Result<(), Error> {
    match conn {
        DbConnection::Postgres(pg) => {
            diesel::sql_query("SELECT 1 FROM tenants WHERE id = $1 FOR UPDATE")
                .bind::<diesel::sql_types::Text, _>(tenant_id)
                .execute(pg)?;
        }
        DbConnection::Sqlite(_) => {}
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
