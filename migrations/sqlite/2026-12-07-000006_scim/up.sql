-- SCIM provisioning (API.md section 12). external_id: the identity provider's
-- own id for the user (SCIM `externalId`), kept as given. deprovisioned_at:
-- when an identity provider deleted the user (SCIM DELETE): the user is then
-- inactive and hidden from SCIM, but kept (and listed by /v1/users); any
-- reactivation clears it.
ALTER TABLE users ADD COLUMN external_id TEXT;
ALTER TABLE users ADD COLUMN deprovisioned_at TIMESTAMP;
-- Identity providers look users up by externalId before creating them.
CREATE INDEX users_by_external_id ON users (tenant_id, external_id);
