//! API keys: the one rule of when a key works ([`ApiKey::state`]), the secret
//! format ([`secret`]), and the key store: creation, listing, lookup (also for
//! authentication), rotation and revocation, with the rules that decide who may
//! do which. Both HTTP dialects and the CLI call these; none repeats a rule.
//!
//! A key's `expires_at` is the first instant at which it no longer works. A
//! revoked key keeps its row; `revoked_at` may lie in the future (a rotation's
//! grace window), and the key works until then.
//!
//! A change to an existing key (revocation, rotation) is a conditional update
//! on the row as it was read: of two concurrent changes, exactly one applies
//! and the other finds the key gone ([`Error::NotFound`]).

pub mod secret;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Days, NaiveDate, NaiveDateTime, TimeDelta, Utc};
use diesel::dsl;
use diesel::prelude::*;

use serde_json::{Map, Value};
use uuid::Uuid;

use self::secret::Secret;
use crate::access::Caller;
use crate::audit::{self, Action, Actor, Target};
use crate::db::{DbConnection, MultiBackend, Stamp};
use crate::error::{Error, FieldErrors};
use crate::limits::{AllowedIps, Control, ControlChange, Limits};
use crate::memo::Rendered;
use crate::paging::{self, Page};
use crate::roles::decode_roles;
use crate::schema::{api_keys, users};
use crate::tenants::Tenant;

use crate::scopes::{decode_scopes, encode_scopes};
pub use crate::scopes::{Scope, DEFAULT_SCOPES};

/// The messages clients match on.
pub const USER_ID_INVALID: &str = "User ID is empty or incorrect";
pub const SCOPES_INVALID: &str =
    "Scopes must be a non-empty array of: public_api, user_key_management, user_management.";

/// Where a key stands at an instant. Every key is in exactly one state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyState {
    /// It works (if its user is active).
    Active,
    /// Past its expiry; still listed.
    Expired,
    /// Revoked (or past a rotation's grace window); never listed.
    Revoked,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    pub id: String,
    pub user_id: String,
    pub name: String,
    /// SHA-256 of the secret, base64url (Estuary's `tokenHash`). Never the secret.
    pub token_hash: String,
    pub scopes: Vec<Scope>,
    pub expires_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub updated_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    /// What the tenant attached to the key; empty when nothing.
    pub meta: Meta,
    /// The key's own rate limits and credits (API.md section 9).
    pub limits: Limits,
    pub allowed_ips: AllowedIps,
    /// Whose counters the key spends from: its own id, or after a rotation
    /// the id its first ancestor had (one balance across a rotation).
    pub usage_id: String,
    /// The credit balance when the key was read with [`with_balances`]
    /// (`None` otherwise, and for unlimited keys).
    pub credits_remaining: Option<i64>,
}

impl ApiKey {
    /// What the audit log records an event about this key as.
    pub fn audit_target(&self) -> Target<'_> {
        Target {
            id: &self.id,
            user_id: &self.user_id,
        }
    }

    /// The UTC date of the key's last valid instant.
    pub fn expiration_date(&self) -> NaiveDate {
        (self.expires_at - TimeDelta::microseconds(1)).date_naive()
    }

    /// The one rule of a key's state at `now`; revocation outranks expiry.
    /// The listing queries mirror it in SQL ([`not_revoked`], [`in_state`]).
    ///
    /// The key is judged no earlier than its last change: a request that read
    /// the clock just before another one revoked the key (and then read the
    /// row) still sees it revoked, so a revocation cannot happen twice.
    pub fn state(&self, now: DateTime<Utc>) -> KeyState {
        let now = self.updated_at.map_or(now, |changed| now.max(changed));
        if self.revoked_at.is_some_and(|at| at <= now) {
            KeyState::Revoked
        } else if now >= self.expires_at {
            KeyState::Expired
        } else {
            KeyState::Active
        }
    }
}

/// [`ApiKey::state`] `!= Revoked`, in SQL.
fn not_revoked(
    now: NaiveDateTime,
) -> dsl::Or<dsl::IsNull<api_keys::revoked_at>, dsl::Gt<api_keys::revoked_at, NaiveDateTime>> {
    api_keys::revoked_at
        .is_null()
        .or(api_keys::revoked_at.gt(now))
}

/// [`ApiKey::state`] `== state` for a key that is [`not_revoked`], in SQL.
fn in_state(
    state: KeyState,
    now: NaiveDateTime,
) -> Box<dyn BoxableExpression<api_keys::table, MultiBackend, SqlType = diesel::sql_types::Bool>> {
    match state {
        KeyState::Active => Box::new(api_keys::expires_at.gt(now)),
        KeyState::Expired => Box::new(api_keys::expires_at.le(now)),
        KeyState::Revoked => Box::new(api_keys::revoked_at.assume_not_null().le(now)),
    }
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = api_keys)]
struct KeyRow {
    id: String,
    user_id: String,
    name: String,
    secret_hash: String,
    scopes: String,
    expires_at: Stamp,
    created_at: Stamp,
    updated_at: Option<Stamp>,
    revoked_at: Option<Stamp>,
    last_used_at: Option<Stamp>,
    meta: String,
    ratelimits: String,
    credits: Option<String>,
    allowed_ips: String,
    usage_id: Option<String>,
}

impl From<KeyRow> for ApiKey {
    fn from(row: KeyRow) -> Self {
        Self {
            user_id: row.user_id,
            name: row.name,
            token_hash: row.secret_hash,
            scopes: decode_scopes(&row.scopes),
            expires_at: row.expires_at.0.and_utc(),
            created_at: row.created_at.0.and_utc(),
            updated_at: row.updated_at.map(|t| t.0.and_utc()),
            revoked_at: row.revoked_at.map(|t| t.0.and_utc()),
            last_used_at: row.last_used_at.map(|t| t.0.and_utc()),
            meta: Meta::decode(&row.meta),
            limits: Limits::decode(&row.ratelimits, row.credits.as_deref()),
            allowed_ips: AllowedIps::decode(&row.allowed_ips),
            usage_id: row.usage_id.unwrap_or_else(|| row.id.clone()),
            id: row.id,
            credits_remaining: None,
        }
    }
}

/// A key's metadata: a JSON object of at most [`Meta::MAX_BYTES`] serialized,
/// stored as that text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Meta(Map<String, Value>);

impl Meta {
    pub const MAX_BYTES: usize = 4096;
    pub const INVALID: &'static str = "meta must be a JSON object of at most 4 KiB.";

    /// Metadata from a request's value: an object that fits, else `None`.
    pub fn parse(value: &Value) -> Option<Self> {
        let object = value.as_object()?;
        (value.to_string().len() <= Self::MAX_BYTES).then(|| Self(object.clone()))
    }

    pub fn as_map(&self) -> &Map<String, Value> {
        &self.0
    }

    fn encode(&self) -> String {
        Value::Object(self.0.clone()).to_string()
    }

    /// Only keyward writes the column, always an object.
    fn decode(stored: &str) -> Self {
        Self(serde_json::from_str(stored).unwrap_or_default())
    }
}

/// A key found by its secret, with what its user adds to authentication.
#[derive(Debug, Clone)]
pub struct Credential {
    pub key: ApiKey,
    pub roles: Vec<String>,
    pub user_active: bool,
    /// The user's own rate limits and credits, shared by all its keys.
    pub user_limits: Limits,
}

impl Credential {
    /// What limits the key at verification.
    pub fn control(&self) -> Control {
        Control {
            key_id: self.key.id.clone(),
            key_owner: self.key.usage_id.clone(),
            key: self.key.limits.clone(),
            user_owner: self.key.user_id.clone(),
            user: self.user_limits.clone(),
            allowed_ips: self.key.allowed_ips.clone(),
        }
    }
}

impl Credential {
    /// Whether the key authenticates at `now`: not revoked, its user active,
    /// not expired, in that order (a revoked key that has also expired is invalid).
    pub fn check(&self, now: DateTime<Utc>) -> Result<(), Error> {
        match (self.key.state(now), self.user_active) {
            (KeyState::Revoked, _) | (_, false) => Err(Error::KeyInvalid),
            (KeyState::Expired, true) => Err(Error::KeyExpired),
            (KeyState::Active, true) => Ok(()),
        }
    }
}

/// The key of `tenant_id` whose secret hashes to `hash`, with its user's roles
/// and activity; whether it authenticates is [`Credential::check`]'s to say.
pub fn find_for_authentication(
    conn: &mut DbConnection,
    tenant_id: &str,
    hash: &str,
) -> Result<Option<Credential>, Error> {
    let row: Option<(KeyRow, String, bool, String, Option<String>)> = api_keys::table
        .inner_join(
            users::table.on(users::tenant_id
                .eq(api_keys::tenant_id)
                .and(users::id.eq(api_keys::user_id))),
        )
        .filter(api_keys::tenant_id.eq(tenant_id))
        .filter(api_keys::secret_hash.eq(hash))
        .select((
            KeyRow::as_select(),
            users::roles,
            users::active,
            users::ratelimits,
            users::credits,
        ))
        .first(conn)
        .optional()?;
    Ok(row.map(
        |(key, roles, user_active, ratelimits, credits)| Credential {
            key: ApiKey::from(key),
            roles: decode_roles(&roles),
            user_active,
            user_limits: Limits::decode(&ratelimits, credits.as_deref()),
        },
    ))
}

/// When a new key stops working.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// Works through the end of this UTC day (the `/v1` dialect and the CLI).
    EndOfDay(NaiveDate),
    /// Stops working at this instant (Estuary durations).
    At(DateTime<Utc>),
}

impl Expiry {
    /// The first instant the key no longer works, if the tenant's policy allows it.
    pub fn resolve(self, tenant: &Tenant, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
        let max_days = u64::try_from(tenant.max_key_lifetime_days).unwrap_or(0);
        match self {
            Expiry::EndOfDay(date) => {
                let today = now.date_naive();
                if date < today {
                    return Err("Expiration date cannot be in the past.".to_owned());
                }
                let latest = today.checked_add_days(Days::new(max_days));
                if latest.is_none_or(|latest| date > latest) {
                    return Err(format!(
                        "Expiration date cannot be more than {max_days} days from today."
                    ));
                }
                date.checked_add_days(Days::new(1))
                    .map(|next| next.and_time(chrono::NaiveTime::MIN).and_utc())
                    .ok_or_else(|| "Expiration date is out of range.".to_owned())
            }
            Expiry::At(at) => {
                if at <= now {
                    return Err("Expiry must be in the future.".to_owned());
                }
                if at > now + TimeDelta::days(i64::from(tenant.max_key_lifetime_days)) {
                    return Err(format!(
                        "Expiry exceeds the tenant's maximum key lifetime of {max_days} days."
                    ));
                }
                Ok(at)
            }
        }
    }

    /// The longest expiry the tenant allows, as of `now`: a new key's default.
    pub fn longest(tenant: &Tenant, now: DateTime<Utc>) -> Self {
        let days = u64::try_from(tenant.max_key_lifetime_days).unwrap_or(0);
        Expiry::EndOfDay(
            now.date_naive()
                .checked_add_days(Days::new(days))
                .unwrap_or(NaiveDate::MAX),
        )
    }
}

/// A key name is 3 to 255 characters.
pub fn check_name(name: &str) -> Result<(), &'static str> {
    if !(3..=255).contains(&name.chars().count()) {
        Err("Name must be between 3 and 255 characters.")
    } else if name.chars().any(char::is_control) {
        // PostgreSQL text cannot hold NUL, and no name needs a control character.
        Err("Name must not contain control characters.")
    } else {
        Ok(())
    }
}

/// A key to be made. The core names its fields `user_id`, `name`, `expiry`
/// and `scopes` in errors; each dialect maps them to its own.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub user_id: String,
    pub name: String,
    pub expiry: Expiry,
    pub scopes: Vec<Scope>,
    pub meta: Meta,
    /// Usage control sent with it; only Administrators may send any but the defaults.
    pub control: ControlChange,
}

impl NewKey {
    /// A key with [`DEFAULT_SCOPES`] unless scopes are given, and no
    /// metadata. (Where an expiry may be left out, the default is
    /// [`Expiry::longest`].)
    pub fn new(user_id: String, name: String, expiry: Expiry, scopes: Option<Vec<Scope>>) -> Self {
        Self {
            user_id,
            name,
            expiry,
            scopes: scopes.unwrap_or_else(|| DEFAULT_SCOPES.to_vec()),
            meta: Meta::default(),
            control: ControlChange::default(),
        }
    }

    pub fn with_meta(self, meta: Meta) -> Self {
        Self { meta, ..self }
    }

    pub fn with_control(self, control: ControlChange) -> Self {
        Self { control, ..self }
    }

    /// Checks what can be checked without the database; returns the expiry instant.
    fn validate(&self, tenant: &Tenant, now: DateTime<Utc>) -> Result<DateTime<Utc>, Error> {
        let mut errors = FieldErrors::new();
        let mut push = |field: &str, message: String| {
            errors.entry(field.to_owned()).or_default().push(message)
        };
        if let Err(message) = check_name(&self.name) {
            push("name", message.to_owned());
        }
        if self.scopes.is_empty() {
            push("scopes", SCOPES_INVALID.to_owned());
        }
        let expires_at = self.expiry.resolve(tenant, now);
        if let Err(message) = &expires_at {
            push("expiry", message.clone());
        }
        match expires_at {
            Ok(at) if errors.is_empty() => Ok(at),
            _ => Err(Error::Invalid(errors)),
        }
    }
}

/// Creates a key without a caller (the CLI): validation, but no authorization.
pub fn create(
    conn: &mut DbConnection,
    tenant: &Tenant,
    new: NewKey,
    prefix: &str,
    now: DateTime<Utc>,
) -> Result<(ApiKey, Secret), Error> {
    let expires_at = new.validate(tenant, now)?;
    insert(
        conn,
        tenant,
        new,
        expires_at,
        prefix,
        now,
        &Actor::cli(),
        None,
    )
}

/// Inserts a key; a rotation's new key (`heir_of`: the old one) inherits
/// the old key's usage control and its counters (one credit balance).
#[expect(clippy::too_many_arguments)]
fn insert(
    conn: &mut DbConnection,
    tenant: &Tenant,
    mut new: NewKey,
    expires_at: DateTime<Utc>,
    prefix: &str,
    now: DateTime<Utc>,
    actor: &Actor,
    heir_of: Option<&ApiKey>,
) -> Result<(ApiKey, Secret), Error> {
    new.scopes.sort();
    new.scopes.dedup();
    crate::db::tenant_write(conn, &tenant.id, |conn| {
        let user_active: Option<bool> = users::table
            .filter(
                users::tenant_id
                    .eq(&tenant.id)
                    .and(users::id.eq(&new.user_id)),
            )
            .select(users::active)
            .first(conn)
            .optional()?;
        if user_active != Some(true) {
            return Err(Error::invalid("user_id", USER_ID_INVALID));
        }
        let secret = Secret::generate(prefix);
        let id = Uuid::now_v7().to_string();
        let now_ms = now.timestamp_millis();
        let (limits, allowed_ips, usage_id) = match heir_of {
            Some(old) => (
                old.limits.clone(),
                old.allowed_ips.clone(),
                old.usage_id.clone(),
            ),
            None => (
                new.control.apply(&Limits::default(), now_ms),
                new.control.allowed_ips.clone().unwrap_or_default(),
                id.clone(),
            ),
        };
        let credits_remaining = match (heir_of, new.control.new_balance()) {
            (None, Some(balance)) => {
                crate::limiter::store::set_balance(conn, &tenant.id, &usage_id, balance, now_ms)?;
                Some(balance as i64)
            }
            _ => None,
        };
        let mut key = ApiKey {
            id,
            user_id: new.user_id,
            name: new.name,
            token_hash: secret.hash(),
            scopes: new.scopes,
            expires_at,
            created_at: now,
            updated_at: None,
            revoked_at: None,
            last_used_at: None,
            meta: new.meta,
            limits,
            allowed_ips,
            usage_id,
            credits_remaining,
        };
        if heir_of.is_some() {
            with_balances(conn, &tenant.id, std::slice::from_mut(&mut key), now)?;
        }
        diesel::insert_into(api_keys::table)
            .values((
                api_keys::tenant_id.eq(&tenant.id),
                api_keys::id.eq(&key.id),
                api_keys::user_id.eq(&key.user_id),
                api_keys::name.eq(&key.name),
                api_keys::secret_hash.eq(&key.token_hash),
                api_keys::scopes.eq(encode_scopes(&key.scopes)),
                api_keys::expires_at.eq(expires_at.naive_utc()),
                api_keys::created_at.eq(now.naive_utc()),
                api_keys::meta.eq(key.meta.encode()),
                api_keys::ratelimits.eq(key.limits.encode_ratelimits()),
                api_keys::credits.eq(key.limits.encode_credits()),
                api_keys::allowed_ips.eq(key.allowed_ips.encode()),
                api_keys::usage_id.eq(&key.usage_id),
            ))
            .execute(conn)?;
        audit::record(
            conn,
            &tenant.id,
            actor,
            Action::KeyCreated,
            key.audit_target(),
            None,
            now,
        )?;
        Ok((key, secret))
    })
}

/// Creates a key as `caller`: the user for itself, Administrators for anyone,
/// never with a scope the calling key lacks.
pub fn create_for(
    conn: &mut DbConnection,
    caller: &Caller,
    new: NewKey,
    prefix: &str,
    now: DateTime<Utc>,
) -> Result<(ApiKey, Secret), Error> {
    caller.require_scope(Scope::UserKeyManagement)?;
    let expires_at = new.validate(&caller.tenant, now)?;
    if !caller.may_act_for(&new.user_id) {
        return Err(Error::Forbidden(
            "Only Administrators may create keys for other users",
        ));
    }
    caller.require_grantable(&new.scopes)?;
    if !caller.is_admin()
        && new
            .control
            .differs_from(&Limits::default(), &AllowedIps::default(), None)
    {
        return Err(Error::Forbidden(crate::limits::ADMINS_ONLY));
    }
    insert(
        conn,
        &caller.tenant,
        new,
        expires_at,
        prefix,
        now,
        &Actor::from(caller),
        None,
    )
}

/// Which keys a listing holds. Revoked keys are never listed.
#[derive(Debug, Clone, Default)]
pub struct KeyFilter {
    /// One user's keys; all of the tenant's when `None`.
    pub user_id: Option<String>,
    /// Keys in this state now.
    pub state: Option<KeyState>,
    /// Keys whose last valid instant is before 00:00Z of this date.
    pub expires_before: Option<NaiveDate>,
    /// Keys last used before 00:00Z of this date, or never.
    pub last_used_before: Option<NaiveDate>,
}

/// Lists the keys that are not revoked, oldest first, of one user or of the
/// whole tenant. Only Administrators may list another user's keys or all keys.
pub fn list_for(
    conn: &mut DbConnection,
    caller: &Caller,
    filter: &KeyFilter,
    page: &Page,
    now: DateTime<Utc>,
) -> Result<Vec<ApiKey>, Error> {
    require_listing(caller)?;
    match filter.user_id.as_deref() {
        None => caller.require_admin("Only Administrators may list every key")?,
        Some(id) if id != caller.user_id => {
            caller.require_admin("Only Administrators may list other users' keys")?;
            if crate::users::find(conn, &caller.tenant.id, id)?.is_none() {
                return Err(Error::invalid("user_id", USER_ID_INVALID));
            }
        }
        Some(_) => {}
    }
    let mut keys = list(conn, &caller.tenant.id, filter, page, now)?;
    with_balances(conn, &caller.tenant.id, &mut keys, now)?;
    Ok(keys)
}

/// What every listing of keys requires of the calling key.
fn require_listing(caller: &Caller) -> Result<(), Error> {
    caller.require_scope(Scope::UserKeyManagement)
}

/// The hot path of a listing, authorized: the caller's own keys, unfiltered
/// and unpaged, as of `now`. Asked of many callers at once by [`own_listings_of`].
#[derive(Debug, Clone)]
pub struct OwnKeys {
    tenant_id: String,
    user_id: String,
    now: DateTime<Utc>,
    rendering: Rendering,
}

/// How one dialect shows a listing: a name (a remembered listing keeps one
/// rendering per name) and the function that writes the bytes. The listing is
/// rendered where it is read, so that on PostgreSQL the keys are made, written
/// and dropped on the blocking thread that read them.
#[derive(Debug, Clone, Copy)]
pub struct Rendering {
    pub name: &'static str,
    pub render: fn(&[ApiKey]) -> Result<Bytes, Error>,
}

impl OwnKeys {
    /// Which user's keys, as `tenant id` and `user id`.
    pub fn user(&self) -> (&str, &str) {
        (&self.tenant_id, &self.user_id)
    }

    /// Whether `key`, read earlier, is still listed at this question's `now`:
    /// not if a revocation scheduled by a rotation has come.
    fn lists(&self, key: &ApiKey) -> bool {
        key.state(self.now) != KeyState::Revoked
    }

    /// Drops from an answer read earlier the keys no longer listed at `now`.
    fn keep_listed(&self, keys: &mut Vec<ApiKey>) {
        keys.retain(|key| self.lists(key));
    }

    /// `keys`, read earlier, rendered as this question asks: without those
    /// no longer listed at its `now`.
    fn render(&self, keys: &[ApiKey]) -> Result<Bytes, Error> {
        let render = self.rendering.render;
        if keys.iter().all(|key| self.lists(key)) {
            return render(keys);
        }
        let mut kept = keys.to_vec();
        self.keep_listed(&mut kept);
        render(&kept)
    }

    /// The answer from `listing` (read earlier, at most as early as `now`):
    /// its kept rendering while every key in it is still listed.
    pub fn answer_from(&self, listing: &OwnListing) -> Result<Bytes, Error> {
        match listing.value().iter().all(|key| self.lists(key)) {
            true => listing.rendering(self.rendering.name, |keys| self.render(keys)),
            false => self.render(listing.value()),
        }
    }

    /// The question `caller` may ask, if its key may list keys at all, to be
    /// answered as `rendering` writes it.
    pub fn of(caller: &Caller, now: DateTime<Utc>, rendering: Rendering) -> Result<Self, Error> {
        require_listing(caller)?;
        Ok(Self {
            tenant_id: caller.tenant.id.clone(),
            user_id: caller.user_id.clone(),
            now,
            rendering,
        })
    }
}

impl KeyFilter {
    /// Whether this listing is `caller`'s own keys and nothing else, which
    /// [`OwnKeys`] answers.
    pub fn is_own_keys(&self, caller: &Caller) -> bool {
        let Self {
            user_id,
            state,
            expires_before,
            last_used_before,
        } = self;
        user_id.as_deref() == Some(caller.user_id.as_str())
            && state.is_none()
            && expires_before.is_none()
            && last_used_before.is_none()
    }
}

/// A caller's own keys as [`OwnKeys`] lists them, shared, with the renderings
/// the dialects made of them, by every request answered from one read.
pub type OwnListing = Arc<Rendered<Vec<ApiKey>>>;

/// Answers many [`OwnKeys`] questions, in order, with one query per tenant:
/// what [`list_for`] lists for each, rendered as each asks. Asks of one user
/// that list the same keys in the same rendering share it.
pub fn own_listings_of(conn: &mut DbConnection, asks: &[OwnKeys]) -> Result<Vec<Bytes>, Error> {
    let found = asked_keys(conn, asks)?;
    let mut made: HashMap<(&str, &str, &str, usize), Bytes> = HashMap::new();
    asks.iter()
        .map(|ask| {
            let (tenant_id, user_id) = ask.user();
            let keys = found.get(&ask.user()).map_or(&[][..], Vec::as_slice);
            // A key once revoked stays so as `now` grows: asks that keep as
            // many keys keep the same ones.
            let listed = keys.iter().filter(|key| ask.lists(key)).count();
            let made_as = (tenant_id, user_id, ask.rendering.name, listed);
            if let Some(bytes) = made.get(&made_as) {
                return Ok(bytes.clone());
            }
            let bytes = ask.render(keys)?;
            made.insert(made_as, bytes.clone());
            Ok(bytes)
        })
        .collect()
}

/// What [`list_for`] lists for one [`OwnKeys`] question.
pub fn own_keys(conn: &mut DbConnection, ask: &OwnKeys) -> Result<Vec<ApiKey>, Error> {
    let mut keys = asked_keys(conn, std::slice::from_ref(ask))?
        .into_values()
        .next()
        .unwrap_or_default();
    ask.keep_listed(&mut keys);
    Ok(keys)
}

/// The keys of every user `asks` name, not revoked at the earliest of their
/// `now`s (each ask drops those revoked by its own), one query per tenant.
fn asked_keys<'a>(
    conn: &mut DbConnection,
    asks: &'a [OwnKeys],
) -> Result<HashMap<(&'a str, &'a str), Vec<ApiKey>>, Error> {
    let mut found: HashMap<(&str, &str), Vec<ApiKey>> = HashMap::new();
    let Some(earliest) = asks.iter().map(|ask| ask.now.naive_utc()).min() else {
        return Ok(found);
    };
    let mut tenants: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (tenant_id, user_id) in asks.iter().map(OwnKeys::user) {
        tenants.entry(tenant_id).or_default().push(user_id);
    }
    for (tenant_id, mut users) in tenants {
        users.sort_unstable();
        users.dedup();
        let rows = match users.as_slice() {
            [user_id] => user_keys(conn, tenant_id, user_id, earliest)?,
            _ => api_keys::table
                .filter(api_keys::tenant_id.eq(tenant_id))
                .filter(api_keys::user_id.eq_any(&users))
                .filter(not_revoked(earliest))
                .order((api_keys::created_at.asc(), api_keys::id.asc()))
                .select(KeyRow::as_select())
                .load::<KeyRow>(conn)?,
        };
        for row in rows {
            let key = ApiKey::from(row);
            // The asker's own id, borrowed: the row's is moved with the key.
            if let Ok(at) = users.binary_search(&key.user_id.as_str()) {
                found.entry((tenant_id, users[at])).or_default().push(key);
            }
        }
    }
    for ((tenant_id, _), keys) in found.iter_mut() {
        with_balances(conn, tenant_id, keys, earliest.and_utc())?;
    }
    Ok(found)
}

/// One user's keys not revoked at `now`, oldest first: the hot path of a
/// listing. A query of fixed shape, so the connection keeps it prepared.
fn user_keys(
    conn: &mut DbConnection,
    tenant_id: &str,
    user_id: &str,
    now: NaiveDateTime,
) -> Result<Vec<KeyRow>, Error> {
    Ok(api_keys::table
        .filter(api_keys::tenant_id.eq(tenant_id))
        .filter(api_keys::user_id.eq(user_id))
        .filter(not_revoked(now))
        .order((api_keys::created_at.asc(), api_keys::id.asc()))
        .select(KeyRow::as_select())
        .load::<KeyRow>(conn)?)
}

fn midnight(date: NaiveDate) -> NaiveDateTime {
    date.and_time(chrono::NaiveTime::MIN)
}

fn list(
    conn: &mut DbConnection,
    tenant_id: &str,
    filter: &KeyFilter,
    page: &Page,
    now: DateTime<Utc>,
) -> Result<Vec<ApiKey>, Error> {
    let now = now.naive_utc();
    if let (Some(user_id), None, None, None, None, None) = (
        &filter.user_id,
        filter.state,
        filter.expires_before,
        filter.last_used_before,
        page.take,
        &page.start_with,
    ) {
        // One user's keys, unfiltered and unpaged.
        return Ok(user_keys(conn, tenant_id, user_id, now)?
            .into_iter()
            .map(ApiKey::from)
            .collect());
    }
    let mut query = api_keys::table
        .filter(api_keys::tenant_id.eq(tenant_id))
        .filter(not_revoked(now))
        .select(KeyRow::as_select())
        .order((api_keys::created_at.asc(), api_keys::id.asc()))
        .into_boxed::<MultiBackend>();
    if let Some(user_id) = &filter.user_id {
        query = query.filter(api_keys::user_id.eq(user_id));
    }
    if let Some(state) = filter.state {
        query = query.filter(in_state(state, now));
    }
    if let Some(date) = filter.expires_before {
        // expires_at is the first invalid instant, so the last valid one is
        // before midnight exactly when expires_at is at or before it.
        query = query.filter(api_keys::expires_at.le(midnight(date)));
    }
    if let Some(date) = filter.last_used_before {
        query = query.filter(
            api_keys::last_used_at
                .is_null()
                .or(api_keys::last_used_at.lt(midnight(date))),
        );
    }
    if let Some(start_with) = &page.start_with {
        // The cursor must be a key of this listing (revoked ones too, so a page
        // boundary survives the revocation of its key).
        let mut cursor = api_keys::table
            .filter(
                api_keys::tenant_id
                    .eq(tenant_id)
                    .and(api_keys::id.eq(start_with)),
            )
            .select((api_keys::created_at, api_keys::id))
            .into_boxed::<MultiBackend>();
        if let Some(user_id) = &filter.user_id {
            cursor = cursor.filter(api_keys::user_id.eq(user_id));
        }
        let cursor = cursor.first(conn).optional()?.ok_or_else(|| {
            Error::invalid("start_with", "No key with this ID is in the listing.")
        })?;
        query = query.filter(paging::after(api_keys::created_at, api_keys::id, cursor));
    }
    if let Some(take) = page.take {
        query = query.limit(i64::from(take));
    }
    Ok(query
        .load::<KeyRow>(conn)?
        .into_iter()
        .map(ApiKey::from)
        .collect())
}

/// The longest grace window of a rotation: one week.
pub const MAX_GRACE_SECONDS: i64 = 604_800;

/// The error of a `grace_seconds` that is not an integer in range.
pub fn grace_seconds_invalid() -> Error {
    Error::invalid(
        "grace_seconds",
        &format!("grace_seconds must be an integer from 0 to {MAX_GRACE_SECONDS}."),
    )
}

/// How to rotate a key.
#[derive(Debug, Clone, Default)]
pub struct Rotation {
    /// How long the old key keeps working (0..=[`MAX_GRACE_SECONDS`]).
    pub grace_seconds: i64,
    /// The new key's last day; the old key's expiry (capped by the policy) if `None`.
    pub expiration_date: Option<NaiveDate>,
}

impl Rotation {
    pub fn grace_in_range(seconds: i64) -> bool {
        (0..=MAX_GRACE_SECONDS).contains(&seconds)
    }
}

/// Replaces the key `id` with a new one of the same user, name and scopes. The
/// old key works for the grace window and is then revoked. A key is rotated at
/// most once; an unknown, revoked, already rotated or invisible key is
/// [`Error::NotFound`].
pub fn rotate_for(
    conn: &mut DbConnection,
    caller: &Caller,
    id: &str,
    rotation: &Rotation,
    prefix: &str,
    now: DateTime<Utc>,
) -> Result<(ApiKey, Secret), Error> {
    caller.require_scope(Scope::UserKeyManagement)?;
    if !Rotation::grace_in_range(rotation.grace_seconds) {
        return Err(grace_seconds_invalid());
    }
    let tenant = &caller.tenant;
    crate::db::tenant_write(conn, &tenant.id, |conn| {
        let old = find_for_change(conn, &tenant.id, &KeyRef::Id(id.to_owned()))?
            // A key with a revocation scheduled has been rotated already.
            .filter(|key| key.revoked_at.is_none())
            .filter(|key| caller.may_act_for(&key.user_id))
            .ok_or(Error::NotFound)?;
        caller.require_grantable(&old.scopes)?;
        let expiry_error = |message: String| Error::invalid("expiry", &message);
        let expires_at = match rotation.expiration_date {
            Some(date) => Expiry::EndOfDay(date)
                .resolve(tenant, now)
                .map_err(expiry_error)?,
            None => {
                let cap = Expiry::longest(tenant, now)
                    .resolve(tenant, now)
                    .map_err(expiry_error)?;
                let at = old.expires_at.min(cap);
                if at <= now {
                    return Err(expiry_error(
                        "The key has expired; give the new key an expiration_date.".into(),
                    ));
                }
                at
            }
        };
        let grace_ends = now + TimeDelta::seconds(rotation.grace_seconds);
        set_revoked_at(conn, &tenant.id, &old, grace_ends, now)?;
        let new = NewKey {
            user_id: old.user_id.clone(),
            name: old.name.clone(),
            expiry: Expiry::At(expires_at),
            scopes: old.scopes.clone(),
            meta: old.meta.clone(),
            control: ControlChange::default(),
        };
        let actor = Actor::from(caller);
        let (key, secret) = insert(
            conn,
            tenant,
            new,
            expires_at,
            prefix,
            now,
            &actor,
            Some(&old),
        )?;
        audit::record(
            conn,
            &tenant.id,
            &actor,
            Action::KeyRotated,
            old.audit_target(),
            Some(&key.id),
            now,
        )?;
        Ok((key, secret))
    })
}

/// A change to a key's name or metadata; `None` leaves it as it is.
#[derive(Debug, Clone, Default)]
pub struct KeyChange {
    pub name: Option<String>,
    pub meta: Option<Meta>,
    pub control: ControlChange,
}

/// Renames the key `id` or replaces its metadata, as its owner or an
/// Administrator. An unknown, revoked or invisible key is [`Error::NotFound`].
pub fn update_for(
    conn: &mut DbConnection,
    caller: &Caller,
    id: &str,
    change: KeyChange,
    now: DateTime<Utc>,
) -> Result<ApiKey, Error> {
    caller.require_scope(Scope::UserKeyManagement)?;
    if let Some(name) = &change.name {
        check_name(name).map_err(|message| Error::invalid("name", message))?;
    }
    let tenant_id = &caller.tenant.id;
    crate::db::tenant_write(conn, tenant_id, |conn| {
        let mut key = find_for_change(conn, tenant_id, &KeyRef::Id(id.to_owned()))?
            .filter(|key| key.state(now) != KeyState::Revoked)
            .filter(|key| caller.may_act_for(&key.user_id))
            .ok_or(Error::NotFound)?;
        if let Some(name) = change.name {
            key.name = name;
        }
        if let Some(meta) = change.meta {
            key.meta = meta;
        }
        with_balances(conn, tenant_id, std::slice::from_mut(&mut key), now)?;
        let control = &change.control;
        if !caller.is_admin()
            && control.differs_from(&key.limits, &key.allowed_ips, key.credits_remaining)
        {
            return Err(Error::Forbidden(crate::limits::ADMINS_ONLY));
        }
        let now_ms = now.timestamp_millis();
        key.limits = control.apply(&key.limits, now_ms);
        if let Some(allowed_ips) = &control.allowed_ips {
            key.allowed_ips = allowed_ips.clone();
        }
        if let Some(balance) = control.new_balance() {
            crate::limiter::store::set_balance(conn, tenant_id, &key.usage_id, balance, now_ms)?;
            key.credits_remaining = Some(balance as i64);
        }
        if key.limits.credits.is_none() {
            key.credits_remaining = None;
        }
        key.updated_at = Some(now);
        diesel::update(api_keys::table)
            .filter(api_keys::tenant_id.eq(tenant_id))
            .filter(api_keys::id.eq(&key.id))
            .set((
                api_keys::name.eq(&key.name),
                api_keys::meta.eq(key.meta.encode()),
                api_keys::ratelimits.eq(key.limits.encode_ratelimits()),
                api_keys::credits.eq(key.limits.encode_credits()),
                api_keys::allowed_ips.eq(key.allowed_ips.encode()),
                api_keys::updated_at.eq(now.naive_utc()),
            ))
            .execute(conn)?;
        audit::record(
            conn,
            tenant_id,
            &Actor::from(caller),
            Action::KeyUpdated,
            key.audit_target(),
            None,
            now,
        )?;
        Ok(key)
    })
}

/// The key `id` of the caller's tenant if it is not revoked and the caller may see it.
pub fn get_for(
    conn: &mut DbConnection,
    caller: &Caller,
    id: &str,
    now: DateTime<Utc>,
) -> Result<ApiKey, Error> {
    caller.require_scope(Scope::UserKeyManagement)?;
    let mut key = find_unrevoked(conn, &caller.tenant.id, &KeyRef::Id(id.to_owned()), now)?
        .filter(|key| caller.may_act_for(&key.user_id))
        .ok_or(Error::NotFound)?;
    with_balances(conn, &caller.tenant.id, std::slice::from_mut(&mut key), now)?;
    Ok(key)
}

/// Fills in the credit balance (as of `now`, refills applied) of each of
/// `keys` that has credits: one query, none when no key has credits.
pub fn with_balances(
    conn: &mut DbConnection,
    tenant_id: &str,
    keys: &mut [ApiKey],
    now: DateTime<Utc>,
) -> Result<(), Error> {
    crate::limiter::store::fill_balances(
        conn,
        tenant_id,
        keys,
        now.timestamp_millis(),
        |key| Some((key.usage_id.as_str(), key.limits.credits?)),
        |key, balance| key.credits_remaining = Some(balance),
    )
}

/// How a request names a key: by id, or by the hash of its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyRef {
    Id(String),
    Hash(String),
}

/// Revokes the key `id` as `caller` (its owner, or an Administrator); it is
/// rejected from the next request on. A key the caller may not see is
/// [`Error::NotFound`], like one that does not exist.
pub fn revoke_for(
    conn: &mut DbConnection,
    caller: &Caller,
    id: &str,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    revoke_visible(conn, caller, &KeyRef::Id(id.to_owned()), now, |key| {
        caller.may_act_for(&key.user_id)
    })
}

/// Revokes one of the caller's own keys, named by id or hash.
pub fn revoke_own(
    conn: &mut DbConnection,
    caller: &Caller,
    key: &KeyRef,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    revoke_visible(conn, caller, key, now, |key| key.user_id == caller.user_id)
}

fn revoke_visible(
    conn: &mut DbConnection,
    caller: &Caller,
    key: &KeyRef,
    now: DateTime<Utc>,
    visible: impl Fn(&ApiKey) -> bool,
) -> Result<(), Error> {
    caller.require_scope(Scope::UserKeyManagement)?;
    crate::db::tenant_write(conn, &caller.tenant.id, |conn| {
        let key = find_for_change(conn, &caller.tenant.id, key)?
            .filter(|key| key.state(now) != KeyState::Revoked)
            .filter(|key| visible(key))
            .ok_or(Error::NotFound)?;
        set_revoked_at(conn, &caller.tenant.id, &key, now, now)?;
        audit::record(
            conn,
            &caller.tenant.id,
            &Actor::from(caller),
            Action::KeyRevoked,
            key.audit_target(),
            None,
            now,
        )
    })
}

/// Revokes `key` as of `at` (now, or the end of a grace window), provided the
/// row is still as `key` was read: `updated_at` changes with every change, so
/// of two concurrent changes the second matches no row and is
/// [`Error::NotFound`], as if it had come after the first.
fn set_revoked_at(
    conn: &mut DbConnection,
    tenant_id: &str,
    key: &ApiKey,
    at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    let seen = key.updated_at.map(|t| t.naive_utc());
    let unchanged = api_keys::updated_at.eq(seen).or(api_keys::updated_at
        .is_null()
        .and(seen.is_none().into_sql::<diesel::sql_types::Bool>()));
    let changed = diesel::update(api_keys::table)
        .filter(api_keys::tenant_id.eq(tenant_id))
        .filter(api_keys::id.eq(&key.id))
        .filter(unchanged)
        .set((
            api_keys::revoked_at.eq(at.naive_utc()),
            api_keys::updated_at.eq(now.naive_utc()),
        ))
        .execute(conn)?;
    if changed == 1 {
        Ok(())
    } else {
        Err(Error::NotFound)
    }
}

/// The key named by `key`, read for a change inside a write transaction: its
/// row is locked first, so concurrent changes to one key queue up and each
/// sees what the one before it did.
fn find_for_change(
    conn: &mut DbConnection,
    tenant_id: &str,
    key: &KeyRef,
) -> Result<Option<ApiKey>, Error> {
    let Some(found) = find(conn, tenant_id, key)? else {
        return Ok(None);
    };
    crate::db::lock_key(conn, tenant_id, &found.id)?;
    find(conn, tenant_id, &KeyRef::Id(found.id))
}

/// The key of the tenant named by `key`, in whatever state.
pub fn find(
    conn: &mut DbConnection,
    tenant_id: &str,
    key: &KeyRef,
) -> Result<Option<ApiKey>, Error> {
    let (KeyRef::Id(value) | KeyRef::Hash(value)) = key;
    if value.contains('\0') {
        // No stored id or hash holds NUL, and PostgreSQL refuses it in text.
        return Ok(None);
    }
    let mut query = api_keys::table
        .filter(api_keys::tenant_id.eq(tenant_id))
        .select(KeyRow::as_select())
        .into_boxed::<MultiBackend>();
    query = match key {
        KeyRef::Id(id) => query.filter(api_keys::id.eq(id)),
        KeyRef::Hash(hash) => query.filter(api_keys::secret_hash.eq(hash)),
    };
    Ok(query.first(conn).optional()?.map(ApiKey::from))
}

/// The key of the tenant named by `key`, unless it is revoked at `now`
/// (expired keys included).
pub fn find_unrevoked(
    conn: &mut DbConnection,
    tenant_id: &str,
    key: &KeyRef,
    now: DateTime<Utc>,
) -> Result<Option<ApiKey>, Error> {
    Ok(find(conn, tenant_id, key)?.filter(|k| k.state(now) != KeyState::Revoked))
}

/// Every key the user ever had, revoked ones included, oldest first.
pub fn all_of_user(
    conn: &mut DbConnection,
    tenant_id: &str,
    user_id: &str,
) -> Result<Vec<ApiKey>, Error> {
    Ok(api_keys::table
        .filter(
            api_keys::tenant_id
                .eq(tenant_id)
                .and(api_keys::user_id.eq(user_id)),
        )
        .order((api_keys::created_at.asc(), api_keys::id.asc()))
        .select(KeyRow::as_select())
        .load(conn)?
        .into_iter()
        .map(ApiKey::from)
        .collect())
}

/// Counts of one user's keys by [`ApiKey::state`], so they add up to `total`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeyStats {
    pub total: u64,
    pub active: u64,
    pub expired: u64,
    pub revoked: u64,
    pub last_used_at: Option<DateTime<Utc>>,
}

impl KeyStats {
    pub fn of(keys: &[ApiKey], now: DateTime<Utc>) -> Self {
        let mut stats = KeyStats::default();
        for key in keys {
            stats.total += 1;
            *match key.state(now) {
                KeyState::Active => &mut stats.active,
                KeyState::Expired => &mut stats.expired,
                KeyState::Revoked => &mut stats.revoked,
            } += 1;
            stats.last_used_at = stats.last_used_at.max(key.last_used_at);
        }
        stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn key(
        updated_at: Option<DateTime<Utc>>,
        revoked_at: Option<DateTime<Utc>>,
        t0: DateTime<Utc>,
    ) -> ApiKey {
        ApiKey {
            id: "k".into(),
            user_id: "u".into(),
            name: "key".into(),
            token_hash: "h".into(),
            scopes: vec![Scope::PublicApi],
            expires_at: t0 + TimeDelta::days(1),
            created_at: t0 - TimeDelta::days(1),
            updated_at,
            revoked_at,
            last_used_at: None,
            meta: Meta::default(),
            limits: Limits::default(),
            allowed_ips: AllowedIps::default(),
            usage_id: "k".into(),
            credits_remaining: None,
        }
    }

    #[test]
    fn revocation_outranks_expiry_and_the_clock_never_runs_back() {
        let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let ms = TimeDelta::milliseconds(1);
        assert_eq!(key(None, None, t0).state(t0), KeyState::Active);
        assert_eq!(
            key(None, None, t0).state(t0 + TimeDelta::days(1)),
            KeyState::Expired
        );
        let revoked = key(Some(t0), Some(t0), t0);
        assert_eq!(revoked.state(t0), KeyState::Revoked);
        assert_eq!(revoked.state(t0 + TimeDelta::days(2)), KeyState::Revoked);
        // A request whose clock read an instant before the revocation it then
        // sees does not find the key alive.
        assert_eq!(revoked.state(t0 - ms), KeyState::Revoked);
        // A rotation's grace window: revoked later than it was changed.
        let rotated = key(Some(t0), Some(t0 + TimeDelta::hours(1)), t0);
        assert_eq!(rotated.state(t0 - ms), KeyState::Active);
        assert_eq!(
            rotated.state(t0 + TimeDelta::hours(1) - ms),
            KeyState::Active
        );
        assert_eq!(rotated.state(t0 + TimeDelta::hours(1)), KeyState::Revoked);
    }
}
