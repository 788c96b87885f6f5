//! `pgroute-operator`: `run` is the operator (what the Deployment runs); `crd` prints the
//! DatabaseProxy CRD; `serve-control` runs the control-plane gRPC server alone with one static
//! topology given by flags, for manual tests against a sidecar.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use pgroute_operator::control::{ControlService, ProxyKey, ServeOptions, TopologyIndex};
use pgroute_operator::run::RunOptions;
use pgroute_operator::webhook::WebhookOptions;
use pgroute_proto::v1::{Replica, Snapshot};

#[derive(Debug, Parser)]
#[command(
    name = "pgroute-operator",
    version,
    about = "Kubernetes operator for pgroute"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the operator: reconcile DatabaseProxies, serve the control plane, the webhook and metrics.
    Run(Box<RunArgs>),
    /// Serve the control-plane API (pgroute.control.v1) with one static topology, for manual tests.
    ServeControl(ServeControl),
    /// Print the DatabaseProxy CustomResourceDefinition as YAML (what `crds/` holds).
    Crd,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// The control plane sidecars subscribe to (gRPC).
    #[arg(long, default_value = "0.0.0.0:6500")]
    control_listen: SocketAddr,
    /// `/metrics`, `/healthz` and `/readyz`.
    #[arg(long, default_value = "0.0.0.0:9090")]
    metrics_listen: SocketAddr,
    /// Namespace of the leader-election Lease (the operator's own; else env POD_NAMESPACE).
    #[arg(long, env = "POD_NAMESPACE", default_value = "pgroute-system")]
    namespace: String,
    /// This replica's identity in the Lease (else env POD_NAME).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Name of the leader-election Lease.
    #[arg(long, default_value = "pgroute-operator")]
    lease_name: String,
    /// Time between probes of each DatabaseProxy's instances, e.g. `2s`.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    probe_interval: Duration,
    /// How long deletion waits for the sidecars to acknowledge the draining topology.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    drain_timeout: Duration,
    /// The admission webhook's HTTPS address; the webhook runs only with `--webhook-cert`.
    #[arg(long, default_value = "0.0.0.0:9443")]
    webhook_listen: SocketAddr,
    /// PEM certificate of the webhook (re-read when it changes), e.g. `/etc/pgroute/webhook/tls.crt`.
    #[arg(long, requires = "webhook_key")]
    webhook_cert: Option<std::path::PathBuf>,
    /// PEM private key of the webhook certificate.
    #[arg(long, requires = "webhook_cert")]
    webhook_key: Option<std::path::PathBuf>,
    /// The control plane's URL as injected sidecars reach it.
    #[arg(
        long,
        default_value = "http://pgroute-operator.pgroute-system.svc:6500"
    )]
    control_plane_url: String,
    /// Sidecar image when a DatabaseProxy does not name one (default: this version of pgroute).
    #[arg(long)]
    sidecar_image: Option<String>,
    /// Log filter (`info`, `pgroute_operator=debug`, ...); else env PGROUTE_LOG.
    #[arg(long, env = "PGROUTE_LOG", default_value = "info")]
    log: String,
}

#[derive(Debug, clap::Args)]
struct ServeControl {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:6500")]
    listen: SocketAddr,
    /// The DatabaseProxy the topology is for, NAMESPACE/NAME.
    #[arg(long, value_name = "NAMESPACE/NAME")]
    proxy: Option<String>,
    /// Its primary, HOST:PORT.
    #[arg(long, value_name = "HOST:PORT", requires = "proxy")]
    primary: Option<String>,
    /// Its replicas, HOST:PORT (repeatable).
    #[arg(long = "replica", value_name = "HOST:PORT", requires = "primary")]
    replicas: Vec<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = match &cli.command {
        Command::Crd => return print_crd(),
        Command::Run(args) => args.log.clone(),
        Command::ServeControl(_) => "info".to_owned(),
    };
    let filter = match tracing_subscriber::EnvFilter::try_new(&filter) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("pgroute-operator: invalid log filter `{filter}`: {e}");
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("pgroute-operator: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let work = async {
        match cli.command {
            Command::Run(args) => run(*args).await,
            Command::ServeControl(args) => serve_control(args).await,
            Command::Crd => Ok(()),
        }
    };
    match runtime.block_on(work) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pgroute-operator: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn print_crd() -> ExitCode {
    match pgroute_operator::crd::crd_yaml() {
        Ok(yaml) => {
            print!("{yaml}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("pgroute-operator: cannot serialize the CRD: {e}");
            ExitCode::from(1)
        }
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let client = kube::Client::try_default()
        .await
        .context("cannot configure the Kubernetes client (in-cluster or KUBECONFIG)")?;
    let identity = match args.identity {
        Some(i) => i,
        None => hostname(),
    };
    let mut options = RunOptions::new(&args.namespace, &identity);
    options.control_listen = args.control_listen;
    options.metrics_listen = args.metrics_listen;
    options.election.lease_name = args.lease_name;
    options.reconcile.probe_interval = args.probe_interval;
    options.reconcile.drain_timeout = args.drain_timeout;
    if let (Some(cert_file), Some(key_file)) = (args.webhook_cert, args.webhook_key) {
        let mut webhook = WebhookOptions {
            cert_file,
            key_file,
            ..WebhookOptions::default()
        };
        webhook.inject.control_plane_url = args.control_plane_url;
        webhook.inject.operator_namespace = args.namespace.clone();
        if let Some(image) = args.sidecar_image {
            webhook.inject.default_image = image;
        }
        options.webhook = Some((args.webhook_listen, webhook));
    }
    let running = pgroute_operator::run::start(client, options).await?;
    tracing::info!(
        control = %running.control_addr,
        metrics = %running.metrics_addr,
        webhook = ?running.webhook_addr,
        identity,
        "pgroute-operator running"
    );
    shutdown_signal().await;
    tracing::info!("shutting down: releasing the Lease, closing sidecar streams");
    running.stop().await;
    Ok(())
}

/// SIGTERM (what Kubernetes sends) or Ctrl-C.
async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async {
            match term.as_mut() {
                Some(t) => { t.recv().await; }
                None => std::future::pending::<()>().await,
            }
        } => {}
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| format!("pgroute-operator-{}", std::process::id()))
}

async fn serve_control(args: ServeControl) -> anyhow::Result<()> {
    let index = TopologyIndex::new(Duration::from_millis(200));
    if let (Some(proxy), Some(primary)) = (&args.proxy, &args.primary) {
        let (namespace, name) = proxy
            .split_once('/')
            .ok_or_else(|| anyhow::anyhow!("--proxy: expected NAMESPACE/NAME"))?;
        let snapshot = Snapshot {
            primary: primary.clone(),
            replicas: args
                .replicas
                .iter()
                .map(|r| Replica {
                    address: r.clone(),
                    weight: 1,
                    eligible: true,
                    ..Replica::default()
                })
                .collect(),
            ..Snapshot::default()
        };
        index.publish(&ProxyKey::new(namespace, name), snapshot, true);
    }
    let service = ControlService::new(index, ServeOptions::default());
    tracing::info!(listen = %args.listen, "serving pgroute.control.v1");
    pgroute_operator::control::bind_and_serve(service, args.listen, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await
}
