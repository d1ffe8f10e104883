//! Standard Webhooks signatures (standardwebhooks.com): a secret is
//! `whsec_` + base64 of its key bytes; a delivery is signed
//! `v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`, one
//! signature per secret, space-separated, so a receiver holding either
//! secret during a rotation accepts it.

use base64::{Engine, engine::general_purpose::STANDARD};
use hmac::{Hmac, KeyInit, Mac};
use rand::RngCore;
use sha2::Sha256;

const PREFIX: &str = "whsec_";
/// Random bytes in a new secret (the contract asks for at least 24).
const SECRET_BYTES: usize = 32;

/// A new endpoint secret.
pub fn generate_secret() -> String {
    let mut key = [0u8; SECRET_BYTES];
    rand::rng().fill_bytes(&mut key);
    format!("{PREFIX}{}", STANDARD.encode(key))
}

/// The key bytes of a secret (`whsec_` optional, as the libraries accept).
fn key(secret: &str) -> Vec<u8> {
    let encoded = secret.strip_prefix(PREFIX).unwrap_or(secret);
    // Our secrets always decode; a foreign one signs with its raw bytes
    // rather than not at all.
    STANDARD
        .decode(encoded)
        .unwrap_or_else(|_| encoded.as_bytes().to_vec())
}

/// One `v1,<base64>` signature.
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(&key(secret)).expect("HMAC takes any key length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// The `webhook-signature` header: one signature per secret.
pub fn signature_header<'a>(
    secrets: impl IntoIterator<Item = &'a str>,
    id: &str,
    timestamp: i64,
    body: &str,
) -> String {
    secrets
        .into_iter()
        .map(|secret| sign(secret, id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether any signature in `header` is `secret`'s (constant-time compare).
pub fn verify(secret: &str, id: &str, timestamp: i64, body: &str, header: &str) -> bool {
    use subtle::ConstantTimeEq;
    let expected = sign(secret, id, timestamp, body);
    header
        .split(' ')
        .any(|candidate| bool::from(candidate.as_bytes().ct_eq(expected.as_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The known answer of the Standard Webhooks reference libraries.
    #[test]
    fn signs_the_reference_example() {
        let signature = sign(
            "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
            "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
            1649367553,
            r#"{"email":"test@example.com","username":"test_user"}"#,
        );
        assert_eq!(signature, "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=");
    }

    #[test]
    fn a_new_secret_has_the_prefix_and_enough_key_bytes() {
        let secret = generate_secret();
        assert!(secret.starts_with("whsec_"));
        assert_eq!(key(&secret).len(), SECRET_BYTES);
        assert_ne!(secret, generate_secret());
    }

    #[test]
    fn during_a_rotation_both_secrets_sign_and_each_verifies() {
        let (old, new) = (generate_secret(), generate_secret());
        let header = signature_header([new.as_str(), old.as_str()], "evt_1", 1_700_000_000, "{}");
        assert_eq!(header.split(' ').count(), 2);
        assert!(verify(&old, "evt_1", 1_700_000_000, "{}", &header));
        assert!(verify(&new, "evt_1", 1_700_000_000, "{}", &header));
        assert!(!verify(
            &generate_secret(),
            "evt_1",
            1_700_000_000,
            "{}",
            &header
        ));
        assert!(!verify(&new, "evt_1", 1_700_000_001, "{}", &header));
    }
}
