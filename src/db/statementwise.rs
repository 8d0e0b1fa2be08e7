//! PostgreSQL migrations applied one statement at a time.
//!
//! diesel sends a migration's `up.sql` whole, as one simple query. Citus
//! hands some DDL on a distributed table (`CREATE INDEX`, `DROP INDEX`,
//! renames, some `ALTER TABLE` forms) to the other nodes as the source text
//! it was given, and a text of several commands is refused there ("cannot
//! insert multiple commands into a prepared statement"): upgrading a
//! distributed database failed at the first migration that creates an index
//! on a table already distributed (000007's on `api_keys`, 000010's three).
//! Here each statement is sent alone, inside the one transaction that diesel
//! still opens, and records the migration in; on plain PostgreSQL nothing
//! changes but the number of round trips.

use diesel::connection::BoxableConnection;
use diesel::migration::{Migration, MigrationMetadata, MigrationName, MigrationSource, Result};
use diesel::pg::Pg;

/// `(directory, up.sql)` of every PostgreSQL migration, in order. The tests
/// check that it names exactly the migrations diesel embeds.
macro_rules! up_sql {
    ($($name:literal),* $(,)?) => {
        &[$((
            $name,
            include_str!(concat!("../../migrations/postgres/", $name, "/up.sql")),
        )),*]
    };
}

const UP_SQL: &[(&str, &str)] = up_sql![
    "2026-11-23-000001_core",
    "2026-11-23-000002_audit_events",
    "2026-11-30-000003_key_meta",
    "2026-11-30-000004_change_signal",
    "2026-12-07-000005_change_log",
    "2026-12-07-000006_scim",
    "2026-12-07-000007_webhooks",
    "2026-12-07-000008_usage_counts",
    "2026-12-07-000009_usage_control",
    "2026-12-07-000010_webhook_retention",
];

/// The migrations of `S`, each applied one statement at a time.
pub struct Statementwise<S>(pub S);

impl<S: MigrationSource<Pg>> MigrationSource<Pg> for Statementwise<S> {
    fn migrations(&self) -> Result<Vec<Box<dyn Migration<Pg>>>> {
        Ok(self
            .0
            .migrations()?
            .into_iter()
            .map(|inner| {
                let name = inner.name().to_string();
                let up = UP_SQL.iter().find(|(n, _)| *n == name).map(|(_, sql)| *sql);
                Box::new(OneByOne { inner, up }) as Box<dyn Migration<Pg>>
            })
            .collect())
    }
}

/// A migration whose `up` runs statement by statement; one without its text
/// in [`UP_SQL`] (which the tests rule out) runs whole, as diesel would.
struct OneByOne {
    inner: Box<dyn Migration<Pg>>,
    up: Option<&'static str>,
}

impl Migration<Pg> for OneByOne {
    fn run(&self, conn: &mut dyn BoxableConnection<Pg>) -> Result<()> {
        let Some(up) = self.up else {
            return self.inner.run(conn);
        };
        for statement in statements(up) {
            conn.batch_execute(statement)
                .map_err(|e| format!("Failed to run {} with: {e}", self.inner.name()))?;
        }
        Ok(())
    }

    fn revert(&self, conn: &mut dyn BoxableConnection<Pg>) -> Result<()> {
        self.inner.revert(conn)
    }

    fn metadata(&self) -> &dyn MigrationMetadata {
        self.inner.metadata()
    }

    fn name(&self) -> &dyn MigrationName {
        self.inner.name()
    }
}

/// The statements of a PostgreSQL script, split at the semicolons that end
/// them: not those inside quoted strings or identifiers (`'…'`, `E'…'`,
/// `"…"`), dollar quotes (`$$…$$`, `$tag$…$tag$`) or comments (`-- …`,
/// nested `/* … */`). A piece of only white space and comments is left out.
/// SQL-standard function bodies (`BEGIN ATOMIC … END`) hold semicolons of
/// their own and are not supported: the tests check that no migration has one.
pub fn statements(sql: &str) -> Vec<&str> {
    let b = sql.as_bytes();
    let mut pieces = Vec::new();
    let (mut start, mut i) = (0, 0);
    // Whether the current piece has anything but white space and comments.
    let mut code = false;
    while i < b.len() {
        match b[i] {
            b';' => {
                if code {
                    pieces.push(sql[start..i].trim());
                }
                (start, i, code) = (i + 1, i + 1, false);
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                i = b[i..]
                    .iter()
                    .position(|&c| c == b'\n')
                    .map_or(b.len(), |p| i + p + 1);
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let mut depth = 0;
                while i < b.len() {
                    if b[i..].starts_with(b"/*") {
                        (depth, i) = (depth + 1, i + 2);
                    } else if b[i..].starts_with(b"*/") {
                        (depth, i) = (depth - 1, i + 2);
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
            }
            b'\'' => {
                code = true;
                // E'…' (not the end of a longer word) takes backslash escapes.
                let escapes = i > 0
                    && matches!(b[i - 1], b'E' | b'e')
                    && !(i > 1 && identifier_char(b[i - 2]));
                i += 1;
                while i < b.len() {
                    match b[i] {
                        b'\\' if escapes => i += 2,
                        b'\'' if b.get(i + 1) == Some(&b'\'') => i += 2,
                        b'\'' => {
                            i += 1;
                            break;
                        }
                        _ => i += 1,
                    }
                }
            }
            b'"' => {
                code = true;
                i += 1;
                while i < b.len() {
                    match b[i] {
                        b'"' if b.get(i + 1) == Some(&b'"') => i += 2,
                        b'"' => {
                            i += 1;
                            break;
                        }
                        _ => i += 1,
                    }
                }
            }
            // A dollar quote cannot follow an identifier's character (`a$b` is a name).
            b'$' if !(i > 0 && identifier_char(b[i - 1])) => {
                code = true;
                match dollar_tag(&b[i..]) {
                    Some(len) => {
                        let tag = &b[i..i + len];
                        i += len;
                        i = b[i..]
                            .windows(len)
                            .position(|w| w == tag)
                            .map_or(b.len(), |p| i + p + len);
                    }
                    None => i += 1,
                }
            }
            c => {
                code |= !c.is_ascii_whitespace();
                i += 1;
            }
        }
    }
    if code {
        pieces.push(sql[start..].trim());
    }
    pieces
}

/// A byte that may continue an identifier: letters, digits, `_`, `$`, and
/// any byte of a non-ASCII character.
fn identifier_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || !c.is_ascii()
}

/// The length of the dollar quote's opening tag at the start of `b` (`$$`,
/// or `$` + a letter or `_` + letters, digits, `_` + `$`), if there is one:
/// `$1` is a parameter.
fn dollar_tag(b: &[u8]) -> Option<usize> {
    let body = b.get(1..)?;
    let len = body
        .iter()
        .position(|&c| !(c.is_ascii_alphanumeric() || c == b'_' || !c.is_ascii()))?;
    let starts_well = len == 0 || !body[0].is_ascii_digit();
    (body[len] == b'$' && starts_well).then_some(len + 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_split_at_the_semicolons_that_end_them() {
        let sql = "-- a comment; not a statement\n\
            CREATE TABLE t (a TEXT DEFAULT 'x;''y', \"b;\"\"c\" INT);\n\
            /* block; /* nested; */ still; */ INSERT INTO t VALUES (E'\\';', 1) ;\n\
            CREATE FUNCTION f() RETURNS int AS $$ SELECT 1; $$ LANGUAGE sql;\n\
            DO $body$ BEGIN PERFORM 1; RAISE NOTICE '$$'; END $body$;\n\
            PREPARE p AS SELECT $1; SELECT a$b FROM t;\n\
            ; -- only a comment ;\n\
            SELECT 'no semicolon at the end'";
        assert_eq!(
            statements(sql),
            vec![
                "-- a comment; not a statement\n\
                 CREATE TABLE t (a TEXT DEFAULT 'x;''y', \"b;\"\"c\" INT)",
                "/* block; /* nested; */ still; */ INSERT INTO t VALUES (E'\\';', 1)",
                "CREATE FUNCTION f() RETURNS int AS $$ SELECT 1; $$ LANGUAGE sql",
                "DO $body$ BEGIN PERFORM 1; RAISE NOTICE '$$'; END $body$",
                "PREPARE p AS SELECT $1",
                "SELECT a$b FROM t",
                "-- only a comment ;\nSELECT 'no semicolon at the end'",
            ]
        );
        assert_eq!(
            statements(" -- nothing\n /* at all */ ;\n"),
            Vec::<&str>::new()
        );
        // Unterminated quotes and comments end the script, not the program.
        assert_eq!(statements("SELECT 'open; "), vec!["SELECT 'open;"]);
        assert_eq!(statements("SELECT $x$ open; "), vec!["SELECT $x$ open;"]);
        assert_eq!(statements("SELECT 1 /* open; "), vec!["SELECT 1 /* open;"]);
    }

    #[test]
    fn every_migration_diesel_embeds_is_applied_statement_by_statement() {
        let embedded: Vec<String> =
            MigrationSource::<Pg>::migrations(&super::super::POSTGRES_MIGRATIONS)
                .unwrap()
                .iter()
                .map(|m| m.name().to_string())
                .collect();
        let listed: Vec<&str> = UP_SQL.iter().map(|(name, _)| *name).collect();
        assert_eq!(embedded, listed, "list every migration in UP_SQL");
        for (name, sql) in UP_SQL {
            assert!(!sql.contains("BEGIN ATOMIC"), "{name}: cannot be split");
            let pieces = statements(sql);
            assert!(!pieces.is_empty(), "{name}");
            assert!(pieces.iter().all(|p| !p.ends_with(';')), "{name}");
        }
        // The migration that failed on Citus: three commands, each alone.
        let retention = statements(UP_SQL[9].1);
        assert_eq!(retention.len(), 3);
        assert!(retention
            .iter()
            .all(|s| s.contains("CREATE INDEX") && s.matches("CREATE INDEX").count() == 1));
    }
}
