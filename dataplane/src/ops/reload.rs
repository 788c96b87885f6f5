//! RELOAD: which settings of a new configuration take effect while running, and which keep their old
//! value until a restart.
//!
//! The decision is pure (two configs in, the config to apply and a report out) so it is tested without
//! a proxy. Keys are compared as `section.key` over the serialized TOML tree, so a key added to the
//! config later is reloadable by default and shows up in the report without code here; only keys that
//! are fixed at start (sockets, threads, state built once) are listed in [`RESTART_ONLY`].

use crate::config::{Config, ConfigError};

/// Keys whose new value is not applied until a restart: the listen socket, worker threads, the lag
/// monitor's schedule, state built once at start (TLS modes and backend TLS, the auth file path and
/// auth_query setup, the load-balancing policy, the cancel rate limiter), and health-check settings
/// (each backend's checks and breaker are built with them).
pub const RESTART_ONLY: &[&str] = &[
    "server.listen",
    "server.metrics_listen",
    "server.workers",
    "server.max_cancels_per_second",
    "tls.mode",
    "tls.server_mode",
    "tls.server_ca_file",
    "auth.type",
    "auth.file",
    "auth.user",
    "auth.query",
    "auth.dbname",
    "auth.cache_ttl",
    "routing.load_balancing",
    "consistency.monitor",
    "consistency.lag_check_interval",
    "health.checks",
    "health.interval",
    "health.timeout",
    "health.max_failing_checks",
    "health.min_passing_checks",
    "health.breaker_failures",
    "health.breaker_failure_rate",
    "health.breaker_min_attempts",
    "health.breaker_window",
    "health.breaker_cooldown",
    "health.breaker_half_open_probes",
    "health.rehydration_batch",
    "health.rehydration_delay",
    "metrics.top_fingerprints",
    "control.url",
    "control.ca_file",
    "control.namespace",
    "control.pod",
    "control.proxy",
    "control.connect_timeout",
    "control.idle_timeout",
    "control.backoff_min",
    "control.backoff_max",
    "control.report_interval",
];

/// What a reload did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadReport {
    /// Keys whose new value is now in effect (`section.key`), sorted.
    pub applied: Vec<String>,
    /// Keys that changed in the file but keep their old value until a restart, sorted.
    pub needs_restart: Vec<String>,
}

impl ReloadReport {
    /// Nothing changed.
    pub fn is_empty(&self) -> bool {
        self.applied.is_empty() && self.needs_restart.is_empty()
    }
}

/// Why a new configuration was refused as a whole (the old one stays in effect).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("new configuration rejected; the old one stays in effect")]
    Invalid(#[source] ConfigError),
    #[error("new configuration rejected; the old one stays in effect: {key}")]
    Apply {
        key: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("no configuration to re-read: this proxy was started without a configuration source (in-process, not from the pgroute binary)")]
    NoSource,
}

/// The configuration to run with after a reload of `new` over `old`: `new`, except the restart-only
/// keys, which keep their `old` values. `new` must be valid already.
pub fn plan(old: &Config, new: Config) -> Result<(Config, ReloadReport), ReloadError> {
    let old_tree = tree(old)?;
    let mut new_tree = tree(&new)?;
    let mut report = ReloadReport::default();
    let sections: std::collections::BTreeSet<&String> =
        old_tree.keys().chain(new_tree.keys()).collect();
    let mut restore = Vec::new();
    for section in sections {
        let empty = toml::Table::new();
        let old_keys = old_tree
            .get(section)
            .and_then(|v| v.as_table())
            .unwrap_or(&empty);
        let new_keys = new_tree
            .get(section)
            .and_then(|v| v.as_table())
            .unwrap_or(&empty);
        let keys: std::collections::BTreeSet<&String> =
            old_keys.keys().chain(new_keys.keys()).collect();
        for key in keys {
            if old_keys.get(key) == new_keys.get(key) {
                continue;
            }
            let name = format!("{section}.{key}");
            if RESTART_ONLY.contains(&name.as_str()) {
                restore.push((section.clone(), key.clone(), old_keys.get(key).cloned()));
                report.needs_restart.push(name);
            } else {
                report.applied.push(name);
            }
        }
    }
    if restore.is_empty() {
        return Ok((new, report));
    }
    for (section, key, old_value) in restore {
        let table = new_tree
            .entry(section)
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if let Some(table) = table.as_table_mut() {
            match old_value {
                Some(v) => table.insert(key, v),
                None => table.remove(&key),
            };
        }
    }
    let applied = new_tree.try_into().map_err(|e: toml::de::Error| {
        ReloadError::Invalid(ConfigError::Parse {
            path: Default::default(),
            message: e.message().to_owned(),
        })
    })?;
    Ok((applied, report))
}

fn tree(config: &Config) -> Result<toml::Table, ReloadError> {
    toml::Table::try_from(config).map_err(|e| ReloadError::Apply {
        key: "config",
        source: Box::new(e),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::num::NonZeroU32;
    use std::time::Duration;

    fn base() -> Config {
        let mut c = Config::default();
        c.backends.primary = Some("127.0.0.1:5432".parse().expect("addr"));
        c
    }

    #[test]
    fn unchanged_config_reports_nothing() {
        let (applied, report) = plan(&base(), base()).expect("plan");
        assert_eq!(applied, base());
        assert!(report.is_empty(), "{report:?}");
    }

    #[test]
    fn reloadable_keys_apply_and_restart_only_keys_keep_their_old_value() {
        let mut new = base();
        new.pool.pool_size = NonZeroU32::new(3).expect("nonzero");
        new.pool.queue_timeout = Duration::from_secs(2);
        new.routing
            .users
            .insert("reporting".into(), Default::default());
        new.server.listen = "127.0.0.1:7000".into();
        new.backends.primary = Some("10.0.0.1:5432".parse().expect("addr"));
        new.tls.server_ca_file = Some("ca.crt".into());
        let (applied, report) = plan(&base(), new).expect("plan");
        assert_eq!(applied.pool.pool_size.get(), 3);
        assert_eq!(applied.pool.queue_timeout, Duration::from_secs(2));
        assert!(applied.routing.users.contains_key("reporting"));
        assert_eq!(applied.server.listen, base().server.listen);
        assert_eq!(
            applied.backends.primary,
            Some("10.0.0.1:5432".parse().expect("addr")),
            "backends reload"
        );
        assert_eq!(
            applied.tls.server_ca_file, None,
            "an added restart-only key is not added"
        );
        assert_eq!(
            report.applied,
            [
                "backends.primary",
                "pool.pool_size",
                "pool.queue_timeout",
                "routing.users"
            ]
        );
        assert_eq!(
            report.needs_restart,
            ["server.listen", "tls.server_ca_file"]
        );
    }

    #[test]
    fn every_restart_only_key_exists() {
        let mut full = base();
        full.server.metrics_listen = Some("127.0.0.1:9187".into());
        full.auth.file = Some("userlist".into());
        full.auth.user = Some("u".into());
        full.auth.dbname = Some("d".into());
        full.tls.server_ca_file = Some("ca".into());
        full.control.url = Some("http://operator:6500".into());
        full.control.ca_file = Some("ca".into());
        full.control.namespace = Some("ns".into());
        full.control.pod = Some("pod".into());
        full.control.proxy = Some("db".into());
        let t = tree(&full).expect("tree");
        for key in RESTART_ONLY {
            let (section, name) = key.split_once('.').expect("section.key");
            assert!(
                t.get(section).and_then(|s| s.get(name)).is_some(),
                "{key} is not a config key"
            );
        }
    }
}
