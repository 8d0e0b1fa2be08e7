-- The audit log: one row per key or user lifecycle event, written in the same
-- transaction as the change it records.
CREATE TABLE audit_events (
    tenant_id      TEXT NOT NULL REFERENCES tenants (id),
    id             TEXT NOT NULL,
    at             TIMESTAMP NOT NULL,
    action         TEXT NOT NULL,
    -- Null when the change came from the CLI rather than through a key.
    actor_user_id  TEXT,
    actor_key_id   TEXT,
    target_id      TEXT NOT NULL,
    -- The user the target is or belongs to, for filtering by user.
    target_user_id TEXT NOT NULL,
    new_key_id     TEXT,
    request_id     TEXT,
    ip             TEXT,
    PRIMARY KEY (tenant_id, id)
);

CREATE INDEX audit_events_by_time ON audit_events (tenant_id, at, id);
CREATE INDEX audit_events_by_actor ON audit_events (tenant_id, actor_user_id, at, id);
CREATE INDEX audit_events_by_target_user ON audit_events (tenant_id, target_user_id, at, id);
-- Finding keys by state and age for an administrator's filters.
CREATE INDEX api_keys_by_expiry ON api_keys (tenant_id, expires_at);
