//! Webhooks: a tenant's endpoints that receive its events (contract section 11).
//!
//! The room, as svix-server splits it: the endpoints' rules and storage here
//! (for Administrators with `user_management`; handlers only translate);
//! [`outbox`] writes events in the transaction of the change they report;
//! [`sender`] takes due deliveries, signs them ([`secret`]) and sends them
//! through one HTTP client that refuses non-public addresses where it
//! connects ([`client`], [`address`]); [`expiry`] records the time-driven
//! events. Nothing here knows HTTP requests or a dialect.

pub mod address;
pub mod client;
pub mod expiry;
pub mod outbox;
pub mod payload;
pub mod retention;
pub mod secret;
pub mod sender;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use uuid::Uuid;

use crate::access::Caller;
use crate::audit::{self, Action, Actor, Target};
use crate::db::{DbConnection, MultiBackend};
use crate::error::Error;
use crate::keys::Scope;
use crate::paging::Page;
use crate::schema::{webhook_attempts, webhook_deliveries, webhook_endpoints, webhook_events};

pub use secret::{Sealer, SigningSecret};

/// A delivery not yet settled.
pub const PENDING: &str = "pending";
const DELIVERED: &str = "delivered";
const FAILED: &str = "failed";
const CANCELLED: &str = "cancelled";

/// How long the old secret keeps signing after a rotation.
pub const ROTATION_OVERLAP: chrono::TimeDelta = chrono::TimeDelta::hours(24);

/// The types of events an endpoint can subscribe to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    KeyCreated,
    KeyUpdated,
    KeyRevoked,
    KeyRotated,
    UserCreated,
    UserUpdated,
    UserDeactivated,
    KeyExpiring,
    KeyExpired,
    /// Accepted in subscriptions; not generated yet (credits do not exist).
    KeyCreditsLow,
    WebhookTest,
}

impl EventType {
    pub const ALL: [EventType; 11] = [
        EventType::KeyCreated,
        EventType::KeyUpdated,
        EventType::KeyRevoked,
        EventType::KeyRotated,
        EventType::UserCreated,
        EventType::UserUpdated,
        EventType::UserDeactivated,
        EventType::KeyExpiring,
        EventType::KeyExpired,
        EventType::KeyCreditsLow,
        EventType::WebhookTest,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::KeyCreated => "key.created",
            EventType::KeyUpdated => "key.updated",
            EventType::KeyRevoked => "key.revoked",
            EventType::KeyRotated => "key.rotated",
            EventType::UserCreated => "user.created",
            EventType::UserUpdated => "user.updated",
            EventType::UserDeactivated => "user.deactivated",
            EventType::KeyExpiring => "key.expiring",
            EventType::KeyExpired => "key.expired",
            EventType::KeyCreditsLow => "key.credits_low",
            EventType::WebhookTest => "webhook.test",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// The key and user lifecycle actions of the audit log (section 4b).
    pub fn is_audit_action(self) -> bool {
        Action::LIFECYCLE
            .iter()
            .any(|a| a.as_str() == self.as_str())
    }
}

/// "Every event type", in a subscription.
pub const ALL_EVENTS: &str = "*";

/// Whether an endpoint subscribed to `events` (stored JSON) gets `kind`.
fn subscribes(events: &str, kind: EventType) -> bool {
    decode_events(events)
        .iter()
        .any(|e| e == ALL_EVENTS || e == kind.as_str())
}

fn decode_events(events: &str) -> Vec<String> {
    serde_json::from_str(events).unwrap_or_default()
}

/// The operator's rules for webhooks, from the settings.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Endpoints may point at loopback, private and link-local addresses.
    pub allow_private: bool,
    /// Seconds before each retry; after the last one the delivery is given up.
    pub retry_schedule: Vec<u64>,
    /// An endpoint that failed every attempt for this long is disabled.
    pub disable_after: Duration,
    /// Days before a key's expiry that `key.expiring` is sent, largest first.
    pub expiry_notice_days: Vec<u32>,
    /// How long settled deliveries, their attempts and their events are kept.
    pub retention: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            allow_private: false,
            retry_schedule: vec![5, 300, 1800, 7200, 18000, 36000, 36000],
            disable_after: Duration::from_secs(5 * 24 * 3600),
            expiry_notice_days: vec![7, 1],
            retention: Duration::from_secs(90 * 24 * 3600),
        }
    }
}

impl Policy {
    pub fn from_settings(settings: &crate::config::Settings) -> Self {
        let mut days: Vec<u32> = settings
            .expiry_notice_days
            .iter()
            .filter_map(|d| u32::try_from(*d).ok())
            .collect();
        days.sort_unstable_by(|a, b| b.cmp(a));
        days.dedup();
        Self {
            allow_private: settings.webhook_allow_private,
            retry_schedule: settings.webhook_retry_schedule.clone(),
            disable_after: Duration::from_secs(settings.webhook_disable_after_secs),
            expiry_notice_days: days,
            retention: Duration::from_secs(
                settings.webhook_retention_days.saturating_mul(24 * 3600),
            ),
        }
    }
}

/// What the server's webhook parts share: the rules, the sealing key, and the
/// bell that wakes the sender when a local change wrote deliveries.
#[derive(Debug, Default)]
pub struct Hub {
    pub policy: Policy,
    pub sealer: Sealer,
    pub wake: Arc<tokio::sync::Notify>,
}

impl Hub {
    /// From the settings, already validated (`Settings::load`).
    pub fn from_settings(settings: &crate::config::Settings) -> Self {
        let key = settings.webhook_key_bytes().unwrap_or_else(|e| {
            log::error!("{e}; webhook secrets will be stored unsealed");
            None
        });
        Self {
            policy: Policy::from_settings(settings),
            sealer: Sealer::new(key),
            wake: Arc::default(),
        }
    }
}

/// An endpoint, as stored (without its secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub id: String,
    pub url: String,
    pub events: Vec<String>,
    pub description: String,
    pub enabled: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: Option<DateTime<Utc>>,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = webhook_endpoints)]
struct EndpointRow {
    id: String,
    url: String,
    events: String,
    description: String,
    enabled: bool,
    created_at: NaiveDateTime,
    updated_at: Option<NaiveDateTime>,
}

impl From<EndpointRow> for Endpoint {
    fn from(row: EndpointRow) -> Self {
        Self {
            id: row.id,
            url: row.url,
            events: decode_events(&row.events),
            description: row.description,
            enabled: row.enabled,
            created_at: row.created_at.and_utc(),
            updated_at: row.updated_at.map(|t| t.and_utc()),
        }
    }
}

/// A new endpoint, as given.
#[derive(Debug, Clone)]
pub struct NewEndpoint {
    pub url: String,
    pub events: Vec<String>,
    pub description: Option<String>,
}

/// A change to an endpoint; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct EndpointChange {
    pub url: Option<String>,
    pub events: Option<Vec<String>>,
    pub description: Option<String>,
    pub enabled: Option<bool>,
}

/// Longest description.
pub const DESCRIPTION_MAX: usize = 1000;

/// Checks the fields given, naming each bad one.
fn check(
    url: Option<&str>,
    events: Option<&[String]>,
    description: Option<&str>,
    policy: &Policy,
) -> Result<(), Error> {
    let mut errors = crate::error::FieldErrors::new();
    let mut push = |field: &str, message: &str| {
        errors
            .entry(field.to_owned())
            .or_default()
            .push(message.to_owned());
    };
    if let Some(problem) = url.and_then(|url| address::url_problem(url, policy.allow_private)) {
        push("url", problem);
    }
    if let Some(events) = events {
        if let Some(problem) = events_problem(events) {
            push("events", &problem);
        }
    }
    if description.is_some_and(|d| d.chars().count() > DESCRIPTION_MAX || d.contains('\0')) {
        push(
            "description",
            "description must be at most 1000 characters.",
        );
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Error::Invalid(errors))
    }
}

fn events_problem(events: &[String]) -> Option<String> {
    if events.is_empty() {
        return Some("events must name at least one event type, or be [\"*\"].".into());
    }
    if events.iter().any(|e| e == ALL_EVENTS) && events.len() > 1 {
        return Some("\"*\" subscribes to every event type and stands alone.".into());
    }
    events
        .iter()
        .find(|e| *e != ALL_EVENTS && EventType::parse(e).is_none())
        .map(|bad| format!("Unknown event type {bad:?}."))
}

/// Events without repeats, in the order given.
fn dedup(events: Vec<String>) -> Vec<String> {
    let mut seen = Vec::with_capacity(events.len());
    for e in events {
        if !seen.contains(&e) {
            seen.push(e);
        }
    }
    seen
}

const FORBIDDEN: &str = "Only Administrators may manage webhooks";

fn require_admin(caller: &Caller) -> Result<(), Error> {
    caller.require_scope(Scope::UserManagement)?;
    caller.require_admin(FORBIDDEN)
}

/// How an endpoint change is audited: target the endpoint; as it belongs to
/// no user, the acting user stands in as the target's user (so the audit
/// log's `user_id` filter finds it with the actor's own events).
fn audit_endpoint(
    conn: &mut DbConnection,
    caller: &Caller,
    action: Action,
    endpoint_id: &str,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    audit::record(
        conn,
        &caller.tenant.id,
        &Actor::from(caller),
        action,
        Target {
            id: endpoint_id,
            user_id: &caller.user_id,
        },
        None,
        now,
    )
}

/// Registers an endpoint; its secret is returned this once.
pub fn create_for(
    conn: &mut DbConnection,
    caller: &Caller,
    hub: &Hub,
    new: NewEndpoint,
    now: DateTime<Utc>,
) -> Result<(Endpoint, SigningSecret), Error> {
    require_admin(caller)?;
    check(
        Some(&new.url),
        Some(&new.events),
        new.description.as_deref(),
        &hub.policy,
    )?;
    let tenant_id = &caller.tenant.id;
    let endpoint = Endpoint {
        id: Uuid::now_v7().to_string(),
        url: new.url,
        events: dedup(new.events),
        description: new.description.unwrap_or_default(),
        enabled: true,
        created_at: now,
        updated_at: None,
    };
    let secret = SigningSecret::generate();
    let sealed = hub.sealer.seal(tenant_id, &endpoint.id, &secret)?;
    crate::db::write_transaction(conn, |conn| {
        diesel::insert_into(webhook_endpoints::table)
            .values((
                webhook_endpoints::tenant_id.eq(tenant_id),
                webhook_endpoints::id.eq(&endpoint.id),
                webhook_endpoints::url.eq(&endpoint.url),
                webhook_endpoints::events.eq(encode_events(&endpoint.events)),
                webhook_endpoints::description.eq(&endpoint.description),
                webhook_endpoints::enabled.eq(true),
                webhook_endpoints::secret.eq(&sealed),
                webhook_endpoints::created_at.eq(now.naive_utc()),
            ))
            .execute(conn)?;
        audit_endpoint(conn, caller, Action::WebhookCreated, &endpoint.id, now)
    })?;
    Ok((endpoint, secret))
}

fn encode_events(events: &[String]) -> String {
    serde_json::to_string(events).unwrap_or_else(|_| "[]".into())
}

/// The tenant's endpoints, oldest first.
pub fn list_for(conn: &mut DbConnection, caller: &Caller) -> Result<Vec<Endpoint>, Error> {
    require_admin(caller)?;
    Ok(webhook_endpoints::table
        .filter(webhook_endpoints::tenant_id.eq(&caller.tenant.id))
        .order((
            webhook_endpoints::created_at.asc(),
            webhook_endpoints::id.asc(),
        ))
        .select(EndpointRow::as_select())
        .load(conn)?
        .into_iter()
        .map(Endpoint::from)
        .collect())
}

fn find(conn: &mut DbConnection, tenant_id: &str, id: &str) -> Result<Option<Endpoint>, Error> {
    Ok(webhook_endpoints::table
        .filter(webhook_endpoints::tenant_id.eq(tenant_id))
        .filter(webhook_endpoints::id.eq(id))
        .select(EndpointRow::as_select())
        .first(conn)
        .optional()?
        .map(Endpoint::from))
}

/// The endpoint `id` of the caller's tenant; another tenant's is [`Error::NotFound`].
pub fn get_for(conn: &mut DbConnection, caller: &Caller, id: &str) -> Result<Endpoint, Error> {
    require_admin(caller)?;
    find(conn, &caller.tenant.id, id)?.ok_or(Error::NotFound)
}

/// Settles the pending deliveries of an endpoint that gets nothing more
/// (disabled or deleted).
fn cancel_pending(
    conn: &mut DbConnection,
    tenant_id: &str,
    endpoint_id: &str,
) -> Result<(), Error> {
    diesel::update(
        webhook_deliveries::table
            .filter(webhook_deliveries::tenant_id.eq(tenant_id))
            .filter(webhook_deliveries::endpoint_id.eq(endpoint_id))
            .filter(webhook_deliveries::next_attempt_at.is_not_null()),
    )
    .set((
        webhook_deliveries::state.eq(CANCELLED),
        webhook_deliveries::next_attempt_at.eq(None::<NaiveDateTime>),
    ))
    .execute(conn)?;
    Ok(())
}

/// Changes an endpoint. Disabling it cancels what is still to be sent to it;
/// enabling it starts its failure count afresh.
pub fn update_for(
    conn: &mut DbConnection,
    caller: &Caller,
    hub: &Hub,
    id: &str,
    change: EndpointChange,
    now: DateTime<Utc>,
) -> Result<Endpoint, Error> {
    require_admin(caller)?;
    check(
        change.url.as_deref(),
        change.events.as_deref(),
        change.description.as_deref(),
        &hub.policy,
    )?;
    let tenant_id = &caller.tenant.id;
    crate::db::write_transaction(conn, |conn| {
        let mut endpoint = find(conn, tenant_id, id)?.ok_or(Error::NotFound)?;
        let was_enabled = endpoint.enabled;
        if let Some(url) = change.url {
            endpoint.url = url;
        }
        if let Some(events) = change.events {
            endpoint.events = dedup(events);
        }
        if let Some(description) = change.description {
            endpoint.description = description;
        }
        if let Some(enabled) = change.enabled {
            endpoint.enabled = enabled;
        }
        endpoint.updated_at = Some(now);
        let target = webhook_endpoints::table
            .filter(webhook_endpoints::tenant_id.eq(tenant_id))
            .filter(webhook_endpoints::id.eq(&endpoint.id));
        diesel::update(target)
            .set((
                webhook_endpoints::url.eq(&endpoint.url),
                webhook_endpoints::events.eq(encode_events(&endpoint.events)),
                webhook_endpoints::description.eq(&endpoint.description),
                webhook_endpoints::enabled.eq(endpoint.enabled),
                webhook_endpoints::updated_at.eq(now.naive_utc()),
            ))
            .execute(conn)?;
        if was_enabled && !endpoint.enabled {
            cancel_pending(conn, tenant_id, &endpoint.id)?;
        }
        if !was_enabled && endpoint.enabled {
            diesel::update(target)
                .set(webhook_endpoints::failing_since.eq(None::<NaiveDateTime>))
                .execute(conn)?;
        }
        audit_endpoint(conn, caller, Action::WebhookUpdated, &endpoint.id, now)?;
        Ok(endpoint)
    })
}

/// Deletes an endpoint with its deliveries and their log: nothing more is sent to it.
pub fn delete_for(
    conn: &mut DbConnection,
    caller: &Caller,
    id: &str,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    require_admin(caller)?;
    let tenant_id = &caller.tenant.id;
    crate::db::write_transaction(conn, |conn| {
        let deleted = diesel::delete(
            webhook_endpoints::table
                .filter(webhook_endpoints::tenant_id.eq(tenant_id))
                .filter(webhook_endpoints::id.eq(id)),
        )
        .execute(conn)?;
        if deleted == 0 {
            return Err(Error::NotFound);
        }
        diesel::delete(
            webhook_deliveries::table
                .filter(webhook_deliveries::tenant_id.eq(tenant_id))
                .filter(webhook_deliveries::endpoint_id.eq(id)),
        )
        .execute(conn)?;
        diesel::delete(
            webhook_attempts::table
                .filter(webhook_attempts::tenant_id.eq(tenant_id))
                .filter(webhook_attempts::endpoint_id.eq(id)),
        )
        .execute(conn)?;
        audit_endpoint(conn, caller, Action::WebhookDeleted, id, now)
    })
}

/// Gives an endpoint a new secret, returned this once; the old one keeps
/// signing (beside it) for [`ROTATION_OVERLAP`].
pub fn rotate_secret_for(
    conn: &mut DbConnection,
    caller: &Caller,
    hub: &Hub,
    id: &str,
    now: DateTime<Utc>,
) -> Result<(Endpoint, SigningSecret), Error> {
    require_admin(caller)?;
    let tenant_id = &caller.tenant.id;
    let secret = SigningSecret::generate();
    let sealed = hub.sealer.seal(tenant_id, id, &secret)?;
    let endpoint = crate::db::write_transaction(conn, |conn| {
        let mut endpoint = find(conn, tenant_id, id)?.ok_or(Error::NotFound)?;
        let target = webhook_endpoints::table
            .filter(webhook_endpoints::tenant_id.eq(tenant_id))
            .filter(webhook_endpoints::id.eq(id));
        let current: String = target.select(webhook_endpoints::secret).first(conn)?;
        endpoint.updated_at = Some(now);
        diesel::update(target)
            .set((
                webhook_endpoints::secret.eq(&sealed),
                webhook_endpoints::previous_secret.eq(Some(current)),
                webhook_endpoints::previous_until.eq(Some((now + ROTATION_OVERLAP).naive_utc())),
                webhook_endpoints::updated_at.eq(now.naive_utc()),
            ))
            .execute(conn)?;
        audit_endpoint(conn, caller, Action::WebhookSecretRotated, id, now)?;
        Ok(endpoint)
    })?;
    Ok((endpoint, secret))
}

/// Sends a `webhook.test` event to the endpoint, whatever it subscribes to.
/// A disabled endpoint gets nothing: [`Error::Conflict`].
pub fn test_for(
    conn: &mut DbConnection,
    caller: &Caller,
    id: &str,
    now: DateTime<Utc>,
) -> Result<String, Error> {
    require_admin(caller)?;
    let tenant_id = &caller.tenant.id;
    crate::db::write_transaction(conn, |conn| {
        let endpoint = find(conn, tenant_id, id)?.ok_or(Error::NotFound)?;
        if !endpoint.enabled {
            return Err(Error::Conflict(
                "The endpoint is disabled; enable it first.",
            ));
        }
        let event_id = Uuid::now_v7().to_string();
        outbox::enqueue(
            conn,
            tenant_id,
            &event_id,
            EventType::WebhookTest,
            now,
            outbox::Recipients::Only(id),
            |_| Ok(payload::test_data(id)),
        )?;
        Ok(event_id)
    })
}

/// One attempt to deliver, as the delivery log shows it.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = webhook_attempts)]
pub struct AttemptRow {
    pub id: String,
    pub event_id: String,
    pub kind: String,
    pub attempt: i32,
    pub status_code: Option<i32>,
    pub error: Option<String>,
    pub at: NaiveDateTime,
    pub next_attempt_at: Option<NaiveDateTime>,
}

/// The endpoint's delivery attempts, newest first (100 unless `take` says
/// otherwise); `start_with` is the last attempt of the previous page.
pub fn deliveries_for(
    conn: &mut DbConnection,
    caller: &Caller,
    id: &str,
    page: &Page,
) -> Result<Vec<AttemptRow>, Error> {
    require_admin(caller)?;
    let tenant_id = &caller.tenant.id;
    find(conn, tenant_id, id)?.ok_or(Error::NotFound)?;
    let mut query = webhook_attempts::table
        .filter(webhook_attempts::tenant_id.eq(tenant_id))
        .filter(webhook_attempts::endpoint_id.eq(id))
        .order(webhook_attempts::id.desc())
        .select(AttemptRow::as_select())
        .into_boxed::<MultiBackend>();
    if let Some(start_with) = &page.start_with {
        let exists = webhook_attempts::table
            .filter(webhook_attempts::tenant_id.eq(tenant_id))
            .filter(webhook_attempts::endpoint_id.eq(id))
            .filter(webhook_attempts::id.eq(start_with))
            .select(webhook_attempts::id)
            .first::<String>(conn)
            .optional()?;
        if exists.is_none() {
            return Err(Error::invalid(
                "start_with",
                "No delivery attempt with this ID is in the log.",
            ));
        }
        // Attempt ids are UUIDv7, ordered by time of writing.
        query = query.filter(webhook_attempts::id.lt(start_with));
    }
    Ok(query.limit(i64::from(page.take_or_default())).load(conn)?)
}

/// The body of event `id` of the tenant, as stored (for tests and the sender).
pub fn event_body(
    conn: &mut DbConnection,
    tenant_id: &str,
    id: &str,
) -> Result<Option<String>, Error> {
    Ok(webhook_events::table
        .filter(webhook_events::tenant_id.eq(tenant_id))
        .filter(webhook_events::id.eq(id))
        .select(webhook_events::body)
        .first(conn)
        .optional()?)
}
