//! Opaque bearer tokens: random, shown once, stored only as SHA-256.
//!
//! Session tokens look like `oss_<43 chars>`; org API keys like
//! `osk_<8 chars>_<43 chars>`, where `osk_<8 chars>` is the visible prefix
//! shown in lists. Both carry 256 random bits, so a plain SHA-256 is a safe
//! way to store them (a slow hash protects low-entropy passwords, not these).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};

pub const SESSION_PREFIX: &str = "oss_";
pub const API_KEY_PREFIX: &str = "osk_";

fn random_part() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A new session token.
pub fn new_session_token() -> String {
    format!("{SESSION_PREFIX}{}", random_part())
}

/// A new API key and its visible prefix.
pub fn new_api_key() -> (String, String) {
    let mut id = [0u8; 6];
    rand::rng().fill_bytes(&mut id);
    let prefix = format!("{API_KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(id));
    (format!("{prefix}_{}", random_part()), prefix)
}

/// The stored form of a token.
pub fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_shaped() {
        let a = new_session_token();
        assert!(a.starts_with("oss_") && a.len() == 47, "{a}");
        assert_ne!(a, new_session_token());
        let (key, prefix) = new_api_key();
        assert!(key.starts_with(&format!("{prefix}_")));
        assert_eq!(prefix.len(), 12);
        assert_ne!(hash(&key), hash(&a));
    }
}
