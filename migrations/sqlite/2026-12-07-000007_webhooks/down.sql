DROP INDEX api_keys_by_expiry_instant;
DROP TABLE key_notices;
DROP TABLE webhook_attempts;
DROP TABLE webhook_deliveries;
DROP TABLE webhook_events;
DROP TABLE webhook_endpoints;
