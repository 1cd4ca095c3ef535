//! The scale data set for `admin-tui` (10,000 orgs, 100,000 users,
//! 1,000,000 jobs): where it lives and how its rows are named, shared by
//! the seeder (`src/bin/seed-scale.rs`) and the console benchmark
//! (`benches/console.rs`).
//!
//! It lives in a database and a Redis key prefix of its own, read from
//! `SCALE_DATABASE_URL`, `SCALE_REDIS_URL` and `SCALE_REDIS_PREFIX` (never
//! from `DATABASE_URL`, so a development `.env` cannot point the seeder at
//! dev or test data).

use orgstack::config::{Config, ConfigError};

/// The database unless `SCALE_DATABASE_URL` says otherwise.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/orgstack_scale";
/// Redis unless `SCALE_REDIS_URL` says otherwise.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";
/// The key prefix unless `SCALE_REDIS_PREFIX` says otherwise.
pub const DEFAULT_PREFIX: &str = "orgstack-scale";

/// The platform admin the console runs as.
pub const OPERATOR: &str = "ops@scale.example";
/// The operator's password, unless `SCALE_OPS_PASSWORD` says otherwise.
pub const DEFAULT_OPERATOR_PASSWORD: &str = "scale operator password";
/// Every seeded user's password (one argon2id hash, shared).
pub const USER_PASSWORD: &str = "scale user password";

/// Members per org: users `(k-1)*10+1 ..= k*10` belong to org `k`.
pub const MEMBERS_PER_ORG: u64 = 10;

/// Where the scale data set lives.
#[derive(Debug, Clone)]
pub struct ScaleEnv {
    pub database_url: String,
    pub redis_url: String,
    pub prefix: String,
}

impl ScaleEnv {
    /// From `SCALE_DATABASE_URL`, `SCALE_REDIS_URL`, `SCALE_REDIS_PREFIX`.
    pub fn from_env() -> Self {
        let var = |name: &str, default: &str| {
            std::env::var(name).ok().filter(|v| !v.trim().is_empty()).unwrap_or(default.to_owned())
        };
        ScaleEnv {
            database_url: var("SCALE_DATABASE_URL", DEFAULT_DATABASE_URL),
            redis_url: var("SCALE_REDIS_URL", DEFAULT_REDIS_URL),
            prefix: var("SCALE_REDIS_PREFIX", DEFAULT_PREFIX),
        }
    }

    /// The database's name (the URL's path).
    pub fn database_name(&self) -> anyhow::Result<String> {
        let url = url::Url::parse(&self.database_url)?;
        let name = url.path().trim_start_matches('/').to_owned();
        anyhow::ensure!(
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "SCALE_DATABASE_URL must name a database of [A-Za-z0-9_]"
        );
        Ok(name)
    }

    /// The same server's `postgres` database, to create this one.
    pub fn admin_url(&self) -> anyhow::Result<String> {
        let mut url = url::Url::parse(&self.database_url)?;
        url.set_path("/postgres");
        Ok(url.to_string())
    }

    /// The variables `orgstack` and `admin-tui` read, pointing at this data
    /// set (for child processes and [`ScaleEnv::config`]).
    pub fn vars(&self) -> Vec<(&'static str, String)> {
        vec![
            ("DATABASE_URL", self.database_url.clone()),
            ("REDIS_URL", self.redis_url.clone()),
            ("REDIS_KEY_PREFIX", self.prefix.clone()),
            ("RUST_LOG", "warn".to_owned()),
        ]
    }

    /// A configuration as `orgstack` and `admin-tui` would load it with
    /// [`ScaleEnv::vars`] set (and `extra`, such as `DB_POOL_SIZE`).
    pub fn config(&self, extra: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let vars = self.vars();
        Config::from_lookup(|name| {
            extra
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
                .or_else(|| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone()))
        })
    }
}

/// The slug of org `k` (1-based): `scale-00001`.
pub fn org_slug(k: u64) -> String {
    format!("scale-{k:05}")
}

/// The display name of org `k`: two words from short lists and `k`, so a
/// filter on a word matches a few hundred orgs.
pub fn org_name(k: u64) -> String {
    const FIRST: [&str; 20] = [
        "Amber", "Blue", "Cedar", "Delta", "Ember", "Falcon", "Granite", "Harbor", "Indigo",
        "Juniper", "Kestrel", "Lumen", "Maple", "Nimbus", "Onyx", "Pine", "Quartz", "River",
        "Summit", "Tidal",
    ];
    const SECOND: [&str; 25] = [
        "Analytics",
        "Bakery",
        "Capital",
        "Dental",
        "Energy",
        "Foods",
        "Games",
        "Health",
        "Insurance",
        "Journals",
        "Kitchens",
        "Logistics",
        "Media",
        "Networks",
        "Optics",
        "Partners",
        "Robotics",
        "Studios",
        "Travel",
        "Unlimited",
        "Ventures",
        "Works",
        "Xpress",
        "Yards",
        "Zoning",
    ];
    let i = (k as usize).wrapping_mul(7919);
    format!("{} {} {k}", FIRST[i % FIRST.len()], SECOND[(i / FIRST.len()) % SECOND.len()])
}

/// The email of seeded user `i` (1-based).
pub fn user_email(i: u64) -> String {
    format!("user-{i:06}@scale.example")
}

/// How many jobs each of `orgs` orgs gets, `total` in all, skewed as real
/// tenants are: org 1 has a tenth of them, the next 1% of the orgs a fifth
/// between them, and the rest share what is left evenly.
pub fn job_counts(orgs: u64, total: u64) -> Vec<u64> {
    if orgs == 0 {
        return Vec::new();
    }
    let mut counts = vec![0; orgs as usize];
    let big = if orgs == 1 { total } else { total / 10 };
    counts[0] = big;
    let rest_orgs = orgs - 1;
    if rest_orgs == 0 {
        return counts;
    }
    let mid = (orgs / 100).clamp(1, rest_orgs);
    let tail = rest_orgs - mid;
    let mid_total = if tail == 0 { total - big } else { total / 5 };
    spread(&mut counts[1..=mid as usize], mid_total);
    spread(&mut counts[1 + mid as usize..], total - big - mid_total);
    counts
}

/// Shares `total` among `slots` as evenly as integers allow (the first get
/// one more).
fn spread(slots: &mut [u64], total: u64) {
    if slots.is_empty() {
        return;
    }
    let n = slots.len() as u64;
    for (i, slot) in slots.iter_mut().enumerate() {
        *slot = total / n + u64::from((i as u64) < total % n);
    }
}

/// Sorts `values` and returns (median, p99, max).
pub fn summary(values: &mut [f64]) -> (f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    (percentile(values, 0.5), percentile(values, 0.99), values.last().copied().unwrap_or(0.0))
}

/// The `p` quantile of sorted `values` (nearest rank).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_counts_add_up_and_are_skewed() {
        let counts = job_counts(10_000, 1_000_000);
        assert_eq!(counts.iter().sum::<u64>(), 1_000_000);
        assert_eq!(counts[0], 100_000);
        assert_eq!(counts[1..=100].iter().sum::<u64>(), 200_000);
        assert!(counts[101..].iter().all(|&n| n == 70 || n == 71));
        for (orgs, total) in [(1, 10), (2, 10), (3, 1000), (20, 1000), (150, 12_345)] {
            let counts = job_counts(orgs, total);
            assert_eq!(counts.len() as u64, orgs);
            assert_eq!(counts.iter().sum::<u64>(), total, "{orgs} orgs");
        }
    }

    #[test]
    fn names_are_valid() {
        for k in [1, 42, 9_999, 10_000] {
            assert!(tenancy::Slug::parse(&org_slug(k)).is_ok());
            assert!(orgstack::accounts::Email::parse(&user_email(k)).is_ok());
        }
        assert_ne!(org_name(1), org_name(2));
    }
}
