//! The bodies receivers get: `{"type","timestamp","data"}`, `data` holding
//! the audit event's fields and the key or user concerned, as the /v1
//! dialect shows them, never a secret or a hash.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Map, Value};

use crate::keys::ApiKey;
use crate::users::User;

/// ISO-8601 UTC, second precision, `Z`: as the API shows instants.
pub fn instant(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The body of an event of `kind` recorded at `at`.
pub fn body(kind: &str, at: DateTime<Utc>, data: Value) -> String {
    json!({ "type": kind, "timestamp": instant(at), "data": data }).to_string()
}

/// A key as the /v1 dialect shows it (section 4, 4b, 8), plus its exact
/// expiry instant and revocation instant.
pub fn key(key: &ApiKey) -> Value {
    json!({
        "id": key.id,
        "user_id": key.user_id,
        "name": key.name,
        "expiration_date": key.expiration_date().to_string(),
        "expires_at": instant(key.expires_at),
        "created_on": instant(key.created_at),
        "updated_on": key.updated_at.map(instant),
        "revoked_on": key.revoked_at.map(instant),
        "last_used_on": key.last_used_at.map(instant),
        "scopes": key.scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        "meta": key.meta.as_map(),
    })
}

/// A user as the /v1 dialect shows it.
pub fn user(user: &User) -> Value {
    json!({
        "id": user.id,
        "email": user.email,
        "name": user.name,
        "roles": user.roles,
        "active": user.active,
        "created_on": instant(user.created_at),
        "updated_on": user.updated_at.map(instant),
    })
}

/// `data` of a `webhook.test` event.
pub fn test_data(endpoint_id: &str) -> Value {
    let mut data = Map::new();
    data.insert("action".into(), "webhook.test".into());
    data.insert("target_id".into(), endpoint_id.into());
    Value::Object(data)
}
