DROP INDEX users_by_external_id;
ALTER TABLE users DROP COLUMN deprovisioned_at;
ALTER TABLE users DROP COLUMN external_id;
