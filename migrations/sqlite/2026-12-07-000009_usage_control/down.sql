DROP TRIGGER api_keys_changed_update;
DROP TABLE credit_balances;
DROP TABLE rate_windows;
ALTER TABLE users DROP COLUMN credits;
ALTER TABLE users DROP COLUMN ratelimits;
ALTER TABLE api_keys DROP COLUMN usage_id;
ALTER TABLE api_keys DROP COLUMN allowed_ips;
ALTER TABLE api_keys DROP COLUMN credits;
ALTER TABLE api_keys DROP COLUMN ratelimits;
CREATE TRIGGER api_keys_changed_update AFTER UPDATE OF tenant_id, id, user_id, name, secret_hash, scopes, expires_at, revoked_at, meta
ON api_keys BEGIN
    INSERT INTO tenant_changes (tenant_id, version)
    VALUES (NEW.tenant_id, (SELECT coalesce(max(version), 0) + 1 FROM tenant_changes))
    ON CONFLICT (tenant_id) DO UPDATE
    SET version = (SELECT coalesce(max(version), 0) + 1 FROM tenant_changes);
END;
