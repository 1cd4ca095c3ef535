//! `orgstack check [--deploy]`: configuration checks, like Django's
//! `manage.py check --deploy`.

use secrecy::ExposeSecret;

use crate::config::Config;

/// One unsafe production setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub setting: &'static str,
    pub problem: String,
}

/// Settings that are unsafe for production, with why. Empty means safe.
pub fn deploy_findings(config: &Config) -> Vec<Finding> {
    let mut findings = Vec::new();
    let mut add =
        |setting, problem: &str| findings.push(Finding { setting, problem: problem.to_owned() });
    if !config.is_production() {
        add("ENVIRONMENT", "is development; set ENVIRONMENT=production");
    }
    if config.debug_sql {
        add("DEBUG_SQL", "is on; it logs every statement (and slows every request)");
    }
    if config.database_url.is_none() {
        add("DATABASE_URL", "is not set");
    }
    if config.redis_url.is_none() {
        add("REDIS_URL", "is not set");
    }
    match &config.secret_key {
        None => add("SECRET_KEY", "is not set; generate one with `openssl rand -hex 32`"),
        Some(key) => {
            let key = key.expose_secret();
            let distinct = key.chars().collect::<std::collections::BTreeSet<_>>().len();
            if key.chars().count() < 32 || distinct < 10 {
                add(
                    "SECRET_KEY",
                    "is weak; use at least 32 random characters (`openssl rand -hex 32`)",
                );
            } else if key.to_ascii_lowercase().contains("change")
                || key.to_ascii_lowercase().contains("secret")
            {
                add("SECRET_KEY", "looks like a placeholder; generate a random one");
            }
        }
    }
    if config
        .default_admin_password
        .as_ref()
        .is_some_and(|p| p.expose_secret() == crate::config::DEV_ADMIN_PASSWORD)
    {
        add("DEFAULT_ADMIN_PASSWORD", "is the development default; set a strong one or unset it");
    }
    if config.smtp_url.is_none() {
        add(
            "SMTP_URL",
            "is not set; emails (invitations, password resets, error reports) are only logged",
        );
    }
    match &config.storage {
        Some(crate::config::StorageConfig::Filesystem { dir }) if dir.is_relative() => add(
            "STORAGE_DIR",
            "is a relative path; give an absolute one on a backed-up volume (or STORAGE_URL)",
        ),
        None => add(
            "STORAGE_DIR",
            "is not set (files go to ./data/files); give an absolute path on a backed-up volume, or STORAGE_URL",
        ),
        _ => {}
    }
    if !config.metrics_addr.ip().is_loopback() {
        add(
            "METRICS_ADDR",
            "listens on a public address; bind it to 127.0.0.1 or a private network only",
        );
    }
    findings
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(vars: &[(&str, &str)]) -> Config {
        let vars: Vec<(String, String)> =
            vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_lookup(|name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
            .expect("valid")
    }

    #[test]
    fn development_defaults_are_flagged() {
        let settings: Vec<_> =
            deploy_findings(&config(&[("DEBUG_SQL", "true"), ("METRICS_ADDR", "0.0.0.0:9464")]))
                .into_iter()
                .map(|f| f.setting)
                .collect();
        assert_eq!(
            settings,
            [
                "ENVIRONMENT",
                "DEBUG_SQL",
                "DATABASE_URL",
                "REDIS_URL",
                "SECRET_KEY",
                "DEFAULT_ADMIN_PASSWORD",
                "SMTP_URL",
                "STORAGE_DIR",
                "METRICS_ADDR"
            ]
        );
    }

    #[test]
    fn weak_secret_is_flagged() {
        let findings = deploy_findings(&config(&[
            ("ENVIRONMENT", "production"),
            ("DATABASE_URL", "postgres://app:pw@db/orgstack"),
            ("REDIS_URL", "redis://cache:6379"),
            ("SECRET_KEY", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"),
            ("SMTP_URL", "smtps://mail.internal:465"),
            ("STORAGE_URL", "s3://bucket/orgstack"),
        ]));
        assert_eq!(findings.len(), 1);
        assert_eq!(findings[0].setting, "SECRET_KEY");
    }

    #[test]
    fn safe_production_config_passes() {
        let findings = deploy_findings(&config(&[
            ("ENVIRONMENT", "production"),
            ("DATABASE_URL", "postgres://app:pw@db/orgstack"),
            ("REDIS_URL", "redis://cache:6379"),
            ("SECRET_KEY", "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"),
            ("SMTP_URL", "smtp://mail.internal:587?tls=required"),
            ("STORAGE_DIR", "/var/lib/orgstack/files"),
        ]));
        assert_eq!(findings, []);
    }
}
