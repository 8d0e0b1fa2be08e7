//! Users: each belongs to exactly one tenant and holds roles.

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use uuid::Uuid;

use crate::access::Caller;
use crate::audit::{self, Action, Actor, Target};
use crate::db::{DbConnection, MultiBackend};
use crate::error::Error;
use crate::keys::Scope;
use crate::paging::{self, Page};
use crate::schema::users;

/// The role that authorizes acting on other users.
pub const ADMINISTRATORS: &str = "Administrators";
/// The role every user gets unless told otherwise.
pub const DEFAULT_USERS: &str = "Default users";
/// The roles every tenant has.
pub const ROLES: [&str; 2] = [ADMINISTRATORS, DEFAULT_USERS];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: String,
    pub email: String,
    pub name: String,
    pub roles: Vec<String>,
    pub active: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: Option<DateTime<Utc>>,
}

impl User {
    pub fn is_admin(&self) -> bool {
        has_admin_role(&self.roles)
    }
}

/// Whether `roles` authorize acting on other users.
pub fn has_admin_role(roles: &[String]) -> bool {
    roles.iter().any(|r| r == ADMINISTRATORS)
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
        }
    }
}

/// Roles are stored as a JSON array of names.
pub(crate) fn decode_roles(stored: &str) -> Vec<String> {
    serde_json::from_str(stored).unwrap_or_default()
}

fn encode_roles(roles: &[String]) -> String {
    serde_json::Value::from(roles).to_string()
}

/// Checks role names against the tenant's roles; returns them deduplicated, in the given order.
pub fn validate_roles(roles: &[String]) -> Result<Vec<String>, Error> {
    let mut out: Vec<String> = Vec::with_capacity(roles.len());
    for role in roles {
        if !ROLES.contains(&role.as_str()) {
            return Err(Error::invalid(
                "roles",
                "Unknown role. Roles are 'Administrators' and 'Default users'.",
            ));
        }
        if !out.contains(role) {
            out.push(role.clone());
        }
    }
    Ok(out)
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

/// What it takes to make a user.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub email: String,
    pub name: String,
    pub roles: Vec<String>,
}

impl NewUser {
    /// A user with the defaults for what is not given: the email as its name,
    /// and the role `Default users`.
    pub fn new(email: String, name: Option<String>, roles: Option<Vec<String>>) -> Self {
        Self {
            name: name.unwrap_or_else(|| email.clone()),
            roles: roles.unwrap_or_else(|| vec![DEFAULT_USERS.to_owned()]),
            email,
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

/// Creates a user; `actor` is recorded in the audit log.
pub fn create(
    conn: &mut DbConnection,
    tenant_id: &str,
    new: NewUser,
    now: DateTime<Utc>,
    actor: &Actor,
) -> Result<User, Error> {
    let email = normalize_email(&new.email);
    if !valid_email(&email) {
        return Err(Error::invalid(
            "email",
            "A valid email address is required.",
        ));
    }
    let name = new.name.trim().to_owned();
    check_user_name(&name)?;
    let roles = validate_roles(&new.roles)?;
    crate::db::tenant_write(conn, tenant_id, |conn| {
        if find_by_email(conn, tenant_id, &email)?.is_some() {
            return Err(Error::Conflict(
                "A user with this email already exists in the tenant.",
            ));
        }
        let user = User {
            id: Uuid::now_v7().to_string(),
            email,
            name,
            roles,
            active: true,
            created_at: now,
            updated_at: None,
        };
        diesel::insert_into(users::table)
            .values((
                users::tenant_id.eq(tenant_id),
                users::id.eq(&user.id),
                users::email.eq(&user.email),
                users::name.eq(&user.name),
                users::roles.eq(encode_roles(&user.roles)),
                users::active.eq(user.active),
                users::created_at.eq(now.naive_utc()),
            ))
            .execute(conn)?;
        audit::record(
            conn,
            tenant_id,
            actor,
            Action::UserCreated,
            Target::user(&user),
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
fn require_user_admin(caller: &Caller) -> Result<(), Error> {
    caller.require_scope(Scope::UserManagement)?;
    caller.require_admin("Only Administrators may administer users")
}

/// The tenant's users, deactivated ones included, oldest first.
pub fn list_for(conn: &mut DbConnection, caller: &Caller, page: &Page) -> Result<Vec<User>, Error> {
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
    Ok(query
        .load::<UserRow>(conn)?
        .into_iter()
        .map(User::from)
        .collect())
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

pub fn get_for(conn: &mut DbConnection, caller: &Caller, id: &str) -> Result<User, Error> {
    require_user_admin(caller)?;
    find(conn, &caller.tenant.id, id)?.ok_or(Error::NotFound)
}

/// A change to a user; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct UserChange {
    pub name: Option<String>,
    pub roles: Option<Vec<String>>,
    pub active: Option<bool>,
}

const LAST_ADMIN: &str =
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
    require_user_admin(caller)?;
    let name = change.name.map(|n| n.trim().to_owned());
    if let Some(name) = &name {
        check_user_name(name)?;
    }
    let roles = change.roles.as_deref().map(validate_roles).transpose()?;
    let tenant_id = &caller.tenant.id;
    crate::db::tenant_write(conn, tenant_id, |conn| {
        // Changes that could take the last administrator away wait for each
        // other, and changes to one user queue up behind each other.
        crate::db::lock_users_with_roles(conn, tenant_id, &admin_pattern())?;
        crate::db::lock_user(conn, tenant_id, id)?;
        let mut user = find(conn, tenant_id, id)?.ok_or(Error::NotFound)?;
        if change.active == Some(false) && !user.active {
            // A deactivation happens once; a repeat (or the loser of a race) is told so.
            return Err(Error::Conflict(ALREADY_DEACTIVATED));
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
        if was_active_admin
            && !(user.active && user.is_admin())
            && count_active_admins(conn, tenant_id)? <= 1
        {
            return Err(Error::Conflict(LAST_ADMIN));
        }
        user.updated_at = Some(now);
        diesel::update(
            users::table.filter(users::tenant_id.eq(tenant_id).and(users::id.eq(&user.id))),
        )
        .set((
            users::name.eq(&user.name),
            users::roles.eq(encode_roles(&user.roles)),
            users::active.eq(user.active),
            users::updated_at.eq(now.naive_utc()),
        ))
        .execute(conn)?;
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
            Target::user(&user),
            None,
            now,
        )?;
        Ok(user)
    })
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

/// A `LIKE` pattern matching the stored roles of an administrator: roles are a
/// JSON array of names, and the quotes make the match exact.
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
