-- Back to 000004's per-tenant counters: its triggers, bumping by one.
DROP INDEX tenant_changes_by_version;
DROP TRIGGER tenants_changed_insert;
DROP TRIGGER tenants_changed_update;
DROP TRIGGER tenants_changed_delete;
DROP TRIGGER users_changed_insert;
DROP TRIGGER users_changed_update;
DROP TRIGGER users_changed_delete;
DROP TRIGGER api_keys_changed_insert;
DROP TRIGGER api_keys_changed_update;
DROP TRIGGER api_keys_changed_delete;
CREATE TRIGGER tenants_changed_insert AFTER INSERT ON tenants BEGIN
    INSERT INTO tenant_changes (tenant_id, version) VALUES (NEW.id, 1)
    ON CONFLICT (tenant_id) DO UPDATE SET version = tenant_changes.version + 1;
END;
CREATE TRIGGER tenants_changed_update AFTER UPDATE ON tenants BEGIN
    INSERT INTO tenant_changes (tenant_id, version) VALUES (NEW.id, 1)
    ON CONFLICT (tenant_id) DO UPDATE SET version = tenant_changes.version + 1;
END;
CREATE TRIGGER tenants_changed_delete AFTER DELETE ON tenants BEGIN
    INSERT INTO tenant_changes (tenant_id, version) VALUES (OLD.id, 1)
    ON CONFLICT (tenant_id) DO UPDATE SET version = tenant_changes.version + 1;
END;

CREATE TRIGGER users_changed_insert AFTER INSERT ON users BEGIN
    INSERT INTO tenant_changes (tenant_id, version) VALUES (NEW.tenant_id, 1)
    ON CONFLICT (tenant_id) DO UPDATE SET version = tenant_changes.version + 1;
END;
CREATE TRIGGER users_changed_update AFTER UPDATE ON users BEGIN
    INSERT INTO tenant_changes (tenant_id, version) VALUES (NEW.tenant_id, 1)
    ON CONFLICT (tenant_id) DO UPDATE SET version = tenant_changes.version + 1;
END;
CREATE TRIGGER users_changed_delete AFTER DELETE ON users BEGIN
    INSERT INTO tenant_changes (tenant_id, version) VALUES (OLD.tenant_id, 1)
    ON CONFLICT (tenant_id) DO UPDATE SET version = tenant_changes.version + 1;
END;

CREATE TRIGGER api_keys_changed_insert AFTER INSERT ON api_keys BEGIN
    INSERT INTO tenant_changes (tenant_id, version) VALUES (NEW.tenant_id, 1)
    ON CONFLICT (tenant_id) DO UPDATE SET version = tenant_changes.version + 1;
END;
CREATE TRIGGER api_keys_changed_update
AFTER UPDATE OF tenant_id, id, user_id, name, secret_hash, scopes, expires_at, revoked_at, meta
ON api_keys BEGIN
    INSERT INTO tenant_changes (tenant_id, version) VALUES (NEW.tenant_id, 1)
    ON CONFLICT (tenant_id) DO UPDATE SET version = tenant_changes.version + 1;
END;
CREATE TRIGGER api_keys_changed_delete AFTER DELETE ON api_keys BEGIN
    INSERT INTO tenant_changes (tenant_id, version) VALUES (OLD.tenant_id, 1)
    ON CONFLICT (tenant_id) DO UPDATE SET version = tenant_changes.version + 1;
END;

