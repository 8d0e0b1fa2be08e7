#!/usr/bin/env python3
"""Seeds a keyward database for bench/run (Python 3.11 standard library only).

1. `keyward migrate` creates the schema; `keyward bootstrap` the callers' tenant.
2. Caller identities through the real CLI (`user create`, `key create --json`), so
   their secrets are known: CALLERS users of the tenant `bench`, each with
   KEYS_PER_CALLER keys (scopes public_api + user_key_management); the hot path
   lists a caller's own keys, so it answers KEYS_PER_CALLER keys.
3. Filler straight in SQL, in one transaction, generated inside the database
   (SQLite: a recursive CTE; PostgreSQL: generate_series): TENANTS tenants in
   all (`bench` is one of them), USERS users spread over the tenants
   round-robin, KEYS keys spread over those users round-robin. api_keys'
   indexes are built after its rows, then the foreign keys checked once.

Filler rows follow migrations/*/up.sql exactly: UUID-shaped text ids (sequential,
like UUIDv7 ones), UTC timestamps 'YYYY-MM-DD HH:MM:SS', JSON text arrays for
roles and scopes, and a unique 43-character stand-in for secret_hash (the real
one is base64url SHA-256; no secret hashes to it, so filler keys never
authenticate).

Writes the callers, one per line, `tenant<TAB>user_id<TAB>secret`, to --callers-out,
and prints how long each step took.
"""

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

TENANT = "bench"
# UUID-shaped ids for filler rows; one family per table, numbered in hex.
TENANT_ID = "bbbbbbbb-0000-4000-8000-%012x"
USER_ID = "bbbbbbbb-0001-4000-8000-%012x"
KEY_ID = "bbbbbbbb-0002-4000-8000-%012x"
SECRET_HASH = "filler%037d"  # 43 characters, as a real base64url SHA-256
FILLER_EPOCH = 1767225600  # 2026-01-01 00:00:00 UTC: filler keys are created from then on, 1 per second


def cli(binary, env, *args):
    """Runs `keyward <args> --json` and returns its JSON output."""
    done = subprocess.run(
        [binary, *args, "--json"], env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        sys.exit(f"seed: keyward {' '.join(args)} failed: {done.stdout}{done.stderr}")
    return json.loads(done.stdout)


def create_callers(binary, env, callers, keys_per_caller, jobs):
    """Caller users and their keys, through the CLI; returns [(user_id, secret)]."""
    cli(binary, env, "bootstrap", "--tenant", TENANT, "--email", "admin@bench.test")

    def user(i):
        return cli(binary, env, "user", "create", "--tenant", TENANT,
                   "--email", f"caller-{i}@bench.test")["id"]

    def key(job):
        user_id, j = job
        out = cli(binary, env, "key", "create", "--tenant", TENANT, "--user", user_id,
                  "--name", f"caller-key-{j}",
                  "--scope", "public_api", "--scope", "user_key_management")
        return user_id, out["key"]

    with ThreadPoolExecutor(jobs) as pool:
        user_ids = list(pool.map(user, range(callers)))
        jobs = [(u, j) for u in user_ids for j in range(keys_per_caller)]
        return list(pool.map(key, jobs))


def filler_sqlite(path, tenants, users, keys, expires_at):
    db = sqlite3.connect(path, isolation_level=None)
    # A throwaway database, and nobody else connected: no fsync, no journal (so
    # the pages are written once, not to the WAL and then again), a big page
    # cache for the index updates. WAL, as keyward sets it, is restored below.
    db.executescript(
        "PRAGMA synchronous = OFF; PRAGMA cache_size = -524288; PRAGMA journal_mode = OFF; PRAGMA threads = 2;"
    )
    (bench_id,) = db.execute("SELECT id FROM tenants WHERE name = ?", (TENANT,)).fetchone()
    params = {
        "tenants": tenants, "users": users, "keys": keys, "bench": bench_id,
        "tenant_fmt": TENANT_ID, "user_fmt": USER_ID, "key_fmt": KEY_ID,
        "hash_fmt": SECRET_HASH, "epoch": FILLER_EPOCH, "expires": expires_at,
    }
    # The tenant of filler user u is u % tenants; number 0 is `bench` itself.
    tenant_of = "CASE WHEN {u} % :tenants = 0 THEN :bench ELSE printf(:tenant_fmt, {u} % :tenants) END"
    db.execute("BEGIN")
    # api_keys' secondary indexes are dropped and built again after the insert
    # (a sort is faster than a million index updates), from their own definitions.
    indexes = db.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'api_keys' AND sql IS NOT NULL"
    ).fetchall()
    for name, _ in indexes:
        db.execute(f'DROP INDEX "{name}"')
    db.execute(
        """WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < :tenants)
           INSERT INTO tenants (id, name, max_key_lifetime_days, created_at)
           SELECT printf(:tenant_fmt, i), 'bench-filler-' || i, 365, datetime(:epoch, 'unixepoch')
           FROM n WHERE :tenants > 1""",
        params,
    )
    db.execute(
        f"""WITH RECURSIVE n(u) AS (SELECT 0 UNION ALL SELECT u + 1 FROM n WHERE u + 1 < :users)
            INSERT INTO users (tenant_id, id, email, name, roles, active, created_at)
            SELECT {tenant_of.format(u='u')}, printf(:user_fmt, u),
                   'filler-' || u || '@bench.test', 'Filler ' || u,
                   '["Default users"]', 1, datetime(:epoch, 'unixepoch')
            FROM n""",
        params,
    )
    db.execute(
        f"""WITH RECURSIVE n(k) AS (SELECT 0 UNION ALL SELECT k + 1 FROM n WHERE k + 1 < :keys)
            INSERT INTO api_keys (tenant_id, id, user_id, name, secret_hash, scopes,
                                  expires_at, created_at)
            SELECT {tenant_of.format(u='(k % :users)')}, printf(:key_fmt, k),
                   printf(:user_fmt, k % :users), 'filler-key', printf(:hash_fmt, k),
                   '["public_api"]', :expires, datetime(:epoch + k, 'unixepoch')
            FROM n WHERE :keys > 0""",
        params,
    )
    for _, sql in indexes:
        db.execute(sql)
    # This connection leaves foreign keys off (SQLite's default), so check them once.
    if db.execute("PRAGMA foreign_key_check").fetchone():
        sys.exit("seed: filler rows break a foreign key")
    db.execute("COMMIT")
    db.execute("PRAGMA journal_mode = WAL")
    db.close()


def filler_postgres(url, tenants, users, keys, expires_at):
    # As pg_restore does it: api_keys' constraints and indexes are dropped, the
    # rows inserted, and the constraints and indexes made again from their own
    # definitions (read from the catalog, so whatever the migrations made comes
    # back as it was). Building an index by sorting is much faster than a
    # million index updates and foreign-key lookups, and re-adding the
    # constraints checks every row: ids and hashes unique, users existing.
    sql = """
\\set ON_ERROR_STOP 1
SET synchronous_commit = off;
SET maintenance_work_mem = '256MB';
BEGIN;
SELECT id AS bench FROM tenants WHERE name = :'bench_name' \\gset
-- Constraints on api_keys and those pointing at it: foreign keys go first and come back last.
SELECT string_agg(format('ALTER TABLE %s DROP CONSTRAINT %I', conrelid::regclass, conname), '; '
                  ORDER BY contype = 'f' DESC) AS drop_constraints,
       string_agg(format('ALTER TABLE %s ADD CONSTRAINT %I %s', conrelid::regclass, conname,
                         pg_get_constraintdef(oid)), '; ' ORDER BY contype = 'f') AS add_constraints
FROM pg_constraint
WHERE (conrelid = 'api_keys'::regclass OR confrelid = 'api_keys'::regclass) AND contype IN ('p', 'u', 'f') \\gset
-- The other indexes of api_keys (those of constraints go with them).
SELECT string_agg(format('DROP INDEX %I', indexname), '; ') AS drop_indexes,
       string_agg(indexdef, '; ') AS create_indexes
FROM pg_indexes i
WHERE tablename = 'api_keys' AND schemaname = current_schema()
  AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname) \\gset
:drop_indexes;
:drop_constraints;
INSERT INTO tenants (id, name, max_key_lifetime_days, created_at)
SELECT (:'tenant_prefix' || lpad(to_hex(i), 12, '0')), 'bench-filler-' || i, 365, to_timestamp(:epoch) AT TIME ZONE 'UTC'
FROM generate_series(1, :tenants - 1) AS i;
INSERT INTO users (tenant_id, id, email, name, roles, active, created_at)
SELECT CASE WHEN u % :tenants = 0 THEN :'bench' ELSE (:'tenant_prefix' || lpad(to_hex(u % :tenants), 12, '0')) END,
       (:'user_prefix' || lpad(to_hex(u), 12, '0')), 'filler-' || u || '@bench.test', 'Filler ' || u,
       '["Default users"]', TRUE, to_timestamp(:epoch) AT TIME ZONE 'UTC'
FROM generate_series(0, :users - 1) AS u;
INSERT INTO api_keys (tenant_id, id, user_id, name, secret_hash, scopes, expires_at, created_at)
SELECT CASE WHEN (k % :users) % :tenants = 0 THEN :'bench' ELSE (:'tenant_prefix' || lpad(to_hex((k % :users) % :tenants), 12, '0')) END,
       (:'key_prefix' || lpad(to_hex(k), 12, '0')), (:'user_prefix' || lpad(to_hex(k % :users), 12, '0')), 'filler-key',
       'filler' || lpad(k::text, 37, '0'), '["public_api"]', :'expires',
       to_timestamp(:epoch + k) AT TIME ZONE 'UTC'
FROM generate_series(0, :keys - 1) AS k;
:add_constraints;
:create_indexes;
COMMIT;
-- Statistics for the planner and the visibility map, as autovacuum would soon
-- make them, and the bulk load's pages written out now: neither autovacuum nor
-- the checkpoint of a million fresh rows then runs during the measurement.
VACUUM (ANALYZE);
CHECKPOINT;
"""
    variables = {
        "bench_name": TENANT, "tenants": tenants, "users": users, "keys": keys,
        # UUID-shaped ids as in filler_sqlite: <prefix><12 hex digits>.
        "tenant_prefix": TENANT_ID[:-5], "user_prefix": USER_ID[:-5], "key_prefix": KEY_ID[:-5],
        "epoch": FILLER_EPOCH, "expires": expires_at,
    }
    args = ["psql", "-X", "-q", url]
    for name, value in variables.items():
        args += ["-v", f"{name}={value}"]
    done = subprocess.run(args, input=sql, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"seed: psql failed:\n{done.stdout}{done.stderr}")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bin", required=True, help="the keyward binary")
    p.add_argument("--url", required=True, help="KEYWARD_DATABASE_URL")
    p.add_argument("--tenants", type=int, default=10)
    p.add_argument("--users", type=int, default=1000)
    p.add_argument("--keys", type=int, default=1000)
    p.add_argument("--callers", type=int, default=50)
    p.add_argument("--keys-per-caller", type=int, default=10)
    p.add_argument("--jobs", type=int, default=4, help="CLI commands run at once")
    p.add_argument("--callers-out", required=True)
    a = p.parse_args()
    if a.tenants < 1 or a.users < 1 or a.keys < 0:
        sys.exit("seed: need at least 1 tenant and 1 user, and 0 or more keys")

    env = dict(os.environ, KEYWARD_DATABASE_URL=a.url, RUST_LOG="warn")
    started = time.monotonic()
    cli(a.bin, env, "migrate")
    callers = create_callers(a.bin, env, a.callers, a.keys_per_caller, a.jobs)
    with open(a.callers_out, "w") as out:
        for user_id, secret in callers:
            out.write(f"{TENANT}\t{user_id}\t{secret}\n")
    cli_done = time.monotonic()

    expires_at = (datetime.now(timezone.utc) + timedelta(days=365)).strftime("%Y-%m-%d 00:00:00")
    if a.url.startswith("sqlite://"):
        filler_sqlite(a.url.removeprefix("sqlite://"), a.tenants, a.users, a.keys, expires_at)
    else:
        filler_postgres(a.url, a.tenants, a.users, a.keys, expires_at)
    finished = time.monotonic()

    print(
        f"seeded {a.keys} filler keys ({a.tenants} tenants, {a.users} users) in "
        f"{finished - cli_done:.1f}s; {len(callers)} caller keys of {a.callers} users "
        f"through the CLI in {cli_done - started:.1f}s; total {finished - started:.1f}s"
    )


if __name__ == "__main__":
    main()
