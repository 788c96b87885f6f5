//! The demo's workload: a small bank table, many concurrent clients, a read-heavy mix of single
//! statements and explicit transactions, through the proxy with tokio-postgres.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context;

const ACCOUNTS: i32 = 1000;

/// What the workload saw.
#[derive(Debug, Default)]
pub struct Report {
    pub reads: usize,
    pub writes: usize,
    pub transactions: usize,
    pub errors: usize,
    pub latencies: Vec<Duration>,
    pub elapsed: Duration,
    pub first_error: Option<String>,
}

impl Report {
    pub fn print(&self) {
        let mut l = self.latencies.clone();
        l.sort();
        let pct = |p: f64| -> f64 {
            if l.is_empty() {
                return 0.0;
            }
            let i = ((l.len() as f64 * p).ceil() as usize).clamp(1, l.len()) - 1;
            l[i].as_secs_f64() * 1000.0
        };
        let statements = self.reads + self.writes;
        println!(
            "  {} statements ({} reads, {} writes, {} in explicit transactions) in {:.2}s: {:.0} statements/s",
            statements,
            self.reads,
            self.writes,
            self.transactions,
            self.elapsed.as_secs_f64(),
            statements as f64 / self.elapsed.as_secs_f64().max(1e-9)
        );
        println!(
            "  latency per unit of work: p50 {:.2} ms, p99 {:.2} ms; errors: {}",
            pct(0.50),
            pct(0.99),
            self.errors
        );
        if let Some(e) = &self.first_error {
            println!("  first error: {e}");
        }
    }
}

async fn connect(addr: SocketAddr) -> anyhow::Result<tokio_postgres::Client> {
    let conninfo = format!(
        "host={} port={} user=postgres dbname=postgres application_name=pgroute-demo",
        addr.ip(),
        addr.port()
    );
    let (client, conn) = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// Creates the table, waits until the replica has it (other clients' reads go there at once),
/// then runs `clients` concurrent clients for `transactions` units of work each.
pub async fn run(
    proxy: SocketAddr,
    replica: Option<SocketAddr>,
    clients: usize,
    transactions: usize,
) -> anyhow::Result<Report> {
    let setup = connect(proxy).await?;
    setup
        .batch_execute(&format!(
            "DROP TABLE IF EXISTS demo_accounts;
             CREATE TABLE demo_accounts (id int PRIMARY KEY, balance bigint NOT NULL);
             INSERT INTO demo_accounts SELECT g, 1000 FROM generate_series(1, {ACCOUNTS}) g;"
        ))
        .await
        .context("creating the demo table")?;
    if let Some(replica) = replica {
        let deadline = Instant::now() + Duration::from_secs(10);
        while replica_rows(replica).await? < i64::from(ACCOUNTS) {
            anyhow::ensure!(
                Instant::now() < deadline,
                "the replica did not catch up in 10 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(clients);
    for c in 0..clients {
        tasks.push(tokio::spawn(client_loop(proxy, c, transactions)));
    }
    let mut report = Report::default();
    for t in tasks {
        let r = t.await.context("demo client task")??;
        report.reads += r.reads;
        report.writes += r.writes;
        report.transactions += r.transactions;
        report.errors += r.errors;
        report.latencies.extend(r.latencies);
        if report.first_error.is_none() {
            report.first_error = r.first_error;
        }
    }
    report.elapsed = started.elapsed();
    let total: i64 = setup
        // The hint sends the check to the primary: a replica may not have replayed the last writes yet.
        .query_one(
            "/* pgroute: route=primary */ SELECT sum(balance)::bigint FROM demo_accounts",
            &[],
        )
        .await?
        .get(0);
    anyhow::ensure!(
        total == i64::from(ACCOUNTS) * 1000,
        "money was created or lost: total balance {total}"
    );
    Ok(report)
}

async fn client_loop(proxy: SocketAddr, seed: usize, units: usize) -> anyhow::Result<Report> {
    let mut client = connect(proxy).await?;
    let read = client
        .prepare("SELECT balance FROM demo_accounts WHERE id = $1")
        .await?;
    let mut r = Report::default();
    let mut x = seed as u64 * 2_654_435_761 + 1;
    for _ in 0..units {
        // xorshift: deterministic, dependency-free spread over accounts and operations.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let a = (x % ACCOUNTS as u64) as i32 + 1;
        let b = ((x >> 20) % ACCOUNTS as u64) as i32 + 1;
        let start = Instant::now();
        let outcome = match x % 10 {
            0..=6 => {
                r.reads += 1;
                client.query_one(&read, &[&a]).await.map(|_| ())
            }
            7 | 8 => {
                r.writes += 1;
                client
                    .execute(
                        "UPDATE demo_accounts SET balance = balance WHERE id = $1",
                        &[&a],
                    )
                    .await
                    .map(|_| ())
            }
            _ => {
                r.writes += 2;
                r.transactions += 1;
                transfer(&mut client, a, b).await
            }
        };
        r.latencies.push(start.elapsed());
        if let Err(e) = outcome {
            r.errors += 1;
            r.first_error.get_or_insert_with(|| e.to_string());
        }
    }
    Ok(r)
}

/// Moves 1 between two accounts in one transaction (ordered to avoid deadlocks): the total must stay.
async fn transfer(
    client: &mut tokio_postgres::Client,
    a: i32,
    b: i32,
) -> Result<(), tokio_postgres::Error> {
    let (from, to) = if a <= b { (a, b) } else { (b, a) };
    let tx = client.transaction().await?;
    tx.execute(
        "UPDATE demo_accounts SET balance = balance - 1 WHERE id = $1",
        &[&from],
    )
    .await?;
    tx.execute(
        "UPDATE demo_accounts SET balance = balance + 1 WHERE id = $1",
        &[&to],
    )
    .await?;
    tx.commit().await
}

/// Rows of the demo table on the replica, once it has replayed the primary's latest WAL.
pub async fn replica_rows(replica: SocketAddr) -> anyhow::Result<i64> {
    let client = connect(replica).await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match client
            .query_one("SELECT count(*) FROM demo_accounts", &[])
            .await
        {
            Ok(row) => return Ok(row.get(0)),
            Err(e) if Instant::now() < deadline => {
                tracing::debug!(error = %e, "replica not caught up yet");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(e).context("counting rows on the replica"),
        }
    }
}
