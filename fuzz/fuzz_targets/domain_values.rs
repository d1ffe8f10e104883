//! Every value a client sends is parsed by its type's one constructor:
//! none panics, and what is accepted keeps the type's promises.
#![no_main]

use libfuzzer_sys::fuzz_target;
use payorch::domain::{Amount, Currency, Email, IdempotencyKey, Reference};

fuzz_target!(|input: (&str, i64)| {
    let (text, number) = input;
    if let Ok(amount) = Amount::new(number) {
        assert!(amount.get() > 0 && amount.get() <= Amount::MAX);
    }
    if let Ok(currency) = Currency::parse(text) {
        assert_eq!(Currency::parse(currency.as_str()).ok(), Some(currency));
        assert!(currency.minor_unit_exponent() <= 3);
    }
    if let Ok(reference) = Reference::parse(text) {
        let r = reference.as_str();
        assert!(!r.is_empty() && r.len() <= Reference::MAX_LEN);
        assert!(
            r.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.=".contains(&b))
        );
        assert!(r.bytes().any(|b| b.is_ascii_alphanumeric()));
    }
    if let Ok(email) = Email::parse(text) {
        let e = email.as_str();
        assert!(e.len() <= Email::MAX_LEN);
        assert_eq!(e.matches('@').count(), 1);
        assert_eq!(
            Email::parse(e).ok().map(|again| again.as_str().to_owned()),
            Some(e.to_owned())
        );
    }
    if let Ok(key) = IdempotencyKey::parse(text) {
        assert_eq!(key.as_uuid().to_string(), text.to_ascii_lowercase());
    }
});
