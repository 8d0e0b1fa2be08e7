-- Usage control (API.md section 9).
--
-- The configuration lives on the key and the user (JSON in text columns,
-- written only by keyward): `ratelimits` an array of {name, limit,
-- duration_ms}; `credits` NULL (unlimited) or {"refill": ..., "set_at": ms},
-- the instant the credits were last set, from which refills count;
-- `allowed_ips` canonical CIDRs. `usage_id` names the counters a key spends
-- from: its own id (NULL) until a rotation, which hands the old key's
-- counters (its credit balance and rate windows) to the new key.
ALTER TABLE api_keys ADD COLUMN ratelimits TEXT NOT NULL DEFAULT '[]';
ALTER TABLE api_keys ADD COLUMN credits TEXT;
ALTER TABLE api_keys ADD COLUMN allowed_ips TEXT NOT NULL DEFAULT '[]';
ALTER TABLE api_keys ADD COLUMN usage_id TEXT;
ALTER TABLE users ADD COLUMN ratelimits TEXT NOT NULL DEFAULT '[]';
ALTER TABLE users ADD COLUMN credits TEXT;

-- The counters' truth, outside the rows the change signal watches (a
-- reservation must not invalidate every instance's cache). Instances reserve
-- from them ahead of use (limiter.rs): `used`/`remaining` count what has been
-- handed out, `granted` is what the last reservation handed out.
-- owner_id: a key's usage_id (or id), or a user's id.
CREATE TABLE rate_windows (
    tenant_id TEXT NOT NULL,
    owner_id TEXT NOT NULL,
    name TEXT NOT NULL,
    duration_ms BIGINT NOT NULL,
    window_start BIGINT NOT NULL,
    window_end BIGINT NOT NULL,
    used BIGINT NOT NULL,
    granted BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, owner_id, name, duration_ms, window_start)
);
CREATE INDEX rate_windows_by_end ON rate_windows (window_end);

-- refilled_at: Unix milliseconds of the last refill, or of the moment the
-- credits were set when none has happened since; base: what the balance was
-- set or refilled to then; low_noted: the refilled_at of the period whose
-- key.credits_low webhook was sent (once per period).
CREATE TABLE credit_balances (
    tenant_id TEXT NOT NULL,
    owner_id TEXT NOT NULL,
    remaining BIGINT NOT NULL,
    refilled_at BIGINT NOT NULL,
    granted BIGINT NOT NULL DEFAULT 0,
    base BIGINT NOT NULL DEFAULT 0,
    low_noted BIGINT,
    PRIMARY KEY (tenant_id, owner_id)
);
