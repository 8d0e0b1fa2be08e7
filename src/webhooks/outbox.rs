//! The outbox: an event is written in the transaction of the change it
//! reports (beside its audit event, by `audit::record`), as one
//! `webhook_events` row plus one `webhook_deliveries` row per endpoint that is
//! enabled and subscribed to its type at that moment. A committed change is
//! therefore delivered at least once, whatever process dies after the commit.

use std::cell::Cell;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde_json::{Map, Value};
use uuid::Uuid;

use super::{payload, EventType};
use crate::db::DbConnection;
use crate::error::Error;
use crate::keys::{self, KeyRef};
use crate::schema::{webhook_deliveries, webhook_endpoints, webhook_events};
use crate::users;

thread_local! {
    /// Set when this thread wrote deliveries; the app state's `db` reads it after
    /// the closure (and so the transaction) is done, and wakes the sender.
    static ENQUEUED: Cell<bool> = const { Cell::new(false) };
}

/// Whether deliveries were written on this thread since the last call.
pub fn take_enqueued() -> bool {
    ENQUEUED.with(|flag| flag.replace(false))
}

/// Which endpoints an event goes to.
pub enum Recipients<'a> {
    /// Every enabled endpoint of the tenant subscribed to the event's type.
    Subscribed,
    /// This one endpoint (a `webhook.test`), whatever it subscribes to.
    Only(&'a str),
}

/// Writes event `id` of `kind` for the tenant's endpoints, with the data
/// `data` makes (called only if some endpoint gets the event). Returns how
/// many deliveries were written. Call it inside the change's transaction.
pub fn enqueue(
    conn: &mut DbConnection,
    tenant_id: &str,
    id: &str,
    kind: EventType,
    at: DateTime<Utc>,
    to: Recipients<'_>,
    data: impl FnOnce(&mut DbConnection) -> Result<Value, Error>,
) -> Result<usize, Error> {
    let mut query = webhook_endpoints::table
        .filter(webhook_endpoints::tenant_id.eq(tenant_id))
        .filter(webhook_endpoints::enabled.eq(true))
        .select((webhook_endpoints::id, webhook_endpoints::events))
        .into_boxed::<crate::db::MultiBackend>();
    if let Recipients::Only(endpoint) = to {
        query = query.filter(webhook_endpoints::id.eq(endpoint));
    }
    let endpoints: Vec<(String, String)> = query
        .order((
            webhook_endpoints::created_at.asc(),
            webhook_endpoints::id.asc(),
        ))
        .load(conn)?;
    let targets: Vec<String> = endpoints
        .into_iter()
        .filter(|(_, events)| matches!(to, Recipients::Only(_)) || super::subscribes(events, kind))
        .map(|(id, _)| id)
        .collect();
    if targets.is_empty() {
        return Ok(0);
    }
    let body = payload::body(kind.as_str(), at, data(conn)?);
    diesel::insert_into(webhook_events::table)
        .values((
            webhook_events::tenant_id.eq(tenant_id),
            webhook_events::id.eq(id),
            webhook_events::kind.eq(kind.as_str()),
            webhook_events::body.eq(&body),
            webhook_events::created_at.eq(at.naive_utc()),
        ))
        .execute(conn)?;
    for endpoint in &targets {
        diesel::insert_into(webhook_deliveries::table)
            .values((
                webhook_deliveries::tenant_id.eq(tenant_id),
                webhook_deliveries::id.eq(Uuid::now_v7().to_string()),
                webhook_deliveries::endpoint_id.eq(endpoint),
                webhook_deliveries::event_id.eq(id),
                webhook_deliveries::attempts.eq(0),
                webhook_deliveries::state.eq(super::PENDING),
                webhook_deliveries::next_attempt_at.eq(Some(at.naive_utc())),
                webhook_deliveries::created_at.eq(at.naive_utc()),
            ))
            .execute(conn)?;
    }
    ENQUEUED.with(|flag| flag.set(true));
    Ok(targets.len())
}

/// An audit event as the outbox reads it.
#[derive(Debug, Clone)]
pub struct AuditFields<'a> {
    pub id: &'a str,
    pub at: DateTime<Utc>,
    pub action: &'a str,
    pub actor_user_id: Option<&'a str>,
    pub actor_key_id: Option<&'a str>,
    pub target_id: &'a str,
    pub new_key_id: Option<&'a str>,
    pub request_id: Option<&'a str>,
    pub ip: Option<&'a str>,
}

/// The event of an audit event whose action is an event type (key and user
/// lifecycle); the webhooks' own audit actions send nothing. The event has
/// the audit event's id, so `data.id` is the `webhook-id` too.
pub fn on_audit(
    conn: &mut DbConnection,
    tenant_id: &str,
    event: &AuditFields<'_>,
) -> Result<(), Error> {
    let Some(kind) = EventType::parse(event.action).filter(|k| k.is_audit_action()) else {
        return Ok(());
    };
    enqueue(
        conn,
        tenant_id,
        event.id,
        kind,
        event.at,
        Recipients::Subscribed,
        |conn| {
            let mut data = Map::new();
            data.insert("id".into(), event.id.into());
            data.insert("at".into(), payload::instant(event.at).into());
            data.insert("action".into(), event.action.into());
            data.insert("actor_user_id".into(), event.actor_user_id.into());
            data.insert("actor_key_id".into(), event.actor_key_id.into());
            data.insert("target_id".into(), event.target_id.into());
            if let Some(new_key_id) = event.new_key_id {
                data.insert("new_key_id".into(), new_key_id.into());
            }
            data.insert("request_id".into(), event.request_id.into());
            data.insert("ip".into(), event.ip.into());
            if event.action.starts_with("key.") {
                let key = keys::find(conn, tenant_id, &KeyRef::Id(event.target_id.to_owned()))?;
                data.insert("key".into(), key.as_ref().map_or(Value::Null, payload::key));
                if let Some(new_key_id) = event.new_key_id {
                    let new = keys::find(conn, tenant_id, &KeyRef::Id(new_key_id.to_owned()))?;
                    data.insert(
                        "new_key".into(),
                        new.as_ref().map_or(Value::Null, payload::key),
                    );
                }
            } else {
                let user = users::find(conn, tenant_id, event.target_id)?;
                data.insert(
                    "user".into(),
                    user.as_ref().map_or(Value::Null, payload::user),
                );
            }
            Ok(Value::Object(data))
        },
    )
    .map(|_| ())
}
