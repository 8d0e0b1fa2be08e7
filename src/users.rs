//! Users: each belongs to exactly one tenant and holds roles.

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use uuid::Uuid;

use crate::access::Caller;
use crate::audit::{self, Action, Actor, Target};
use crate::db::{DbConnection, MultiBackend};
use crate::error::Error;
use crate::limits::{ControlChange, Limits};
use crate::paging::{self, Page};
use crate::schema::users;
use crate::scopes::Scope;

use crate::roles::{decode_roles, encode_roles};
pub use crate::roles::{has_admin_role, validate_roles, ADMINISTRATORS, DEFAULT_USERS, ROLES};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: String,
    pub email: String,
    pub name: String,
    pub roles: Vec<String>,
    pub active: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: Option<DateTime<Utc>>,
    /// The identity provider's id for the user (SCIM `externalId`), kept as given.
    pub external_id: Option<String>,
    /// Deleted by an identity provider (SCIM `DELETE`): inactive, and hidden
    /// from SCIM until reactivated. `/v1/users` still lists it.
    pub deprovisioned: bool,
    /// Rate limits and credits shared by all the user's keys (API.md section 9).
    pub limits: Limits,
    /// The credit balance when read with [`with_balances`] (else `None`).
    pub credits_remaining: Option<i64>,
}

impl User {
    /// What the audit log records an event about this user as.
    pub fn audit_target(&self) -> Target<'_> {
        Target {
            id: &self.id,
            user_id: &self.id,
        }
    }

    pub fn is_admin(&self) -> bool {
        has_admin_role(&self.roles)
    }
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = users)]
struct UserRow {
    id: String,
    email: String,
    name: String,
    roles: String,
    active: bool,
    created_at: NaiveDateTime,
    updated_at: Option<NaiveDateTime>,
    external_id: Option<String>,
    deprovisioned_at: Option<NaiveDateTime>,
    ratelimits: String,
    credits: Option<String>,
}

impl From<UserRow> for User {
    fn from(row: UserRow) -> Self {
        Self {
            id: row.id,
            email: row.email,
            name: row.name,
            roles: decode_roles(&row.roles),
            active: row.active,
            created_at: row.created_at.and_utc(),
            updated_at: row.updated_at.map(|t| t.and_utc()),
            external_id: row.external_id,
            deprovisioned: row.deprovisioned_at.is_some(),
            limits: Limits::decode(&row.ratelimits, row.credits.as_deref()),
            credits_remaining: None,
        }
    }
}

/// A user's name: 1 to 255 characters, no control characters.
fn check_user_name(name: &str) -> Result<(), Error> {
    if name.is_empty() || name.chars().count() > 255 {
        return Err(Error::invalid(
            "name",
            "Name must be between 1 and 255 characters.",
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(Error::invalid(
            "name",
            "Name must not contain control characters.",
        ));
    }
    Ok(())
}

/// An identity provider's id for a user: at most 255 characters, no control characters.
fn check_external_id(external_id: &str) -> Result<(), Error> {
    if external_id.is_empty()
        || external_id.chars().count() > 255
        || external_id.chars().any(char::is_control)
    {
        return Err(Error::invalid(
            "external_id",
            "External id must be 1 to 255 characters, without control characters.",
        ));
    }
    Ok(())
}

/// What it takes to make a user.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub email: String,
    pub name: String,
    pub roles: Vec<String>,
    /// The identity provider's id, when one provisions the user.
    pub external_id: Option<String>,
    /// Rate limits and credits (users are made by Administrators only).
    pub control: ControlChange,
}

impl NewUser {
    /// A user with the defaults for what is not given: the email as its name,
    /// and the role `Default users`.
    pub fn new(email: String, name: Option<String>, roles: Option<Vec<String>>) -> Self {
        Self {
            name: name.unwrap_or_else(|| email.clone()),
            roles: roles.unwrap_or_else(|| vec![DEFAULT_USERS.to_owned()]),
            email,
            external_id: None,
            control: ControlChange::default(),
        }
    }
}

/// Lower-cased and trimmed: addresses are compared without regard to case.
pub fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

fn valid_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.is_empty()
        && !domain.contains('@')
        && email.len() <= 254
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// `email`, normalized, if it is an address (else 400 `email`).
fn checked_email(email: &str) -> Result<String, Error> {
    let email = normalize_email(email);
    if !valid_email(&email) {
        return Err(Error::invalid(
            "email",
            "A valid email address is required.",
        ));
    }
    Ok(email)
}

/// The answer for an email another user of the tenant has.
pub const EMAIL_TAKEN: &str = "A user with this email already exists in the tenant.";

/// Creates a user; `actor` is recorded in the audit log.
pub fn create(
    conn: &mut DbConnection,
    tenant_id: &str,
    new: NewUser,
    now: DateTime<Utc>,
    actor: &Actor,
) -> Result<User, Error> {
    let email = checked_email(&new.email)?;
    let name = new.name.trim().to_owned();
    check_user_name(&name)?;
    let roles = validate_roles(&new.roles)?;
    if let Some(external_id) = &new.external_id {
        check_external_id(external_id)?;
    }
    crate::db::tenant_write(conn, tenant_id, |conn| {
        if find_by_email(conn, tenant_id, &email)?.is_some() {
            return Err(Error::Conflict(EMAIL_TAKEN));
        }
        let now_ms = now.timestamp_millis();
        let mut user = User {
            id: Uuid::now_v7().to_string(),
            email,
            name,
            roles,
            active: true,
            created_at: now,
            updated_at: None,
            external_id: new.external_id,
            deprovisioned: false,
            limits: new.control.apply(&Limits::default(), now_ms),
            credits_remaining: None,
        };
        if let Some(balance) = new.control.new_balance() {
            crate::limiter::store::set_balance(conn, tenant_id, &user.id, balance, now_ms)?;
            user.credits_remaining = Some(balance as i64);
        }
        diesel::insert_into(users::table)
            .values((
                users::tenant_id.eq(tenant_id),
                users::id.eq(&user.id),
                users::email.eq(&user.email),
                users::name.eq(&user.name),
                users::roles.eq(encode_roles(&user.roles)),
                users::active.eq(user.active),
                users::created_at.eq(now.naive_utc()),
                users::external_id.eq(&user.external_id),
                users::ratelimits.eq(user.limits.encode_ratelimits()),
                users::credits.eq(user.limits.encode_credits()),
            ))
            .execute(conn)?;
        audit::record(
            conn,
            tenant_id,
            actor,
            Action::UserCreated,
            user.audit_target(),
            None,
            now,
        )?;
        Ok(user)
    })
}

pub fn find(conn: &mut DbConnection, tenant_id: &str, id: &str) -> Result<Option<User>, Error> {
    Ok(users::table
        .filter(users::tenant_id.eq(tenant_id).and(users::id.eq(id)))
        .select(UserRow::as_select())
        .first(conn)
        .optional()?
        .map(User::from))
}

pub fn find_by_email(
    conn: &mut DbConnection,
    tenant_id: &str,
    email: &str,
) -> Result<Option<User>, Error> {
    Ok(users::table
        .filter(
            users::tenant_id
                .eq(tenant_id)
                .and(users::email.eq(normalize_email(email))),
        )
        .select(UserRow::as_select())
        .first(conn)
        .optional()?
        .map(User::from))
}

/// Finds a user by id or email; what the CLI's `--user` takes.
pub fn find_by_id_or_email(
    conn: &mut DbConnection,
    tenant_id: &str,
    id_or_email: &str,
) -> Result<Option<User>, Error> {
    match Uuid::parse_str(id_or_email) {
        Ok(id) => find(conn, tenant_id, &id.to_string()),
        Err(_) => find_by_email(conn, tenant_id, id_or_email),
    }
}

/// User administration needs the `user_management` scope and the `Administrators` role.
pub fn require_user_admin(caller: &Caller) -> Result<(), Error> {
    caller.require_scope(Scope::UserManagement)?;
    caller.require_admin("Only Administrators may administer users")
}

/// Fills in the credit balance (as of `now`, refills applied) of each of
/// `users` that has credits: one query, none when no user has credits.
pub fn with_balances(
    conn: &mut DbConnection,
    tenant_id: &str,
    users: &mut [User],
    now: DateTime<Utc>,
) -> Result<(), Error> {
    crate::limiter::store::fill_balances(
        conn,
        tenant_id,
        users,
        now.timestamp_millis(),
        |user| Some((user.id.as_str(), user.limits.credits?)),
        |user, balance| user.credits_remaining = Some(balance),
    )
}

/// The tenant's users, deactivated ones included, oldest first.
pub fn list_for(
    conn: &mut DbConnection,
    caller: &Caller,
    page: &Page,
    now: DateTime<Utc>,
) -> Result<Vec<User>, Error> {
    require_user_admin(caller)?;
    let tenant_id = &caller.tenant.id;
    let mut query = users::table
        .filter(users::tenant_id.eq(tenant_id))
        .select(UserRow::as_select())
        .order((users::created_at.asc(), users::id.asc()))
        .limit(i64::from(page.take_or_default()))
        .into_boxed::<MultiBackend>();
    if let Some(start_with) = &page.start_with {
        let cursor = users::table
            .filter(users::tenant_id.eq(tenant_id).and(users::id.eq(start_with)))
            .select((users::created_at, users::id))
            .first(conn)
            .optional()?
            .ok_or_else(|| {
                Error::invalid("start_with", "No user with this ID is in the listing.")
            })?;
        query = query.filter(paging::after(users::created_at, users::id, cursor));
    }
    let mut users: Vec<User> = query
        .load::<UserRow>(conn)?
        .into_iter()
        .map(User::from)
        .collect();
    with_balances(conn, tenant_id, &mut users, now)?;
    Ok(users)
}

pub fn create_for(
    conn: &mut DbConnection,
    caller: &Caller,
    new: NewUser,
    now: DateTime<Utc>,
) -> Result<User, Error> {
    require_user_admin(caller)?;
    create(conn, &caller.tenant.id, new, now, &Actor::from(caller))
}

pub fn get_for(
    conn: &mut DbConnection,
    caller: &Caller,
    id: &str,
    now: DateTime<Utc>,
) -> Result<User, Error> {
    require_user_admin(caller)?;
    let mut user = find(conn, &caller.tenant.id, id)?.ok_or(Error::NotFound)?;
    with_balances(
        conn,
        &caller.tenant.id,
        std::slice::from_mut(&mut user),
        now,
    )?;
    Ok(user)
}

/// A change to a user; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct UserChange {
    pub name: Option<String>,
    pub roles: Option<Vec<String>>,
    pub active: Option<bool>,
    /// A new address (unique in the tenant, else 409 [`EMAIL_TAKEN`]).
    pub email: Option<String>,
    /// `Some(None)` forgets the identity provider's id.
    pub external_id: Option<Option<String>>,
    /// Rate limits and credits.
    pub control: ControlChange,
}

impl UserChange {
    /// Whether applying it to `user` would change nothing.
    pub fn changes_nothing(&self, user: &User) -> bool {
        self.name.as_ref().is_none_or(|n| n.trim() == user.name)
            && self.roles.as_ref().is_none_or(|r| *r == user.roles)
            && self.active.is_none_or(|a| a == user.active)
            && self
                .email
                .as_ref()
                .is_none_or(|e| normalize_email(e) == user.email)
            && self
                .external_id
                .as_ref()
                .is_none_or(|e| *e == user.external_id)
            && self.control.is_empty()
    }
}

/// The answer for a change that would leave the tenant without an active administrator.
pub const LAST_ADMIN: &str =
    "The tenant's last active administrator can be neither demoted nor deactivated";
const ALREADY_DEACTIVATED: &str = "The user is already deactivated";

/// Applies `change` to the user `id`. The tenant's last active administrator
/// cannot lose the role or be deactivated (409), so a tenant never locks itself out.
pub fn update_for(
    conn: &mut DbConnection,
    caller: &Caller,
    id: &str,
    change: UserChange,
    now: DateTime<Utc>,
) -> Result<User, Error> {
    modify(conn, caller, id, now, Every::Change, |_| Ok(change))
}

/// Whether a change that changes nothing is still written and audited: a
/// `/v1` PATCH always is (API.md 4b: "any other PATCH logs user.updated"),
/// an identity provider's repeated sync is not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Every {
    Change,
    RealChange,
}

/// Like [`update_for`], but the change is decided by `decide` from the user as
/// it is inside the transaction (locked), so a read-modify-write (SCIM's PATCH)
/// cannot lose a concurrent change. A change that changes nothing writes and
/// audits nothing.
pub fn modify_for(
    conn: &mut DbConnection,
    caller: &Caller,
    id: &str,
    now: DateTime<Utc>,
    decide: impl FnOnce(&User) -> Result<UserChange, Error>,
) -> Result<User, Error> {
    modify(conn, caller, id, now, Every::RealChange, decide)
}

fn modify(
    conn: &mut DbConnection,
    caller: &Caller,
    id: &str,
    now: DateTime<Utc>,
    every: Every,
    decide: impl FnOnce(&User) -> Result<UserChange, Error>,
) -> Result<User, Error> {
    require_user_admin(caller)?;
    let tenant_id = &caller.tenant.id;
    crate::db::tenant_write(conn, tenant_id, |conn| {
        lock_for_change(conn, tenant_id, id)?;
        let user = find(conn, tenant_id, id)?.ok_or(Error::NotFound)?;
        let change = decide(&user)?;
        apply(conn, caller, user, change, now, every)
    })
}

/// Changes that could take the last administrator away wait for each other,
/// and changes to one user queue up behind each other.
fn lock_for_change(conn: &mut DbConnection, tenant_id: &str, id: &str) -> Result<(), Error> {
    crate::db::lock_users_with_roles(conn, tenant_id, &admin_pattern())?;
    crate::db::lock_user(conn, tenant_id, id)
}

/// Applies `change` to `user`, inside a write transaction that holds
/// [`lock_for_change`]'s locks: every rule of a user change is here.
fn apply(
    conn: &mut DbConnection,
    caller: &Caller,
    mut user: User,
    change: UserChange,
    now: DateTime<Utc>,
    every: Every,
) -> Result<User, Error> {
    let tenant_id = &caller.tenant.id;
    let name = change.name.as_deref().map(str::trim).map(str::to_owned);
    if let Some(name) = &name {
        check_user_name(name)?;
    }
    let roles = change.roles.as_deref().map(validate_roles).transpose()?;
    let email = change.email.as_deref().map(checked_email).transpose()?;
    if let Some(Some(external_id)) = &change.external_id {
        check_external_id(external_id)?;
    }
    if change.active == Some(false) && !user.active {
        // A deactivation happens once; a repeat (or the loser of a race) is told so.
        return Err(Error::Conflict(ALREADY_DEACTIVATED));
    }
    if every == Every::RealChange && change.changes_nothing(&user) {
        return Ok(user);
    }
    if let Some(email) = email.filter(|e| *e != user.email) {
        if find_by_email(conn, tenant_id, &email)?.is_some() {
            return Err(Error::Conflict(EMAIL_TAKEN));
        }
        user.email = email;
    }
    let was_active_admin = user.active && user.is_admin();
    if let Some(name) = name {
        user.name = name;
    }
    if let Some(roles) = roles {
        user.roles = roles;
    }
    if let Some(active) = change.active {
        user.active = active;
    }
    if let Some(external_id) = change.external_id {
        user.external_id = external_id;
    }
    let now_ms = now.timestamp_millis();
    user.limits = change.control.apply(&user.limits, now_ms);
    if let Some(balance) = change.control.new_balance() {
        crate::limiter::store::set_balance(conn, tenant_id, &user.id, balance, now_ms)?;
    }
    with_balances(conn, tenant_id, std::slice::from_mut(&mut user), now)?;
    // Reactivated, by whoever: the identity provider sees the user again.
    let undeleted = user.active && user.deprovisioned;
    user.deprovisioned &= !user.active;
    if was_active_admin
        && !(user.active && user.is_admin())
        && count_active_admins(conn, tenant_id)? <= 1
    {
        return Err(Error::Conflict(LAST_ADMIN));
    }
    user.updated_at = Some(now);
    diesel::update(users::table.filter(users::tenant_id.eq(tenant_id).and(users::id.eq(&user.id))))
        .set((
            users::email.eq(&user.email),
            users::name.eq(&user.name),
            users::roles.eq(encode_roles(&user.roles)),
            users::active.eq(user.active),
            users::external_id.eq(&user.external_id),
            users::ratelimits.eq(user.limits.encode_ratelimits()),
            users::credits.eq(user.limits.encode_credits()),
            users::updated_at.eq(now.naive_utc()),
        ))
        .execute(conn)?;
    if undeleted {
        diesel::update(
            users::table.filter(users::tenant_id.eq(tenant_id).and(users::id.eq(&user.id))),
        )
        .set(users::deprovisioned_at.eq(None::<NaiveDateTime>))
        .execute(conn)?;
    }
    let action = if change.active == Some(false) {
        Action::UserDeactivated
    } else {
        Action::UserUpdated
    };
    audit::record(
        conn,
        tenant_id,
        &Actor::from(caller),
        action,
        user.audit_target(),
        None,
        now,
    )?;
    Ok(user)
}

/// Deactivates the user `id`: its keys are rejected from the next request on.
pub fn deactivate_for(
    conn: &mut DbConnection,
    caller: &Caller,
    id: &str,
    now: DateTime<Utc>,
) -> Result<User, Error> {
    update_for(
        conn,
        caller,
        id,
        UserChange {
            active: Some(false),
            ..UserChange::default()
        },
        now,
    )
}

/// An identity provider's delete: deactivates the user `id` (as
/// [`deactivate_for`], last-administrator rule included) and hides it from the
/// provider until it is reactivated. An already deprovisioned user is
/// [`Error::NotFound`]; an inactive one is only hidden (audited `user.updated`).
pub fn deprovision_for(
    conn: &mut DbConnection,
    caller: &Caller,
    id: &str,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    require_user_admin(caller)?;
    let tenant_id = &caller.tenant.id;
    crate::db::tenant_write(conn, tenant_id, |conn| {
        lock_for_change(conn, tenant_id, id)?;
        let user = find(conn, tenant_id, id)?.ok_or(Error::NotFound)?;
        if user.deprovisioned {
            return Err(Error::NotFound);
        }
        let was_active = user.active;
        let change = UserChange {
            active: Some(false),
            ..UserChange::default()
        };
        let user = match was_active {
            true => apply(conn, caller, user, change, now, Every::Change)?,
            false => user,
        };
        diesel::update(
            users::table.filter(users::tenant_id.eq(tenant_id).and(users::id.eq(&user.id))),
        )
        .set((
            users::deprovisioned_at.eq(Some(now.naive_utc())),
            users::updated_at.eq(now.naive_utc()),
        ))
        .execute(conn)?;
        if !was_active {
            audit::record(
                conn,
                tenant_id,
                &Actor::from(caller),
                Action::UserUpdated,
                user.audit_target(),
                None,
                now,
            )?;
        }
        Ok(())
    })
}

/// An identity provider's create: a new user, or, when an inactive user of the
/// tenant has the address, that same user reactivated with `new`'s name, roles
/// and external id (audited `user.updated`). An active user with the address is
/// 409 [`EMAIL_TAKEN`]. Returns the user and whether it is new.
pub fn provision_for(
    conn: &mut DbConnection,
    caller: &Caller,
    new: NewUser,
    now: DateTime<Utc>,
) -> Result<(User, bool), Error> {
    require_user_admin(caller)?;
    let tenant_id = &caller.tenant.id;
    let email = checked_email(&new.email)?;
    crate::db::tenant_write(conn, tenant_id, |conn| {
        let Some(existing) = find_by_email(conn, tenant_id, &email)? else {
            let user = create(conn, tenant_id, new, now, &Actor::from(caller))?;
            return Ok((user, true));
        };
        if existing.active {
            return Err(Error::Conflict(EMAIL_TAKEN));
        }
        lock_for_change(conn, tenant_id, &existing.id)?;
        let change = UserChange {
            name: Some(new.name),
            roles: Some(new.roles),
            active: Some(true),
            email: None,
            external_id: Some(new.external_id),
            control: ControlChange::default(),
        };
        Ok((
            apply(conn, caller, existing, change, now, Every::Change)?,
            false,
        ))
    })
}

/// Which users a [`UserFilter`] compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserField {
    /// Case-exact.
    Id,
    /// Without regard to case.
    Email,
    /// Case-exact.
    ExternalId,
    /// Without regard to case.
    Name,
}

/// How a [`UserFilter`] compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Match {
    Equals,
    NotEquals,
    Contains,
    StartsWith,
    EndsWith,
}

/// A condition on users, as identity providers search them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserFilter {
    Compare(UserField, Match, String),
    /// The field has a value (every user has an id, an email and a name).
    Present(UserField),
    Active(bool),
    And(Box<UserFilter>, Box<UserFilter>),
    Or(Box<UserFilter>, Box<UserFilter>),
    Not(Box<UserFilter>),
}

diesel::define_sql_function!(fn lower(x: diesel::sql_types::Text) -> diesel::sql_types::Text);

type Condition =
    Box<dyn BoxableExpression<users::table, MultiBackend, SqlType = diesel::sql_types::Bool>>;

/// `value` as a `LIKE` pattern that matches it literally (`\` escapes).
fn like_literal(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

impl UserFilter {
    /// The SQL condition; never NULL, so `Not` means what it says.
    fn condition(&self) -> Result<Condition, Error> {
        use diesel::dsl::not;
        Ok(match self {
            Self::Active(active) => Box::new(users::active.eq(*active)),
            Self::And(a, b) => Box::new(a.condition()?.and(b.condition()?)),
            Self::Or(a, b) => Box::new(a.condition()?.or(b.condition()?)),
            Self::Not(a) => Box::new(not(a.condition()?)),
            Self::Present(UserField::ExternalId) => Box::new(users::external_id.is_not_null()),
            Self::Present(_) => Box::new(users::id.eq(users::id)),
            Self::Compare(field, how, value) => {
                let pattern = match how {
                    Match::Equals | Match::NotEquals => None,
                    Match::Contains => Some(format!("%{}%", like_literal(value))),
                    Match::StartsWith => Some(format!("{}%", like_literal(value))),
                    Match::EndsWith => Some(format!("%{}", like_literal(value))),
                };
                let equals: Condition = match field {
                    UserField::Id => Box::new(users::id.eq(value.clone())),
                    UserField::Email => Box::new(users::email.eq(normalize_email(value))),
                    UserField::Name => Box::new(lower(users::name).eq(value.to_lowercase())),
                    UserField::ExternalId => Box::new(
                        users::external_id
                            .is_not_null()
                            .and(users::external_id.eq(value.clone()).assume_not_null()),
                    ),
                };
                match (how, pattern) {
                    (Match::Equals, _) => equals,
                    (Match::NotEquals, _) => Box::new(not(equals)),
                    (_, Some(pattern)) => match field {
                        UserField::Email => {
                            Box::new(users::email.like(pattern.to_lowercase()).escape('\\'))
                        }
                        UserField::Name => {
                            Box::new(lower(users::name).like(pattern.to_lowercase()).escape('\\'))
                        }
                        // SQLite's LIKE ignores case: no case-exact substring
                        // match that both backends share.
                        UserField::Id | UserField::ExternalId => {
                            return Err(Error::invalid(
                                "filter",
                                "Only eq, ne and pr compare id and externalId.",
                            ))
                        }
                    },
                    (_, None) => equals,
                }
            }
        })
    }
}

/// The users an identity provider sees (not deprovisioned) that match
/// `filter`, oldest first: `limit` of them after skipping `offset`, and how
/// many match in all.
pub fn search_for(
    conn: &mut DbConnection,
    caller: &Caller,
    filter: Option<&UserFilter>,
    offset: i64,
    limit: i64,
) -> Result<(i64, Vec<User>), Error> {
    require_user_admin(caller)?;
    let tenant_id = caller.tenant.id.clone();
    let visible = || {
        users::table
            .filter(users::tenant_id.eq(tenant_id.clone()))
            .filter(users::deprovisioned_at.is_null())
            .into_boxed::<MultiBackend>()
    };
    let (mut count, mut query) = (visible(), visible());
    if let Some(filter) = filter {
        count = count.filter(filter.condition()?);
        query = query.filter(filter.condition()?);
    }
    let total: i64 = count.count().get_result(conn)?;
    let users = match limit {
        0 => Vec::new(),
        _ => query
            .select(UserRow::as_select())
            .order((users::created_at.asc(), users::id.asc()))
            .offset(offset)
            .limit(limit)
            .load::<UserRow>(conn)?
            .into_iter()
            .map(User::from)
            .collect(),
    };
    Ok((total, users))
}

/// The users an identity provider sees that hold `role`, oldest first.
pub fn members_for(
    conn: &mut DbConnection,
    caller: &Caller,
    role: &str,
) -> Result<Vec<User>, Error> {
    require_user_admin(caller)?;
    Ok(users::table
        .filter(users::tenant_id.eq(&caller.tenant.id))
        .filter(users::deprovisioned_at.is_null())
        .filter(users::roles.like(role_pattern(role)))
        .select(UserRow::as_select())
        .order((users::created_at.asc(), users::id.asc()))
        .load::<UserRow>(conn)?
        .into_iter()
        .map(User::from)
        .filter(|user| user.roles.iter().any(|r| r == role))
        .collect())
}

/// A change to who holds a role: `replace` (when given) first makes the
/// holders exactly those users, then `add` grant and `remove` revoke it.
#[derive(Debug, Clone, Default)]
pub struct MembersChange {
    pub replace: Option<Vec<String>>,
    pub add: Vec<String>,
    pub remove: Vec<String>,
}

/// Applies `change` to the holders of `role` in one transaction: every user
/// changed is audited `user.updated`; the last active administrator cannot
/// lose the role (409, and nothing is changed). An id that names no user the
/// identity provider sees is 400 `members`.
pub fn change_members_for(
    conn: &mut DbConnection,
    caller: &Caller,
    role: &str,
    change: MembersChange,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    require_user_admin(caller)?;
    if !ROLES.contains(&role) {
        return Err(Error::NotFound);
    }
    let tenant_id = caller.tenant.id.clone();
    crate::db::tenant_write(conn, &caller.tenant.id, |conn| {
        crate::db::lock_users_with_roles(conn, &tenant_id, &admin_pattern())?;
        let mut wanted: Vec<(String, bool)> = Vec::new();
        if let Some(replace) = &change.replace {
            for holder in members_for(conn, caller, role)? {
                if !replace.contains(&holder.id) {
                    wanted.push((holder.id, false));
                }
            }
            wanted.extend(replace.iter().map(|id| (id.clone(), true)));
        }
        wanted.extend(change.add.iter().map(|id| (id.clone(), true)));
        wanted.extend(change.remove.iter().map(|id| (id.clone(), false)));
        for (id, holds) in wanted {
            crate::db::lock_user(conn, &tenant_id, &id)?;
            let user = find(conn, &tenant_id, &id)?
                .filter(|user| !user.deprovisioned)
                .ok_or_else(|| Error::invalid("members", "No such user."))?;
            let mut roles = user.roles.clone();
            roles.retain(|r| r != role);
            if holds {
                roles.push(role.to_owned());
            }
            let roles = ROLES
                .iter()
                .filter(|r| roles.iter().any(|have| have == *r))
                .map(|r| (*r).to_owned())
                .collect::<Vec<_>>();
            let change = UserChange {
                roles: Some(roles),
                ..UserChange::default()
            };
            apply(conn, caller, user, change, now, Every::RealChange)?;
        }
        Ok(())
    })
}

/// A `LIKE` pattern matching the stored roles of a holder of `role`: roles are
/// a JSON array of names, and the quotes make the match exact.
fn role_pattern(role: &str) -> String {
    format!("%\"{role}\"%")
}

/// [`role_pattern`] of `Administrators`.
fn admin_pattern() -> String {
    format!("%\"{ADMINISTRATORS}\"%")
}

fn count_active_admins(conn: &mut DbConnection, tenant_id: &str) -> Result<i64, Error> {
    Ok(users::table
        .filter(users::tenant_id.eq(tenant_id))
        .filter(users::active.eq(true))
        .filter(users::roles.like(admin_pattern()))
        .count()
        .get_result(conn)?)
}
