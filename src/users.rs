//! Users: each belongs to exactly one tenant and holds roles.

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use uuid::Uuid;

use crate::db::DbConnection;
use crate::error::Error;
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
        self.roles.iter().any(|r| r == ADMINISTRATORS)
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

/// What it takes to make a user.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub email: String,
    pub name: String,
    pub roles: Vec<String>,
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

pub fn create(
    conn: &mut DbConnection,
    tenant_id: &str,
    new: NewUser,
    now: DateTime<Utc>,
) -> Result<User, Error> {
    let email = normalize_email(&new.email);
    if !valid_email(&email) {
        return Err(Error::invalid(
            "email",
            "A valid email address is required.",
        ));
    }
    let name = new.name.trim().to_owned();
    if name.is_empty() || name.chars().count() > 255 {
        return Err(Error::invalid(
            "name",
            "Name must be between 1 and 255 characters.",
        ));
    }
    let roles = validate_roles(&new.roles)?;
    crate::db::write_transaction(conn, |conn| {
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
