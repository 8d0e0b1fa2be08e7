//! Who acts: the core's idea of an authenticated caller and what it may do.
//!
//! `auth` builds a [`Caller`] from a request; the core's functions take one and
//! ask it the questions below. Nothing here knows about HTTP.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::error::Error;
use crate::limiter::Plan;
use crate::limits::AllowedIps;
use crate::memo::Rendered;
use crate::scopes::Scope;
use crate::tenants::Tenant;

/// The authenticated caller: who acts, in which tenant, with which key
/// ([`Identity`], read through `Deref`), and where the request came from.
/// The identity is shared: a cached authentication answers a request with a
/// reference count, not a copy of the tenant, the roles and the scopes.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Shared by a cached authentication and every caller made from it, with
    /// what the dialects prepare from it once (see [`Caller::prepared`]).
    identity: Arc<Rendered<Identity>>,
    /// Where the request came from, for the audit log.
    pub origin: Origin,
}

/// Who a [`Caller`] is.
#[derive(Debug)]
pub struct Identity {
    pub tenant: Tenant,
    pub user_id: String,
    pub roles: Vec<String>,
    pub key_id: String,
    pub key_name: String,
    /// The first instant the key no longer works.
    pub key_expires_at: DateTime<Utc>,
    /// The key's metadata, shared by the cached authentication and every
    /// caller made from it.
    pub key_meta: KeyMeta,
    pub scopes: Vec<Scope>,
    /// Where the key may be used from (API.md section 9); empty: anywhere.
    pub allowed_ips: AllowedIps,
    /// The counters a verification with the key spends from.
    pub usage: Plan,
}

impl std::ops::Deref for Caller {
    type Target = Identity;

    fn deref(&self) -> &Identity {
        self.identity.value()
    }
}

/// A key's metadata as a caller carries it.
pub type KeyMeta = Arc<serde_json::Map<String, serde_json::Value>>;

/// The request a caller made: its id and the client's address.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    pub request_id: Option<Arc<str>>,
    /// The client's address, by section 8's rule.
    pub client: Option<std::net::IpAddr>,
}

impl Origin {
    /// The client's address as the audit log writes it.
    pub fn ip(&self) -> Option<String> {
        self.client.map(|ip| ip.to_string())
    }
}

impl Caller {
    pub fn new(identity: Identity, origin: Origin) -> Self {
        Self {
            identity: Arc::new(Rendered::new(identity)),
            origin,
        }
    }

    /// What `prepare` makes of the caller's identity, made once per
    /// authentication read from the database and kept with it (a dialect's
    /// answer parts that depend on nothing else).
    pub fn prepared<R: std::any::Any + Send + Sync, E>(
        &self,
        name: &'static str,
        prepare: impl FnOnce(&Identity) -> Result<R, E>,
    ) -> Result<Arc<R>, E> {
        self.identity.prepared(name, prepare)
    }

    /// 403 unless the key may be used from `ip` (the client's address by
    /// section 8's rule; `None`: unknown).
    pub fn check_address(&self, ip: Option<std::net::IpAddr>) -> Result<(), Error> {
        match self.allowed_ips.allows(ip) {
            true => Ok(()),
            false => Err(Error::Forbidden(crate::limits::ADDRESS_NOT_ALLOWED)),
        }
    }

    pub fn is_admin(&self) -> bool {
        crate::roles::has_admin_role(&self.roles)
    }

    /// Whether the caller may act on `user_id`'s behalf: itself, or anyone for Administrators.
    pub fn may_act_for(&self, user_id: &str) -> bool {
        user_id == self.user_id || self.is_admin()
    }

    pub fn require_admin(&self, why: &'static str) -> Result<(), Error> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(Error::Forbidden(why))
        }
    }

    pub fn require_scope(&self, scope: Scope) -> Result<(), Error> {
        if self.scopes.contains(&scope) {
            return Ok(());
        }
        Err(Error::Forbidden(match scope {
            Scope::PublicApi => "The calling key lacks the public_api scope",
            Scope::UserKeyManagement => "The calling key lacks the user_key_management scope",
            Scope::UserManagement => "The calling key lacks the user_management scope",
        }))
    }

    /// A key never hands out a scope the calling key lacks.
    pub fn require_grantable(&self, scopes: &[Scope]) -> Result<(), Error> {
        if scopes.iter().all(|s| self.scopes.contains(s)) {
            Ok(())
        } else {
            Err(Error::Forbidden(
                "A key cannot grant a scope the calling key lacks",
            ))
        }
    }
}
