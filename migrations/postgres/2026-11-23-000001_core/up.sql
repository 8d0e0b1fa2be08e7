-- Every tenant-owned table leads its primary key, unique constraints and foreign
-- keys with tenant_id, so the database cannot hold a cross-tenant reference.
-- Ids are UUID text; timestamps are UTC.

CREATE TABLE tenants (
    id                    TEXT PRIMARY KEY,
    name                  TEXT NOT NULL UNIQUE,
    max_key_lifetime_days INTEGER NOT NULL DEFAULT 365,
    created_at            TIMESTAMP NOT NULL,
    updated_at            TIMESTAMP
);

CREATE TABLE users (
    tenant_id  TEXT NOT NULL REFERENCES tenants (id),
    id         TEXT NOT NULL,
    email      TEXT NOT NULL,
    name       TEXT NOT NULL,
    roles      TEXT NOT NULL DEFAULT '[]',
    active     BOOLEAN NOT NULL DEFAULT TRUE,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, email)
);

CREATE TABLE api_keys (
    tenant_id    TEXT NOT NULL,
    id           TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    name         TEXT NOT NULL,
    secret_hash  TEXT NOT NULL,
    scopes       TEXT NOT NULL,
    expires_at   TIMESTAMP NOT NULL,
    created_at   TIMESTAMP NOT NULL,
    updated_at   TIMESTAMP,
    revoked_at   TIMESTAMP,
    last_used_at TIMESTAMP,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, secret_hash),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id)
);

-- Per-user listing in creation order, and the tenant-wide listing.
CREATE INDEX api_keys_by_user ON api_keys (tenant_id, user_id, created_at, id);
CREATE INDEX api_keys_by_created ON api_keys (tenant_id, created_at, id);
