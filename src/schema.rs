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
    /// Bumped by triggers on every write to a tenant, its users or its keys.
    tenant_changes (tenant_id) {
        tenant_id -> Text,
        version -> BigInt,
    }
}
