//! The signature header as sent: verifying never panics, a signature is
//! accepted only if it is exactly the HMAC (hex, any case, outer spaces).
#![no_main]

use libfuzzer_sys::fuzz_target;
use payorch::provider::paystack;

fuzz_target!(|input: (&[u8], &[u8], &str)| {
    let (secret, body, header) = input;
    let right = paystack::sign_webhook(secret, body);
    let accepted = paystack::verify_signature(secret, body, header);
    let means_right = header.trim().eq_ignore_ascii_case(&right);
    assert_eq!(accepted, means_right, "header {header:?}");
    assert!(paystack::verify_signature(secret, body, &right));
});
