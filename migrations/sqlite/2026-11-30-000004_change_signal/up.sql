-- The change signal: every committed write to a tenant, its users or its keys
-- bumps that tenant's version, whoever writes (keyward, another instance, the
-- CLI, an operator's SQL). Last-used times do not count: they change nothing
-- an instance caches. Running instances poll this small table to drop what
-- they cached for a tenant (src/changes.rs).
CREATE TABLE tenant_changes (
    tenant_id TEXT PRIMARY KEY NOT NULL,
    version   BIGINT NOT NULL
);

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

-- Tenants that exist before the signal start at version 1.
INSERT INTO tenant_changes (tenant_id, version) SELECT id, 1 FROM tenants;
