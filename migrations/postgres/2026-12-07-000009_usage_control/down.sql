DROP TABLE credit_balances;
DROP TABLE rate_windows;
ALTER TABLE users DROP COLUMN credits;
ALTER TABLE users DROP COLUMN ratelimits;
ALTER TABLE api_keys DROP COLUMN usage_id;
ALTER TABLE api_keys DROP COLUMN allowed_ips;
ALTER TABLE api_keys DROP COLUMN credits;
ALTER TABLE api_keys DROP COLUMN ratelimits;
