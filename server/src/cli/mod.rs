//! The `orgstack` command line: one binary, many subcommands.
//!
//! Exit codes: 0 success, 1 failure (one line naming the problem on
//! stderr), 2 bad usage (from clap).

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use tenancy::migrator::{self, MigrateOptions};
use tenancy::{Lineage, Slug};

use crate::accounts::members::Acting;
use crate::accounts::users::NewUser;
use crate::accounts::{AccountsError, Actor, Email, Role};
use crate::app;
use crate::config::Config;

mod admin_keys;
mod email;
mod files;
mod jobs;
mod webhooks;

#[derive(Debug, Parser)]
#[command(
    name = "orgstack",
    version,
    about = "Multi-tenant SaaS backend: API, migrations and operations commands"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the HTTP API on BIND_ADDR and metrics on METRICS_ADDR.
    Serve,
    /// Run a complete local system (private PostgreSQL and Redis when
    /// DATABASE_URL / REDIS_URL are unset).
    Dev(crate::dev::DevArgs),
    /// Apply the public lineage, then the org lineage to every org.
    Migrate(MigrateArgs),
    /// Create, list and change orgs.
    #[command(subcommand)]
    Org(OrgCommand),
    /// Create, list and change users.
    #[command(subcommand)]
    User(UserCommand),
    /// Add, remove and change org members.
    #[command(subcommand)]
    Member(MemberCommand),
    /// SSH public keys of platform admins, for `admin-tui ssh-serve`.
    #[command(subcommand)]
    AdminKeys(admin_keys::AdminKeysCommand),
    /// List and set feature flags (globally or for one org).
    #[command(subcommand)]
    Flags(FlagsCommand),
    /// List an org's webhooks and their deliveries; replay a delivery.
    #[command(subcommand)]
    Webhooks(webhooks::WebhooksCommand),
    /// Send a test email.
    #[command(subcommand)]
    Email(email::EmailCommand),
    /// List an org's files; purge them.
    #[command(subcommand)]
    Files(files::FilesCommand),
    /// Run jobs from the queues (Celery's worker).
    Worker(jobs::WorkerArgs),
    /// Fire cron schedules and run the recovery sweep (Celery beat); one
    /// leads at a time.
    Scheduler,
    /// List, show, enqueue, retry, cancel and purge jobs.
    #[command(subcommand)]
    Jobs(jobs::JobsCommand),
    /// Depth, in flight, scheduled, dead and oldest age of every queue;
    /// pause and resume queues.
    Queues(jobs::QueuesArgs),
    /// Live workers from their heartbeats.
    Workers {
        #[arg(long)]
        json: bool,
    },
    /// Validate the configuration; with --deploy, report unsafe production settings.
    Check {
        /// Also fail on settings that are unsafe in production.
        #[arg(long)]
        deploy: bool,
    },
    /// Load orgs, users, memberships and flags from a JSON or YAML fixture
    /// (idempotent).
    Seed {
        /// The fixture (.json, .yaml or .yml).
        file: std::path::PathBuf,
    },
    /// Print the OpenAPI document (the same as GET /api/openapi.json).
    Openapi,
    /// Print the version.
    Version,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct MigrateArgs {
    #[command(subcommand)]
    pub command: Option<MigrateCommand>,
    /// Org schemas migrated at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub jobs: u16,
    /// Seconds to wait for a lock on one org before reporting it as failed.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub lock_timeout: u64,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum MigrateCommand {
    /// Each org's applied version, the laggards and the failures.
    Status {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum OrgCommand {
    /// Provision an org: row, schema and org lineage, atomically. With
    /// --owner, also make that user (created if missing) a member;
    /// rerunning it changes nothing.
    Create {
        /// Display name.
        name: String,
        /// URL name ([a-z0-9-]{3,40}); derived from the name when omitted.
        #[arg(long)]
        slug: Option<Slug>,
        /// Email of the user to add (created, with a password from
        /// ORGSTACK_PASSWORD or a prompt, when missing).
        #[arg(long)]
        owner: Option<String>,
        /// That user's role.
        #[arg(long, default_value = "owner", requires = "owner")]
        role: Role,
        #[arg(long)]
        json: bool,
    },
    /// List every org.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Stop serving an org (its data stays).
    Suspend { slug: Slug },
    /// Serve a suspended org again.
    Resume { slug: Slug },
    /// Soft-delete an org (dry run unless --yes); the schema stays until purge.
    Delete {
        slug: Slug,
        #[arg(long)]
        yes: bool,
    },
    /// Drop a deleted org's schema, row and Redis keys (dry run unless --yes).
    Purge {
        slug: Slug,
        #[arg(long)]
        yes: bool,
    },
    /// Write an org's data (every table of its schema, read in one
    /// snapshot, and its members) to one archive (.tar.gz).
    Export {
        slug: Slug,
        /// The archive to write (replaced if it exists).
        #[arg(long)]
        out: std::path::PathBuf,
    },
    /// Load an archive from `org export` into a new org (all of it or,
    /// on any problem, nothing).
    Import {
        /// The archive.
        file: std::path::PathBuf,
        /// The new org's slug.
        #[arg(long)]
        slug: Slug,
        /// Its name (default: the exported org's).
        #[arg(long)]
        name: Option<String>,
    },
}

/// The whole program: parse the command line (exit 2 on bad usage), load
/// `.env` and the configuration, set up logging, run the command. Errors are
/// printed as one line (with their causes) and exit 1.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match load_config() {
        Ok(config) => config,
        Err(code) => return code,
    };
    crate::telemetry::init_tracing(&config);
    run_to_exit(run(cli, config))
}

/// Loads `.env` from the working folder (variables already set win); a
/// missing file is fine. Prints the problem and gives exit code 1 otherwise.
pub fn load_dotenv() -> Result<(), ExitCode> {
    match dotenvy::from_path(".env") {
        Err(err) if !err.not_found() => {
            eprintln!("error: cannot read .env: {err}");
            Err(ExitCode::from(1))
        }
        _ => Ok(()),
    }
}

/// `.env`, then the configuration from the environment; a problem is
/// printed as one line naming the variable, with exit code 1.
pub fn load_config() -> Result<Config, ExitCode> {
    load_dotenv()?;
    Config::from_env().map_err(|err| {
        eprintln!("error: {err}");
        ExitCode::from(1)
    })
}

/// Runs `work` on a multi-threaded runtime: success exits 0, an error is
/// printed as one line (with its causes) and exits 1. Shared by every
/// binary of the workspace.
pub fn run_to_exit(work: impl Future<Output = anyhow::Result<()>>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(work) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(1)
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user; the password comes from ORGSTACK_PASSWORD or a prompt.
    Create {
        email: String,
        #[arg(long, default_value = "")]
        name: String,
        /// Make the user a platform admin.
        #[arg(long)]
        admin: bool,
    },
    /// List users.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Set a user's password (from ORGSTACK_PASSWORD or a prompt) and end their sessions.
    SetPassword { email: String },
    /// Deactivate a user: no sign-in, every session ended.
    Deactivate { email: String },
    /// Make a user a platform admin.
    Promote { email: String },
}

#[derive(Debug, Subcommand)]
pub enum MemberCommand {
    /// Add a user to an org.
    Add {
        org: Slug,
        email: String,
        #[arg(long, default_value = "member")]
        role: Role,
    },
    /// Remove a user from an org (never its last owner).
    Remove { org: Slug, email: String },
    /// Change a member's role (an org keeps at least one owner).
    SetRole { org: Slug, email: String, role: Role },
}

#[derive(Debug, Subcommand)]
pub enum FlagsCommand {
    /// Every flag with its value (effective for --org, else default and global).
    List {
        #[arg(long)]
        org: Option<Slug>,
        #[arg(long)]
        json: bool,
    },
    /// Turn a flag on globally, or for one org with --org.
    Enable {
        name: String,
        #[arg(long)]
        org: Option<Slug>,
    },
    /// Turn a flag off globally, or for one org with --org.
    Disable {
        name: String,
        #[arg(long)]
        org: Option<Slug>,
    },
    /// Turn every flag on globally.
    EnableAllGlobal,
}

async fn flags(out: &mut impl Write, config: Config, cmd: FlagsCommand) -> anyhow::Result<()> {
    let state = app::connect_now(config).await?;
    let org_id = |slug: Option<Slug>| {
        let orgs = state.orgs.clone();
        async move {
            match slug {
                Some(slug) => Ok::<_, anyhow::Error>(Some(orgs.get(&slug).await?.id)),
                None => Ok(None),
            }
        }
    };
    match cmd {
        FlagsCommand::List { org: Some(slug), json } => {
            let org = state.orgs.get(&slug).await?;
            let flags = state.flags.for_org(org.id).await?;
            if json {
                serde_json::to_writer_pretty(&mut *out, &flags)?;
                writeln!(out)?;
            } else {
                writeln!(out, "{:<24} {:<8} {:<8} DESCRIPTION", "FLAG", "ENABLED", "SOURCE")?;
                for f in &flags {
                    let source = format!("{:?}", f.source).to_lowercase();
                    writeln!(
                        out,
                        "{:<24} {:<8} {:<8} {}",
                        f.name, f.enabled, source, f.description
                    )?;
                }
            }
        }
        FlagsCommand::List { org: None, json } => {
            let flags = state.flags.all().await?;
            if json {
                serde_json::to_writer_pretty(&mut *out, &flags)?;
                writeln!(out)?;
            } else {
                writeln!(
                    out,
                    "{:<24} {:<8} {:<8} {:<10} DESCRIPTION",
                    "FLAG", "DEFAULT", "GLOBAL", "OVERRIDES"
                )?;
                for f in &flags {
                    let global = f.global.map_or("-".to_owned(), |g| g.to_string());
                    writeln!(
                        out,
                        "{:<24} {:<8} {:<8} {:<10} {}",
                        f.name,
                        f.default,
                        global,
                        f.overrides.len(),
                        f.description
                    )?;
                }
            }
        }
        FlagsCommand::Enable { name, org } => {
            let where_ = org.as_ref().map_or("globally".to_owned(), |s| format!("for '{s}'"));
            state.flags.set(&Actor::Cli, &name, org_id(org).await?, true).await?;
            writeln!(out, "{name} enabled {where_}")?;
        }
        FlagsCommand::Disable { name, org } => {
            let where_ = org.as_ref().map_or("globally".to_owned(), |s| format!("for '{s}'"));
            state.flags.set(&Actor::Cli, &name, org_id(org).await?, false).await?;
            writeln!(out, "{name} disabled {where_}")?;
        }
        FlagsCommand::EnableAllGlobal => {
            for def in crate::flags::FLAGS {
                state.flags.set(&Actor::Cli, def.name, None, true).await?;
            }
            writeln!(out, "enabled {} flags globally", crate::flags::FLAGS.len())?;
        }
    }
    Ok(())
}

/// A password from `ORGSTACK_PASSWORD`, a terminal prompt, or one line of
/// standard input; never from an argument, which `ps` would show.
fn read_password(prompt: &str) -> anyhow::Result<String> {
    if let Ok(password) = std::env::var("ORGSTACK_PASSWORD") {
        return Ok(password);
    }
    if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        let first = rpassword::prompt_password(prompt)?;
        let again = rpassword::prompt_password("Again: ")?;
        anyhow::ensure!(first == again, "the passwords do not match");
        return Ok(first);
    }
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).context("reading the password from standard input")?;
    let password = line.trim_end_matches(['\n', '\r']).to_owned();
    anyhow::ensure!(!password.is_empty(), "no password given: set ORGSTACK_PASSWORD or type one");
    Ok(password)
}

/// The CLI acts as a platform operator; its role in any org is owner.
fn cli_acting() -> Acting {
    Acting { actor: Actor::Cli, role: Role::Owner, user_id: None }
}

async fn user(out: &mut impl Write, config: Config, cmd: UserCommand) -> anyhow::Result<()> {
    let state = app::connect_now(config).await?;
    let accounts = &state.accounts;
    match cmd {
        UserCommand::Create { email, name, admin } => {
            let email = Email::parse(&email)?;
            let password = read_password("Password: ")?;
            let new = NewUser {
                email: &email,
                name: &name,
                password: Some(password),
                platform_admin: admin,
            };
            let user = accounts.create_user(&Actor::Cli, new).await?;
            writeln!(
                out,
                "created user {}{}",
                user.email,
                if admin { " (platform admin)" } else { "" }
            )?;
        }
        UserCommand::List { json } => {
            let users = accounts.list_users().await?;
            if json {
                serde_json::to_writer_pretty(&mut *out, &users)?;
                writeln!(out)?;
            } else {
                writeln!(out, "{:<40} {:<8} {:<6} NAME", "EMAIL", "ACTIVE", "ADMIN")?;
                for u in &users {
                    writeln!(
                        out,
                        "{:<40} {:<8} {:<6} {}",
                        u.email, u.is_active, u.is_platform_admin, u.name
                    )?;
                }
            }
        }
        UserCommand::SetPassword { email } => {
            let email = Email::parse(&email)?;
            let password = read_password("New password: ")?;
            accounts.set_password(&Actor::Cli, &email, password).await?;
            writeln!(out, "password changed for {email}; their sessions were ended")?;
        }
        UserCommand::Deactivate { email } => {
            let email = Email::parse(&email)?;
            accounts.deactivate_user(&Actor::Cli, &email).await?;
            writeln!(out, "deactivated {email}; their sessions were ended")?;
        }
        UserCommand::Promote { email } => {
            let email = Email::parse(&email)?;
            accounts.promote_user(&Actor::Cli, &email).await?;
            writeln!(out, "{email} is now a platform admin")?;
        }
    }
    Ok(())
}

async fn member(out: &mut impl Write, config: Config, cmd: MemberCommand) -> anyhow::Result<()> {
    let state = app::connect_now(config).await?;
    let accounts = &state.accounts;
    let find = |email: &str| {
        let email = Email::parse(email);
        async move {
            let email = email?;
            let user = accounts.user_by_email(&email).await?.ok_or(AccountsError::UserNotFound)?;
            Ok::<_, anyhow::Error>(user)
        }
    };
    match cmd {
        MemberCommand::Add { org, email, role } => {
            let org = state.orgs.get(&org).await?;
            let email = Email::parse(&email)?;
            accounts.add_member(&cli_acting(), &org, &email, role).await?;
            writeln!(out, "{email} is now {role} of '{}'", org.slug)?;
        }
        MemberCommand::Remove { org, email } => {
            let org = state.orgs.get(&org).await?;
            let user = find(&email).await?;
            accounts.remove_member(&cli_acting(), &org, user.id).await?;
            writeln!(out, "{} removed from '{}'", user.email, org.slug)?;
        }
        MemberCommand::SetRole { org, email, role } => {
            let org = state.orgs.get(&org).await?;
            let user = find(&email).await?;
            accounts.set_role(&cli_acting(), &org, user.id, role).await?;
            writeln!(out, "{} is now {role} of '{}'", user.email, org.slug)?;
        }
    }
    Ok(())
}

/// Runs one parsed command.
pub async fn run(cli: Cli, config: Config) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match cli.command {
        Command::Version => writeln!(out, "orgstack {}", env!("CARGO_PKG_VERSION"))?,
        Command::Openapi => writeln!(out, "{}", crate::http::openapi_json())?,
        Command::Seed { file } => {
            let fixture = crate::seed::read(&file)?;
            let state = app::connect_now(config).await?;
            let report = crate::seed::apply(&state, &fixture).await?;
            writeln!(
                out,
                "seeded {}: {} orgs created, {} users created, {} memberships changed, {} flag values set",
                file.display(),
                report.orgs_created,
                report.users_created,
                report.memberships_changed,
                report.flags_set
            )?;
        }
        Command::Check { deploy } => check(&mut out, &config, deploy)?,
        Command::Serve => serve(config).await?,
        Command::Dev(args) => {
            drop(out);
            crate::dev::run(config, args).await?;
        }
        Command::Migrate(args) => migrate(&mut out, config, args).await?,
        Command::Org(cmd) => org(&mut out, config, cmd).await?,
        Command::User(cmd) => user(&mut out, config, cmd).await?,
        Command::Member(cmd) => member(&mut out, config, cmd).await?,
        Command::AdminKeys(cmd) => admin_keys::admin_keys(&mut out, config, cmd).await?,
        Command::Flags(cmd) => flags(&mut out, config, cmd).await?,
        Command::Worker(args) => {
            drop(out);
            jobs::worker(config, args).await?;
        }
        Command::Scheduler => {
            drop(out);
            jobs::scheduler(config).await?;
        }
        Command::Jobs(cmd) => jobs::jobs(&mut out, config, cmd).await?,
        Command::Files(cmd) => files::files(&mut out, config, cmd).await?,
        Command::Email(cmd) => email::email(&mut out, config, cmd).await?,
        Command::Webhooks(cmd) => webhooks::webhooks(&mut out, config, cmd).await?,
        Command::Queues(args) => jobs::queues(&mut out, config, args).await?,
        Command::Workers { json } => jobs::workers(&mut out, config, json).await?,
    }
    Ok(())
}

fn check(out: &mut impl Write, config: &Config, deploy: bool) -> anyhow::Result<()> {
    if !deploy {
        writeln!(out, "configuration is valid ({:?})", config.environment)?;
        return Ok(());
    }
    let findings = crate::check::deploy_findings(config);
    if findings.is_empty() {
        writeln!(out, "no unsafe production settings found")?;
        return Ok(());
    }
    for finding in &findings {
        writeln!(out, "{}: {}", finding.setting, finding.problem)?;
    }
    anyhow::bail!("{} unsafe production setting(s)", findings.len())
}

async fn serve(config: Config) -> anyhow::Result<()> {
    if config.is_production() {
        for finding in crate::check::deploy_findings(&config) {
            if finding.setting == "DEFAULT_ADMIN_PASSWORD" {
                anyhow::bail!(
                    "{} {}; `serve` refuses to start in production (see `orgstack check --deploy`)",
                    finding.setting,
                    finding.problem
                );
            }
        }
    }
    let bind = config.bind_addr;
    let metrics = config.metrics_addr;
    let state = app::build_state(config).await?;
    let _listeners = app::listen(&state).await?;
    if let Err(err) = app::ensure_default_admin(&state).await {
        tracing::warn!(
            error = format!("{err:#}"),
            "default admin not created (has `orgstack migrate` run?)"
        );
    }
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .with_context(|| format!("cannot listen on BIND_ADDR {bind}"))?;
    let metrics_listener = tokio::net::TcpListener::bind(metrics)
        .await
        .with_context(|| format!("cannot listen on METRICS_ADDR {metrics}"))?;
    crate::telemetry::metrics_handle();
    tracing::info!(%bind, %metrics, "serving");
    crate::http::serve(state, listener, Some(metrics_listener), crate::http::shutdown_signal())
        .await
}

async fn migrate(
    out: &mut impl Write,
    mut config: Config,
    args: MigrateArgs,
) -> anyhow::Result<()> {
    // Each job holds a connection for its whole org, lock waits included.
    config.db_pool_size = config.db_pool_size.max(u32::from(args.jobs) + 2);
    let state = app::connect_now(config).await?;
    if let Some(MigrateCommand::Status { json }) = args.command {
        let status = migrator::status(&state.db, &Lineage::public(), &Lineage::org())
            .await
            .context("reading migration status (has `orgstack migrate` run yet?)")?;
        if json {
            serde_json::to_writer_pretty(&mut *out, &status)?;
            writeln!(out)?;
            return Ok(());
        }
        writeln!(out, "public: version {} of {}", status.public_version, status.public_target)?;
        writeln!(out, "{:<40} {:>7}  {:<10} NOTE", "ORG", "VERSION", "STATUS")?;
        for org in &status.orgs {
            let note = match (&org.migrate_error, org.version < status.org_target) {
                (Some(err), _) => format!("FAILED: {}", first_line(err)),
                (None, true) => format!("behind (target {})", status.org_target),
                (None, false) => String::new(),
            };
            writeln!(out, "{:<40} {:>7}  {:<10} {}", org.slug, org.version, org.status, note)?;
        }
        writeln!(
            out,
            "{} orgs, target version {}: {} behind, {} failed",
            status.orgs.len(),
            status.org_target,
            status.laggards().count(),
            status.failures().count()
        )?;
        return Ok(());
    }
    let options = MigrateOptions {
        jobs: usize::from(args.jobs),
        lock_timeout: Duration::from_secs(args.lock_timeout),
    };
    let report =
        migrator::migrate_all(&state.db, &Lineage::public(), &Lineage::org(), &options).await?;
    if args.json {
        serde_json::to_writer_pretty(&mut *out, &report)?;
        writeln!(out)?;
    } else {
        for name in &report.public_applied {
            writeln!(out, "public: applied {name}")?;
        }
        for org in &report.migrated {
            writeln!(
                out,
                "{}: {} -> {} ({})",
                org.slug,
                org.from_version,
                org.to_version,
                org.applied.join(", ")
            )?;
        }
        for org in &report.failed {
            writeln!(
                out,
                "{}: FAILED at version {}: {}",
                org.slug,
                org.version,
                first_line(&org.error)
            )?;
        }
        writeln!(
            out,
            "orgs: {} total, {} already current, {} migrated, {} failed (target version {}) in {} ms",
            report.orgs_total,
            report.orgs_current,
            report.migrated.len(),
            report.failed.len(),
            report.target_version,
            report.elapsed_ms
        )?;
    }
    if !report.failed.is_empty() {
        anyhow::bail!(
            "{} org(s) failed to migrate; fix them and rerun `orgstack migrate`",
            report.failed.len()
        );
    }
    Ok(())
}

async fn org(out: &mut impl Write, config: Config, cmd: OrgCommand) -> anyhow::Result<()> {
    let state = app::connect_now(config).await?;
    let orgs = &state.orgs;
    match cmd {
        OrgCommand::Create { name, slug, owner, role, json } => {
            let slug = match slug {
                Some(slug) => slug,
                None => Slug::suggest(&name).ok_or_else(|| {
                    anyhow::anyhow!("cannot derive a slug from {name:?}; pass --slug")
                })?,
            };
            let owner = owner.as_deref().map(Email::parse).transpose()?;
            let (org, created) = match (&owner, orgs.by_slug(&slug).await?) {
                // With --owner the command is idempotent: an existing org is reused.
                (Some(_), Some(existing)) => ((*existing).clone(), false),
                (Some(_), None) if role != Role::Owner => {
                    anyhow::bail!(
                        "a new org needs an owner: use --role owner (the default) for {slug}"
                    )
                }
                _ => {
                    let org = orgs.create(&name, &slug).await?;
                    state.accounts.record_org_created(&Actor::Cli, &org).await?;
                    (org, true)
                }
            };
            if let Some(email) = &owner {
                let user = match state.accounts.user_by_email(email).await? {
                    Some(user) => user,
                    None => {
                        let password = read_password(&format!("Password for {email}: "))?;
                        let new = NewUser {
                            email,
                            name: "",
                            password: Some(password),
                            platform_admin: false,
                        };
                        state.accounts.create_user(&Actor::Cli, new).await?
                    }
                };
                match state.accounts.member(&org, user.id).await? {
                    Some(m) if m.role == role => {}
                    Some(_) => {
                        state.accounts.set_role(&cli_acting(), &org, user.id, role).await?;
                    }
                    None if role == Role::Owner => {
                        state.accounts.add_owner(&Actor::Cli, &org, user.id).await?
                    }
                    None => {
                        state.accounts.add_member(&cli_acting(), &org, email, role).await?;
                    }
                }
            }
            if json {
                serde_json::to_writer_pretty(&mut *out, &org)?;
                writeln!(out)?;
            } else {
                writeln!(
                    out,
                    "{} org '{}' ({}) with schema {}{}",
                    if created { "created" } else { "kept existing" },
                    org.slug,
                    org.name,
                    org.schema(),
                    owner.as_ref().map(|e| format!("; {e} is {role}")).unwrap_or_default()
                )?;
            }
        }
        OrgCommand::List { json } => {
            let list = orgs.list().await?;
            if json {
                serde_json::to_writer_pretty(&mut *out, &list)?;
                writeln!(out)?;
            } else {
                writeln!(
                    out,
                    "{:<40} {:<10} {:>7}  {:<36}  NAME",
                    "SLUG", "STATUS", "VERSION", "SCHEMA"
                )?;
                for org in &list {
                    writeln!(
                        out,
                        "{:<40} {:<10} {:>7}  {:<36}  {}",
                        org.slug,
                        org.status,
                        org.org_version,
                        org.schema(),
                        org.name
                    )?;
                }
            }
        }
        OrgCommand::Suspend { slug } => {
            let org = orgs.suspend(&slug).await?;
            state.accounts.record_org_status(&Actor::Cli, &org, "org.suspended").await?;
            writeln!(out, "org '{slug}' suspended")?;
        }
        OrgCommand::Resume { slug } => {
            let org = orgs.resume(&slug).await?;
            state.accounts.record_org_status(&Actor::Cli, &org, "org.resumed").await?;
            writeln!(out, "org '{slug}' resumed")?;
        }
        OrgCommand::Delete { slug, yes } => {
            if yes {
                orgs.soft_delete(&slug).await?;
                writeln!(
                    out,
                    "org '{slug}' deleted (soft); `orgstack org purge {slug} --yes` removes its data"
                )?;
            } else {
                let org = orgs.get(&slug).await?;
                writeln!(
                    out,
                    "dry run: would soft-delete org '{}' ({}, {}); rerun with --yes to do it",
                    org.slug, org.name, org.status
                )?;
            }
        }
        OrgCommand::Export { slug, out: file } => {
            let manifest = crate::orgio::export(&state, &slug, &file).await?;
            let rows: u64 = manifest.tables.iter().map(|t| t.rows).sum();
            writeln!(
                out,
                "exported org '{slug}' to {}: {} tables, {rows} rows, {} members, {} files (org lineage version {})",
                file.display(),
                manifest.tables.len(),
                manifest.members.len(),
                manifest.files.len(),
                manifest.org_version
            )?;
            if !manifest.missing_files.is_empty() {
                writeln!(
                    out,
                    "warning: {} files are recorded but their bytes are missing from storage (records exported): {}",
                    manifest.missing_files.len(),
                    manifest
                        .missing_files
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                )?;
            }
        }
        OrgCommand::Import { file, slug, name } => {
            let report =
                crate::orgio::import(&state, &Actor::Cli, &file, &slug, name.as_deref()).await?;
            writeln!(
                out,
                "imported {} into org '{}' ({}): {} rows, {} files, {} members added",
                file.display(),
                report.org.slug,
                report.org.name,
                report.rows,
                report.files,
                report.members_added
            )?;
            if !report.members_missing.is_empty() {
                writeln!(
                    out,
                    "not added (no such user here): {}",
                    report.members_missing.join(", ")
                )?;
            }
        }
        OrgCommand::Purge { slug, yes } => {
            let org_id: Option<uuid::Uuid> =
                sqlx::query_scalar("SELECT id FROM public.orgs WHERE slug = $1")
                    .bind(slug.as_str())
                    .fetch_optional(&state.db)
                    .await?;
            let report = orgs.purge(&slug, !yes).await?;
            // Its stored files go with it (after the schema, so a failed
            // purge never leaves rows pointing at missing bytes).
            let stored = match org_id.map(tenancy::OrgId::from_uuid) {
                Some(id) if yes => state.files.purge_org(id).await?,
                Some(id) => state.files.storage().list_org(id).await?.len(),
                None => 0,
            };
            let verb = if yes { "purged" } else { "dry run: would purge" };
            writeln!(
                out,
                "{verb} org '{}': drop schema {} ({} tables), delete its row, {} Redis keys and {stored} stored files{}",
                report.slug,
                report.schema,
                report.tables,
                report.redis_keys,
                if yes { "" } else { "; rerun with --yes to do it" }
            )?;
        }
    }
    Ok(())
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or(text)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn command_definition_is_valid() {
        Cli::command().debug_assert();
    }

    #[test]
    fn slugs_are_validated_by_the_parser() {
        let err = Cli::try_parse_from(["orgstack", "org", "suspend", "Bad_Slug"])
            .expect_err("invalid slug");
        assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation);
        assert!(err.to_string().contains("may contain only lowercase letters"), "{err}");
    }

    #[test]
    fn migrate_takes_options_or_status() {
        let cli = Cli::try_parse_from(["orgstack", "migrate", "--jobs", "8"]).expect("valid");
        assert!(matches!(
            cli.command,
            Command::Migrate(MigrateArgs { jobs: 8, command: None, .. })
        ));
        let cli = Cli::try_parse_from(["orgstack", "migrate", "status", "--json"]).expect("valid");
        assert!(matches!(
            cli.command,
            Command::Migrate(MigrateArgs {
                command: Some(MigrateCommand::Status { json: true }),
                ..
            })
        ));
        assert!(Cli::try_parse_from(["orgstack", "migrate", "--jobs", "0"]).is_err());
    }
}
