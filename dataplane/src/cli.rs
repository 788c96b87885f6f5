//! Command-line flags: a TOML file plus overrides for quick use, and the `demo` subcommand.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::{AuthType, BackendAddr, Config, ConfigError, PoolMode};

#[derive(Debug, Parser)]
#[command(
    name = "pgroute",
    version,
    about = "A pooling PostgreSQL proxy for sidecars and standalone use",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start a throwaway primary and replica, put pgroute in front, run a short workload through it and
    /// report what happened; everything is cleaned up afterwards (also on Ctrl-C).
    Demo(DemoArgs),
}

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Concurrent demo clients.
    #[arg(long, default_value_t = 32)]
    pub clients: usize,
    /// Units of work each client runs.
    #[arg(long, default_value_t = 200)]
    pub transactions: usize,
    /// Backend pool size for the demo proxy (smaller than --clients, to show multiplexing).
    #[arg(long, default_value_t = 5)]
    pub pool_size: u32,
}

/// Flags for running the proxy; each overrides the same key of the config file.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct RunArgs {
    /// TOML configuration file (see pgroute.example.toml).
    #[arg(long, short = 'c', value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Client listen address (server.listen), e.g. 127.0.0.1:6432.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Primary backend (backends.primary).
    #[arg(long, value_name = "HOST:PORT")]
    pub primary: Option<BackendAddr>,
    /// Replica backend (backends.replicas); repeatable.
    #[arg(long = "replica", value_name = "HOST:PORT")]
    pub replicas: Vec<BackendAddr>,
    /// Pool mode (pool.mode).
    #[arg(long, value_enum)]
    pub pool_mode: Option<PoolMode>,
    /// Backend connections per pool (pool.pool_size).
    #[arg(long, value_name = "N")]
    pub pool_size: Option<std::num::NonZeroU32>,
    /// Most client connections (server.max_client_conn).
    #[arg(long, value_name = "N")]
    pub max_client_conn: Option<u32>,
    /// Client authentication (auth.type).
    #[arg(long, value_enum)]
    pub auth_type: Option<AuthType>,
    /// PgBouncer-format userlist (auth.file).
    #[arg(long, value_name = "PATH")]
    pub auth_file: Option<PathBuf>,
    /// Address of /metrics, /healthz and /readyz (server.metrics_listen), e.g. 127.0.0.1:9187.
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<String>,
    /// Managed mode: follow this control plane (control.url), e.g. http://pgroute-operator:6500.
    #[arg(long, value_name = "URL")]
    pub control_plane: Option<String>,
    /// Who this sidecar is to the control plane (control.namespace, .pod, .proxy); else the file,
    /// else env POD_NAMESPACE, POD_NAME and PGROUTE_PROXY.
    #[arg(long, value_name = "NAMESPACE/POD/PROXY", value_parser = parse_identity)]
    pub control_plane_identity: Option<(String, String, String)>,
    /// Log filter, e.g. `info` or `pgroute=debug` (default from PGROUTE_LOG, else `info`).
    #[arg(long, value_name = "FILTER")]
    pub log: Option<String>,
    /// Log format: human-readable text, or one JSON object per line.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// How log events are written to stderr.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl RunArgs {
    /// The file (or defaults) with flags applied, validated.
    pub fn to_config(&self) -> Result<Config, ConfigError> {
        let mut config = match &self.config {
            Some(path) => Config::load(path)?,
            None => Config::default(),
        };
        if let Some(v) = &self.listen {
            config.server.listen = v.clone();
        }
        if let Some(v) = &self.primary {
            config.backends.primary = Some(v.clone());
        }
        if !self.replicas.is_empty() {
            config.backends.replicas = self.replicas.iter().cloned().map(Into::into).collect();
        }
        if let Some(v) = self.pool_mode {
            config.pool.mode = v;
        }
        if let Some(v) = self.pool_size {
            config.pool.pool_size = v;
        }
        if let Some(v) = self.max_client_conn {
            config.server.max_client_conn = v;
        }
        if let Some(v) = self.auth_type {
            config.auth.auth_type = v;
        }
        if let Some(v) = &self.auth_file {
            config.auth.file = Some(v.clone());
        }
        if let Some(v) = &self.metrics_listen {
            config.server.metrics_listen = Some(v.clone());
        }
        if let Some(v) = &self.control_plane {
            config.control.url = Some(v.clone());
        }
        let control = &mut config.control;
        if let Some((namespace, pod, proxy)) = &self.control_plane_identity {
            control.namespace = Some(namespace.clone());
            control.pod = Some(pod.clone());
            control.proxy = Some(proxy.clone());
        }
        // The downward API's usual variables fill what neither flag nor file set.
        for (slot, var) in [
            (&mut control.namespace, "POD_NAMESPACE"),
            (&mut control.pod, "POD_NAME"),
            (&mut control.proxy, "PGROUTE_PROXY"),
        ] {
            if slot.is_none() {
                *slot = std::env::var(var).ok().filter(|v| !v.is_empty());
            }
        }
        config.validate()?;
        Ok(config)
    }
}

/// `NAMESPACE/POD/PROXY`.
fn parse_identity(s: &str) -> Result<(String, String, String), String> {
    let mut parts = s.split('/');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(ns), Some(pod), Some(proxy), None)
            if !ns.is_empty() && !pod.is_empty() && !proxy.is_empty() =>
        {
            Ok((ns.to_owned(), pod.to_owned(), proxy.to_owned()))
        }
        _ => Err(format!("`{s}` is not NAMESPACE/POD/PROXY")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_file() {
        let cli = Cli::parse_from([
            "pgroute",
            "--primary",
            "127.0.0.1:5432",
            "--replica",
            "127.0.0.1:5433",
            "--replica",
            "127.0.0.1:5434",
            "--pool-mode",
            "session",
            "--pool-size",
            "7",
        ]);
        let cfg = cli.run.to_config().expect("valid");
        assert_eq!(cfg.backends.replicas.len(), 2);
        assert_eq!(cfg.pool.mode, PoolMode::Session);
        assert_eq!(cfg.pool.pool_size.get(), 7);
    }

    #[test]
    fn managed_mode_flags_need_no_primary() {
        let cli = Cli::parse_from([
            "pgroute",
            "--control-plane",
            "http://127.0.0.1:6500",
            "--control-plane-identity",
            "ns/pod-1/orders",
        ]);
        let cfg = cli.run.to_config().expect("valid without a primary");
        assert_eq!(cfg.control.pod.as_deref(), Some("pod-1"));
        assert_eq!(cfg.control.proxy.as_deref(), Some("orders"));
        assert!(Cli::try_parse_from(["pgroute", "--control-plane-identity", "ns/pod"]).is_err());
    }

    #[test]
    fn bad_flag_value_is_refused_by_clap() {
        assert!(Cli::try_parse_from(["pgroute", "--primary", "nohostport"]).is_err());
        assert!(Cli::try_parse_from(["pgroute", "--pool-size", "0"]).is_err());
    }

    #[test]
    fn log_format_and_metrics_listen_parse() {
        let cli = Cli::parse_from([
            "pgroute",
            "--log-format",
            "json",
            "--metrics-listen",
            "127.0.0.1:9187",
        ]);
        assert_eq!(cli.run.log_format, LogFormat::Json);
        assert_eq!(cli.run.metrics_listen.as_deref(), Some("127.0.0.1:9187"));
        assert!(Cli::try_parse_from(["pgroute", "--log-format", "xml"]).is_err());
    }

    #[test]
    fn demo_is_a_subcommand() {
        let cli = Cli::parse_from(["pgroute", "demo", "--clients", "4"]);
        assert!(matches!(
            cli.command,
            Some(Command::Demo(DemoArgs { clients: 4, .. }))
        ));
    }
}
