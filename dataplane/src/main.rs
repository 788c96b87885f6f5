//! `pgroute`: parse flags, load config, start the proxy, wait for a signal, drain.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use pgroute::cli::{Cli, Command};
use pgroute::error_chain;

/// How long a shutdown waits for connected clients to leave before exiting anyway.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = init_logging(cli.run.log.as_deref()) {
        eprintln!("pgroute: {e}");
        return ExitCode::from(2);
    }
    match cli.command {
        Some(Command::Demo(args)) => match runtime(1) {
            Ok(rt) => rt.block_on(pgroute::demo::run(args)),
            Err(code) => code,
        },
        None => {
            let config = match cli.run.to_config() {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("pgroute: {e}");
                    return ExitCode::from(2);
                }
            };
            match runtime(config.server.workers.get()) {
                Ok(rt) => rt.block_on(run(config)),
                Err(code) => code,
            }
        }
    }
}

/// One worker runs everything on the current thread (no cross-thread wakeups); more use tokio's
/// work-stealing scheduler.
fn runtime(workers: usize) -> Result<tokio::runtime::Runtime, ExitCode> {
    let built = if workers <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .build()
    };
    built.map_err(|e| {
        eprintln!("pgroute: cannot start the async runtime: {e}");
        ExitCode::from(1)
    })
}

async fn run(config: pgroute::Config) -> ExitCode {
    if config.server.metrics_listen.is_some() {
        eprintln!("pgroute: server.metrics_listen: the metrics endpoint is not built yet (observability issue); remove the setting");
        return ExitCode::from(2);
    }
    let running = match pgroute::Running::start(config).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("pgroute: {}", error_chain(&e));
            return ExitCode::from(if matches!(e, pgroute::RunError::Start(_)) {
                2
            } else {
                1
            });
        }
    };
    tracing::info!(listen = %running.addr, primary = %running.proxy.primary().address(), "pgroute ready");
    wait_for_shutdown(&running.proxy).await;
    let proxy = running.proxy.clone();
    running.stop().await;
    tracing::info!(
        clients = proxy.client_count(),
        "shutting down: draining clients"
    );
    let deadline = tokio::time::Instant::now() + DRAIN_TIMEOUT;
    while proxy.client_count() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ExitCode::SUCCESS
}

/// Waits for SIGTERM or Ctrl-C; SIGHUP reloads the TLS certificate and the auth file meanwhile (and no
/// longer kills the process, which is SIGHUP's default).
async fn wait_for_shutdown(proxy: &pgroute::Proxy) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return,
            _ = term.recv() => return,
            _ = hup.recv() => {
                match proxy.reload_tls() {
                    Ok(()) => tracing::info!("SIGHUP: TLS certificate reloaded"),
                    Err(e) => tracing::error!(error = %error_chain(&e), "SIGHUP: TLS reload failed; keeping the current certificate"),
                }
                match proxy.reload_users() {
                    Ok(()) if proxy.config().auth.file.is_some() => tracing::info!("SIGHUP: auth file reloaded"),
                    Ok(()) => {}
                    Err(e) => tracing::error!(error = %error_chain(&e), "SIGHUP: auth file reload failed; keeping the current users"),
                }
            }
        }
    }
}

/// `--log`, else `PGROUTE_LOG`, else `info`; a filter that does not parse is an error, not a silent
/// fallback.
fn init_logging(flag: Option<&str>) -> Result<(), String> {
    let filter = flag
        .map(str::to_owned)
        .or_else(|| std::env::var("PGROUTE_LOG").ok())
        .unwrap_or_else(|| "info".to_owned());
    let filter = tracing_subscriber::EnvFilter::try_new(&filter)
        .map_err(|e| format!("invalid log filter `{filter}` (--log / PGROUTE_LOG): {e}"))?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    Ok(())
}
