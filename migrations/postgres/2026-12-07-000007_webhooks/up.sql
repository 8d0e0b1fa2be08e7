-- Webhooks (README "Webhooks"): a tenant's endpoints, the outbox of events
-- written in the transaction of the change they report, one delivery per
-- (event, endpoint) and the log of every attempt. No foreign keys: an
-- endpoint's deliveries and attempts are deleted with it, in one transaction
-- (and the tables can be distributed on Citus as they are).

CREATE TABLE webhook_endpoints (
    tenant_id             TEXT NOT NULL,
    id                    TEXT NOT NULL,
    url                   TEXT NOT NULL,
    -- JSON array of event types, or ["*"].
    events                TEXT NOT NULL,
    description           TEXT NOT NULL DEFAULT '',
    enabled               BOOLEAN NOT NULL,
    -- The signing secret, sealed with the operator's key when one is configured.
    secret                TEXT NOT NULL,
    -- After a rotation, the old secret, which also signs until previous_until.
    previous_secret       TEXT,
    previous_until        TIMESTAMP,
    -- The first failed attempt since the last delivered one.
    failing_since         TIMESTAMP,
    -- Which instance sends to it: the one whose lease has not run out.
    lease_until           TIMESTAMP,
    created_at            TIMESTAMP NOT NULL,
    updated_at            TIMESTAMP,
    PRIMARY KEY (tenant_id, id)
);

CREATE INDEX webhook_endpoints_enabled ON webhook_endpoints (tenant_id, enabled);

CREATE TABLE webhook_events (
    tenant_id  TEXT NOT NULL,
    id         TEXT NOT NULL,
    type       TEXT NOT NULL,
    -- The exact body sent, signed as it is stored.
    body       TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

CREATE TABLE webhook_deliveries (
    tenant_id       TEXT NOT NULL,
    id              TEXT NOT NULL,
    endpoint_id     TEXT NOT NULL,
    event_id        TEXT NOT NULL,
    -- Attempts made so far.
    attempts        INTEGER NOT NULL DEFAULT 0,
    -- pending, delivered, failed (given up) or cancelled (endpoint disabled).
    state           TEXT NOT NULL,
    -- When the next attempt is due; null once the delivery is settled.
    next_attempt_at TIMESTAMP,
    created_at      TIMESTAMP NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

-- The sender's one poll, across tenants.
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
    WHERE next_attempt_at IS NOT NULL;
CREATE INDEX webhook_deliveries_by_endpoint
    ON webhook_deliveries (tenant_id, endpoint_id, next_attempt_at, id);

CREATE TABLE webhook_attempts (
    tenant_id       TEXT NOT NULL,
    id              TEXT NOT NULL,
    endpoint_id     TEXT NOT NULL,
    delivery_id     TEXT NOT NULL,
    event_id        TEXT NOT NULL,
    type            TEXT NOT NULL,
    attempt         INTEGER NOT NULL,
    status_code     INTEGER,
    error           TEXT,
    at              TIMESTAMP NOT NULL,
    next_attempt_at TIMESTAMP,
    PRIMARY KEY (tenant_id, id)
);

CREATE INDEX webhook_attempts_by_endpoint ON webhook_attempts (tenant_id, endpoint_id, id);

-- Time-driven notices already recorded: one row per (key, notice), claimed
-- with INSERT ... ON CONFLICT DO NOTHING so each is recorded once.
CREATE TABLE key_notices (
    tenant_id TEXT NOT NULL,
    key_id    TEXT NOT NULL,
    -- "expiring:<days>" or "expired".
    notice    TEXT NOT NULL,
    at        TIMESTAMP NOT NULL,
    PRIMARY KEY (tenant_id, key_id, notice)
);

-- The expiry sweep looks across tenants by expiry instant.
CREATE INDEX api_keys_by_expiry_instant ON api_keys (expires_at);

-- On Citus, once users is distributed, distributed by tenant beside it
-- (migrations/README.md); else `keyward migrate --citus` does it (CITUS_LAYOUT).
DO $$
BEGIN
    -- Nested: pg_dist_partition exists only with the extension.
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus') THEN
    IF EXISTS (SELECT 1 FROM pg_dist_partition WHERE logicalrelid = to_regclass('users')) THEN
        PERFORM create_distributed_table('webhook_endpoints', 'tenant_id', colocate_with => 'users');
        PERFORM create_distributed_table('webhook_events', 'tenant_id', colocate_with => 'users');
        PERFORM create_distributed_table('webhook_deliveries', 'tenant_id', colocate_with => 'users');
        PERFORM create_distributed_table('webhook_attempts', 'tenant_id', colocate_with => 'users');
        PERFORM create_distributed_table('key_notices', 'tenant_id', colocate_with => 'users');
    END IF;
    END IF;
END
$$;
