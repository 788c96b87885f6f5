//! `[control]`: managed mode, where the operator's control plane pushes the topology (primary,
//! replicas, routing and pool settings) instead of the file. All keys need a restart.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The control plane this sidecar follows. Without `url`, pgroute runs standalone from its file.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ControlConfig {
    /// The operator's control-plane API, `http://host:port` or `https://host:port` (flag
    /// `--control-plane`). Default: none (standalone). With it, `backends.primary` may be left out:
    /// clients are refused with SQLSTATE 57P03 until the first snapshot arrives.
    pub url: Option<String>,
    /// PEM CA certificates that sign the control plane's certificate, for `https` URLs. Default: the
    /// system's roots.
    pub ca_file: Option<PathBuf>,
    /// This pod's namespace, also the DatabaseProxy's (flag `--control-plane-identity`, else env
    /// `POD_NAMESPACE`). Required with `url`.
    pub namespace: Option<String>,
    /// This pod's name (else env `POD_NAME`). Required with `url`.
    pub pod: Option<String>,
    /// The DatabaseProxy whose topology to follow (else env `PGROUTE_PROXY`). Required with `url`.
    pub proxy: Option<String>,
    /// Connecting to the control plane gives up after this long. Default `5s`.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// A stream silent for this long is considered dead and re-opened (the server resends the current
    /// snapshot every 30s by default). Default `95s`.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// First wait before reconnecting after a failure; doubles per failure, with jitter. Default
    /// `200ms`.
    #[serde(with = "humantime_serde")]
    pub backoff_min: Duration,
    /// Longest wait between reconnection attempts. Default `30s`.
    #[serde(with = "humantime_serde")]
    pub backoff_max: Duration,
    /// Health reports are sent this often (and after each snapshot). Default `30s`.
    #[serde(with = "humantime_serde")]
    pub report_interval: Duration,
}

impl Default for ControlConfig {
    fn default() -> Self {
        ControlConfig {
            url: None,
            ca_file: None,
            namespace: None,
            pod: None,
            proxy: None,
            connect_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(95),
            backoff_min: Duration::from_millis(200),
            backoff_max: Duration::from_secs(30),
            report_interval: Duration::from_secs(30),
        }
    }
}

impl ControlConfig {
    /// Managed mode is on.
    pub fn enabled(&self) -> bool {
        self.url.is_some()
    }

    /// The first problem, as `(key, problem)`.
    pub(crate) fn problem(&self) -> Option<(&'static str, &'static str)> {
        let url = self.url.as_deref()?;
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Some((
                "control.url",
                "expected http://HOST:PORT or https://HOST:PORT",
            ));
        }
        let missing = |v: &Option<String>| v.as_deref().is_none_or(str::is_empty);
        if missing(&self.namespace) {
            return Some((
                "control.namespace",
                "required in managed mode (--control-plane-identity or POD_NAMESPACE)",
            ));
        }
        if missing(&self.pod) {
            return Some((
                "control.pod",
                "required in managed mode (--control-plane-identity or POD_NAME)",
            ));
        }
        if missing(&self.proxy) {
            return Some((
                "control.proxy",
                "required in managed mode (--control-plane-identity or PGROUTE_PROXY)",
            ));
        }
        if self.connect_timeout.is_zero() || self.idle_timeout.is_zero() {
            return Some(("control.idle_timeout", "timeouts must be positive"));
        }
        if self.backoff_min.is_zero() || self.backoff_min > self.backoff_max {
            return Some((
                "control.backoff_min",
                "must be positive and at most control.backoff_max",
            ));
        }
        if self.report_interval.is_zero() {
            return Some(("control.report_interval", "must be positive"));
        }
        None
    }
}
