-- The change signal, version 2: read by what changed, not by how many tenants
-- exist. 000004 gave each tenant its own counter, so a poll had to read every
-- tenant's row. Now a tenant's row carries the number of the database's last
-- change to it, one counter for all tenants: a poll asks, through the index,
-- only for the rows above the last number it saw (src/db.rs, read_changes),
-- and only when `PRAGMA data_version` says another connection committed.
-- SQLite has one writer at a time, so numbers are taken and committed in one
-- order and no change can hide behind a lower number.
--
-- A bulk write still bumps its tenant's one row: a million keys in one
-- statement or transaction leave one row per tenant. Last-used times do not
-- count: they change nothing an instance caches.
DROP TRIGGER tenants_changed_insert;
DROP TRIGGER tenants_changed_update;
DROP TRIGGER tenants_changed_delete;
DROP TRIGGER users_changed_insert;
DROP TRIGGER users_changed_update;
DROP TRIGGER users_changed_delete;
DROP TRIGGER api_keys_changed_insert;
DROP TRIGGER api_keys_changed_update;
DROP TRIGGER api_keys_changed_delete;

CREATE INDEX tenant_changes_by_version ON tenant_changes (version);
CREATE TRIGGER tenants_changed_insert AFTER INSERT ON tenants BEGIN
    INSERT INTO tenant_changes (tenant_id, version)
    VALUES (NEW.id, (SELECT coalesce(max(version), 0) + 1 FROM tenant_changes))
    ON CONFLICT (tenant_id) DO UPDATE
    SET version = (SELECT coalesce(max(version), 0) + 1 FROM tenant_changes);
END;
CREATE TRIGGER tenants_changed_update AFTER UPDATE ON tenants BEGIN
    INSERT INTO tenant_changes (tenant_id, version)
    VALUES (NEW.id, (SELECT coalesce(max(version), 0) + 1 FROM tenant_changes))
    ON CONFLICT (tenant_id) DO UPDATE
    SET version = (SELECT coalesce(max(version), 0) + 1 FROM tenant_changes);
END;
CREATE TRIGGER tenants_changed_delete AFTER DELETE ON tenants BEGIN
    INSERT INTO tenant_changes (tenant_id, version)
    VALUES (OLD.id, (SELECT coalesce(max(version), 0) + 1 FROM tenant_changes))
    ON CONFLICT (tenant_id) DO UPDATE
    SET version = (SELECT coalesce(max(version), 0) + 1 FROM tenant_changes);
END;
CREATE TRIGGER users_changed_insert AFTER INSERT ON users BEGIN
    INSERT INTO tenant_changes (tenant_id, version)
    VALUES (NEW.tenant_id, (SELECT coalesce(max(version), 0) + 1 FROM tenant_changes))
    ON CONFLICT (tenant_id) DO UPDATE
    SET version = (SELECT coalesce(max(version), 0) + 1 FROM tenant_changes);
END;
CREATE TRIGGER users_changed_update AFTER UPDATE ON users BEGIN
    INSERT INTO tenant_changes (tenant_id, version)
    VALUES (NEW.tenant_id, (SELECT coalesce(max(version), 0) + 1 FROM tenant_changes))
    ON CONFLICT (tenant_id) DO UPDATE
    SET version = (SELECT coalesce(max(version), 0) + 1 FROM tenant_changes);
END;
CREATE TRIGGER users_changed_delete AFTER DELETE ON users BEGIN
    INSERT INTO tenant_changes (tenant_id, version)
    VALUES (OLD.tenant_id, (SELECT coalesce(max(version), 0) + 1 FROM tenant_changes))
    ON CONFLICT (tenant_id) DO UPDATE
    SET version = (SELECT coalesce(max(version), 0) + 1 FROM tenant_changes);
END;
CREATE TRIGGER api_keys_changed_insert AFTER INSERT ON api_keys BEGIN
    INSERT INTO tenant_changes (tenant_id, version)
    VALUES (NEW.tenant_id, (SELECT coalesce(max(version), 0) + 1 FROM tenant_changes))
    ON CONFLICT (tenant_id) DO UPDATE
    SET version = (SELECT coalesce(max(version), 0) + 1 FROM tenant_changes);
END;
CREATE TRIGGER api_keys_changed_update AFTER UPDATE OF tenant_id, id, user_id, name, secret_hash, scopes, expires_at, revoked_at, meta
ON api_keys BEGIN
    INSERT INTO tenant_changes (tenant_id, version)
    VALUES (NEW.tenant_id, (SELECT coalesce(max(version), 0) + 1 FROM tenant_changes))
    ON CONFLICT (tenant_id) DO UPDATE
    SET version = (SELECT coalesce(max(version), 0) + 1 FROM tenant_changes);
END;
CREATE TRIGGER api_keys_changed_delete AFTER DELETE ON api_keys BEGIN
    INSERT INTO tenant_changes (tenant_id, version)
    VALUES (OLD.tenant_id, (SELECT coalesce(max(version), 0) + 1 FROM tenant_changes))
    ON CONFLICT (tenant_id) DO UPDATE
    SET version = (SELECT coalesce(max(version), 0) + 1 FROM tenant_changes);
END;
