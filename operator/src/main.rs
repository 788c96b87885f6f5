//! `pgroute-operator`. The reconciler arrives with the operator issue; for now the binary prints the
//! DatabaseProxy CRD (`crd`) and can run the control-plane gRPC server on its own (`serve-control`)
//! for manual tests against a sidecar, with one static topology given by flags.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use pgroute_operator::control::{ControlService, ProxyKey, ServeOptions, TopologyIndex};
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
    /// Serve the control-plane API (pgroute.control.v1) with one static topology, for manual tests.
    ServeControl(ServeControl),
    /// Print the DatabaseProxy CustomResourceDefinition as YAML (what `crds/` holds).
    Crd,
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
    let args = match cli.command {
        Command::Crd => return print_crd(),
        Command::ServeControl(args) => args,
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("pgroute-operator: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(serve_control(args)) {
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
