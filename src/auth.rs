//! Authentication: from a request's headers to the [`Caller`] that handlers act for.
//!
//! Order of checks, each answering 401 with its own message: tenant named (or
//! pinned), tenant known, key sent, key well-formed (no database access), key
//! found in *this* tenant, not revoked, user active, not expired.

pub mod cache;
pub mod client_ip;

use actix_web::http::header::{HeaderMap, HeaderName, AUTHORIZATION};
use actix_web::{web, FromRequest, HttpMessage, HttpRequest};
use chrono::{DateTime, Utc};
use futures_util::future::LocalBoxFuture;

use self::cache::Authenticated;
use crate::access::{Caller, Identity, Origin};
use crate::analytics::CountedKey;
use crate::db::DbConnection;
use crate::error::Error;
use crate::ground::RequestId;
use crate::keys::{self, secret};
use crate::limiter::Plan;
use crate::tenants;
use crate::AppState;

/// The header that names the tenant.
pub const TENANT_HEADER: HeaderName = HeaderName::from_static("tenant");
/// The headers that carry a key as it is (`Authorization: Bearer` carries one too).
const KEY_HEADERS: [HeaderName; 2] = [
    HeaderName::from_static("x-key"),
    HeaderName::from_static("x-api-key"),
];

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
    /// `Authorization: Bearer`). Several tenant headers must agree, and so
    /// must several key headers.
    pub fn from_headers(headers: &HeaderMap, pinned_tenant: Option<&str>) -> Result<Self, Error> {
        let named = tenant_header(headers)?;
        let tenant = match (named, pinned_tenant) {
            (Some(name), Some(pinned)) if !name.is_empty() && name != pinned => {
                return Err(Error::TenantUnknown)
            }
            (Some(name), None) if !name.is_empty() => name.to_owned(),
            (_, Some(pinned)) => pinned.to_owned(),
            (_, None) => return Err(Error::TenantMissing),
        };

        let mut key: Option<&str> = None;
        let mut malformed_authorization = false;
        for name in &KEY_HEADERS {
            for value in headers.get_all(name) {
                let value = value.to_str().map_err(|_| Error::KeyInvalid)?.trim();
                if !value.is_empty() {
                    agree(&mut key, value)?;
                }
            }
        }
        for value in headers.get_all(AUTHORIZATION) {
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

impl Credentials {
    /// SCIM's: the tenant named by the path (`None` for the pinned tenant's
    /// path; a path naming another tenant than the pinned one is unknown),
    /// the key from `Authorization: Bearer` alone (several must agree).
    pub fn from_bearer(
        headers: &HeaderMap,
        path_tenant: Option<&str>,
        pinned_tenant: Option<&str>,
    ) -> Result<Self, Error> {
        let tenant = match (path_tenant, pinned_tenant) {
            (Some(named), Some(pinned)) if named != pinned => return Err(Error::TenantUnknown),
            (Some(named), _) => named.to_owned(),
            (None, Some(pinned)) => pinned.to_owned(),
            (None, None) => return Err(Error::TenantMissing),
        };
        let mut key: Option<&str> = None;
        for value in headers.get_all(AUTHORIZATION) {
            match value.to_str().ok().and_then(bearer_token) {
                Some(token) => agree(&mut key, token)?,
                None => return Err(Error::AuthHeaderMalformed),
            }
        }
        Ok(Self {
            tenant,
            key: key.map(str::to_owned),
        })
    }
}

/// The `tenant` header: `None` if absent, an error if it is not text or if
/// several disagree (a proxy and keyward must not read different tenants).
fn tenant_header(headers: &HeaderMap) -> Result<Option<&str>, Error> {
    let mut named = None;
    for value in headers.get_all(TENANT_HEADER) {
        let value = value.to_str().map_err(|_| Error::TenantUnknown)?.trim();
        match named {
            Some(seen) if seen != value => return Err(Error::TenantUnknown),
            _ => named = Some(value),
        }
    }
    Ok(named)
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
    /// A well-formed secret, by its digest.
    Secret(secret::SecretDigest),
}

impl Credentials {
    /// The digest of a key of a secret's size: what the cache is asked with,
    /// before any format check (see [`authenticate_request`]).
    fn sized_digest(&self, prefix: &str) -> Option<secret::SecretDigest> {
        (self.key.as_deref())
            .filter(|key| secret::secret_sized(key, prefix))
            .map(secret::SecretDigest::of)
    }

    /// What the key headers present. `digest` is [`Credentials::sized_digest`]'s
    /// answer, so that a key is hashed once.
    fn presented(&self, prefix: &str, digest: Option<secret::SecretDigest>) -> Presented {
        match self.key.as_deref() {
            None => Presented::Missing,
            Some(key) if !secret::well_formed(key, prefix) => Presented::Malformed,
            Some(key) => Presented::Secret(digest.unwrap_or_else(|| secret::SecretDigest::of(key))),
        }
    }
}

/// A refused authentication, and the key it found in the tenant if any (a
/// revoked or expired key, or one of an inactive user): usage analytics
/// count a verification of such a key as `invalid`.
#[derive(Debug)]
pub struct Refused {
    pub error: Error,
    pub key: Option<CountedKey>,
}

impl From<Error> for Refused {
    fn from(error: Error) -> Self {
        Self { error, key: None }
    }
}

/// Checks a presented key against the database as of `now`. The checks that
/// need no database (tenant name shape, key presence and format) come first.
pub fn authenticate(
    conn: &mut DbConnection,
    tenant_name: &str,
    presented: &Presented,
    now: DateTime<Utc>,
) -> Result<Authenticated, Refused> {
    let tenant = match tenants::valid_name(tenant_name) {
        true => tenants::find_by_name(conn, tenant_name)?,
        false => None,
    }
    .ok_or(Error::TenantUnknown)?;
    let digest = match presented {
        Presented::Missing => return Err(Error::KeyMissing.into()),
        Presented::Malformed => return Err(Error::KeyInvalid.into()),
        Presented::Secret(digest) => digest,
    };
    let credential = keys::find_for_authentication(conn, &tenant.id, &digest.stored())?
        .ok_or(Error::KeyInvalid)?;
    if let Err(error) = credential.check(now) {
        return Err(Refused {
            error,
            key: Some(CountedKey {
                tenant_id: tenant.id,
                key_id: credential.key.id,
            }),
        });
    }
    let key = &credential.key;
    let usage = Plan::new(&tenant.id, &credential.control());
    let caller = Caller::new(
        Identity {
            tenant,
            user_id: key.user_id.clone(),
            roles: credential.roles.clone(),
            key_id: key.id.clone(),
            key_name: key.name.clone(),
            key_expires_at: key.expires_at,
            key_meta: std::sync::Arc::new(key.meta.as_map().clone()),
            scopes: key.scopes.clone(),
            allowed_ips: key.allowed_ips.clone(),
            usage,
        },
        Origin::default(),
    );
    Ok(Authenticated { caller, credential })
}

/// Authenticates a request: the cache if it has a fresh answer, else the database.
async fn authenticate_request(
    state: &AppState,
    credentials: Credentials,
    now: DateTime<Utc>,
) -> Result<Caller, Refused> {
    let prefix = &state.settings.key_prefix;
    // The cache first, by the digest alone: it holds only secrets that were
    // well formed (checked below before the database is asked), and no other
    // string has the digest of one, so a hit needs no format check.
    let digest = credentials.sized_digest(prefix);
    if let Some(digest) = &digest {
        let vouched = |read_mark| state.changes.vouches_for(read_mark);
        if let Some(hit) = state
            .auth_cache
            .get(&credentials.tenant, digest, now, vouched)
        {
            return hit.at(now).map_err(|error| Refused {
                error,
                key: Some(CountedKey {
                    tenant_id: hit.caller.tenant.id.clone(),
                    key_id: hit.caller.key_id.clone(),
                }),
            });
        }
    }
    let presented = credentials.presented(prefix, digest);
    // A read that an instance's refusal outranks (it began before a refusal
    // that another request read meanwhile) is made again, once: the second
    // began after that refusal.
    let mut attempts = 0;
    let authenticated = loop {
        attempts += 1;
        let (generation, read_mark) = (state.auth_cache.generation(), state.changes.mark());
        let (tenant, lookup) = (credentials.tenant.clone(), presented.clone());
        let read = state
            .read(move |conn| Ok(authenticate(conn, &tenant, &lookup, now)))
            .await
            .map_err(Refused::from)
            .and_then(|read| read);
        let Presented::Secret(digest) = &presented else {
            break read?;
        };
        match read {
            Err(refused) => {
                if matches!(refused.error, Error::KeyInvalid | Error::KeyExpired) {
                    state
                        .auth_cache
                        .refuse(&credentials.tenant, digest, read_mark);
                }
                return Err(refused);
            }
            Ok(authenticated) => {
                if attempts < 2
                    && state
                        .auth_cache
                        .refused_since(&credentials.tenant, digest, read_mark)
                {
                    continue;
                }
                state.auth_cache.insert(
                    &credentials.tenant,
                    digest,
                    authenticated.clone(),
                    now,
                    generation,
                    read_mark,
                );
                break authenticated;
            }
        }
    };
    Ok(authenticated.caller)
}

impl FromRequest for Caller {
    type Error = Error;
    type Future = LocalBoxFuture<'static, Result<Self, Error>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        authenticate_with(req, Address::Check, |state| {
            Credentials::from_headers(req.headers(), state.settings.pinned_tenant())
        })
    }
}

/// A caller whose key's `allowed_ips` is not checked yet: `/v1/auth` checks
/// it after the scopes (API.md section 9's order), with
/// [`Caller::check_address`] and the caller's `origin.client`.
pub struct Verifying(pub Caller);

impl FromRequest for Verifying {
    type Error = Error;
    type Future = futures_util::future::MapOk<
        LocalBoxFuture<'static, Result<Caller, Error>>,
        fn(Caller) -> Verifying,
    >;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        use futures_util::TryFutureExt;
        authenticate_with(req, Address::Later, |state| {
            Credentials::from_headers(req.headers(), state.settings.pinned_tenant())
        })
        .map_ok(Verifying as fn(Caller) -> Verifying)
    }
}

/// Whether authentication checks the key's `allowed_ips`, or leaves it to the handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Address {
    Check,
    Later,
}

/// Authenticates `req` with the credentials `read` finds in it: the one path
/// every dialect's caller takes (throttle, cache, database, last use, metrics).
pub fn authenticate_with(
    req: &HttpRequest,
    address: Address,
    read: impl FnOnce(&AppState) -> Result<Credentials, Error>,
) -> LocalBoxFuture<'static, Result<Caller, Error>> {
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let credentials = state.as_ref().map(|state| read(state));
    let peer = state.as_ref().and_then(|state| {
        client_ip::client_address(
            req.peer_addr().map(|addr| addr.ip()),
            req.headers(),
            &state.settings.trusted_proxies,
        )
    });
    let request = req.clone();
    let origin = Origin {
        request_id: req.extensions().get::<RequestId>().map(|id| id.0.clone()),
        client: peer,
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
            Ok(credentials) => match authenticate_request(&state, credentials, now).await {
                Ok(caller) => Ok(caller),
                Err(Refused { error, key }) => {
                    if let Some(key) = key {
                        // For `/v1/auth` to count (`api::v1::verify`).
                        request.extensions_mut().insert(key);
                    }
                    Err(error)
                }
            },
            Err(e) => Err(e),
        };
        match authenticated {
            Ok(mut caller) => {
                caller.origin = origin;
                if address == Address::Check {
                    caller.check_address(peer)?;
                }
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
    fn several_tenant_headers_must_agree() {
        let same = read(&[("tenant", "acme"), ("tenant", " acme")], None).unwrap();
        assert_eq!(same.tenant, "acme");
        for pinned in [None, Some("acme")] {
            for pairs in [
                [("tenant", "acme"), ("tenant", "beta")],
                [("tenant", "beta"), ("tenant", "acme")],
                [("tenant", "acme"), ("tenant", "")],
            ] {
                assert!(
                    matches!(read(&pairs, pinned), Err(Error::TenantUnknown)),
                    "{pairs:?} {pinned:?}"
                );
            }
        }
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
