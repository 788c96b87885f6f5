//! `/metrics`, `/healthz` and `/readyz` over real HTTP, after a known workload through a primary and a
//! streaming replica. The exposition is parsed with a Prometheus text-format parser (`prometheus-parse`),
//! as a scraper would, and compared with what was sent: deltas between two scrapes, so the connections
//! the kit itself makes do not count.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context;
use pgroute_tests::Stack;
use prometheus_parse::{Scrape, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A plain HTTP/1.1 GET: status and body.
async fn get(addr: SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: pgroute\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await?;
    let text = String::from_utf8(raw)?;
    let (head, body) = text.split_once("\r\n\r\n").context("no header end")?;
    let status = head
        .split(' ')
        .nth(1)
        .context("no status")?
        .parse()
        .context("status")?;
    Ok((status, body.to_owned()))
}

async fn scrape(stack: &Stack) -> anyhow::Result<Scrape> {
    let addr = stack.proxy.metrics_addr.context("metrics endpoint")?;
    let (status, body) = get(addr, "/metrics").await?;
    anyhow::ensure!(status == 200, "/metrics: {status}");
    Ok(Scrape::parse(body.lines().map(|l| Ok(l.to_owned())))?)
}

/// Sum of the scalar samples named `name` whose labels include every `(key, value)` of `want`.
fn total(s: &Scrape, name: &str, want: &[(&str, &str)]) -> f64 {
    s.samples
        .iter()
        .filter(|x| x.metric == name && want.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .map(|x| match x.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

fn series<'a>(s: &'a Scrape, name: &'a str) -> impl Iterator<Item = &'a prometheus_parse::Sample> {
    s.samples.iter().filter(move |x| x.metric == name)
}

/// Every histogram of `name`: buckets never decrease and `+Inf` equals `_count`.
fn check_histograms(s: &Scrape, name: &str) -> anyhow::Result<()> {
    let count_name = format!("{name}_count");
    let counts: Vec<_> = series(s, &count_name).collect();
    anyhow::ensure!(!counts.is_empty(), "no {name}_count");
    for h in series(s, name) {
        let Value::Histogram(buckets) = &h.value else {
            anyhow::bail!("{name} is not a histogram");
        };
        anyhow::ensure!(buckets.windows(2).all(|w| w[0].count <= w[1].count));
        let inf = buckets.last().context("no buckets")?;
        anyhow::ensure!(inf.less_than.is_infinite());
        let count = counts
            .iter()
            .find(|c| c.labels == h.labels)
            .map(|c| match c.value {
                Value::Untyped(v) | Value::Counter(v) => v,
                _ => f64::NAN,
            });
        anyhow::ensure!(
            count == Some(inf.count),
            "{name}: +Inf {} vs count {count:?}",
            inf.count
        );
    }
    Ok(())
}

const READS: usize = 20;
const WRITES: usize = 5;
const TOP: u32 = 3;

#[tokio::test]
async fn a_known_workload_shows_in_the_scrape() -> anyhow::Result<()> {
    let stack = Stack::start(1, |c| {
        c.server.metrics_listen = Some("127.0.0.1:0".into());
        c.metrics.top_fingerprints = TOP;
    })
    .await?;
    stack
        .connect_direct()
        .await?
        .batch_execute("CREATE TABLE m (v int)")
        .await?;
    stack.wait_for_replicas().await?;
    let primary_port = stack.cluster.primary().addr().port().to_string();
    let replica = stack.cluster.replicas()[0].addr().to_string();

    // Reads go to the replica once the lag monitor has measured it.
    let reader = stack.connect().await?;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let row = reader
            .query_one("SELECT inet_server_port()::text", &[])
            .await?;
        if row.get::<_, String>(0) != primary_port {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "reads never reached the replica");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let before = scrape(&stack).await?;
    for i in 0..READS {
        // More distinct statements than TOP fingerprints: column aliases are words, so each differs.
        reader
            .simple_query(&format!("SELECT {i} AS c{}", i % (TOP as usize + 3)))
            .await?;
    }
    let writer = stack.connect().await?;
    for i in 0..WRITES {
        writer
            .simple_query(&format!("INSERT INTO m VALUES ({i})"))
            .await?;
    }
    assert!(reader
        .simple_query("SELECT * FROM missing_table")
        .await
        .is_err());
    let after = scrape(&stack).await?;
    let delta =
        |name: &str, want: &[(&str, &str)]| total(&after, name, want) - total(&before, name, want);

    let replica_reads = [
        ("backend", replica.as_str()),
        ("role", "replica"),
        ("type", "read"),
    ];
    assert_eq!(
        delta("pgroute_queries_total", &replica_reads),
        (READS + 1) as f64
    );
    assert_eq!(
        delta("pgroute_transactions_total", &replica_reads),
        (READS + 1) as f64
    );
    let writes = [("role", "primary"), ("type", "write")];
    assert_eq!(delta("pgroute_queries_total", &writes), WRITES as f64);
    assert_eq!(
        delta(
            "pgroute_routing_decisions_total",
            &[("route", "replica"), ("reason", "read_only")]
        ),
        (READS + 1) as f64
    );
    assert_eq!(
        delta(
            "pgroute_errors_total",
            &[("source", "backend"), ("class", "42")]
        ),
        1.0
    );

    // Histograms: consistent, and every query timed once, by destination and by fingerprint.
    let queries = (READS + 1 + WRITES) as f64;
    for name in [
        "pgroute_query_duration_seconds",
        "pgroute_pool_wait_duration_seconds",
        "pgroute_query_fingerprint_duration_seconds",
    ] {
        check_histograms(&after, name)?;
    }
    assert_eq!(delta("pgroute_query_duration_seconds_count", &[]), queries);
    assert_eq!(
        delta("pgroute_query_duration_seconds_count", &replica_reads),
        (READS + 1) as f64
    );
    assert!(delta("pgroute_query_duration_seconds_sum", &[]) > 0.0);
    assert!(delta("pgroute_pool_wait_duration_seconds_count", &[]) >= queries);
    // Fingerprints: bounded series, nothing lost (evicted series take their counts with them, and
    // eviction only happens at a scrape, so between the two scrapes counts only grow).
    let printed = series(&after, "pgroute_query_fingerprint_duration_seconds_count").count();
    assert!(printed <= TOP as usize + 1, "{printed} fingerprint series");
    assert!(
        series(&after, "pgroute_query_fingerprint_duration_seconds_count")
            .any(|s| s.labels.get("fingerprint") == Some("other"))
    );
    let fp_after = total(
        &after,
        "pgroute_query_fingerprint_duration_seconds_count",
        &[],
    );
    assert!(fp_after >= queries, "{fp_after} < {queries}");

    // Scrape-time state.
    for (name, backend) in [
        ("pgroute_pool_max_connections", replica.as_str()),
        ("pgroute_pool_idle_connections", replica.as_str()),
        ("pgroute_replica_lag_seconds", replica.as_str()),
        ("pgroute_replica_lag_bytes", replica.as_str()),
        ("pgroute_backend_breaker_state", replica.as_str()),
    ] {
        assert!(
            series(&after, name).any(|s| s.labels.get("backend") == Some(backend)),
            "no {name} for {backend}"
        );
    }
    assert_eq!(
        total(&after, "pgroute_replica_eligible", &[("backend", &replica)]),
        1.0
    );
    assert_eq!(total(&after, "pgroute_backend_up", &[]), 2.0);
    assert_eq!(total(&after, "pgroute_backend_breaker_state", &[]), 0.0);
    assert_eq!(total(&after, "pgroute_client_connections", &[]), 2.0);
    Ok(())
}

#[tokio::test]
async fn readiness_follows_the_primary_and_shutdown() -> anyhow::Result<()> {
    let stack = Stack::start(0, |c| {
        c.server.metrics_listen = Some("127.0.0.1:0".into());
        c.health.interval = Duration::from_millis(100);
        c.health.timeout = Duration::from_millis(500);
    })
    .await?;
    let addr = stack.proxy.metrics_addr.context("metrics endpoint")?;
    assert_eq!(get(addr, "/healthz").await?.0, 200);
    let (status, body) = get(addr, "/readyz").await?;
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("ready: primary"), "{body}");
    assert_eq!(get(addr, "/nope").await?.0, 404);

    // The primary goes away: not ready (health checks mark it down, no other primary).
    stack.cluster.primary().stop_immediate()?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let body = loop {
        let (status, body) = get(addr, "/readyz").await?;
        if status == 503 {
            break body;
        }
        anyhow::ensure!(Instant::now() < deadline, "still ready: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        body.starts_with("not ready:") && body.contains("primary"),
        "{body}"
    );
    assert_eq!(get(addr, "/healthz").await?.0, 200);

    // Back, then shutting down: not ready again, while alive.
    stack.cluster.primary().start()?;
    let deadline = Instant::now() + Duration::from_secs(15);
    while get(addr, "/readyz").await?.0 != 200 {
        anyhow::ensure!(Instant::now() < deadline, "never ready again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stack.proxy.proxy.begin_shutdown();
    let (status, body) = get(addr, "/readyz").await?;
    assert_eq!((status, body.as_str()), (503, "not ready: shutting down\n"));
    assert_eq!(get(addr, "/healthz").await?.0, 200);
    Ok(())
}
