DROP INDEX api_keys_by_expiry;
DROP TABLE audit_events;
