//! Secrets payorch must keep but must not keep readable: sealed at rest
//! with XChaCha20-Poly1305 under the installation's secrets key
//! (`PAYORCH_SECRETS_KEY`), so a copy of the database alone reveals none.
//!
//! A sealed value is text, `enc:v1:<key id>:<base64 of nonce ‖ ciphertext>`:
//! the key id (the first 8 hex digits of the key's SHA-256) says which key
//! opens it, so a [`Keyring`] holding the current key and the one being
//! retired opens both while `payorch secrets rotate` re-seals every value
//! under the current one. Nonces are 24 random bytes (safe at any volume).
//! Each value is bound to where it is kept (`bound_to`, authenticated as
//! associated data): moved to another row or column, it does not open.
//!
//! Below everything that holds a key (the configuration, the events).

use std::{fmt, str::FromStr, sync::Arc};

use base64::{Engine, engine::general_purpose::STANDARD};
use chacha20poly1305::{
    KeyInit, XChaCha20Poly1305, XNonce,
    aead::{Aead, Payload},
};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::secret::Secret;

const PREFIX: &str = "enc:v1:";
const KEY_BYTES: usize = 32;
const NONCE_BYTES: usize = 24;

/// A 32-byte secrets key and its id. Prints as its id only.
#[derive(Clone)]
pub struct SealingKey {
    id: String,
    cipher: XChaCha20Poly1305,
    encoded: Secret,
}

impl SealingKey {
    fn from_bytes(bytes: &[u8; KEY_BYTES]) -> SealingKey {
        let digest = Sha256::digest(bytes);
        SealingKey {
            id: digest[..4].iter().map(|b| format!("{b:02x}")).collect(),
            cipher: XChaCha20Poly1305::new_from_slice(bytes).expect("a 32-byte key"),
            encoded: Secret::new(STANDARD.encode(bytes)),
        }
    }

    /// A new random key (embedded mode's key file).
    pub fn generate() -> SealingKey {
        let mut bytes = [0u8; KEY_BYTES];
        rand::rng().fill_bytes(&mut bytes);
        SealingKey::from_bytes(&bytes)
    }

    /// The first 8 hex digits of the key's SHA-256: names the key in sealed
    /// values, logs and errors without revealing it.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The key as it is configured (base64), to write a key file.
    pub fn encoded(&self) -> &Secret {
        &self.encoded
    }
}

impl fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SealingKey({})", self.id)
    }
}

impl PartialEq for SealingKey {
    fn eq(&self, other: &Self) -> bool {
        self.encoded == other.encoded
    }
}

impl FromStr for SealingKey {
    type Err = String;

    /// Standard base64 of exactly 32 bytes (`openssl rand -base64 32`).
    /// The error never repeats the value.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = STANDARD
            .decode(s.trim())
            .map_err(|_| "not base64 (make one with `openssl rand -base64 32`)".to_owned())?;
        let bytes: [u8; KEY_BYTES] = bytes.try_into().map_err(|bytes: Vec<u8>| {
            format!(
                "must be {KEY_BYTES} bytes, base64-encoded; this is {} bytes",
                bytes.len()
            )
        })?;
        Ok(SealingKey::from_bytes(&bytes))
    }
}

/// Which key opened a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenedWith {
    Current,
    /// The key being retired: the value is due for re-sealing.
    Previous,
    /// Not sealed at all (written before sealing existed): due for sealing.
    Plain,
}

/// A value opened, and what it was sealed with.
#[derive(Debug)]
pub struct Opened {
    pub secret: Secret,
    pub with: OpenedWith,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("sealed under key {0}, which is not configured")]
    UnknownKey(String),
    #[error("not a sealed value")]
    Malformed,
    /// The wrong key, a value moved from where it was sealed, or tampering.
    #[error("does not authenticate (sealed for another place, or altered)")]
    Forged,
}

/// The current key, and while a rotation lasts the one being retired.
#[derive(Clone, Debug)]
pub struct Keyring {
    current: Arc<SealingKey>,
    previous: Option<Arc<SealingKey>>,
}

impl Keyring {
    pub fn new(current: SealingKey, previous: Option<SealingKey>) -> Keyring {
        // The same key twice is one key.
        let previous = previous.filter(|p| *p != current).map(Arc::new);
        Keyring {
            current: Arc::new(current),
            previous,
        }
    }

    pub fn current_id(&self) -> &str {
        self.current.id()
    }

    pub fn previous_id(&self) -> Option<&str> {
        self.previous.as_deref().map(SealingKey::id)
    }

    /// `plain` sealed under the current key, bound to `bound_to`.
    pub fn seal(&self, plain: &str, bound_to: &[u8]) -> String {
        let mut nonce = [0u8; NONCE_BYTES];
        rand::rng().fill_bytes(&mut nonce);
        let sealed = self
            .current
            .cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: plain.as_bytes(),
                    aad: bound_to,
                },
            )
            .expect("XChaCha20-Poly1305 seals any length we keep");
        let mut bytes = Vec::with_capacity(NONCE_BYTES + sealed.len());
        bytes.extend_from_slice(&nonce);
        bytes.extend_from_slice(&sealed);
        format!("{PREFIX}{}:{}", self.current.id, STANDARD.encode(bytes))
    }

    /// Opens `stored` (sealed where `bound_to` says, or plain: see
    /// [`OpenedWith::Plain`]).
    pub fn open(&self, stored: &str, bound_to: &[u8]) -> Result<Opened, OpenError> {
        let Some(rest) = stored.strip_prefix(PREFIX) else {
            if stored.starts_with("enc:") {
                return Err(OpenError::Malformed);
            }
            return Ok(Opened {
                secret: Secret::new(stored),
                with: OpenedWith::Plain,
            });
        };
        let (key_id, encoded) = rest.split_once(':').ok_or(OpenError::Malformed)?;
        let (key, with) = if key_id == self.current.id {
            (&self.current, OpenedWith::Current)
        } else {
            match &self.previous {
                Some(previous) if key_id == previous.id => (previous, OpenedWith::Previous),
                _ => return Err(OpenError::UnknownKey(key_id.to_owned())),
            }
        };
        let bytes = STANDARD.decode(encoded).map_err(|_| OpenError::Malformed)?;
        if bytes.len() < NONCE_BYTES {
            return Err(OpenError::Malformed);
        }
        let (nonce, sealed) = bytes.split_at(NONCE_BYTES);
        let nonce = XNonce::try_from(nonce).map_err(|_| OpenError::Malformed)?;
        let plain = key
            .cipher
            .decrypt(
                &nonce,
                Payload {
                    msg: sealed,
                    aad: bound_to,
                },
            )
            .map_err(|_| OpenError::Forged)?;
        let plain = String::from_utf8(plain).map_err(|_| OpenError::Malformed)?;
        Ok(Opened {
            secret: Secret::new(plain),
            with,
        })
    }
}

/// The key in `path`, or a new one written there (readable by its owner
/// only) when there is none: embedded mode's key, kept beside the SQLite
/// file and not in it, so a copy of the database alone opens nothing.
/// `true`: it was generated now.
pub fn key_file(path: &std::path::Path) -> std::io::Result<(SealingKey, bool)> {
    use std::io::Write;
    let invalid = |e: String| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{}: {e}", path.display()),
        )
    };
    match std::fs::read_to_string(path) {
        Ok(text) => return Ok((text.parse().map_err(invalid)?, false)),
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => return Err(err),
        Err(_) => {}
    }
    // Written aside, then linked into place: another process on the same
    // database never reads a half-written key, and the first link wins.
    let key = SealingKey::generate();
    let aside = path.with_extension(format!("new-{}", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&aside)?;
    writeln!(file, "{}", key.encoded().expose())?;
    file.sync_all()?;
    drop(file);
    let linked = std::fs::hard_link(&aside, path);
    let _ = std::fs::remove_file(&aside);
    match linked {
        Ok(()) => Ok((key, true)),
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
            let text = std::fs::read_to_string(path)?;
            Ok((text.parse().map_err(invalid)?, false))
        }
        Err(err) => Err(err),
    }
}

/// Whether `stored` is sealed (under any key).
pub fn is_sealed(stored: &str) -> bool {
    stored.starts_with(PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyring() -> Keyring {
        Keyring::new(SealingKey::generate(), None)
    }

    #[test]
    fn a_sealed_value_opens_where_it_was_sealed_and_hides_the_secret() {
        let keys = keyring();
        let sealed = keys.seal("whsec_abc", b"row-1.secret");
        assert!(is_sealed(&sealed));
        assert!(!sealed.contains("whsec_abc"));
        assert!(sealed.starts_with(&format!("enc:v1:{}:", keys.current_id())));
        let opened = keys.open(&sealed, b"row-1.secret").unwrap();
        assert_eq!(opened.secret.expose(), "whsec_abc");
        assert_eq!(opened.with, OpenedWith::Current);
        assert_ne!(
            sealed,
            keys.seal("whsec_abc", b"row-1.secret"),
            "fresh nonce"
        );
    }

    #[test]
    fn moved_to_another_place_it_does_not_open() {
        let keys = keyring();
        let sealed = keys.seal("whsec_abc", b"row-1.secret");
        assert_eq!(
            keys.open(&sealed, b"row-2.secret").unwrap_err(),
            OpenError::Forged
        );
        assert_eq!(
            keys.open(&sealed, b"row-1.previous_secret").unwrap_err(),
            OpenError::Forged
        );
    }

    #[test]
    fn another_key_cannot_open_it_even_under_the_same_id() {
        let sealed = keyring().seal("whsec_abc", b"row");
        let other = keyring();
        assert!(matches!(
            other.open(&sealed, b"row"),
            Err(OpenError::UnknownKey(_))
        ));
        // Relabelled with the other key's id: authentication still fails.
        let (_, rest) = sealed
            .strip_prefix(PREFIX)
            .unwrap()
            .split_once(':')
            .unwrap();
        let relabelled = format!("{PREFIX}{}:{rest}", other.current_id());
        assert_eq!(
            other.open(&relabelled, b"row").unwrap_err(),
            OpenError::Forged
        );
    }

    #[test]
    fn a_tampered_value_does_not_open() {
        let keys = keyring();
        let sealed = keys.seal("whsec_abc", b"row");
        let mut bytes = sealed.into_bytes();
        let last = bytes.len() - 3;
        bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(bytes).unwrap();
        assert!(keys.open(&tampered, b"row").is_err());
        assert_eq!(
            keys.open("enc:v1:nokey", b"row").unwrap_err(),
            OpenError::Malformed
        );
    }

    #[test]
    fn during_a_rotation_both_keys_open_and_only_the_current_seals() {
        let (old, new) = (SealingKey::generate(), SealingKey::generate());
        let before = Keyring::new(old.clone(), None).seal("whsec_abc", b"row");
        let during = Keyring::new(new.clone(), Some(old));
        let opened = during.open(&before, b"row").unwrap();
        assert_eq!(opened.with, OpenedWith::Previous);
        let resealed = during.seal(opened.secret.expose(), b"row");
        let after = Keyring::new(new, None);
        assert_eq!(
            after.open(&resealed, b"row").unwrap().with,
            OpenedWith::Current
        );
        assert!(after.open(&before, b"row").is_err());
    }

    #[test]
    fn a_plain_value_opens_as_plain() {
        let opened = keyring().open("whsec_abc", b"row").unwrap();
        assert_eq!(opened.with, OpenedWith::Plain);
        assert_eq!(opened.secret.expose(), "whsec_abc");
    }

    #[test]
    fn keys_parse_from_base64_of_32_bytes_and_print_as_their_id() {
        let key = SealingKey::generate();
        let parsed: SealingKey = key.encoded().expose().parse().unwrap();
        assert_eq!(parsed.id(), key.id());
        assert_eq!(parsed.id().len(), 8);
        assert_eq!(format!("{parsed:?}"), format!("SealingKey({})", key.id()));
        assert!(!format!("{parsed:?}").contains(key.encoded().expose()));
        assert!("not base64!".parse::<SealingKey>().is_err());
        let short = STANDARD.encode([7u8; 16]);
        let err = short.parse::<SealingKey>().unwrap_err();
        assert!(err.contains("16 bytes"), "{err}");
        assert!(!err.contains(&short));
    }
}
