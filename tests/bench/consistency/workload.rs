//! The consistency step's clients: a 90/10 read/write mix on rows each client owns, every read checked
//! against the client's own last write.
//!
//! pgbench cannot tell a stale read from a fresh one, so the workload is written here with tokio-postgres.
//! Client `c` owns the [`KEYS_PER_CLIENT`] rows of `kv` from `c * KEYS_PER_CLIENT` on; nobody else writes
//! them, so the value its last `UPDATE … RETURNING v` returned is a floor: a read of that row that returns
//! less missed the client's own committed write, which is what read-your-writes promises cannot happen.
//! Each statement is its own transaction (autocommit), prepared once per connection as pgbench
//! `-M prepared` does, so an operation is one round trip and operations per second compare with TPS.
//!
//! Which operation and which row come from a seeded SplitMix64 per client (no `rand` in this crate), so
//! both runs of the step draw the same mix; only timing differs. All clients connect and prepare before
//! the clock starts, and stop at the same deadline.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tokio::task::JoinSet;
use tokio_postgres::Statement;

use crate::pgbench::Measurement;

/// Concurrent clients, each on its own connection.
pub const CLIENTS: usize = 32;
/// Rows each client owns and alone writes.
pub const KEYS_PER_CLIENT: usize = 8;
/// Share of operations that write, in percent (the rest read).
pub const WRITE_PERCENT: u64 = 10;
/// The table, and one row per (client, key) with `v = 0`; run on the primary before the step.
pub fn setup_sql() -> String {
    format!(
        "CREATE TABLE kv (id int PRIMARY KEY, v bigint NOT NULL); \
         INSERT INTO kv SELECT g, 0 FROM generate_series(0, {}) AS g",
        CLIENTS * KEYS_PER_CLIENT - 1
    )
}
const READ_SQL: &str = "SELECT v FROM kv WHERE id = $1";
const WRITE_SQL: &str = "UPDATE kv SET v = v + 1 WHERE id = $1 RETURNING v";

/// What every client did, added up.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Tally {
    pub reads: u64,
    pub writes: u64,
    /// Reads that returned less than this client had already written to that row.
    pub stale: u64,
    pub errors: u64,
    /// The first error seen, on one line.
    pub first_error: Option<String>,
    /// Duration of each successful operation, in microseconds.
    latencies_us: Vec<u32>,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.reads += other.reads;
        self.writes += other.writes;
        self.stale += other.stale;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.latencies_us.extend(other.latencies_us);
    }

    fn error(&mut self, error: &tokio_postgres::Error) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(format!("{error:#}").replace('\n', " "));
        }
    }

    fn done(&mut self, op: Op, stale: bool, took: Duration) {
        match op {
            Op::Read(_) => self.reads += 1,
            Op::Write(_) => self.writes += 1,
        }
        self.stale += u64::from(stale);
        self.latencies_us
            .push(u32::try_from(took.as_micros()).unwrap_or(u32::MAX));
    }
}

/// One run of the workload: the tally and the wall-clock time from the common start to the last client.
#[derive(Debug)]
pub struct Workload {
    pub tally: Tally,
    pub elapsed: Duration,
}

impl Workload {
    /// Successful operations per second, average and p99 latency: a row of the table.
    pub fn measurement(&self) -> Measurement {
        let ops = self.tally.latencies_us.len();
        let secs = self.elapsed.as_secs_f64();
        let total_us: u64 = self
            .tally
            .latencies_us
            .iter()
            .map(|&us| u64::from(us))
            .sum();
        Measurement {
            tps: if secs > 0.0 { ops as f64 / secs } else { 0.0 },
            avg_ms: if ops > 0 {
                total_us as f64 / ops as f64 / 1000.0
            } else {
                0.0
            },
            p99_ms: percentile_us(&self.tally.latencies_us, 99).map(|us| f64::from(us) / 1000.0),
        }
    }
}

#[cfg(test)]
impl Workload {
    /// `reads` reads of 1 ms in one second, `stale` of them stale: for the report's tests.
    pub fn of_reads(reads: u32, stale: u64) -> Workload {
        let mut tally = Tally::default();
        for _ in 0..reads {
            tally.done(Op::Read(0), false, Duration::from_millis(1));
        }
        tally.stale = stale;
        Workload {
            tally,
            elapsed: Duration::from_secs(1),
        }
    }
}

/// Connects [`CLIENTS`] clients to `addr`, runs them for `duration`, and adds up what they saw.
/// A client that cannot connect or prepare fails the run; errors during it are counted.
pub async fn run(addr: SocketAddr, duration: Duration) -> Result<Workload> {
    let mut clients = Vec::with_capacity(CLIENTS);
    for index in 0..CLIENTS {
        clients.push(
            Client::connect(addr, index)
                .await
                .with_context(|| format!("client {index}"))?,
        );
    }
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = JoinSet::new();
    for client in clients {
        tasks.spawn(client.run(deadline));
    }
    let mut tally = Tally::default();
    while let Some(joined) = tasks.join_next().await {
        tally.merge(joined.context("a client task failed")?);
    }
    Ok(Workload {
        tally,
        elapsed: start.elapsed(),
    })
}

/// One operation, on the client's key with this index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Read(usize),
    Write(usize),
}

struct Client {
    db: tokio_postgres::Client,
    read: Statement,
    write: Statement,
    /// Id of the client's first row.
    first_id: i32,
    /// Per owned row, the value this client last wrote (0, the loaded value, before its first write).
    written: [i64; KEYS_PER_CLIENT],
    rng: SplitMix64,
}

impl Client {
    async fn connect(addr: SocketAddr, index: usize) -> Result<Client> {
        let db = pgroute_tests::connect(addr).await?;
        let read = db.prepare(READ_SQL).await.context("prepare the read")?;
        let write = db.prepare(WRITE_SQL).await.context("prepare the write")?;
        Ok(Client {
            db,
            read,
            write,
            first_id: first_id(index)?,
            written: [0; KEYS_PER_CLIENT],
            rng: SplitMix64(index as u64),
        })
    }

    /// Operations until `deadline`; stops early only if the connection is gone.
    async fn run(mut self, deadline: Instant) -> Tally {
        let mut tally = Tally::default();
        while Instant::now() < deadline {
            let op = next_op(&mut self.rng);
            let started = Instant::now();
            match self.execute(op).await {
                Ok(stale) => tally.done(op, stale, started.elapsed()),
                Err(e) => {
                    tally.error(&e);
                    if self.db.is_closed() {
                        break;
                    }
                }
            }
        }
        tally
    }

    /// Runs `op`; for a read, whether it was stale.
    async fn execute(&mut self, op: Op) -> Result<bool, tokio_postgres::Error> {
        match op {
            Op::Read(key) => {
                let row = self.db.query_one(&self.read, &[&self.id(key)]).await?;
                Ok(is_stale(row.try_get(0)?, self.written[key]))
            }
            Op::Write(key) => {
                let row = self.db.query_one(&self.write, &[&self.id(key)]).await?;
                self.written[key] = row.try_get(0)?;
                Ok(false)
            }
        }
    }

    fn id(&self, key: usize) -> i32 {
        // `key < KEYS_PER_CLIENT`, and `first_id` leaves room for all of them (see `first_id`).
        self.first_id + key as i32
    }
}

/// Id of client `index`'s first row; fails if its last row would not fit an `int`.
fn first_id(index: usize) -> Result<i32> {
    index
        .checked_add(1)
        .and_then(|clients| clients.checked_mul(KEYS_PER_CLIENT))
        .and_then(|end| i32::try_from(end - 1).ok())
        .map(|last| last + 1 - KEYS_PER_CLIENT as i32)
        .context("client index too large for int ids")
}

/// A read is stale when it returns less than the client last wrote to that row.
fn is_stale(read: i64, written: i64) -> bool {
    read < written
}

fn next_op(rng: &mut SplitMix64) -> Op {
    let write = rng.next() % 100 < WRITE_PERCENT;
    let key = (rng.next() % KEYS_PER_CLIENT as u64) as usize;
    if write {
        Op::Write(key)
    } else {
        Op::Read(key)
    }
}

/// The `pct`th percentile (nearest rank) of `values`; `None` when empty.
fn percentile_us(values: &[u32], pct: usize) -> Option<u32> {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let rank = (sorted.len() * pct).div_ceil(100).max(1);
    sorted.get(rank - 1).copied()
}

/// SplitMix64 (Steele, Lea, Flood 2014): a few lines, good enough to pick operations and rows.
#[derive(Debug)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn about_one_operation_in_ten_writes_and_every_key_is_used() {
        let mut rng = SplitMix64(7);
        let mut writes = 0;
        let mut keys = [0u32; KEYS_PER_CLIENT];
        for _ in 0..100_000 {
            let key = match next_op(&mut rng) {
                Op::Write(key) => {
                    writes += 1;
                    key
                }
                Op::Read(key) => key,
            };
            keys[key] += 1;
        }
        assert!((9_000..11_000).contains(&writes), "{writes} writes");
        assert!(keys.iter().all(|&n| n > 10_000), "{keys:?}");
    }

    #[test]
    fn clients_own_disjoint_rows_that_the_setup_creates() {
        assert_eq!(first_id(0).ok(), Some(0));
        assert_eq!(first_id(1).ok(), Some(KEYS_PER_CLIENT as i32));
        let last = first_id(CLIENTS - 1)
            .ok()
            .map(|id| id + KEYS_PER_CLIENT as i32 - 1);
        assert_eq!(last, Some((CLIENTS * KEYS_PER_CLIENT - 1) as i32));
        assert!(setup_sql().ends_with(&format!(
            "generate_series(0, {}) AS g",
            CLIENTS * KEYS_PER_CLIENT - 1
        )));
        assert!(first_id(usize::MAX).is_err());
        assert!(first_id(i32::MAX as usize).is_err());
    }

    #[test]
    fn only_a_read_below_the_own_last_write_is_stale() {
        assert!(is_stale(4, 5));
        assert!(!is_stale(5, 5));
        // Higher than written: a write whose answer was lost (an error) still committed.
        assert!(!is_stale(6, 5));
    }

    #[test]
    fn measurement_counts_successful_operations_per_second() {
        let mut tally = Tally::default();
        for ms in 1..=100 {
            tally.done(Op::Read(0), false, Duration::from_millis(ms));
        }
        tally.done(Op::Write(0), false, Duration::from_millis(1));
        let workload = Workload {
            tally,
            elapsed: Duration::from_secs(2),
        };
        let m = workload.measurement();
        assert!((m.tps - 50.5).abs() < 1e-9, "{}", m.tps);
        assert_eq!(m.p99_ms, Some(99.0));
        assert!((m.avg_ms - 5051.0 / 101.0).abs() < 1e-9, "{}", m.avg_ms);
    }

    #[test]
    fn merge_adds_counts_and_keeps_the_first_error() {
        let mut total = Tally::default();
        let other = Tally {
            reads: 3,
            writes: 1,
            stale: 1,
            errors: 2,
            first_error: Some("boom".into()),
            latencies_us: vec![5, 6],
        };
        total.merge(other.clone());
        total.merge(Tally {
            first_error: Some("later".into()),
            ..other
        });
        assert_eq!(
            (total.reads, total.writes, total.stale, total.errors),
            (6, 2, 2, 4)
        );
        assert_eq!(total.first_error.as_deref(), Some("boom"));
        assert_eq!(total.latencies_us.len(), 4);
    }

    #[test]
    fn percentile_is_nearest_rank() {
        assert_eq!(percentile_us(&[], 99), None);
        assert_eq!(percentile_us(&[3], 99), Some(3));
        let values: Vec<u32> = (1..=200).rev().collect();
        assert_eq!(percentile_us(&values, 99), Some(198));
    }
}
