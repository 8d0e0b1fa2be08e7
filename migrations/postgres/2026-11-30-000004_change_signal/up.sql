-- The change signal: every committed write to a tenant, its users or its keys
-- bumps that tenant's version, whoever writes (keyward, another instance, the
-- CLI, an operator's SQL). Last-used times do not count: they change nothing
-- an instance caches. Running instances poll this small table to drop what
-- they cached for a tenant (src/changes.rs).
CREATE TABLE tenant_changes (
    tenant_id TEXT PRIMARY KEY,
    version   BIGINT NOT NULL
);

-- The table is named through the trigger's own schema, so that a writer with
-- another search_path (an operator's psql) still bumps the right version.
CREATE FUNCTION keyward_note_change() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    changed JSONB;
BEGIN
    IF TG_OP = 'DELETE' THEN
        changed := to_jsonb(OLD);
    ELSE
        changed := to_jsonb(NEW);
    END IF;
    EXECUTE format(
        'INSERT INTO %I.tenant_changes AS c (tenant_id, version) VALUES ($1, 1)
         ON CONFLICT (tenant_id) DO UPDATE SET version = c.version + 1',
        TG_TABLE_SCHEMA)
    USING CASE WHEN TG_TABLE_NAME = 'tenants' THEN changed->>'id' ELSE changed->>'tenant_id' END;
    RETURN NULL;
END;
$$;

CREATE TRIGGER tenants_changed AFTER INSERT OR UPDATE OR DELETE ON tenants
    FOR EACH ROW EXECUTE FUNCTION keyward_note_change();
CREATE TRIGGER users_changed AFTER INSERT OR UPDATE OR DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION keyward_note_change();
CREATE TRIGGER api_keys_changed
    AFTER INSERT OR DELETE
       OR UPDATE OF tenant_id, id, user_id, name, secret_hash, scopes, expires_at, revoked_at, meta
    ON api_keys
    FOR EACH ROW EXECUTE FUNCTION keyward_note_change();

-- Tenants that exist before the signal start at version 1.
INSERT INTO tenant_changes (tenant_id, version) SELECT id, 1 FROM tenants;
