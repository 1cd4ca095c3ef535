//! Password policy and hashing (argon2id with OWASP's parameters:
//! 19 MiB of memory, 2 iterations, 1 lane).
//!
//! Hashing is deliberately slow (tens of milliseconds) and takes 19 MiB, so
//! it runs on the blocking thread pool, never on the async workers, and at
//! most one hash per CPU runs at a time: a burst of sign-ins queues instead
//! of allocating 19 MiB per request.

use std::sync::{Arc, OnceLock};

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

/// Bounds concurrent hashes to the number of CPUs.
/// The permit is moved into the blocking task, so a request that is
/// dropped mid-hash (a client that disconnects) keeps its slot until the
/// hash really ends.
fn permits() -> Arc<tokio::sync::Semaphore> {
    static PERMITS: OnceLock<Arc<tokio::sync::Semaphore>> = OnceLock::new();
    PERMITS
        .get_or_init(|| {
            let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
            Arc::new(tokio::sync::Semaphore::new(cpus))
        })
        .clone()
}

/// Hashes `password` (on the blocking pool).
pub async fn hash(password: String) -> Result<String, AccountsError> {
    let permit =
        permits().acquire_owned().await.map_err(|e| AccountsError::Hashing(e.to_string()))?;
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let salt = SaltString::generate(&mut OsRng);
        argon2()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| AccountsError::Hashing(e.to_string()))
    })
    .await
    .map_err(|e| AccountsError::Hashing(e.to_string()))?
}

/// An argon2id hash (same parameters) of a random password nobody knows,
/// verified against when the email is unknown so that answering takes as
/// long as for a wrong password. A constant: computing one at start would
/// cost 19 MiB of memory for nothing.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRmb3JkdW1teQ$0o6ZcJJmYCp+uRk0SMXb4VhKo2M9BCCKfaSEcUwCxRk";

/// Verifies `password` against `stored` (or against a dummy hash when there
/// is none, taking the same time). True only for a match.
pub async fn verify(password: String, stored: Option<String>) -> bool {
    let Ok(permit) = permits().acquire_owned().await else { return false };
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let real = stored.is_some();
        let stored = stored.unwrap_or_else(|| DUMMY_HASH.to_owned());
        let matches = PasswordHash::new(&stored)
            .map(|parsed| argon2().verify_password(password.as_bytes(), &parsed).is_ok())
            .unwrap_or(false);
        real && matches
    })
    .await
    .unwrap_or(false)
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
        // The dummy hash parses with the same parameters, so it costs the same.
        let dummy = PasswordHash::new(DUMMY_HASH).expect("valid PHC string");
        assert_eq!(dummy.params.get_decimal("m"), Some(ARGON2_MEMORY_KIB));
        assert_eq!(dummy.params.get_decimal("t"), Some(ARGON2_ITERATIONS));
    }
}
