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
        config.validate()?;
        Ok(config)
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
