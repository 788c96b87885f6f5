//! `pgroute`: parse flags, load config, start the proxy, serve signals (reload, pause, resume), drain.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use pgroute::cli::{Cli, Command, LogFormat, RunArgs};
use pgroute::error_chain;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = init_logging(cli.run.log.as_deref(), cli.run.log_format) {
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
                Ok(rt) => rt.block_on(run(config, &cli.run)),
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

async fn run(config: pgroute::Config, args: &RunArgs) -> ExitCode {
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
    let source = args.clone();
    running
        .proxy
        .set_config_source(pgroute::ops::ConfigSource::new(move || source.to_config()));
    tracing::info!(listen = %running.addr, metrics = ?running.metrics_addr, primary = %running.proxy.primary().address(), "pgroute ready");
    wait_for_shutdown(&running.proxy, args).await;
    let timeout = running.proxy.config().server.shutdown_timeout;
    running.shutdown(timeout).await;
    tracing::info!("pgroute stopped");
    ExitCode::SUCCESS
}

/// Waits for SIGTERM, Ctrl-C or the admin console's SHUTDOWN. Meanwhile, as in PgBouncer: SIGHUP reloads (the config file, the auth
/// file and the TLS certificate), SIGUSR1 pauses, SIGUSR2 resumes.
async fn wait_for_shutdown(proxy: &Arc<pgroute::Proxy>, args: &RunArgs) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut hup), Ok(mut usr1), Ok(mut usr2)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
        signal(SignalKind::user_defined1()),
        signal(SignalKind::user_defined2()),
    ) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return,
            _ = term.recv() => return,
            // The admin console's SHUTDOWN.
            () = proxy.shutdown_requested() => return,
            _ = hup.recv() => reload(proxy, args),
            // Pausing waits for transactions in flight; SIGUSR2 must still be heard meanwhile.
            _ = usr1.recv() => drop(tokio::spawn({
                let proxy = proxy.clone();
                async move { proxy.pause().await }
            })),
            _ = usr2.recv() => {
                if !proxy.resume() {
                    tracing::info!("SIGUSR2: not paused");
                }
            }
        }
    }
}

/// SIGHUP: the config file and flags again, applied by [`pgroute::Proxy::reload`].
fn reload(proxy: &pgroute::Proxy, args: &RunArgs) {
    let config = match args.to_config() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %error_chain(&e), "SIGHUP: configuration not reloaded; keeping the current one");
            return;
        }
    };
    match proxy.reload(config) {
        Ok(report) => {
            for key in &report.needs_restart {
                tracing::warn!(
                    key,
                    "SIGHUP: changed setting needs a restart; keeping its old value"
                );
            }
            tracing::info!(applied = ?report.applied, "SIGHUP: configuration reloaded");
        }
        Err(e) => {
            tracing::error!(error = %error_chain(&e), "SIGHUP: configuration not reloaded")
        }
    }
}

/// `--log`, else `PGROUTE_LOG`, else `info`; a filter that does not parse is an error, not a silent
/// fallback. `--log-format json` writes one JSON object per event (fields flattened), for log shippers.
fn init_logging(flag: Option<&str>, format: LogFormat) -> Result<(), String> {
    let filter = flag
        .map(str::to_owned)
        .or_else(|| std::env::var("PGROUTE_LOG").ok())
        .unwrap_or_else(|| "info".to_owned());
    let filter = tracing_subscriber::EnvFilter::try_new(&filter)
        .map_err(|e| format!("invalid log filter `{filter}` (--log / PGROUTE_LOG): {e}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
    }
    Ok(())
}
