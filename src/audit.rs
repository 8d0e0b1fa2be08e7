//! The audit log: who changed which key or user, when, from where.
//!
//! [`record`] takes the same connection as the change it records, inside the
//! change's transaction: no event without its change, no change without its event.

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use uuid::Uuid;

use crate::access::Caller;
use crate::db::{DbConnection, MultiBackend};
use crate::error::Error;
use crate::paging::{self, Page};
use crate::schema::audit_events;
use crate::scopes::Scope;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    KeyCreated,
    KeyUpdated,
    KeyRevoked,
    KeyRotated,
    UserCreated,
    UserUpdated,
    UserDeactivated,
    /// A webhook endpoint's changes (section 11): audited like the rest, but
    /// not event types themselves (nothing is sent about them).
    WebhookCreated,
    WebhookUpdated,
    WebhookDeleted,
    WebhookSecretRotated,
}

impl Action {
    /// The key and user lifecycle actions of section 4b: each is also a
    /// webhook event type.
    pub const LIFECYCLE: [Action; 7] = [
        Action::KeyCreated,
        Action::KeyUpdated,
        Action::KeyRevoked,
        Action::KeyRotated,
        Action::UserCreated,
        Action::UserUpdated,
        Action::UserDeactivated,
    ];

    pub const ALL: [Action; 11] = [
        Action::KeyCreated,
        Action::KeyUpdated,
        Action::KeyRevoked,
        Action::KeyRotated,
        Action::UserCreated,
        Action::UserUpdated,
        Action::UserDeactivated,
        Action::WebhookCreated,
        Action::WebhookUpdated,
        Action::WebhookDeleted,
        Action::WebhookSecretRotated,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::KeyCreated => "key.created",
            Action::KeyUpdated => "key.updated",
            Action::KeyRevoked => "key.revoked",
            Action::KeyRotated => "key.rotated",
            Action::UserCreated => "user.created",
            Action::UserUpdated => "user.updated",
            Action::UserDeactivated => "user.deactivated",
            Action::WebhookCreated => "webhook.created",
            Action::WebhookUpdated => "webhook.updated",
            Action::WebhookDeleted => "webhook.deleted",
            Action::WebhookSecretRotated => "webhook.secret_rotated",
        }
    }
}

/// Who makes a change. The CLI acts with no user or key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Actor {
    pub user_id: Option<String>,
    pub key_id: Option<String>,
    pub request_id: Option<String>,
    pub ip: Option<String>,
}

impl Actor {
    /// The command line: an operator with database access.
    pub fn cli() -> Self {
        Self::default()
    }
}

impl From<&Caller> for Actor {
    fn from(caller: &Caller) -> Self {
        Self {
            user_id: Some(caller.user_id.clone()),
            key_id: Some(caller.key_id.clone()),
            request_id: caller.origin.request_id.as_deref().map(str::to_owned),
            ip: caller.origin.ip(),
        }
    }
}

/// What an event is about: its target, and the user that target is or belongs to.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub id: &'a str,
    pub user_id: &'a str,
}

#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = audit_events)]
struct EventRow {
    id: String,
    at: NaiveDateTime,
    action: String,
    actor_user_id: Option<String>,
    actor_key_id: Option<String>,
    target_id: String,
    new_key_id: Option<String>,
    request_id: Option<String>,
    ip: Option<String>,
}

/// One recorded event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub id: String,
    pub at: DateTime<Utc>,
    pub action: String,
    pub actor_user_id: Option<String>,
    pub actor_key_id: Option<String>,
    pub target_id: String,
    pub new_key_id: Option<String>,
    pub request_id: Option<String>,
    pub ip: Option<String>,
}

impl From<EventRow> for Event {
    fn from(row: EventRow) -> Self {
        Self {
            id: row.id,
            at: row.at.and_utc(),
            action: row.action,
            actor_user_id: row.actor_user_id,
            actor_key_id: row.actor_key_id,
            target_id: row.target_id,
            new_key_id: row.new_key_id,
            request_id: row.request_id,
            ip: row.ip,
        }
    }
}

/// Records an event; call it inside the transaction of the change. A key or
/// user lifecycle event also goes to the tenant's webhook outbox, in the same
/// transaction (`webhooks::outbox`).
pub fn record(
    conn: &mut DbConnection,
    tenant_id: &str,
    actor: &Actor,
    action: Action,
    target: Target<'_>,
    new_key_id: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    let id = Uuid::now_v7().to_string();
    diesel::insert_into(audit_events::table)
        .values((
            audit_events::tenant_id.eq(tenant_id),
            audit_events::id.eq(&id),
            audit_events::at.eq(now.naive_utc()),
            audit_events::action.eq(action.as_str()),
            audit_events::actor_user_id.eq(&actor.user_id),
            audit_events::actor_key_id.eq(&actor.key_id),
            audit_events::target_id.eq(target.id),
            audit_events::target_user_id.eq(target.user_id),
            audit_events::new_key_id.eq(new_key_id),
            audit_events::request_id.eq(&actor.request_id),
            audit_events::ip.eq(&actor.ip),
        ))
        .execute(conn)?;
    crate::webhooks::outbox::on_audit(
        conn,
        tenant_id,
        &crate::webhooks::outbox::AuditFields {
            id: &id,
            at: now,
            action: action.as_str(),
            actor_user_id: actor.user_id.as_deref(),
            actor_key_id: actor.key_id.as_deref(),
            target_id: target.id,
            new_key_id,
            request_id: actor.request_id.as_deref(),
            ip: actor.ip.as_deref(),
        },
    )
}

/// A page of the caller's tenant's events (100 unless `take` says otherwise),
/// for Administrators with `user_management`.
pub fn list_for(
    conn: &mut DbConnection,
    caller: &Caller,
    user_id: Option<&str>,
    page: &Page,
) -> Result<Vec<Event>, Error> {
    caller.require_scope(Scope::UserManagement)?;
    caller.require_admin("Only Administrators may read the audit log")?;
    let page = Page {
        take: Some(page.take_or_default()),
        ..page.clone()
    };
    list(conn, &caller.tenant.id, user_id, &page)
}

/// Events of the tenant, oldest first; with `user_id`, those whose actor is that
/// user or whose target is that user or one of its keys; all of them without `take`.
pub fn list(
    conn: &mut DbConnection,
    tenant_id: &str,
    user_id: Option<&str>,
    page: &Page,
) -> Result<Vec<Event>, Error> {
    let mut query = audit_events::table
        .filter(audit_events::tenant_id.eq(tenant_id))
        .select(EventRow::as_select())
        .order((audit_events::at.asc(), audit_events::id.asc()))
        .into_boxed::<MultiBackend>();
    if let Some(user_id) = user_id {
        query = query.filter(
            audit_events::actor_user_id
                .eq(user_id)
                .or(audit_events::target_user_id.eq(user_id)),
        );
    }
    if let Some(start_with) = &page.start_with {
        let cursor = audit_events::table
            .filter(
                audit_events::tenant_id
                    .eq(tenant_id)
                    .and(audit_events::id.eq(start_with)),
            )
            .select((audit_events::at, audit_events::id))
            .first(conn)
            .optional()?
            .ok_or_else(|| Error::invalid("start_with", "No event with this ID is in the log."))?;
        query = query.filter(paging::after(audit_events::at, audit_events::id, cursor));
    }
    if let Some(take) = page.take {
        query = query.limit(i64::from(take));
    }
    Ok(query
        .load::<EventRow>(conn)?
        .into_iter()
        .map(Event::from)
        .collect())
}
