-- A key's metadata: a JSON object (at most 4 KiB serialized) that the tenant
-- attaches to a key and verification hands back.
ALTER TABLE api_keys ADD COLUMN meta TEXT NOT NULL DEFAULT '{}';
