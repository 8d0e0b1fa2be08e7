//! Key secrets: `<prefix>_<32 random base62 chars><6-char checksum>`.
//!
//! The checksum is the CRC-32 (IEEE, as zlib computes it) of everything before
//! it, in base62, most significant digit first, left-padded with `0`. It lets a
//! mistyped or invented key be refused without touching the database. Only the
//! SHA-256 of a secret is stored; the secret itself exists in one response.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::distributions::Slice;
use rand::Rng;
use sha2::{Digest, Sha256};

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const RANDOM_LEN: usize = 32;
const CHECKSUM_LEN: usize = 6;

/// A freshly made secret. Its `Debug` never shows the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Draws 32 characters from the operating system's CSPRNG (≈190 bits).
    pub fn generate(prefix: &str) -> Self {
        let alphabet = Slice::new(BASE62).unwrap_or_else(|_| unreachable!("alphabet is not empty"));
        let random: String = rand::rngs::OsRng
            .sample_iter(alphabet)
            .take(RANDOM_LEN)
            .map(|&b| char::from(b))
            .collect();
        let body = format!("{prefix}_{random}");
        let checksum = checksum(&body).map(char::from);
        Self(body + &String::from_iter(checksum))
    }

    /// The secret, to be shown once.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn hash(&self) -> String {
        hash(&self.0)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

pub use crate::ground::valid_key_prefix as valid_prefix;

/// A secret's SHA-256, as bytes: what a cached authentication is found by
/// (no encoding on the hot path). [`SecretDigest::stored`] is the form the
/// database holds. Its `Debug` shows neither, like [`Secret`]'s: a hash is
/// never logged.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SecretDigest([u8; 32]);

impl SecretDigest {
    pub fn of(secret: &str) -> Self {
        Self(Sha256::digest(secret.as_bytes()).into())
    }

    /// SHA-256, base64url without padding (Estuary's `tokenHash`).
    pub fn stored(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }
}

impl fmt::Debug for SecretDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretDigest(..)")
    }
}

/// Whether `candidate` has the length of a secret with `prefix`: all that is
/// checked before a cached authentication is looked up by its digest (only a
/// [`well_formed`] secret is ever cached, and no other string has its digest).
pub fn secret_sized(candidate: &str, prefix: &str) -> bool {
    candidate.len() == prefix.len() + 1 + RANDOM_LEN + CHECKSUM_LEN
}

/// Whether `candidate` is a well-formed secret with `prefix` and a valid checksum.
/// Pure and cheap: run it before any database work.
pub fn well_formed(candidate: &str, prefix: &str) -> bool {
    let Some(rest) = candidate
        .strip_prefix(prefix)
        .and_then(|r| r.strip_prefix('_'))
    else {
        return false;
    };
    if rest.len() != RANDOM_LEN + CHECKSUM_LEN || !rest.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return false;
    }
    // All ASCII, so this index falls on a character boundary.
    let split = candidate.len() - CHECKSUM_LEN;
    candidate.as_bytes().get(split..) == Some(&checksum(&candidate[..split])[..])
}

/// Whether `text` holds something shaped like a secret with `prefix`: the
/// prefix (in any case), `_`, then at least as many letters and digits as a
/// secret's random part. Broader than [`well_formed`] on purpose: a secret
/// with a mistyped checksum, or inside a longer token, still gives it away.
pub fn resembles_secret(text: &str, prefix: &str) -> bool {
    let (text, marker) = (text.as_bytes(), format!("{prefix}_").into_bytes());
    text.windows(marker.len())
        .enumerate()
        .filter(|(_, window)| window.eq_ignore_ascii_case(&marker))
        .any(|(at, _)| {
            text[at + marker.len()..]
                .iter()
                .take_while(|b| b.is_ascii_alphanumeric())
                .count()
                >= RANDOM_LEN
        })
}

/// The stored form of a secret: SHA-256, base64url without padding (Estuary's `tokenHash`).
pub fn hash(secret: &str) -> String {
    SecretDigest::of(secret).stored()
}

/// The base-62 digits of the body's CRC-32 (ASCII).
fn checksum(body: &str) -> [u8; CHECKSUM_LEN] {
    let mut n = crc32fast::hash(body.as_bytes());
    let mut digits = [b'0'; CHECKSUM_LEN];
    for d in digits.iter_mut().rev() {
        *d = BASE62[(n % 62) as usize];
        n /= 62;
    }
    digits
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secrets_are_well_formed_and_distinct() {
        let a = Secret::generate("kw");
        let b = Secret::generate("kw");
        assert_ne!(a, b);
        assert_eq!(a.expose().len(), 2 + 1 + 32 + 6);
        assert!(well_formed(a.expose(), "kw"));
        assert!(!well_formed(a.expose(), "other"));
        assert_eq!(format!("{a:?}"), "Secret(..)");
    }

    #[test]
    fn a_well_formed_secret_has_the_size_the_cache_checks_and_its_stored_digest() {
        for prefix in ["kw", "acme", "k"] {
            let secret = Secret::generate(prefix);
            assert!(secret_sized(secret.expose(), prefix));
            assert!(!secret_sized(&secret.expose()[1..], prefix));
            assert!(!secret_sized(secret.expose(), "other"));
            let digest = SecretDigest::of(secret.expose());
            assert_eq!(digest.stored(), secret.hash());
            assert_eq!(format!("{digest:?}"), "SecretDigest(..)");
        }
    }

    #[test]
    fn checksum_is_zlib_crc32_in_padded_base62() {
        // Expected values computed independently with Python's zlib.crc32.
        assert_eq!(checksum("123456789"), *b"3jZRME"); // crc 0xCBF43926
        assert_eq!(checksum(&format!("kw_{}", "A".repeat(32))), *b"1q9SwS");
        assert_eq!(checksum("kw_0123456789abcdefghijABCDEFGHIJ01"), *b"2uugHW");
        assert!(well_formed(
            "kw_0123456789abcdefghijABCDEFGHIJ012uugHW",
            "kw"
        ));
    }

    #[test]
    fn malformed_secrets_are_refused() {
        let good = Secret::generate("kw");
        let s = good.expose();
        let mut flipped = s.to_owned();
        let last = flipped.pop().unwrap();
        flipped.push(if last == 'a' { 'b' } else { 'a' });
        for bad in [
            "",
            "kw_",
            "kw",
            &s[..s.len() - 1],
            &flipped,
            &s.replacen("kw_", "kw-", 1),
            &format!("{s}x"),
            &s.replacen('_', "_é", 1),
        ] {
            assert!(!well_formed(bad, "kw"), "accepted {bad:?}");
        }
    }

    #[test]
    fn secrets_are_recognized_inside_other_text() {
        let s = Secret::generate("kw");
        let s = s.expose();
        assert!(resembles_secret(s, "kw"));
        assert!(resembles_secret(&format!("x-{s}"), "kw"));
        assert!(resembles_secret(&s[..3 + RANDOM_LEN], "kw"));
        assert!(!resembles_secret(&s[..2 + RANDOM_LEN], "kw"));
        assert!(resembles_secret(&s.replacen("kw_", "KW_", 1), "kw"));
        assert!(!resembles_secret(&s.replacen("kw_", "kw-", 1), "kw"));
        assert!(!resembles_secret(s, "acme"));
        assert!(!resembles_secret("", "kw"));
    }

    #[test]
    fn hash_is_base64url_sha256() {
        // SHA-256("abc") = ba7816bf...; base64url without padding:
        assert_eq!(hash("abc"), "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0");
    }
}
