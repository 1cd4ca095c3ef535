//! Multi-tenancy for Orgstack: every organization (org) has its own
//! PostgreSQL schema, and `public` holds what is shared.
//!
//! This crate owns the rules that keep tenants apart:
//! - [`SchemaName`] can only be made from an [`OrgId`], never from user text;
//! - [`Slug`] is the validated, renameable name of an org in URLs;
//! - [`db::connect`] gives connections with an empty `search_path`, so an
//!   unqualified table name fails instead of reading the wrong tenant;
//! - [`migrations`] embeds the two refinery lineages and runs them over sqlx;
//! - [`OrgRegistry`] provisions orgs atomically, looks them up through an
//!   in-process cache that other processes invalidate over Redis pub/sub, and
//!   carries them through their lifecycle (active, suspended, deleted, purged);
//! - [`migrator`] brings every org schema up to date with bounded parallelism.

pub mod db;
mod error;
mod ids;
pub mod invalidation;
pub mod keys;
pub mod migrations;
pub mod migrator;
mod registry;

pub use error::TenancyError;
pub use ids::{OrgId, SchemaName, Slug, SlugError};
pub use invalidation::Listener;
pub use keys::RedisKeys;
pub use migrations::Lineage;
pub use registry::{Org, OrgRegistry, OrgStatus, PurgeReport};
