-- Retention of the webhook delivery log (README "Webhooks"): the prune in each
-- instance's sender deletes settled deliveries, attempts and events older than
-- KEYWARD_WEBHOOK_RETENTION_DAYS by these instants, across tenants.

CREATE INDEX webhook_attempts_by_time ON webhook_attempts (at);
CREATE INDEX webhook_deliveries_settled_by_time ON webhook_deliveries (created_at)
    WHERE next_attempt_at IS NULL;
CREATE INDEX webhook_events_by_time ON webhook_events (created_at);
