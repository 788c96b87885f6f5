//! What metrics and tracing cost: pgbench select-only through pgroute with both off and both on, in the
//! same run.
//!
//! The target: metrics and tracing enabled cost at most [`MAX_COST`] of select-only throughput.
//! Both are fresh pgroute processes in front of the primary alone with the same flags as the PgBouncer
//! comparison. Modes: off; `server.metrics_listen` with a scraper reading `/metrics` every
//! [`SCRAPE_EVERY`] (harsher than Prometheus's usual 15 s); the same plus OTLP traces sampling 1% of
//! transactions (a production setting: the target's mode) and 100% (the worst case, reported but not
//! held to the target), exported to the test kit's collector in this process (on the same two cores,
//! so its decoding counts against pgroute too). Modes alternate round by round, so drift of the
//! shared machine falls on all; ratios are of mean TPS.
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

/// What a run turns on.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    Off,
    Metrics,
    /// Metrics, and traces with this share of transactions sampled.
    Traced(f64),
}

impl Mode {
    const ALL: [Mode; 4] = [
        Mode::Off,
        Mode::Metrics,
        Mode::Traced(0.01),
        Mode::Traced(1.0),
    ];

    fn label(self) -> String {
        match self {
            Mode::Off => "off".into(),
            Mode::Metrics => "metrics".into(),
            Mode::Traced(r) => format!("metrics + traces {:.0}% sampled", r * 100.0),
        }
    }
}

/// Runs the rounds and prints each run, the means and each mode's ratio against the target.
pub fn run(setup: &Setup<'_>, opts: &RunOptions) {
    println!(
        "\nmetrics and tracing overhead: pgbench -S, {CLIENTS} clients, {} s per run, -M {}, pgroute on the \
         primary alone; off, /metrics on (scraped every {} s), and /metrics with OTLP traces sampling 1% and \
         100% of transactions (exported to a collector in this process, on the same cores); modes \
         alternate, {ROUNDS} runs each\n",
        opts.duration.as_secs(),
        opts.protocol.pgbench_mode(),
        SCRAPE_EVERY.as_secs(),
    );
    match measure(setup, opts) {
        Ok((runs, scrapes, spans)) => {
            let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
            let off = mean(&runs[0]);
            for (mode, tps) in Mode::ALL.iter().zip(&runs) {
                let m = mean(tps);
                let ratio = m / off;
                let verdict = match mode {
                    Mode::Off => String::new(),
                    Mode::Traced(r) if *r >= 1.0 => format!(
                        "; worst case, not the target's (cost {:.1}%)",
                        (1.0 - ratio) * 100.0
                    ),
                    _ => format!(
                        "; cost {:.1}%, target at most {:.0}%: {}",
                        (1.0 - ratio) * 100.0,
                        MAX_COST * 100.0,
                        if ratio >= 1.0 - MAX_COST {
                            "met"
                        } else {
                            "NOT met"
                        }
                    ),
                };
                println!(
                    "{:<32} {tps:.0?} tps, mean {m:.0}, ratio to off {ratio:.3}{verdict}",
                    mode.label()
                );
            }
            println!("({scrapes} scrapes, {spans} spans exported)");
        }
        Err(e) => println!("metrics and tracing overhead: failed: {e:#}"),
    }
}

fn measure(setup: &Setup<'_>, opts: &RunOptions) -> Result<(Vec<Vec<f64>>, u64, u64)> {
    std::fs::create_dir(&setup.dir).with_context(|| format!("create {}", setup.dir.display()))?;
    let mut runs = vec![Vec::new(); Mode::ALL.len()];
    let scrapes = Arc::new(AtomicU64::new(0));
    // The collector's runtime lives for the whole step.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let collector = runtime.block_on(pgroute_tests::otlp::Collector::start_counting())?;
    for round in 0..ROUNDS {
        for (i, mode) in Mode::ALL.iter().enumerate() {
            runs[i].push(one(
                setup,
                opts,
                round,
                *mode,
                &collector.endpoint(),
                &scrapes,
            )?);
        }
    }
    Ok((runs, scrapes.load(Ordering::Relaxed), collector.received()))
}

/// One pgroute process and one pgbench run through it.
fn one(
    setup: &Setup<'_>,
    opts: &RunOptions,
    round: usize,
    mode: Mode,
    otlp: &str,
    scrapes: &Arc<AtomicU64>,
) -> Result<f64> {
    let tag = format!("{}-{round}", mode.label().replace([' ', '+', '%'], ""));
    let metrics_port = match mode {
        Mode::Off => None,
        _ => Some(crate::process::free_port()?),
    };
    let config = match metrics_port {
        Some(port) => {
            let path = setup.dir.join(format!("pgroute-{tag}.toml"));
            let mut text = format!("[server]\nmetrics_listen = \"127.0.0.1:{port}\"\n");
            if let Mode::Traced(ratio) = mode {
                text.push_str(&format!(
                    "[tracing]\notlp_endpoint = \"{otlp}\"\nsample_ratio = {ratio}\nexport_interval = \"1s\"\n"
                ));
            }
            std::fs::write(&path, text)?;
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
    eprintln!("overhead {tag}: {tps:.0} tps");
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
