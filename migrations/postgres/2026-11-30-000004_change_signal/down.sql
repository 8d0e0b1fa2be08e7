DROP TRIGGER api_keys_changed ON api_keys;
DROP TRIGGER users_changed ON users;
DROP TRIGGER tenants_changed ON tenants;
DROP FUNCTION keyward_note_change();
DROP TABLE tenant_changes;
