-- Verifications counted per key, by outcome (API.md section 10), in three
-- resolutions: minutes (written by every instance's flusher, kept 48 hours),
-- hours and days (rolled up from them by a background job, kept 90 days and
-- 2 years). `bucket` is the Unix time, in seconds, of the bucket's start.
-- No foreign key to api_keys: a flush must never fail on a key revoked or
-- moved meanwhile, and the counts outlive nothing but their retention.
CREATE TABLE usage_minutes (
    tenant_id TEXT NOT NULL,
    key_id TEXT NOT NULL,
    bucket BIGINT NOT NULL,
    valid BIGINT NOT NULL DEFAULT 0,
    forbidden BIGINT NOT NULL DEFAULT 0,
    rate_limited BIGINT NOT NULL DEFAULT 0,
    usage_exceeded BIGINT NOT NULL DEFAULT 0,
    invalid BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, key_id, bucket)
);
CREATE INDEX usage_minutes_tenant_bucket ON usage_minutes (tenant_id, bucket);
CREATE INDEX usage_minutes_bucket ON usage_minutes (bucket);

CREATE TABLE usage_hours (
    tenant_id TEXT NOT NULL,
    key_id TEXT NOT NULL,
    bucket BIGINT NOT NULL,
    valid BIGINT NOT NULL DEFAULT 0,
    forbidden BIGINT NOT NULL DEFAULT 0,
    rate_limited BIGINT NOT NULL DEFAULT 0,
    usage_exceeded BIGINT NOT NULL DEFAULT 0,
    invalid BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, key_id, bucket)
);
CREATE INDEX usage_hours_tenant_bucket ON usage_hours (tenant_id, bucket);
CREATE INDEX usage_hours_bucket ON usage_hours (bucket);

CREATE TABLE usage_days (
    tenant_id TEXT NOT NULL,
    key_id TEXT NOT NULL,
    bucket BIGINT NOT NULL,
    valid BIGINT NOT NULL DEFAULT 0,
    forbidden BIGINT NOT NULL DEFAULT 0,
    rate_limited BIGINT NOT NULL DEFAULT 0,
    usage_exceeded BIGINT NOT NULL DEFAULT 0,
    invalid BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, key_id, bucket)
);
CREATE INDEX usage_days_tenant_bucket ON usage_days (tenant_id, bucket);
CREATE INDEX usage_days_bucket ON usage_days (bucket);

-- The roll-up job's progress, one row per target resolution (not tenant
-- data: one job serves every tenant). Every bucket before `done_until` has
-- been rolled up; `claimed_until` keeps two instances from rolling up at once.
CREATE TABLE usage_rollups (
    period TEXT NOT NULL PRIMARY KEY,
    done_until BIGINT NOT NULL,
    claimed_until BIGINT NOT NULL
);
INSERT INTO usage_rollups (period, done_until, claimed_until) VALUES ('hour', 0, 0), ('day', 0, 0);
