//! Orgstack: a multi-tenant SaaS backend where every organization gets its
//! own PostgreSQL schema.
//!
//! This library holds the HTTP API, configuration, telemetry, the private
//! development servers and the CLI commands; the `orgstack` binary is a thin
//! `main` over [`cli`]. Tenancy rules live in the `tenancy` crate.

pub mod accounts;
pub mod alloc;
pub mod app;
pub mod check;
pub mod cli;
pub mod config;
pub mod dev;
pub mod digest;
pub mod email;
pub mod error;
pub mod files;
pub mod flags;
pub mod http;
pub mod jobs;
pub mod local;
pub mod locks;
pub mod notify;
pub mod oidc;
pub mod orgio;
pub mod queue;
pub mod redis;
pub mod seed;
pub mod storage;
pub mod telemetry;
pub mod webhooks;

pub use config::Config;
