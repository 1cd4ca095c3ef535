//! Errors of the tenancy layer. No HTTP types here: callers map them.

use crate::ids::SlugError;

/// What can go wrong when looking up, provisioning or migrating orgs.
#[derive(Debug, thiserror::Error)]
pub enum TenancyError {
    #[error("invalid slug: {0}")]
    InvalidSlug(#[from] SlugError),
    #[error("org name must be 1 to 200 characters and not blank")]
    InvalidName,
    #[error("the slug '{0}' is already taken")]
    SlugTaken(String),
    #[error("no org with slug or id '{0}'")]
    NotFound(String),
    #[error("org '{slug}' is {status}; {action} needs it to be {required}")]
    WrongStatus { slug: String, status: &'static str, action: &'static str, required: &'static str },
    #[error("migration of {schema} failed: {source}")]
    Migration {
        schema: String,
        #[source]
        source: Box<refinery::Error>,
    },
    #[error("{0:?} is not a plain table name")]
    InvalidTable(String),
    #[error("invalid migration lineage: {0}")]
    Lineage(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("redis error: {0}")]
    Redis(#[from] fred::error::Error),
}

impl TenancyError {
    /// Maps a unique violation on `orgs` to [`TenancyError::SlugTaken`].
    pub(crate) fn from_insert(err: sqlx::Error, slug: &str) -> Self {
        if let sqlx::Error::Database(db) = &err
            && db.constraint() == Some("orgs_slug_key")
        {
            return TenancyError::SlugTaken(slug.to_owned());
        }
        TenancyError::Database(err)
    }
}
