//! Password policy and hashing (argon2id with OWASP's parameters:
//! 19 MiB of memory, 2 iterations, 1 lane).
//!
//! Hashing is deliberately slow (tens of milliseconds), so it runs on the
//! blocking thread pool, never on the async workers.

use std::sync::OnceLock;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

use super::{AccountsError, Email};

/// Shortest accepted password.
pub const MIN_LENGTH: usize = 10;
/// Longest accepted password (hashing cost grows with length).
pub const MAX_LENGTH: usize = 256;

/// OWASP's argon2id parameters: m = 19456 KiB, t = 2, p = 1.
pub const ARGON2_MEMORY_KIB: u32 = 19_456;
pub const ARGON2_ITERATIONS: u32 = 2;
pub const ARGON2_LANES: u32 = 1;

/// Among the most used passwords in public breach lists (lowercased).
const COMMON: &[&str] = &[
    "123456",
    "password",
    "12345678",
    "qwerty",
    "123456789",
    "12345",
    "1234",
    "111111",
    "1234567",
    "dragon",
    "123123",
    "baseball",
    "abc123",
    "football",
    "monkey",
    "letmein",
    "696969",
    "shadow",
    "master",
    "666666",
    "qwertyuiop",
    "123321",
    "mustang",
    "1234567890",
    "michael",
    "654321",
    "superman",
    "1qaz2wsx",
    "7777777",
    "121212",
    "000000",
    "qazwsx",
    "123qwe",
    "killer",
    "trustno1",
    "jordan",
    "jennifer",
    "zxcvbnm",
    "asdfgh",
    "hunter",
    "buster",
    "soccer",
    "harley",
    "batman",
    "andrew",
    "tigger",
    "sunshine",
    "iloveyou",
    "2000",
    "charlie",
    "robert",
    "thomas",
    "hockey",
    "ranger",
    "daniel",
    "starwars",
    "klaster",
    "112233",
    "george",
    "computer",
    "michelle",
    "jessica",
    "pepper",
    "1111",
    "zxcvbn",
    "555555",
    "11111111",
    "131313",
    "freedom",
    "777777",
    "pass",
    "maggie",
    "159753",
    "aaaaaa",
    "ginger",
    "princess",
    "joshua",
    "cheese",
    "amanda",
    "summer",
    "love",
    "ashley",
    "nicole",
    "chelsea",
    "biteme",
    "matthew",
    "access",
    "yankees",
    "987654321",
    "dallas",
    "austin",
    "thunder",
    "taylor",
    "matrix",
    "password1",
    "password123",
    "passw0rd",
    "p@ssw0rd",
    "welcome",
    "welcome1",
    "admin",
    "admin123",
    "administrator",
    "changeme",
    "changeme123",
    "qwerty123",
    "qwerty1234",
    "1q2w3e4r",
    "1q2w3e4r5t",
    "zaq12wsx",
    "letmein123",
    "iloveyou1",
    "abcdefghij",
    "0123456789",
    "1234567890a",
    "qwertyuiop1",
    "correcthorsebatterystaple",
    "orgstack",
    "orgstack123",
];

/// Checks a new password against the policy.
pub fn check(password: &str, email: &Email) -> Result<(), AccountsError> {
    let length = password.chars().count();
    if length < MIN_LENGTH {
        return Err(AccountsError::WeakPassword("must be at least 10 characters long"));
    }
    if length > MAX_LENGTH {
        return Err(AccountsError::WeakPassword("must be at most 256 characters long"));
    }
    let lower = password.to_lowercase();
    if lower == email.as_str() || email.as_str().split('@').next() == Some(lower.as_str()) {
        return Err(AccountsError::WeakPassword("must not be your email address"));
    }
    if COMMON.contains(&lower.as_str()) || lower.chars().all(|c| lower.starts_with(c)) {
        return Err(AccountsError::WeakPassword("is too common; choose another"));
    }
    Ok(())
}

fn argon2() -> Argon2<'static> {
    let params =
        Params::new(ARGON2_MEMORY_KIB, ARGON2_ITERATIONS, ARGON2_LANES, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes `password` (on the blocking pool).
pub async fn hash(password: String) -> Result<String, AccountsError> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        argon2()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| AccountsError::Hashing(e.to_string()))
    })
    .await
    .map_err(|e| AccountsError::Hashing(e.to_string()))?
}

/// A hash of a random password, verified against when the email is unknown,
/// so that answering takes as long as for a wrong password.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        let salt = SaltString::generate(&mut OsRng);
        argon2()
            .hash_password(super::tokens::new_session_token().as_bytes(), &salt)
            .map(|h| h.to_string())
            .unwrap_or_default()
    })
}

/// Verifies `password` against `stored` (or against a dummy hash when there
/// is none, taking the same time). True only for a match.
pub async fn verify(password: String, stored: Option<String>) -> bool {
    tokio::task::spawn_blocking(move || {
        let real = stored.is_some();
        let stored = stored.unwrap_or_else(|| dummy_hash().to_owned());
        let matches = PasswordHash::new(&stored)
            .map(|parsed| argon2().verify_password(password.as_bytes(), &parsed).is_ok())
            .unwrap_or(false);
        real && matches
    })
    .await
    .unwrap_or(false)
}

/// Computes the dummy hash now, so the first unknown-email sign-in is not
/// faster than later ones.
pub fn warm_up() {
    let _ = dummy_hash();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn email() -> Email {
        Email::parse("ada@example.com").expect("email")
    }

    #[test]
    fn policy_refuses_short_common_and_email_passwords() {
        assert!(check("short", &email()).is_err());
        assert!(check("password123", &email()).is_err());
        assert!(check("ada@example.com", &email()).is_err());
        assert!(check("aaaaaaaaaaaa", &email()).is_err());
        assert!(check("correct horse battery", &email()).is_ok());
    }

    #[tokio::test]
    async fn hashes_verify_only_the_right_password() {
        let stored = hash("correct horse battery".into()).await.expect("hash");
        assert!(stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{stored}");
        assert!(verify("correct horse battery".into(), Some(stored.clone())).await);
        assert!(!verify("wrong horse battery".into(), Some(stored)).await);
        assert!(!verify("anything at all".into(), None).await);
    }
}
