//! Tenants: the unit of isolation. Everything else hangs off a tenant id.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use uuid::Uuid;

use crate::db::DbConnection;
use crate::error::Error;
use crate::schema::tenants;

/// Default and bounds of a tenant's maximum key lifetime, in days.
pub const DEFAULT_MAX_KEY_LIFETIME_DAYS: i32 = 365;
pub const MAX_KEY_LIFETIME_DAYS_RANGE: std::ops::RangeInclusive<i32> = 1..=3650;

#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = tenants)]
pub struct Tenant {
    pub id: String,
    pub name: String,
    pub max_key_lifetime_days: i32,
}

/// Whether `name` matches `[a-z0-9][a-z0-9-]{1,62}`.
pub fn valid_name(name: &str) -> bool {
    crate::ground::valid_tenant_name(name)
}

pub fn find_by_name(conn: &mut DbConnection, name: &str) -> Result<Option<Tenant>, Error> {
    Ok(tenants::table
        .filter(tenants::name.eq(name))
        .select(Tenant::as_select())
        .first(conn)
        .optional()?)
}

/// Finds a tenant by name, or says why it cannot be used from the CLI.
pub fn get_by_name(conn: &mut DbConnection, name: &str) -> Result<Tenant, Error> {
    find_by_name(conn, name)?.ok_or_else(|| Error::invalid("tenant", "No tenant has this name."))
}

/// Creates the tenant named `name`; `Ok(None)` if it already exists.
pub fn create(
    conn: &mut DbConnection,
    name: &str,
    now: DateTime<Utc>,
) -> Result<Option<Tenant>, Error> {
    if !valid_name(name) {
        return Err(Error::invalid(
            "tenant",
            "A tenant name is 2 to 63 characters of a-z, 0-9 and '-', starting with a letter or digit.",
        ));
    }
    let tenant = Tenant {
        id: Uuid::now_v7().to_string(),
        name: name.to_owned(),
        max_key_lifetime_days: DEFAULT_MAX_KEY_LIFETIME_DAYS,
    };
    let id = tenant.id.clone();
    crate::db::tenant_write(conn, &id, |conn| {
        if find_by_name(conn, name)?.is_some() {
            return Ok(None);
        }
        diesel::insert_into(tenants::table)
            .values((
                tenants::id.eq(&tenant.id),
                tenants::name.eq(&tenant.name),
                tenants::max_key_lifetime_days.eq(tenant.max_key_lifetime_days),
                tenants::created_at.eq(now.naive_utc()),
            ))
            .execute(conn)?;
        Ok(Some(tenant))
    })
}

/// Sets the longest lifetime, in days, a new or rotated key of the tenant may have.
pub fn set_max_key_lifetime(
    conn: &mut DbConnection,
    name: &str,
    days: i32,
    now: DateTime<Utc>,
) -> Result<Tenant, Error> {
    if !MAX_KEY_LIFETIME_DAYS_RANGE.contains(&days) {
        return Err(Error::invalid(
            "max_key_lifetime_days",
            "The maximum key lifetime is 1 to 3650 days.",
        ));
    }
    let mut tenant = get_by_name(conn, name)?;
    crate::db::tenant_write(conn, &tenant.id, |conn| {
        diesel::update(tenants::table.filter(tenants::id.eq(&tenant.id)))
            .set((
                tenants::max_key_lifetime_days.eq(days),
                tenants::updated_at.eq(now.naive_utc()),
            ))
            .execute(conn)
            .map_err(Error::from)
    })?;
    tenant.max_key_lifetime_days = days;
    Ok(tenant)
}

#[cfg(test)]
mod tests {
    use super::valid_name;

    #[test]
    fn tenant_names() {
        for good in ["acme", "a1", "0-tenant", &"a".repeat(63)] {
            assert!(valid_name(good), "{good}");
        }
        for bad in [
            "",
            "a",
            "-acme",
            "Acme",
            "acme_1",
            "acme.io",
            &"a".repeat(64),
            "é1",
        ] {
            assert!(!valid_name(bad), "{bad}");
        }
    }
}
