//! Identifiers that arrive from outside: the payment reference, the client's
//! idempotency key and the customer's email.
//!
//! Each is a newtype whose only constructor checks the input. None implements
//! `Deserialize`: the HTTP layer parses explicitly, so a bad value becomes a
//! 400 naming the field instead of a generic body error.

use std::fmt;

use uuid::Uuid;

use super::DomainError;

/// A payment reference, unique per payment, shared with the provider.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct Reference(String);

impl Reference {
    pub const MAX_LEN: usize = 100;

    /// Accepts the characters Paystack accepts, so a reference we store is
    /// one the provider will take unchanged.
    pub fn parse(input: &str) -> Result<Reference, DomainError> {
        if input.is_empty() {
            return Err(invalid_reference("reference must not be empty".to_owned()));
        }
        if let Some(bad) = input.chars().find(|c| !is_reference_char(*c)) {
            return Err(invalid_reference(format!(
                "reference may contain only ASCII letters, digits and . = -, found {bad:?}"
            )));
        }
        // Every accepted character is ASCII, so bytes are characters here.
        if input.len() > Self::MAX_LEN {
            return Err(invalid_reference(format!(
                "reference must be at most {} characters, got {}",
                Self::MAX_LEN,
                input.len()
            )));
        }
        // A reference travels in URL paths: "." or ".." would name a directory.
        if !input.chars().any(|c| c.is_ascii_alphanumeric()) {
            return Err(invalid_reference(
                "reference must contain at least one letter or digit".to_owned(),
            ));
        }
        Ok(Reference(input.to_owned()))
    }

    /// A fresh reference for a client that did not bring its own. UUIDv7 is
    /// time-ordered, so generated references index well and sort by creation
    /// in logs; the prefix tells support staff who minted it.
    pub fn generate() -> Reference {
        Reference(format!("po-{}", Uuid::now_v7().simple()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn is_reference_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '=' | '-')
}

fn invalid_reference(sentence: String) -> DomainError {
    DomainError::InvalidReference(sentence)
}

impl AsRef<str> for Reference {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The client's `Idempotency-Key` header: a UUID, scoped to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct IdempotencyKey(Uuid);

impl IdempotencyKey {
    /// Only the hyphenated form (8-4-4-4-12) is accepted. The uuid crate also
    /// takes simple, braced and URN forms; the contract promises one spelling,
    /// and a client sending another is more likely confused than creative.
    pub fn parse(input: &str) -> Result<IdempotencyKey, DomainError> {
        const HYPHENATED_LEN: usize = 36;
        let invalid = || {
            DomainError::InvalidIdempotencyKey(
                "Idempotency-Key must be a UUID in hyphenated form, \
                 e.g. 0195f3a2-7c1e-7d4a-9b3e-2f6c8a1d4e5b"
                    .to_owned(),
            )
        };
        if input.len() != HYPHENATED_LEN {
            return Err(invalid());
        }
        Uuid::parse_str(input)
            .map(IdempotencyKey)
            .map_err(|_| invalid())
    }

    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.hyphenated())
    }
}

/// A customer's email address, as the provider needs it for a checkout.
///
/// The check is deliberately plain (no quoted local parts, no IP literals,
/// no internationalised domains): the provider rejects those anyway, and a
/// clear 400 from us beats an opaque error from them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct Email(String);

impl Email {
    /// RFC 5321 limits: a path of 256 octets minus the angle brackets.
    pub const MAX_LEN: usize = 254;
    pub const MAX_LOCAL_LEN: usize = 64;

    pub fn parse(input: &str) -> Result<Email, DomainError> {
        let email = input.trim();
        if email.is_empty() {
            return Err(invalid_email("email must not be empty".to_owned()));
        }
        if email.len() > Self::MAX_LEN {
            return Err(invalid_email(format!(
                "email must be at most {} bytes, got {}",
                Self::MAX_LEN,
                email.len()
            )));
        }
        if email.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid_email(
                "email must not contain spaces or control characters".to_owned(),
            ));
        }
        let (local, domain) = match email.split_once('@') {
            Some((local, domain)) if !domain.contains('@') => (local, domain),
            _ => {
                return Err(invalid_email(
                    "email must contain exactly one '@'".to_owned(),
                ));
            }
        };
        if local.is_empty() || local.len() > Self::MAX_LOCAL_LEN {
            return Err(invalid_email(format!(
                "the part of the email before '@' must be 1 to {} characters",
                Self::MAX_LOCAL_LEN
            )));
        }
        check_domain(domain)?;
        // Domains are case-insensitive; local parts may not be, so keep them.
        Ok(Email(format!("{local}@{}", domain.to_ascii_lowercase())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn check_domain(domain: &str) -> Result<(), DomainError> {
    if !domain.contains('.') {
        return Err(invalid_email(format!(
            "email domain {domain:?} must contain a dot"
        )));
    }
    for label in domain.split('.') {
        let well_formed = !label.is_empty()
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !well_formed {
            return Err(invalid_email(format!(
                "email domain {domain:?} is not a valid host name"
            )));
        }
    }
    Ok(())
}

fn invalid_email(sentence: String) -> DomainError {
    DomainError::InvalidEmail(sentence)
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // --- Reference ---

    #[test]
    fn reference_length_boundaries() {
        assert!(Reference::parse("").is_err());
        assert_eq!(Reference::parse("a").unwrap().as_str(), "a");
        let longest = "r".repeat(100);
        assert_eq!(Reference::parse(&longest).unwrap().as_str(), longest);
        let err = Reference::parse(&"r".repeat(101)).unwrap_err();
        assert_eq!(err.field(), "reference");
    }

    #[test]
    fn reference_accepts_every_allowed_character() {
        let all = "ABCXYZabcxyz0189.=-";
        assert_eq!(Reference::parse(all).unwrap().to_string(), all);
    }

    #[test]
    fn reference_rejects_other_characters() {
        for input in [
            ".", "..", "-=-", "order 1", "order_1", "order/1", "order\\1", "ordér", "order+1",
            "order#1", "order\n", "€",
        ] {
            assert!(Reference::parse(input).is_err(), "{input:?} was accepted");
        }
    }

    #[test]
    fn generated_reference_parses_and_is_unique() {
        let first = Reference::generate();
        let second = Reference::generate();
        assert!(first.as_str().starts_with("po-"));
        assert_eq!(Reference::parse(first.as_str()), Ok(first.clone()));
        assert_ne!(first, second);
    }

    #[test]
    fn reference_as_ref_matches_as_str() {
        let reference = Reference::parse("ord-1").unwrap();
        let borrowed: &str = reference.as_ref();
        assert_eq!(borrowed, reference.as_str());
    }

    // --- IdempotencyKey ---

    const KEY: &str = "0195f3a2-7c1e-7d4a-9b3e-2f6c8a1d4e5b";

    #[test]
    fn hyphenated_uuid_is_a_key() {
        let key = IdempotencyKey::parse(KEY).unwrap();
        assert_eq!(key.to_string(), KEY);
        assert_eq!(key.as_uuid(), Uuid::parse_str(KEY).unwrap());
    }

    #[test]
    fn uppercase_uuid_is_the_same_key() {
        let upper = IdempotencyKey::parse(&KEY.to_ascii_uppercase()).unwrap();
        assert_eq!(upper, IdempotencyKey::parse(KEY).unwrap());
    }

    #[test]
    fn other_spellings_are_not_keys() {
        let simple = KEY.replace('-', "");
        let braced = format!("{{{KEY}}}");
        let urn = format!("urn:uuid:{KEY}");
        let padded = format!(" {KEY}");
        for input in [
            "",
            "not-a-uuid",
            "0195f3a2-7c1e-7d4a-9b3e-2f6c8a1d4e5g",
            simple.as_str(),
            braced.as_str(),
            urn.as_str(),
            padded.as_str(),
        ] {
            let err = IdempotencyKey::parse(input).unwrap_err();
            assert_eq!(err.field(), "Idempotency-Key", "{input:?}");
        }
    }

    // --- Email ---

    #[test]
    fn plain_emails_are_accepted() {
        for input in [
            "ada@example.com",
            "ada.lovelace+pay@example.com.ng",
            "a@b-c.example.ng",
            "1@2.io",
        ] {
            assert_eq!(Email::parse(input).unwrap().as_str(), input);
        }
    }

    #[test]
    fn email_is_trimmed_and_domain_lowercased() {
        let email = Email::parse("  Ada.Lovelace@Example.COM\n").unwrap();
        assert_eq!(email.as_str(), "Ada.Lovelace@example.com");
        assert_eq!(email.to_string(), "Ada.Lovelace@example.com");
    }

    #[test]
    fn malformed_emails_are_rejected() {
        for input in [
            "",
            "   ",
            "adaexample.com",
            "ada@@example.com",
            "ada@b@example.com",
            "@example.com",
            "ada@",
            "ada@localhost",
            "ada @example.com",
            "ada@exa mple.com",
            "ada\u{0}@example.com",
            "ada@.example.com",
            "ada@example.com.",
            "ada@example..com",
            "ada@-example.com",
            "ada@example-.com",
            "ada@exa_mple.com",
            "ada@exämple.com",
        ] {
            let err = Email::parse(input).unwrap_err();
            assert_eq!(err.field(), "email", "{input:?}");
        }
    }

    #[test]
    fn local_part_length_boundary() {
        let longest = format!("{}@example.com", "a".repeat(64));
        assert!(Email::parse(&longest).is_ok());
        let too_long = format!("{}@example.com", "a".repeat(65));
        assert!(Email::parse(&too_long).is_err());
    }

    #[test]
    fn total_length_boundary() {
        // 64 + 1 + 189 = 254 bytes.
        let domain = format!(
            "{}.{}.{}.{}",
            "b".repeat(60),
            "c".repeat(60),
            "d".repeat(60),
            "e".repeat(6)
        );
        let longest = format!("{}@{domain}", "a".repeat(64));
        assert_eq!(longest.len(), 254);
        assert!(Email::parse(&longest).is_ok());
        let too_long = format!("{longest}e");
        assert!(Email::parse(&too_long).is_err());
    }
}
