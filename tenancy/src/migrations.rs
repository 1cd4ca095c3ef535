//! The two migration lineages and how they run.
//!
//! `migrations/public` applies to the `public` schema; `migrations/org` to
//! every org schema. Both are embedded with refinery's `embed_migrations!` and
//! run through refinery's runner over a sqlx connection: this module
//! implements refinery's `AsyncMigrate` for a sqlx connection that is already
//! inside a transaction, so provisioning (row + schema + lineage) and each
//! org's migration commit or roll back as one unit.
//!
//! Each schema keeps its own refinery history table
//! (`<schema>.refinery_schema_history`), and lineage SQL runs with
//! `search_path` set to that one schema, so migration files stay plain SQL.

use refinery::{AsyncMigrate, Migration, Runner};
use refinery_core::traits::r#async::{AsyncQuery, AsyncTransaction};
use sqlx::{AssertSqlSafe, PgConnection, Row};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::{SchemaName, TenancyError};

mod embedded_public {
    refinery::embed_migrations!("../migrations/public");
}

mod embedded_org {
    refinery::embed_migrations!("../migrations/org");
}

/// The history table name inside each schema.
pub const HISTORY_TABLE: &str = "refinery_schema_history";

/// The schema a lineage is applied to.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    /// The shared `public` schema.
    Public,
    /// One org's schema.
    Org(&'a SchemaName),
}

impl Target<'_> {
    /// The schema name; safe to quote as an identifier (`public` or `org_<hex>`).
    pub fn schema(&self) -> &str {
        match self {
            Target::Public => "public",
            Target::Org(schema) => schema.as_str(),
        }
    }
}

/// An ordered set of migrations applied to one kind of schema.
#[derive(Debug, Clone)]
pub struct Lineage {
    name: &'static str,
    migrations: Vec<Migration>,
}

impl Lineage {
    /// The lineage of the `public` schema (`migrations/public`).
    pub fn public() -> Self {
        Lineage::new("public", embedded_public::migrations::runner().get_migrations().clone())
    }

    /// The lineage applied to every org schema (`migrations/org`).
    pub fn org() -> Self {
        Lineage::new("org", embedded_org::migrations::runner().get_migrations().clone())
    }

    /// A lineage from `(file name, sql)` pairs such as `("V2__add_x.sql", "...")`,
    /// for tests and benchmarks that need a lineage of their own.
    pub fn from_sql(name: &'static str, files: &[(&str, &str)]) -> Result<Self, TenancyError> {
        let migrations = files
            .iter()
            .map(|(file, sql)| {
                let stem = file.strip_suffix(".sql").unwrap_or(file);
                Migration::unapplied(stem, sql)
                    .map_err(|e| TenancyError::Lineage(format!("{file}: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Lineage::new(name, migrations))
    }

    /// This lineage followed by more migrations (which must have higher versions).
    pub fn extended(&self, files: &[(&str, &str)]) -> Result<Self, TenancyError> {
        let extra = Lineage::from_sql(self.name, files)?;
        let mut migrations = self.migrations.clone();
        migrations.extend(extra.migrations);
        Ok(Lineage::new(self.name, migrations))
    }

    fn new(name: &'static str, mut migrations: Vec<Migration>) -> Self {
        migrations.sort_by_key(Migration::version);
        Lineage { name, migrations }
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The highest version in the lineage (0 when empty).
    pub fn latest_version(&self) -> i32 {
        self.migrations.last().map_or(0, Migration::version)
    }

    pub fn migrations(&self) -> &[Migration] {
        &self.migrations
    }

    /// Applies every pending migration of this lineage to `target` on
    /// `conn`, which must be inside a transaction. Returns the names applied.
    ///
    /// Sets `search_path` (transaction-local) to the target schema for the
    /// lineage SQL.
    pub async fn apply_in_tx(
        &self,
        conn: &mut PgConnection,
        target: Target<'_>,
    ) -> Result<Vec<String>, TenancyError> {
        let schema = target.schema();
        let set_path = format!("SET LOCAL search_path TO \"{schema}\"");
        sqlx::raw_sql(AssertSqlSafe(set_path)).execute(&mut *conn).await?;
        let mut runner = Runner::new(&self.migrations);
        runner = runner.set_grouped(false).set_abort_divergent(true).set_abort_missing(true);
        runner.set_migration_table_name(format!("\"{schema}\".{HISTORY_TABLE}"));
        let mut adapter = InTransaction { conn };
        let report = runner.run_async(&mut adapter).await.map_err(|e| TenancyError::Migration {
            schema: schema.to_owned(),
            source: Box::new(e),
        })?;
        Ok(report.applied_migrations().iter().map(|m| m.to_string()).collect())
    }
}

/// refinery's view of a sqlx connection inside an open transaction: every
/// statement runs in that transaction, and the caller commits.
struct InTransaction<'c> {
    conn: &'c mut PgConnection,
}

impl AsyncTransaction for InTransaction<'_> {
    type Error = sqlx::Error;

    async fn execute<'a, T: Iterator<Item = &'a str> + Send + 'a>(
        &'a mut self,
        queries: T,
    ) -> Result<usize, Self::Error> {
        let mut count = 0;
        for query in queries {
            sqlx::raw_sql(AssertSqlSafe(query)).execute(&mut *self.conn).await?;
            count += 1;
        }
        Ok(count)
    }
}

impl AsyncQuery<Vec<Migration>> for InTransaction<'_> {
    async fn query<'a>(&'a mut self, query: &'a str) -> Result<Vec<Migration>, Self::Error> {
        // Not prepared: the text differs per org schema, and caching one
        // statement per org would churn the connection's statement cache.
        let rows =
            sqlx::query(AssertSqlSafe(query)).persistent(false).fetch_all(&mut *self.conn).await?;
        rows.iter()
            .map(|row| {
                let applied_on: String = row.try_get(2)?;
                let checksum: String = row.try_get(3)?;
                let applied_on = OffsetDateTime::parse(&applied_on, &Rfc3339)
                    .map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
                let checksum =
                    checksum.parse::<u64>().map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
                Ok(Migration::applied(row.try_get(0)?, row.try_get(1)?, applied_on, checksum))
            })
            .collect()
    }
}

impl AsyncMigrate for InTransaction<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_lineages_are_found() {
        assert!(Lineage::public().latest_version() >= 1);
        assert!(Lineage::org().latest_version() >= 1);
        assert_eq!(Lineage::org().migrations()[0].name(), "audit_events");
    }

    #[test]
    fn lineages_can_be_extended() {
        let l = Lineage::org()
            .extended(&[("V900__extra.sql", "CREATE TABLE extra (id int)")])
            .expect("valid");
        assert_eq!(l.latest_version(), 900);
        assert!(Lineage::from_sql("t", &[("bad name.sql", "")]).is_err());
    }
}
