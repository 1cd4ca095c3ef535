//! Validated identifiers: [`OrgId`], [`SchemaName`] and [`Slug`].
//!
//! Each is parsed once at the edge and trusted afterwards; none can hold an
//! invalid value.

use std::fmt;

use crate::error::TenancyError;

use sea_query::{DynIden, TableName};
use uuid::Uuid;

/// The immutable id of an org (a UUIDv7).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct OrgId(Uuid);

impl OrgId {
    /// A new time-ordered id.
    pub fn new() -> Self {
        OrgId(Uuid::now_v7())
    }

    pub fn from_uuid(id: Uuid) -> Self {
        OrgId(id)
    }

    pub fn as_uuid(&self) -> Uuid {
        self.0
    }

    /// The name of this org's schema.
    pub fn schema(&self) -> SchemaName {
        SchemaName::for_org(*self)
    }
}

impl Default for OrgId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for OrgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The name of an org's PostgreSQL schema: `org_` and the 32 hex digits of the
/// org id. It can only be made from an [`OrgId`], so user text never reaches
/// an identifier in SQL.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SchemaName(String);

impl SchemaName {
    const PREFIX: &'static str = "org_";

    pub fn for_org(id: OrgId) -> Self {
        let name = format!("{}{}", Self::PREFIX, id.0.simple());
        debug_assert!(Self::is_valid(&name));
        SchemaName(name)
    }

    /// True when `name` has the exact shape `org_<32 lowercase hex>`.
    pub fn is_valid(name: &str) -> bool {
        name.len() <= 63
            && name.strip_prefix(Self::PREFIX).is_some_and(|hex| {
                hex.len() == 32
                    && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            })
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The schema as a double-quoted SQL identifier. Safe because the name
    /// holds only `[a-z0-9_]`.
    pub fn quoted(&self) -> String {
        format!("\"{}\"", self.0)
    }

    /// A schema-qualified table reference for sea-query.
    pub fn table(&self, table: &'static str) -> TableName {
        TableName(
            Some(sea_query::SchemaName(None, DynIden::from(self.0.clone()))),
            DynIden::from(table),
        )
    }

    /// `"org_…".table` for hand-written SQL.
    pub fn qualify(&self, table: &'static str) -> String {
        format!("\"{}\".\"{}\"", self.0, table)
    }

    /// Like [`SchemaName::qualify`], for a table name read at run time (one
    /// listed from the catalog, or from an archive): refused unless it is a
    /// plain lowercase identifier.
    pub fn qualify_checked(&self, table: &str) -> Result<String, TenancyError> {
        let plain = !table.is_empty()
            && table.len() <= 63
            && table.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
            && table.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !plain {
            return Err(TenancyError::InvalidTable(table.to_owned()));
        }
        Ok(format!("\"{}\".\"{}\"", self.0, table))
    }
}

impl fmt::Display for SchemaName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

/// Why a slug was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlugError {
    #[error("must be {min} to {max} characters long, got {len}", min = Slug::MIN, max = Slug::MAX)]
    Length { len: usize },
    #[error("may contain only lowercase letters a-z, digits and hyphens; found {0:?}")]
    Character(char),
    #[error("must not start or end with a hyphen")]
    EdgeHyphen,
    #[error("'{0}' is reserved")]
    Reserved(String),
}

/// The name of an org in URLs: `[a-z0-9-]{3,40}`, no leading or trailing
/// hyphen, not a reserved word. Renameable; the schema does not depend on it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct Slug(String);

impl Slug {
    pub const MIN: usize = 3;
    pub const MAX: usize = 40;
    /// Words that would be confused with routes, schemas or system accounts.
    pub const RESERVED: &'static [&'static str] = &[
        "public",
        "api",
        "admin",
        "www",
        "app",
        "apps",
        "static",
        "assets",
        "docs",
        "healthz",
        "readyz",
        "metrics",
        "auth",
        "login",
        "logout",
        "signup",
        "root",
        "system",
        "orgstack",
        "mail",
        "dev",
        "settings",
        "new",
        "pg-catalog",
        "information-schema",
    ];

    pub fn parse(input: &str) -> Result<Self, SlugError> {
        let len = input.chars().count();
        if !(Self::MIN..=Self::MAX).contains(&len) {
            return Err(SlugError::Length { len });
        }
        if let Some(bad) =
            input.chars().find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
        {
            return Err(SlugError::Character(bad));
        }
        if input.starts_with('-') || input.ends_with('-') {
            return Err(SlugError::EdgeHyphen);
        }
        if Self::RESERVED.contains(&input) {
            return Err(SlugError::Reserved(input.to_owned()));
        }
        Ok(Slug(input.to_owned()))
    }

    /// A slug read back from `public.orgs`, where only parsed slugs are
    /// written. Not re-validated, so a word reserved later does not make an
    /// existing org unreadable.
    pub(crate) fn from_db(slug: String) -> Self {
        Slug(slug)
    }

    /// A valid slug made from a display name ("Acme Corp." → "acme-corp"),
    /// or `None` when nothing usable is left.
    pub fn suggest(name: &str) -> Option<Self> {
        let mut out = String::new();
        for c in name.chars().flat_map(char::to_lowercase) {
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                out.push(c);
            } else if !out.ends_with('-') && !out.is_empty() {
                out.push('-');
            }
        }
        let mut out: String = out.trim_matches('-').chars().take(Self::MAX).collect();
        while out.ends_with('-') {
            out.pop();
        }
        Slug::parse(&out).ok()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Slug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

impl std::str::FromStr for Slug {
    type Err = SlugError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Slug::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_name_comes_from_the_org_id() {
        let id = OrgId::new();
        let schema = id.schema();
        assert!(schema.as_str().starts_with("org_"));
        assert_eq!(schema.as_str().len(), 36);
        assert!(SchemaName::is_valid(schema.as_str()));
        assert_eq!(schema.as_str()[4..], id.as_uuid().simple().to_string());
    }

    #[test]
    fn schema_name_shape_is_checked() {
        assert!(!SchemaName::is_valid("public"));
        assert!(!SchemaName::is_valid("org_"));
        assert!(!SchemaName::is_valid("org_0123456789ABCDEF0123456789abcdef"));
        assert!(!SchemaName::is_valid("org_0123456789abcdef0123456789abcdef; drop"));
    }

    #[test]
    fn qualified_table_renders_schema_and_table() {
        use sea_query::{Asterisk, PostgresQueryBuilder, Query};
        let schema = OrgId::new().schema();
        let sql = Query::select()
            .column(Asterisk)
            .from(schema.table("audit_events"))
            .to_string(PostgresQueryBuilder);
        assert_eq!(sql, format!("SELECT * FROM \"{schema}\".\"audit_events\""));
    }

    #[test]
    fn slugs_that_are_accepted() {
        for ok in ["abc", "acme-corp", "a1-b2-c3", "0rg", &"x".repeat(40)] {
            assert!(Slug::parse(ok).is_ok(), "{ok} should be accepted");
        }
    }

    #[test]
    fn slugs_that_are_refused_say_why() {
        let cases: &[(&str, SlugError)] = &[
            ("Acme", SlugError::Character('A')),
            ("ab", SlugError::Length { len: 2 }),
            (&"x".repeat(41), SlugError::Length { len: 41 }),
            ("a;drop schema public", SlugError::Character(';')),
            ("café", SlugError::Character('é')),
            ("日本語の組織", SlugError::Character('日')),
            ("public", SlugError::Reserved("public".into())),
            ("api", SlugError::Reserved("api".into())),
            ("admin", SlugError::Reserved("admin".into())),
            ("www", SlugError::Reserved("www".into())),
            ("-acme", SlugError::EdgeHyphen),
            ("acme-", SlugError::EdgeHyphen),
            ("acme corp", SlugError::Character(' ')),
        ];
        for (input, expected) in cases {
            assert_eq!(Slug::parse(input).as_ref(), Err(expected), "{input:?}");
        }
        assert_eq!(
            Slug::parse("a;drop schema public").expect_err("refused").to_string(),
            "may contain only lowercase letters a-z, digits and hyphens; found ';'"
        );
        assert_eq!(
            Slug::parse("ab").expect_err("refused").to_string(),
            "must be 3 to 40 characters long, got 2"
        );
        assert_eq!(Slug::parse("admin").expect_err("refused").to_string(), "'admin' is reserved");
    }

    #[test]
    fn suggested_slugs_are_valid() {
        assert_eq!(Slug::suggest("Acme Corp.").map(|s| s.0), Some("acme-corp".into()));
        assert_eq!(Slug::suggest("  Hello,  World!! ").map(|s| s.0), Some("hello-world".into()));
        assert_eq!(Slug::suggest("!!"), None);
        assert_eq!(Slug::suggest("Admin"), None);
    }
}
