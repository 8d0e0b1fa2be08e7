DROP TRIGGER IF EXISTS api_keys_deleted ON api_keys;
DROP TRIGGER IF EXISTS api_keys_updated ON api_keys;
DROP TRIGGER IF EXISTS api_keys_inserted ON api_keys;
DROP TRIGGER IF EXISTS users_deleted ON users;
DROP TRIGGER IF EXISTS users_updated ON users;
DROP TRIGGER IF EXISTS users_inserted ON users;
DROP TRIGGER IF EXISTS tenants_deleted ON tenants;
DROP TRIGGER IF EXISTS tenants_updated ON tenants;
DROP TRIGGER IF EXISTS tenants_inserted ON tenants;
DROP FUNCTION keyward_row_changed();
DROP FUNCTION keyward_rows_changed();
DROP FUNCTION keyward_log_changes(TEXT[]);
DROP TABLE change_log;

-- Back to 000004's signal, as its up.sql made it.
-- The change signal: every committed write to a tenant, its users or its keys
-- bumps that tenant's version, whoever writes (keyward, another instance, the
-- CLI, an operator's SQL). Last-used times do not count: they change nothing
-- an instance caches. Running instances poll this small table to drop what
-- they cached for a tenant (src/changes.rs).
CREATE TABLE tenant_changes (
    tenant_id TEXT PRIMARY KEY,
    version   BIGINT NOT NULL
);

-- Inserts and deletes bump once per statement, from its transition table, so
-- a bulk write (a million keys in one statement) costs one upsert per tenant.
-- The functions keep the search_path they were created with, so a writer with
-- another one (an operator's psql) still bumps the right table.
CREATE FUNCTION keyward_note_rows() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    INSERT INTO tenant_changes AS c (tenant_id, version)
    SELECT DISTINCT tenant_id, 1 FROM keyward_rows
    ON CONFLICT (tenant_id) DO UPDATE SET version = c.version + 1;
    RETURN NULL;
END;
$$;

-- Updates (transition tables cannot go with a column list) and tenants bump
-- per row, but once per tenant per transaction: a transaction-local setting,
-- keyward.changed_<md5 of the tenant id>, remembers the tenants it bumped.
CREATE FUNCTION keyward_bump_tenant(tenant TEXT) RETURNS void LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    INSERT INTO tenant_changes AS c (tenant_id, version) VALUES (tenant, 1)
    ON CONFLICT (tenant_id) DO UPDATE SET version = c.version + 1;
    PERFORM set_config('keyward.changed_' || md5(tenant), '1', true);
END;
$$;

CREATE FUNCTION keyward_note_row() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    changed JSONB := CASE WHEN TG_OP = 'DELETE' THEN to_jsonb(OLD) ELSE to_jsonb(NEW) END;
    tenant TEXT := changed->>(CASE WHEN TG_TABLE_NAME = 'tenants' THEN 'id' ELSE 'tenant_id' END);
BEGIN
    IF current_setting('keyward.changed_' || md5(tenant), true) IS DISTINCT FROM '1' THEN
        EXECUTE format('SELECT %I.keyward_bump_tenant($1)', TG_TABLE_SCHEMA) USING tenant;
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER tenants_changed AFTER INSERT OR UPDATE OR DELETE ON tenants
    FOR EACH ROW EXECUTE FUNCTION keyward_note_row();

CREATE TRIGGER users_inserted AFTER INSERT ON users
    REFERENCING NEW TABLE AS keyward_rows
    FOR EACH STATEMENT EXECUTE FUNCTION keyward_note_rows();
CREATE TRIGGER users_deleted AFTER DELETE ON users
    REFERENCING OLD TABLE AS keyward_rows
    FOR EACH STATEMENT EXECUTE FUNCTION keyward_note_rows();
CREATE TRIGGER users_updated AFTER UPDATE ON users
    FOR EACH ROW EXECUTE FUNCTION keyward_note_row();

CREATE TRIGGER api_keys_inserted AFTER INSERT ON api_keys
    REFERENCING NEW TABLE AS keyward_rows
    FOR EACH STATEMENT EXECUTE FUNCTION keyward_note_rows();
CREATE TRIGGER api_keys_deleted AFTER DELETE ON api_keys
    REFERENCING OLD TABLE AS keyward_rows
    FOR EACH STATEMENT EXECUTE FUNCTION keyward_note_rows();
CREATE TRIGGER api_keys_updated
    AFTER UPDATE OF tenant_id, id, user_id, name, secret_hash, scopes, expires_at, revoked_at, meta
    ON api_keys
    FOR EACH ROW EXECUTE FUNCTION keyward_note_row();

-- Tenants that exist before the signal start at version 1.
INSERT INTO tenant_changes (tenant_id, version) SELECT id, 1 FROM tenants;
