//! `x-paystack-signature: hex(HMAC-SHA512(secret, raw body))`, checked in
//! constant time over the full length: an empty signature, a prefix of the
//! right one, or anything that is not hex is rejected.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha512;

type HmacSha512 = Hmac<Sha512>;

/// The signature a provider would send for `body`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = HmacSha512::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// Whether `signature` (hex) is the HMAC of `body` under `secret`.
pub fn verify(secret: &[u8], body: &[u8], signature: &str) -> bool {
    let Ok(given) = hex::decode(signature.trim()) else {
        return false;
    };
    let mut mac = HmacSha512::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    // `verify_slice` compares in constant time and requires the full length.
    mac.verify_slice(&given).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"sk_test_secret";
    const BODY: &[u8] = br#"{"event":"charge.success","data":{"id":1}}"#;

    #[test]
    fn the_right_signature_verifies_in_either_case() {
        let signature = sign(SECRET, BODY);
        assert_eq!(signature.len(), 128);
        assert!(verify(SECRET, BODY, &signature));
        assert!(verify(SECRET, BODY, &signature.to_uppercase()));
    }

    #[test]
    fn anything_else_is_rejected() {
        let signature = sign(SECRET, BODY);
        assert!(!verify(SECRET, BODY, ""));
        assert!(!verify(SECRET, BODY, &signature[..64]), "a prefix");
        assert!(!verify(SECRET, BODY, &signature[..2]), "a short prefix");
        assert!(!verify(SECRET, BODY, &format!("{signature}00")), "too long");
        assert!(!verify(SECRET, BODY, "zz"), "not hex");
        assert!(!verify(b"other secret", BODY, &signature));
        assert!(!verify(SECRET, b"{}", &signature), "another body");
        let mut flipped = signature.into_bytes();
        flipped[10] = if flipped[10] == b'a' { b'b' } else { b'a' };
        assert!(!verify(
            SECRET,
            BODY,
            std::str::from_utf8(&flipped).unwrap()
        ));
    }
}
