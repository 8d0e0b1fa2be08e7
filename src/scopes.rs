//! What a key may be used for: the scopes, below keys, users and callers alike.

use serde::{Deserialize, Serialize};

/// What a key may be used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Use the public API.
    PublicApi,
    /// Manage API keys.
    UserKeyManagement,
    /// Administer users.
    UserManagement,
}

impl Scope {
    pub const ALL: [Scope; 3] = [
        Scope::PublicApi,
        Scope::UserKeyManagement,
        Scope::UserManagement,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::PublicApi => "public_api",
            Scope::UserKeyManagement => "user_key_management",
            Scope::UserManagement => "user_management",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|scope| scope.as_str() == s)
    }
}

/// The scopes of a key made without naming any.
pub const DEFAULT_SCOPES: [Scope; 1] = [Scope::PublicApi];

/// Scopes are stored as a JSON array of their names.
pub(crate) fn decode_scopes(stored: &str) -> Vec<Scope> {
    serde_json::from_str(stored).unwrap_or_default()
}

pub(crate) fn encode_scopes(scopes: &[Scope]) -> String {
    serde_json::to_string(scopes).unwrap_or_else(|_| "[]".to_owned())
}
