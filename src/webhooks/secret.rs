//! Signing secrets: made, sealed for storage, opened to sign, and the
//! Standard Webhooks signature itself.
//!
//! A secret is 32 random bytes, shown once as `whsec_<base64>`. With an
//! operator key (`webhook_key`, or `webhook_key_file`) it is stored sealed
//! (XChaCha20-Poly1305, the endpoint's tenant and id bound as associated
//! data), so a dump of the database alone cannot forge a signature; without
//! one it is stored as it is (README "Webhooks").

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

use crate::error::Error;

/// What a stored secret starts with, by how it is stored.
const PLAIN: &str = "plain:";
const SEALED: &str = "sealed1:";
/// What a shown secret starts with (Standard Webhooks, as svix writes it).
pub const SHOWN_PREFIX: &str = "whsec_";

/// A signing secret's bytes. Never logged: `Debug` shows nothing.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningSecret([u8; 32]);

impl std::fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningSecret(..)")
    }
}

impl SigningSecret {
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        Self(bytes)
    }

    /// `whsec_<base64 of the bytes>`: the form the tenant is shown, once.
    pub fn shown(&self) -> String {
        format!("{SHOWN_PREFIX}{}", STANDARD.encode(self.0))
    }

    /// `v1,<base64 of HMAC-SHA256(secret, "<id>.<timestamp>.<body>")>`.
    pub fn sign(&self, id: &str, timestamp: i64, body: &str) -> String {
        sign_with(&self.0, id, timestamp, body)
    }
}

fn sign_with(key: &[u8], id: &str, timestamp: i64, body: &str) -> String {
    let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(key) else {
        unreachable!("HMAC accepts a key of any length")
    };
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// The operator's key that seals stored secrets, if one is configured.
#[derive(Clone, Default)]
pub struct Sealer {
    key: Option<[u8; 32]>,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer")
            .field("sealing", &self.key.is_some())
            .finish()
    }
}

impl Sealer {
    /// Seals with `key` (from the settings); `None`: stores secrets as they are.
    pub fn new(key: Option<[u8; 32]>) -> Self {
        Self { key }
    }

    pub fn seals(&self) -> bool {
        self.key.is_some()
    }

    /// The stored form of `secret`, for endpoint `id` of `tenant_id`.
    pub fn seal(&self, tenant_id: &str, id: &str, secret: &SigningSecret) -> Result<String, Error> {
        let Some(key) = &self.key else {
            return Ok(format!("{PLAIN}{}", STANDARD.encode(secret.0)));
        };
        let cipher = XChaCha20Poly1305::new(key.into());
        let mut nonce = [0u8; 24];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let aad = associated_data(tenant_id, id);
        let sealed = cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &secret.0,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| Error::Internal("cannot seal a webhook secret".into()))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok(format!("{SEALED}{}", STANDARD.encode(out)))
    }

    /// The secret stored as `stored` for endpoint `id` of `tenant_id`.
    pub fn open(&self, tenant_id: &str, id: &str, stored: &str) -> Result<SigningSecret, Error> {
        let bytes = |b64: &str| {
            STANDARD
                .decode(b64)
                .map_err(|_| Error::Internal("a stored webhook secret is corrupt".into()))
        };
        if let Some(plain) = stored.strip_prefix(PLAIN) {
            return <[u8; 32]>::try_from(bytes(plain)?)
                .map(SigningSecret)
                .map_err(|_| Error::Internal("a stored webhook secret is corrupt".into()));
        }
        let Some(sealed) = stored.strip_prefix(SEALED) else {
            return Err(Error::Internal("a stored webhook secret is corrupt".into()));
        };
        let Some(key) = &self.key else {
            return Err(Error::Internal(
                "the webhook secret is sealed and no webhook_key is configured".into(),
            ));
        };
        let sealed = bytes(sealed)?;
        if sealed.len() < 24 {
            return Err(Error::Internal("a stored webhook secret is corrupt".into()));
        }
        let (nonce, ciphertext) = sealed.split_at(24);
        let aad = associated_data(tenant_id, id);
        XChaCha20Poly1305::new(key.into())
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: aad.as_bytes(),
                },
            )
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .map(SigningSecret)
            .ok_or_else(|| {
                Error::Internal(
                    "a webhook secret does not open with the configured webhook_key".into(),
                )
            })
    }
}

/// A sealed secret opens only for the endpoint it was sealed for.
fn associated_data(tenant_id: &str, id: &str) -> String {
    format!("keyward webhook secret {tenant_id}/{id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_the_standard_webhooks_example() {
        // The example of the Standard Webhooks specification (svix's test vector).
        let secret = STANDARD.decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(
            sign_with(
                &secret,
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1614265330,
                r#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn sealed_secrets_open_only_for_their_endpoint_and_key() {
        let sealer = Sealer::new(Some([7u8; 32]));
        let secret = SigningSecret::generate();
        let stored = sealer.seal("t", "e", &secret).unwrap();
        assert!(stored.starts_with(SEALED));
        assert!(!stored.contains(&STANDARD.encode(secret.0)));
        assert_eq!(sealer.open("t", "e", &stored).unwrap(), secret);
        assert!(sealer.open("t", "other", &stored).is_err());
        let other = Sealer::new(Some([8u8; 32]));
        assert!(other.open("t", "e", &stored).is_err());
        assert!(Sealer::default().open("t", "e", &stored).is_err());

        let plain = Sealer::default().seal("t", "e", &secret).unwrap();
        assert_eq!(sealer.open("t", "e", &plain).unwrap(), secret);
    }

    #[test]
    fn shown_secret_is_whsec_and_base64_of_32_bytes() {
        let secret = SigningSecret::generate();
        let shown = secret.shown();
        let b64 = shown.strip_prefix("whsec_").unwrap();
        assert_eq!(STANDARD.decode(b64).unwrap().len(), 32);
        assert!(secret.sign("id", 1, "{}").starts_with("v1,"));
    }
}
