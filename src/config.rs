//! Typed settings. Sources, later ones winning: the defaults compiled in from
//! `config/default.toml`, that file on disk if present, the file named by
//! `KEYWARD_CONFIG`, then `KEYWARD_*` environment variables.

use std::path::PathBuf;

use serde::Deserialize;

use crate::error::Error;

const DEFAULTS: &str = include_str!("../config/default.toml");

#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    pub database_url: String,
    pub bind: String,
    /// Empty means multi-tenant.
    #[serde(default)]
    pub tenant: String,
    pub key_prefix: String,
    pub pool_size: u32,
    pub auth_failures_per_minute: u32,
    /// Origins (`scheme://host[:port]`, exact) whose pages may call the API
    /// from a browser; empty: no CORS headers at all. A comma-separated
    /// string (as `KEYWARD_CORS_ORIGINS` gives it) or a list.
    #[serde(default, deserialize_with = "comma_separated")]
    pub cors_origins: Vec<String>,
    /// Proxies whose `X-Forwarded-For` / `X-Real-IP` name the client (`auth::client_ip`).
    #[serde(default, deserialize_with = "trusted_proxies")]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Longest time a client may take to send a whole request (head and body).
    pub request_timeout_secs: u64,
    /// Whether verifications are counted per key (usage analytics).
    #[serde(default = "yes")]
    pub usage_counting: bool,
    /// Webhook endpoints may point at loopback, private and link-local addresses.
    #[serde(default)]
    pub webhook_allow_private: bool,
    /// Seals stored webhook secrets: the base64 of 32 bytes. Empty: see
    /// `webhook_key_file`; both empty: secrets are stored unsealed.
    #[serde(default)]
    pub webhook_key: String,
    /// A file holding `webhook_key` (used when `webhook_key` is empty).
    #[serde(default)]
    pub webhook_key_file: String,
    /// Seconds before each retry of a failed delivery (comma-separated).
    #[serde(deserialize_with = "numbers")]
    pub webhook_retry_schedule: Vec<u64>,
    /// An endpoint that has failed every attempt for this long is disabled.
    pub webhook_disable_after_secs: u64,
    /// Days a settled delivery, its attempts and its event are kept; older
    /// ones are pruned by each instance's sender.
    pub webhook_retention_days: u64,
    /// Days before a key's expiry that `key.expiring` is sent (comma-separated).
    #[serde(deserialize_with = "numbers")]
    pub expiry_notice_days: Vec<u64>,
}

/// Comma-separated whole numbers (`"7,1"`), one number, or a TOML array.
fn numbers<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Items {
        One(u64),
        Text(String),
        Many(Vec<u64>),
    }
    match Items::deserialize(d)? {
        Items::One(n) => Ok(vec![n]),
        Items::Many(v) => Ok(v),
        Items::Text(s) => s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<u64>()
                    .map_err(|_| serde::de::Error::custom(format!("{s:?} is not a whole number")))
            })
            .collect(),
    }
}

fn yes() -> bool {
    true
}

/// Accepts `"a, b"` as well as `["a", "b"]`; blank items are dropped.
fn comma_separated<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Items {
        One(String),
        Many(Vec<String>),
    }
    let items = match Items::deserialize(d)? {
        Items::One(s) => s.split(',').map(str::to_owned).collect(),
        Items::Many(v) => v,
    };
    Ok(items
        .into_iter()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect())
}

/// An origin as a browser sends it: scheme, host and optional port, nothing
/// more. A path or trailing slash would never match, so it is refused at start.
fn valid_origin(origin: &str) -> bool {
    let Some((scheme, rest)) = origin.split_once("://") else {
        return false;
    };
    matches!(scheme, "http" | "https")
        && !rest.is_empty()
        && !rest.contains(['/', '?', '#', '@', ' '])
}

/// Comma-separated CIDRs (as `KEYWARD_TRUSTED_PROXIES` gives them), or a TOML array.
fn trusted_proxies<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<ipnet::IpNet>, D::Error> {
    let items = comma_separated(d)?;
    crate::ground::parse_address_ranges(&items.join(",")).map_err(serde::de::Error::custom)
}

impl Settings {
    /// Loads the settings from their sources (see the module doc).
    pub fn load() -> Result<Self, Error> {
        let mut builder = config::Config::builder()
            .add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml))
            .add_source(config::File::with_name("config/default.toml").required(false));
        if let Ok(path) = std::env::var("KEYWARD_CONFIG") {
            builder = builder.add_source(config::File::with_name(&path).required(true));
        }
        let settings: Settings = builder
            .add_source(config::Environment::with_prefix("KEYWARD").try_parsing(true))
            .build()
            .and_then(config::Config::try_deserialize)
            .map_err(|e| Error::Config(e.to_string()))?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), Error> {
        DatabaseUrl::parse(&self.database_url)?;
        if !crate::ground::valid_key_prefix(&self.key_prefix) {
            return Err(Error::Config(
                "key_prefix must be 1 to 32 characters of [A-Za-z0-9]".into(),
            ));
        }
        if !self.tenant.is_empty() && !crate::ground::valid_tenant_name(&self.tenant) {
            return Err(Error::Config(format!(
                "tenant {:?} is not a valid tenant name",
                self.tenant
            )));
        }
        if let Some(bad) = self.cors_origins.iter().find(|o| !valid_origin(o)) {
            return Err(Error::Config(format!(
                "cors_origins: {bad:?} is not an origin (scheme://host[:port], no path)"
            )));
        }
        if self.request_timeout_secs == 0 {
            return Err(Error::Config(
                "request_timeout_secs must be at least 1".into(),
            ));
        }
        if self.pool_size == 0 {
            return Err(Error::Config("pool_size must be at least 1".into()));
        }
        self.webhook_key_bytes()?;
        if self
            .webhook_retry_schedule
            .iter()
            .any(|&s| s > 30 * 24 * 3600)
        {
            return Err(Error::Config(
                "webhook_retry_schedule: each step at most 30 days".into(),
            ));
        }
        if !(1..=3650).contains(&self.webhook_retention_days) {
            return Err(Error::Config(
                "webhook_retention_days must be from 1 to 3650".into(),
            ));
        }
        if self.expiry_notice_days.iter().any(|&d| d == 0 || d > 3650) {
            return Err(Error::Config(
                "expiry_notice_days: each from 1 to 3650".into(),
            ));
        }
        Ok(())
    }

    /// The key that seals stored webhook secrets: `webhook_key`, else the
    /// contents of `webhook_key_file`, as 32 bytes; `None` when neither is set.
    pub fn webhook_key_bytes(&self) -> Result<Option<[u8; 32]>, Error> {
        use base64::Engine;
        let text = if !self.webhook_key.trim().is_empty() {
            self.webhook_key.trim().to_owned()
        } else if !self.webhook_key_file.trim().is_empty() {
            let path = self.webhook_key_file.trim();
            std::fs::read_to_string(path)
                .map_err(|e| Error::Config(format!("webhook_key_file {path:?}: {e}")))?
                .trim()
                .to_owned()
        } else {
            return Ok(None);
        };
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .ok()
            .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
            .map(Some)
            .ok_or_else(|| {
                Error::Config(
                    "webhook_key must be the base64 of 32 bytes (e.g. `openssl rand -base64 32`)"
                        .into(),
                )
            })
    }

    pub fn request_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.request_timeout_secs)
    }

    /// The tenant this deployment is pinned to, if any.
    pub fn pinned_tenant(&self) -> Option<&str> {
        Some(self.tenant.as_str()).filter(|t| !t.is_empty())
    }
}

/// Where the data lives, chosen by the URL scheme.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    Sqlite(PathBuf),
    SqliteMemory,
    Postgres(String),
}

impl DatabaseUrl {
    /// Parses `sqlite://path`, `sqlite::memory:` or `postgres[ql]://...`. Any other
    /// scheme is an error: a typo must not silently create a file.
    pub fn parse(url: &str) -> Result<Self, Error> {
        if url == "sqlite::memory:" || url == "sqlite://:memory:" {
            Ok(Self::SqliteMemory)
        } else if let Some(path) = url.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err(Error::Config("sqlite:// URL names no file".into()));
            }
            Ok(Self::Sqlite(PathBuf::from(path)))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self::Postgres(url.to_owned()))
        } else {
            let scheme = url.split(':').next().unwrap_or_default();
            Err(Error::Config(format!(
                "unsupported database URL scheme {scheme:?}: use sqlite://PATH, sqlite::memory: or postgres://..."
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls_are_chosen_by_scheme() {
        assert_eq!(
            DatabaseUrl::parse("sqlite://data/k.db").unwrap(),
            DatabaseUrl::Sqlite("data/k.db".into())
        );
        assert_eq!(
            DatabaseUrl::parse("sqlite:///tmp/k.db").unwrap(),
            DatabaseUrl::Sqlite("/tmp/k.db".into())
        );
        assert_eq!(
            DatabaseUrl::parse("sqlite::memory:").unwrap(),
            DatabaseUrl::SqliteMemory
        );
        assert!(matches!(
            DatabaseUrl::parse("postgres://u@h/db").unwrap(),
            DatabaseUrl::Postgres(_)
        ));
        for bad in ["mysql://x", "data/k.db", "sqlite://", "", "sqlite:data.db"] {
            assert!(DatabaseUrl::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn compiled_in_defaults_are_valid() {
        let s: Settings = config::Config::builder()
            .add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml))
            .build()
            .unwrap()
            .try_deserialize()
            .unwrap();
        s.validate().unwrap();
        assert_eq!(s.bind, "127.0.0.1:8080");
        assert_eq!(s.key_prefix, "kw");
        assert_eq!(s.pinned_tenant(), None);
        assert!(s.cors_origins.is_empty());
        assert!(s.trusted_proxies.is_empty());
        assert_eq!(s.request_timeout_secs, 10);
    }

    #[test]
    fn cors_origins_are_a_comma_separated_list_of_origins() {
        let load = |toml: &str| {
            config::Config::builder()
                .add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml))
                .add_source(config::File::from_str(toml, config::FileFormat::Toml))
                .build()
                .and_then(config::Config::try_deserialize::<Settings>)
                .map_err(|e| Error::Config(e.to_string()))
                .and_then(|s| s.validate().map(|()| s.cors_origins))
        };
        assert_eq!(
            load(r#"cors_origins = " https://a.test, http://127.0.0.1:3000 ,""#).unwrap(),
            ["https://a.test", "http://127.0.0.1:3000"]
        );
        assert_eq!(
            load(r#"cors_origins = ["https://a.test"]"#).unwrap(),
            ["https://a.test"]
        );
        for bad in [
            "https://a.test/",
            "a.test",
            "https://a.test/x",
            "ftp://a.test",
            "*",
        ] {
            assert!(load(&format!("cors_origins = {bad:?}")).is_err(), "{bad}");
        }
    }

    #[test]
    fn trusted_proxies_are_cidrs_and_a_bad_one_is_an_error() {
        let load = |value: &str| {
            config::Config::builder()
                .add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml))
                .set_override("trusted_proxies", value)
                .unwrap()
                .build()
                .unwrap()
                .try_deserialize::<Settings>()
        };
        let s = load("127.0.0.0/8, 2001:db8::/32").unwrap();
        assert_eq!(s.trusted_proxies.len(), 2);
        let e = load("127.0.0.0/8,nope").unwrap_err().to_string();
        assert!(e.contains("\"nope\" is not a CIDR"), "{e}");
    }
}
