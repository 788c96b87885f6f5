//! What metrics and tracing cost: pgbench select-only through pgroute with both off and both on, in the
//! same run.
//!
//! The target: metrics and tracing enabled cost at most [`MAX_COST`] of select-only throughput.
//! Both are fresh pgroute processes in front of the primary alone with the same flags as the PgBouncer
//! comparison; "on" adds a config file with `server.metrics_listen` and an OTLP endpoint with every
//! transaction sampled (`tracing.sample_ratio = 1`, the worst case: in production most transactions
//! carry no sampled `traceparent`), exported to the test kit's collector in this process (on the same
//! two cores, so its decoding counts against pgroute too), and a scraper reads `/metrics` every
//! [`SCRAPE_EVERY`] during its runs (harsher than Prometheus's usual 15 s). Runs alternate off, on, off,
//! on, so drift of the shared machine falls on both; the ratio is of the mean TPS of each.
//! `--skip-overhead` leaves the step out.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::matrix::RunOptions;
use crate::pgbench::{Pgbench, RunSpec, Script};
use crate::proxies::{MAX_CLIENT_CONN, POOL_SIZE};

/// Most throughput metrics may cost (the target).
pub const MAX_COST: f64 = 0.05;
/// pgbench clients, as in the matrix's select-only row.
const CLIENTS: u32 = 50;
/// Rounds of (off, on).
const ROUNDS: usize = 2;
const SCRAPE_EVERY: Duration = Duration::from_secs(1);

pub struct Setup<'a> {
    pub primary: SocketAddr,
    pub pgbench: &'a Pgbench,
    pub pgroute_binary: &'a Path,
    /// Created here; holds configs and logs.
    pub dir: PathBuf,
}

/// Runs the rounds and prints each run, the means and the ratio against the target.
pub fn run(setup: &Setup<'_>, opts: &RunOptions) {
    println!(
        "\nmetrics and tracing overhead: pgbench -S, {CLIENTS} clients, {} s per run, -M {}, pgroute on the \
         primary alone, /metrics and OTLP traces (every transaction sampled) off and on (scraped every {} s), \
         alternating, {ROUNDS} runs each\n",
        opts.duration.as_secs(),
        opts.protocol.pgbench_mode(),
        SCRAPE_EVERY.as_secs(),
    );
    match measure(setup, opts) {
        Ok((off, on, scrapes)) => {
            let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
            let (off_mean, on_mean) = (mean(&off), mean(&on));
            let ratio = on_mean / off_mean;
            println!("metrics and tracing off: {off:.0?} tps, mean {off_mean:.0}");
            println!(
                "metrics and tracing on:  {on:.0?} tps, mean {on_mean:.0} ({scrapes} scrapes)"
            );
            let verdict = if ratio >= 1.0 - MAX_COST {
                "met"
            } else {
                "NOT met"
            };
            println!(
                "ratio on/off: {ratio:.3} (cost {:.1}%; target at most {:.0}%: {verdict})",
                (1.0 - ratio) * 100.0,
                MAX_COST * 100.0
            );
        }
        Err(e) => println!("metrics and tracing overhead: failed: {e:#}"),
    }
}

fn measure(setup: &Setup<'_>, opts: &RunOptions) -> Result<(Vec<f64>, Vec<f64>, u64)> {
    std::fs::create_dir(&setup.dir).with_context(|| format!("create {}", setup.dir.display()))?;
    let (mut off, mut on) = (Vec::new(), Vec::new());
    let scrapes = Arc::new(AtomicU64::new(0));
    // The collector's runtime lives for the whole step; one worker thread, as a sidecar would leave.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let collector = runtime.block_on(pgroute_tests::otlp::Collector::start_counting())?;
    for round in 0..ROUNDS {
        off.push(one(setup, opts, round, None, &scrapes)?);
        let port = crate::process::free_port()?;
        on.push(one(
            setup,
            opts,
            round,
            Some((port, collector.endpoint())),
            &scrapes,
        )?);
    }
    println!("spans exported: {}", collector.received());
    Ok((off, on, scrapes.load(Ordering::Relaxed)))
}

/// One pgroute process and one pgbench run through it; `metrics_port` turns `/metrics` on.
fn one(
    setup: &Setup<'_>,
    opts: &RunOptions,
    round: usize,
    on: Option<(u16, String)>,
    scrapes: &Arc<AtomicU64>,
) -> Result<f64> {
    let metrics_port = on.as_ref().map(|(port, _)| *port);
    let tag = format!(
        "{}-{round}",
        if metrics_port.is_some() { "on" } else { "off" }
    );
    let config = match &on {
        Some((port, otlp)) => {
            let path = setup.dir.join(format!("pgroute-{tag}.toml"));
            std::fs::write(
                &path,
                format!(
                    "[server]\nmetrics_listen = \"127.0.0.1:{port}\"\n\
                     [tracing]\notlp_endpoint = \"{otlp}\"\nsample_ratio = 1.0\nexport_interval = \"1s\"\n"
                ),
            )?;
            Some(path)
        }
        None => None,
    };
    let pgroute = crate::pgroute::start(&crate::pgroute::Options {
        binary: setup.pgroute_binary.to_path_buf(),
        primary: setup.primary,
        replicas: Vec::new(),
        pool_size: POOL_SIZE,
        max_client_conn: MAX_CLIENT_CONN,
        log: setup.dir.join(format!("pgroute-{tag}.log")),
        config,
    })?;
    let stop = Arc::new(AtomicBool::new(false));
    let scraper = metrics_port.map(|port| {
        let (stop, scrapes) = (stop.clone(), scrapes.clone());
        std::thread::spawn(move || {
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            while !stop.load(Ordering::Relaxed) {
                if scrape(addr).is_ok() {
                    scrapes.fetch_add(1, Ordering::Relaxed);
                }
                std::thread::sleep(SCRAPE_EVERY);
            }
        })
    });
    let spec = RunSpec {
        addr: pgroute.addr(),
        clients: CLIENTS,
        script: Script::SelectOnly,
        reconnect: false,
        duration: opts.duration,
        protocol: opts.protocol,
        tag: format!("overhead-{tag}"),
    };
    let result = setup.pgbench.run(&spec);
    stop.store(true, Ordering::Relaxed);
    if let Some(t) = scraper {
        let _ = t.join();
    }
    let tps = result?.tps;
    eprintln!("metrics {tag}: {tps:.0} tps");
    Ok(tps)
}

fn scrape(addr: SocketAddr) -> Result<usize> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")?;
    let mut body = Vec::new();
    s.read_to_end(&mut body)?;
    anyhow::ensure!(body.starts_with(b"HTTP/1.1 200"), "scrape failed");
    Ok(body.len())
}
