//! Authentication: from a request's headers to the [`Caller`] that handlers act for.
//!
//! Order of checks, each answering 401 with its own message: tenant named (or
//! pinned), tenant known, key sent, key well-formed (no database access), key
//! found in *this* tenant, not revoked, user active, not expired.

pub mod cache;
pub mod client_ip;
pub mod secret;

use actix_web::http::header::HeaderMap;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest};
use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use futures_util::future::LocalBoxFuture;

use self::cache::Authenticated;
use crate::api::context::RequestId;
use crate::db::DbConnection;
use crate::error::Error;
use crate::keys::{decode_scopes, Scope};
use crate::schema::{api_keys, users};
use crate::tenants::{self, Tenant};
use crate::users::{decode_roles, ADMINISTRATORS};
use crate::AppState;

/// The authenticated caller: who acts, in which tenant, with which key.
#[derive(Debug, Clone)]
pub struct Caller {
    pub tenant: Tenant,
    pub user_id: String,
    pub roles: Vec<String>,
    pub key_id: String,
    pub key_name: String,
    pub key_expires_at: DateTime<Utc>,
    /// The key's metadata, as verification (`/v1/auth`) answers it. Always empty
    /// until keys carry metadata: `authenticate` is where it will be read.
    pub key_meta: KeyMeta,
    pub scopes: Vec<Scope>,
    /// Where the request came from, for the audit log.
    pub origin: Origin,
}

/// A key's metadata: a JSON object, shared by the cached authentication and
/// every caller made from it.
pub type KeyMeta = std::sync::Arc<serde_json::Map<String, serde_json::Value>>;

/// The request a caller made: its id and the client's address.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    pub request_id: Option<String>,
    pub ip: Option<String>,
}

impl Caller {
    pub fn is_admin(&self) -> bool {
        self.roles.iter().any(|r| r == ADMINISTRATORS)
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
}

/// What a request presents: the tenant it names (or the pinned one) and its key.
#[derive(Clone)]
pub struct Credentials {
    pub tenant: String,
    pub key: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("tenant", &self.tenant)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// Reads the `tenant` header and the key headers (`x-key`, `x-api-key`,
    /// `Authorization: Bearer`). Several key headers must agree.
    pub fn from_headers(headers: &HeaderMap, pinned_tenant: Option<&str>) -> Result<Self, Error> {
        let named = headers.get("tenant").map(|v| v.to_str().map(str::trim));
        let tenant = match (named, pinned_tenant) {
            (Some(Err(_)), _) => return Err(Error::TenantUnknown),
            (Some(Ok(name)), Some(pinned)) if !name.is_empty() && name != pinned => {
                return Err(Error::TenantUnknown)
            }
            (Some(Ok(name)), None) if !name.is_empty() => name.to_owned(),
            (_, Some(pinned)) => pinned.to_owned(),
            (_, None) => return Err(Error::TenantMissing),
        };

        let mut key: Option<&str> = None;
        let mut malformed_authorization = false;
        for name in ["x-key", "x-api-key"] {
            for value in headers.get_all(name) {
                let value = value.to_str().map_err(|_| Error::KeyInvalid)?.trim();
                if !value.is_empty() {
                    agree(&mut key, value)?;
                }
            }
        }
        for value in headers.get_all("authorization") {
            match value.to_str().ok().and_then(bearer_token) {
                Some(token) => agree(&mut key, token)?,
                None => malformed_authorization = true,
            }
        }
        if key.is_none() && malformed_authorization {
            return Err(Error::AuthHeaderMalformed);
        }
        Ok(Self {
            tenant,
            key: key.map(str::to_owned),
        })
    }
}

/// Records `candidate` as the presented key, unless another one was presented before.
fn agree<'a>(key: &mut Option<&'a str>, candidate: &'a str) -> Result<(), Error> {
    match key {
        Some(seen) if *seen != candidate => Err(Error::AuthHeaderMalformed),
        _ => {
            *key = Some(candidate);
            Ok(())
        }
    }
}

/// The token of `Bearer <token>` (scheme case-insensitive).
fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// What the key headers presented, decided without the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Presented {
    Missing,
    Malformed,
    /// A well-formed secret, by its hash.
    Hash(String),
}

impl Credentials {
    pub fn presented(&self, prefix: &str) -> Presented {
        match self.key.as_deref() {
            None => Presented::Missing,
            Some(key) if !secret::well_formed(key, prefix) => Presented::Malformed,
            Some(key) => Presented::Hash(secret::hash(key)),
        }
    }
}

/// Checks a presented key against the database as of `now`.
pub fn authenticate(
    conn: &mut DbConnection,
    tenant_name: &str,
    presented: &Presented,
    now: DateTime<Utc>,
) -> Result<Authenticated, Error> {
    let tenant = match tenants::valid_name(tenant_name) {
        true => tenants::find_by_name(conn, tenant_name)?,
        false => None,
    }
    .ok_or(Error::TenantUnknown)?;
    let hash = match presented {
        Presented::Missing => return Err(Error::KeyMissing),
        Presented::Malformed => return Err(Error::KeyInvalid),
        Presented::Hash(hash) => hash,
    };
    type Row = (
        String,
        String,
        String,
        String,
        NaiveDateTime,
        Option<NaiveDateTime>,
        String,
        bool,
    );
    let row: Option<Row> = api_keys::table
        .inner_join(
            users::table.on(users::tenant_id
                .eq(api_keys::tenant_id)
                .and(users::id.eq(api_keys::user_id))),
        )
        .filter(api_keys::tenant_id.eq(&tenant.id))
        .filter(api_keys::secret_hash.eq(hash))
        .select((
            api_keys::id,
            api_keys::user_id,
            api_keys::name,
            api_keys::scopes,
            api_keys::expires_at,
            api_keys::revoked_at,
            users::roles,
            users::active,
        ))
        .first(conn)
        .optional()?;
    let (key_id, user_id, key_name, scopes, expires_at, revoked_at, roles, active) =
        row.ok_or(Error::KeyInvalid)?;
    if !active {
        return Err(Error::KeyInvalid);
    }
    let authenticated = Authenticated {
        caller: Caller {
            tenant,
            user_id,
            roles: decode_roles(&roles),
            key_id,
            key_name,
            key_expires_at: expires_at.and_utc(),
            key_meta: KeyMeta::default(),
            scopes: decode_scopes(&scopes),
            origin: Origin::default(),
        },
        revoked_at: revoked_at.map(|at| at.and_utc()),
    };
    authenticated.at(now)?;
    Ok(authenticated)
}

/// Authenticates a request: the cache if it has a fresh answer, else the database.
async fn authenticate_request(
    state: &AppState,
    credentials: Credentials,
    now: DateTime<Utc>,
) -> Result<Caller, Error> {
    let presented = credentials.presented(&state.settings.key_prefix);
    if let Presented::Hash(hash) = &presented {
        if let Some(hit) = state.auth_cache.get(&credentials.tenant, hash, now) {
            return hit.at(now);
        }
    }
    let generation = state.auth_cache.generation();
    let (tenant, lookup) = (credentials.tenant.clone(), presented.clone());
    let authenticated = state
        .db(move |conn| authenticate(conn, &tenant, &lookup, now))
        .await?;
    if let Presented::Hash(hash) = &presented {
        state.auth_cache.insert(
            &credentials.tenant,
            hash,
            authenticated.clone(),
            now,
            generation,
        );
    }
    Ok(authenticated.caller)
}

impl FromRequest for Caller {
    type Error = Error;
    type Future = LocalBoxFuture<'static, Result<Self, Error>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let credentials = state
            .as_ref()
            .map(|state| Credentials::from_headers(req.headers(), state.settings.pinned_tenant()));
        let peer = state.as_ref().and_then(|state| {
            client_ip::client_address(
                req.peer_addr().map(|addr| addr.ip()),
                req.headers(),
                &state.settings.trusted_proxies,
            )
        });
        let origin = Origin {
            request_id: req.extensions().get::<RequestId>().map(|id| id.0.clone()),
            ip: peer.map(|ip| ip.to_string()),
        };
        Box::pin(async move {
            let (Some(state), Some(credentials)) = (state, credentials) else {
                return Err(Error::Internal("application state missing".into()));
            };
            let now = state.clock.now();
            if let Err(retry_after_secs) = state.throttle.check(peer, now) {
                let error = Error::RateLimited { retry_after_secs };
                state.metrics.auth_failure(&error);
                return Err(error);
            }
            let authenticated = match credentials {
                Ok(credentials) => authenticate_request(&state, credentials, now).await,
                Err(e) => Err(e),
            };
            match authenticated {
                Ok(mut caller) => {
                    caller.origin = origin;
                    state.usage.record(&caller.tenant.id, &caller.key_id, now);
                    Ok(caller)
                }
                Err(error) => {
                    if error.status() == actix_web::http::StatusCode::UNAUTHORIZED {
                        state.throttle.fail(peer, now);
                        state.metrics.auth_failure(&error);
                    }
                    Err(error)
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::{HeaderName, HeaderValue};

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        map
    }

    fn read(pairs: &[(&str, &str)], pinned: Option<&str>) -> Result<Credentials, Error> {
        Credentials::from_headers(&headers(pairs), pinned)
    }

    #[test]
    fn tenant_comes_from_the_header_or_the_pin() {
        assert!(matches!(read(&[], None), Err(Error::TenantMissing)));
        assert!(matches!(
            read(&[("tenant", "")], None),
            Err(Error::TenantMissing)
        ));
        assert_eq!(read(&[("tenant", "acme")], None).unwrap().tenant, "acme");
        assert_eq!(read(&[], Some("acme")).unwrap().tenant, "acme");
        assert_eq!(
            read(&[("tenant", "acme")], Some("acme")).unwrap().tenant,
            "acme"
        );
        assert!(matches!(
            read(&[("tenant", "beta")], Some("acme")),
            Err(Error::TenantUnknown)
        ));
    }

    #[test]
    fn key_headers_must_agree() {
        let t = ("tenant", "acme");
        assert_eq!(read(&[t], None).unwrap().key, None);
        for pairs in [
            vec![t, ("x-key", "k1")],
            vec![t, ("x-api-key", "k1")],
            vec![t, ("authorization", "Bearer k1")],
            vec![t, ("authorization", "bearer  k1 ")],
            vec![
                t,
                ("x-key", "k1"),
                ("x-api-key", "k1"),
                ("authorization", "Bearer k1"),
            ],
        ] {
            assert_eq!(
                read(&pairs, None).unwrap().key.as_deref(),
                Some("k1"),
                "{pairs:?}"
            );
        }
        for pairs in [
            vec![t, ("x-key", "k1"), ("x-api-key", "k2")],
            vec![t, ("x-key", "k1"), ("authorization", "Bearer k2")],
            vec![t, ("x-key", "k1"), ("x-key", "k2")],
            vec![t, ("authorization", "Basic k1")],
            vec![t, ("authorization", "Bearer")],
        ] {
            assert!(
                matches!(read(&pairs, None), Err(Error::AuthHeaderMalformed)),
                "{pairs:?}"
            );
        }
    }

    #[test]
    fn credentials_never_print_the_key() {
        let c = read(&[("tenant", "acme"), ("x-key", "kw_secret")], None).unwrap();
        assert!(!format!("{c:?}").contains("secret"));
    }
}
