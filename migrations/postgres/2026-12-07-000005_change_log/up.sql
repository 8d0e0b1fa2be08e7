-- The change signal, version 2: an append-only log read by transaction id,
-- so that what a poll costs follows what changed, not how many tenants exist
-- (000004 kept one row per tenant, and every poll read them all).
--
-- Every committed write to a tenant, its users or its keys appends a row
-- naming the tenant (NULL: every tenant, for a statement that touched more
-- than 100), once per tenant per transaction. Statement triggers write it on
-- plain PostgreSQL, so an operator's SQL counts too; keyward also writes it
-- itself in each of its write transactions (db::tenant_write), which is all
-- there is on Citus, where triggers cannot run in the shards and this table
-- stays a plain table on the coordinator. Last-used times do not count: they
-- change nothing an instance caches.
--
-- `tx` is the writing transaction's id. A poll reads the rows whose `tx` is
-- at or above the oldest transaction still running at its previous poll
-- (src/db.rs, read_changes): a sequence alone cannot be trusted, since
-- transactions commit in another order than they take numbers.
DROP TRIGGER api_keys_updated ON api_keys;
DROP TRIGGER api_keys_deleted ON api_keys;
DROP TRIGGER api_keys_inserted ON api_keys;
DROP TRIGGER users_updated ON users;
DROP TRIGGER users_deleted ON users;
DROP TRIGGER users_inserted ON users;
DROP TRIGGER tenants_changed ON tenants;
DROP FUNCTION keyward_note_row();
DROP FUNCTION keyward_bump_tenant(TEXT);
DROP FUNCTION keyward_note_rows();
DROP TABLE tenant_changes;

CREATE TABLE change_log (
    seq       BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- NULL: every tenant may have changed.
    tenant_id TEXT,
    tx        BIGINT NOT NULL,
    at        TIMESTAMP NOT NULL DEFAULT (clock_timestamp() AT TIME ZONE 'UTC')
);
CREATE INDEX change_log_by_tx ON change_log (tx, tenant_id);

-- Appends the tenants (once each per transaction); more than 100 at once
-- become one row for every tenant.
CREATE FUNCTION keyward_log_changes(tenants TEXT[]) RETURNS void LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
DECLARE
    me BIGINT := pg_current_xact_id()::text::bigint;
BEGIN
    IF tenants IS NULL OR cardinality(tenants) = 0
       OR EXISTS (SELECT 1 FROM change_log WHERE tx = me AND tenant_id IS NULL) THEN
        RETURN;
    END IF;
    IF cardinality(tenants) > 100 THEN
        tenants := ARRAY[NULL::TEXT];
    END IF;
    INSERT INTO change_log (tenant_id, tx)
    SELECT DISTINCT t, me FROM unnest(tenants) AS t
    WHERE NOT EXISTS (
        SELECT 1 FROM change_log c WHERE c.tx = me AND c.tenant_id IS NOT DISTINCT FROM t
    );
END;
$$;

-- Inserts and deletes: one statement trigger per table and event, from its
-- transition table, so a bulk write costs one lookup per tenant it touched.
-- TG_ARGV[0] names the tenant column.
CREATE FUNCTION keyward_rows_changed() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
DECLARE
    tenants TEXT[];
BEGIN
    IF TG_OP = 'INSERT' THEN
        EXECUTE format('SELECT array_agg(DISTINCT %I) FROM keyward_new', TG_ARGV[0]) INTO tenants;
    ELSE
        EXECUTE format('SELECT array_agg(DISTINCT %I) FROM keyward_old', TG_ARGV[0]) INTO tenants;
    END IF;
    PERFORM keyward_log_changes(tenants);
    RETURN NULL;
END;
$$;

-- Updates: a row trigger (transition tables cannot tell an update that
-- changed something from one that only touched the last-used time), run
-- before the row is written so that the next row's WHEN sees what it noted,
-- entered
-- only for rows whose columns other than `last_used_at` changed (the WHEN
-- clause, evaluated without entering PL/pgSQL, so the last-used flush costs
-- little here; a new column counts without a change to this migration), and
-- not again for the tenant it noted last in this transaction (one setting,
-- local to the transaction, so a bulk update of one tenant's rows notes once).
CREATE FUNCTION keyward_row_changed() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
DECLARE
    old_tenant TEXT := to_jsonb(OLD) ->> TG_ARGV[0];
    new_tenant TEXT := to_jsonb(NEW) ->> TG_ARGV[0];
BEGIN
    PERFORM keyward_log_changes(ARRAY[old_tenant, new_tenant]);
    PERFORM set_config('keyward.noted', old_tenant || '/' || new_tenant, true);
    RETURN NEW;
END;
$$;

CREATE TRIGGER tenants_inserted AFTER INSERT ON tenants
    REFERENCING NEW TABLE AS keyward_new
    FOR EACH STATEMENT EXECUTE FUNCTION keyward_rows_changed('id');
CREATE TRIGGER tenants_updated BEFORE UPDATE ON tenants
    FOR EACH ROW
    WHEN (current_setting('keyward.noted', true) IS DISTINCT FROM OLD.id || '/' || NEW.id
          AND OLD.* IS DISTINCT FROM NEW.*)
    EXECUTE FUNCTION keyward_row_changed('id');
CREATE TRIGGER tenants_deleted AFTER DELETE ON tenants
    REFERENCING OLD TABLE AS keyward_old
    FOR EACH STATEMENT EXECUTE FUNCTION keyward_rows_changed('id');

CREATE TRIGGER users_inserted AFTER INSERT ON users
    REFERENCING NEW TABLE AS keyward_new
    FOR EACH STATEMENT EXECUTE FUNCTION keyward_rows_changed('tenant_id');
CREATE TRIGGER users_updated BEFORE UPDATE ON users
    FOR EACH ROW
    WHEN (current_setting('keyward.noted', true) IS DISTINCT FROM OLD.tenant_id || '/' || NEW.tenant_id
          AND OLD.* IS DISTINCT FROM NEW.*)
    EXECUTE FUNCTION keyward_row_changed('tenant_id');
CREATE TRIGGER users_deleted AFTER DELETE ON users
    REFERENCING OLD TABLE AS keyward_old
    FOR EACH STATEMENT EXECUTE FUNCTION keyward_rows_changed('tenant_id');

CREATE TRIGGER api_keys_inserted AFTER INSERT ON api_keys
    REFERENCING NEW TABLE AS keyward_new
    FOR EACH STATEMENT EXECUTE FUNCTION keyward_rows_changed('tenant_id');
CREATE TRIGGER api_keys_updated BEFORE UPDATE ON api_keys
    FOR EACH ROW
    WHEN (current_setting('keyward.noted', true) IS DISTINCT FROM OLD.tenant_id || '/' || NEW.tenant_id
          AND (to_jsonb(OLD) - 'last_used_at') IS DISTINCT FROM (to_jsonb(NEW) - 'last_used_at'))
    EXECUTE FUNCTION keyward_row_changed('tenant_id');
CREATE TRIGGER api_keys_deleted AFTER DELETE ON api_keys
    REFERENCING OLD TABLE AS keyward_old
    FOR EACH STATEMENT EXECUTE FUNCTION keyward_rows_changed('tenant_id');
