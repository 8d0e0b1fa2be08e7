//! Diesel table definitions, kept to types both backends share: ids are UUID
//! text, timestamps are UTC `NaiveDateTime`, and lists (roles, scopes) are JSON
//! arrays in text columns.

diesel::table! {
    tenants (id) {
        id -> Text,
        name -> Text,
        max_key_lifetime_days -> Integer,
        created_at -> Timestamp,
        updated_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    users (tenant_id, id) {
        tenant_id -> Text,
        id -> Text,
        email -> Text,
        name -> Text,
        roles -> Text,
        active -> Bool,
        created_at -> Timestamp,
        updated_at -> Nullable<Timestamp>,
        external_id -> Nullable<Text>,
        deprovisioned_at -> Nullable<Timestamp>,
        ratelimits -> Text,
        credits -> Nullable<Text>,
    }
}

diesel::table! {
    api_keys (tenant_id, id) {
        tenant_id -> Text,
        id -> Text,
        user_id -> Text,
        name -> Text,
        secret_hash -> Text,
        scopes -> Text,
        expires_at -> Timestamp,
        created_at -> Timestamp,
        updated_at -> Nullable<Timestamp>,
        revoked_at -> Nullable<Timestamp>,
        last_used_at -> Nullable<Timestamp>,
        meta -> Text,
        ratelimits -> Text,
        credits -> Nullable<Text>,
        allowed_ips -> Text,
        usage_id -> Nullable<Text>,
    }
}

diesel::allow_tables_to_appear_in_same_query!(tenants, users, api_keys);

diesel::table! {
    audit_events (tenant_id, id) {
        tenant_id -> Text,
        id -> Text,
        at -> Timestamp,
        action -> Text,
        actor_user_id -> Nullable<Text>,
        actor_key_id -> Nullable<Text>,
        target_id -> Text,
        target_user_id -> Text,
        new_key_id -> Nullable<Text>,
        request_id -> Nullable<Text>,
        ip -> Nullable<Text>,
    }
}

diesel::allow_tables_to_appear_in_same_query!(api_keys, audit_events);

diesel::table! {
    /// Verifications per key and minute, by outcome; `bucket` is Unix seconds.
    usage_minutes (tenant_id, key_id, bucket) {
        tenant_id -> Text,
        key_id -> Text,
        bucket -> BigInt,
        valid -> BigInt,
        forbidden -> BigInt,
        rate_limited -> BigInt,
        usage_exceeded -> BigInt,
        invalid -> BigInt,
    }
}

diesel::table! {
    /// Verifications per key and hour, by outcome; `bucket` is Unix seconds.
    usage_hours (tenant_id, key_id, bucket) {
        tenant_id -> Text,
        key_id -> Text,
        bucket -> BigInt,
        valid -> BigInt,
        forbidden -> BigInt,
        rate_limited -> BigInt,
        usage_exceeded -> BigInt,
        invalid -> BigInt,
    }
}

diesel::table! {
    /// Verifications per key and day, by outcome; `bucket` is Unix seconds.
    usage_days (tenant_id, key_id, bucket) {
        tenant_id -> Text,
        key_id -> Text,
        bucket -> BigInt,
        valid -> BigInt,
        forbidden -> BigInt,
        rate_limited -> BigInt,
        usage_exceeded -> BigInt,
        invalid -> BigInt,
    }
}

diesel::table! {
    /// The roll-up job's progress per resolution (`hour`, `day`).
    usage_rollups (period) {
        period -> Text,
        done_until -> BigInt,
        claimed_until -> BigInt,
    }
}

diesel::table! {
    /// A tenant's webhook endpoints.
    webhook_endpoints (tenant_id, id) {
        tenant_id -> Text,
        id -> Text,
        url -> Text,
        events -> Text,
        description -> Text,
        enabled -> Bool,
        secret -> Text,
        previous_secret -> Nullable<Text>,
        previous_until -> Nullable<Timestamp>,
        failing_since -> Nullable<Timestamp>,
        lease_until -> Nullable<Timestamp>,
        created_at -> Timestamp,
        updated_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    /// The outbox: events to send, written with the change they report.
    webhook_events (tenant_id, id) {
        tenant_id -> Text,
        id -> Text,
        #[sql_name = "type"]
        kind -> Text,
        body -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    /// One event to one endpoint, until delivered or given up.
    webhook_deliveries (tenant_id, id) {
        tenant_id -> Text,
        id -> Text,
        endpoint_id -> Text,
        event_id -> Text,
        attempts -> Integer,
        state -> Text,
        next_attempt_at -> Nullable<Timestamp>,
        created_at -> Timestamp,
    }
}

diesel::table! {
    /// Every attempt to deliver, for the endpoint's delivery log.
    webhook_attempts (tenant_id, id) {
        tenant_id -> Text,
        id -> Text,
        endpoint_id -> Text,
        delivery_id -> Text,
        event_id -> Text,
        #[sql_name = "type"]
        kind -> Text,
        attempt -> Integer,
        status_code -> Nullable<Integer>,
        error -> Nullable<Text>,
        at -> Timestamp,
        next_attempt_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    /// Time-driven notices (`key.expiring`, `key.expired`) already recorded.
    key_notices (tenant_id, key_id, notice) {
        tenant_id -> Text,
        key_id -> Text,
        notice -> Text,
        at -> Timestamp,
    }
}

diesel::allow_tables_to_appear_in_same_query!(
    webhook_endpoints,
    webhook_events,
    webhook_deliveries,
    webhook_attempts,
    key_notices,
    api_keys,
);

diesel::table! {
    /// Rate-limit windows: what instances have reserved of each (limiter.rs).
    rate_windows (tenant_id, owner_id, name, duration_ms, window_start) {
        tenant_id -> Text,
        owner_id -> Text,
        name -> Text,
        duration_ms -> BigInt,
        window_start -> BigInt,
        window_end -> BigInt,
        used -> BigInt,
        granted -> BigInt,
    }
}

diesel::table! {
    /// Credit balances, of a key's counters or a user's (limiter.rs).
    credit_balances (tenant_id, owner_id) {
        tenant_id -> Text,
        owner_id -> Text,
        remaining -> BigInt,
        refilled_at -> BigInt,
        granted -> BigInt,
        base -> BigInt,
        low_noted -> Nullable<BigInt>,
    }
}
