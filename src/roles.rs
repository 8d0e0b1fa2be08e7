//! A user's roles: the two every tenant has, below users and callers alike.

use crate::error::Error;

/// The role that authorizes acting on other users.
pub const ADMINISTRATORS: &str = "Administrators";
/// The role every user gets unless told otherwise.
pub const DEFAULT_USERS: &str = "Default users";
/// The roles every tenant has.
pub const ROLES: [&str; 2] = [ADMINISTRATORS, DEFAULT_USERS];

/// Whether `roles` authorize acting on other users.
pub fn has_admin_role(roles: &[String]) -> bool {
    roles.iter().any(|r| r == ADMINISTRATORS)
}

/// Roles are stored as a JSON array of names.
pub(crate) fn decode_roles(stored: &str) -> Vec<String> {
    serde_json::from_str(stored).unwrap_or_default()
}

pub(crate) fn encode_roles(roles: &[String]) -> String {
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
