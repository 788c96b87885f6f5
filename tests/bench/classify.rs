//! Classification cost: how long pgroute's classifier takes to decide where a statement may run.
//!
//! Every statement a client sends is classified, so this is on the hot path of every session. It is
//! measured in this process on [`pgroute::classify::Classifier`] with the default routing configuration,
//! no servers needed, in two cases:
//!
//! - warm: [`STATEMENTS`], typical OLTP and ORM statements, each already in the decision cache, so a call
//!   is a cache lookup by query text;
//! - cold: read queries of a few typical shapes with a different literal every time (`… WHERE aid = 12345`),
//!   so every call misses the cache and parses the text. Only reads: writes are settled by their first
//!   keyword without a parse, which would make the cold figure look better than a parse is.
//!
//! Each case repeats for at least [`MIN_DURATION`] and reports the average time per call, against the
//! issue's targets ([`WARM_TARGET_US`], [`COLD_TARGET_US`]).

use std::hint::black_box;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use pgroute::classify::Classifier;
use pgroute::config::RoutingConfig;

/// Target for a call whose decision is cached, in microseconds.
pub const WARM_TARGET_US: f64 = 1.0;
/// Target for a call that parses a typical OLTP query, in microseconds.
pub const COLD_TARGET_US: f64 = 50.0;

/// Least total time measured per case, so timer resolution and one-off hiccups wash out.
const MIN_DURATION: Duration = Duration::from_secs(1);
/// Passes over [`STATEMENTS`] between clock reads in the warm case (about 10,000 calls).
const WARM_ROUNDS_PER_CHECK: usize = 500;
/// Cold texts built (untimed) before each timed batch, so formatting them is not measured.
const COLD_BATCH: usize = 1_000;
/// Untimed cold calls first, so one-off set-up in the parser is not measured.
const COLD_WARM_UP: usize = 100;

/// Statements of a typical OLTP application: pgbench's own, ORM-style reads and writes with `$n`
/// parameters, transaction control, a CTE, a locking read.
pub const STATEMENTS: [&str; 20] = [
    "SELECT abalance FROM pgbench_accounts WHERE aid = $1",
    "UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2",
    "UPDATE pgbench_tellers SET tbalance = tbalance + $1 WHERE tid = $2",
    "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES ($1, $2, $3, $4, CURRENT_TIMESTAMP)",
    "BEGIN",
    "END",
    "COMMIT",
    "ROLLBACK",
    "BEGIN READ ONLY",
    "SELECT \"orders\".\"id\", \"orders\".\"total\", \"customers\".\"name\" FROM \"orders\" \
     INNER JOIN \"customers\" ON \"customers\".\"id\" = \"orders\".\"customer_id\" \
     LEFT OUTER JOIN \"addresses\" ON \"addresses\".\"customer_id\" = \"customers\".\"id\" \
     WHERE \"orders\".\"status\" = $1 AND \"orders\".\"created_at\" >= $2 \
     ORDER BY \"orders\".\"created_at\" DESC LIMIT $3 OFFSET $4",
    "select u1_0.id,u1_0.email,u1_0.name,u1_0.created_at from users u1_0 where u1_0.id=$1",
    "WITH recent AS (SELECT customer_id, sum(total) AS spent FROM orders \
     WHERE created_at > now() - interval '30 days' GROUP BY customer_id) \
     SELECT c.id, c.name, r.spent FROM customers c JOIN recent r ON r.customer_id = c.id \
     ORDER BY r.spent DESC LIMIT 20",
    "SELECT id, quantity FROM inventory WHERE product_id = $1 FOR UPDATE",
    "SELECT count(*) FROM orders WHERE customer_id = $1 AND status = ANY($2)",
    "SELECT EXISTS (SELECT 1 FROM users WHERE email = $1)",
    "SELECT 1",
    "SHOW TRANSACTION ISOLATION LEVEL",
    "SET application_name = 'web-7'",
    "INSERT INTO orders (customer_id, total, status) VALUES ($1, $2, $3) RETURNING id",
    "DELETE FROM sessions WHERE expires_at < $1",
];

/// Read shapes for the cold case; each call gets a literal no other call had.
const COLD_SHAPES: [fn(u64) -> String; 4] = [
    |n| format!("SELECT abalance FROM pgbench_accounts WHERE aid = {n}"),
    |n| {
        format!(
            "SELECT o.id, o.total, o.created_at, c.name FROM orders o \
             JOIN customers c ON c.id = o.customer_id \
             WHERE o.customer_id = {n} ORDER BY o.created_at DESC LIMIT 20"
        )
    },
    |n| format!("SELECT id, quantity FROM inventory WHERE product_id = {n} FOR UPDATE"),
    |n| {
        format!(
            "WITH recent AS (SELECT customer_id, sum(total) AS spent FROM orders \
             WHERE customer_id = {n} GROUP BY customer_id) \
             SELECT c.name, r.spent FROM customers c JOIN recent r ON r.customer_id = c.id"
        )
    },
];

/// Calls made and the time they took together.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PerCall {
    pub calls: u64,
    pub elapsed: Duration,
}

impl PerCall {
    pub fn micros(&self) -> f64 {
        if self.calls == 0 {
            return f64::NAN;
        }
        self.elapsed.as_secs_f64() * 1e6 / self.calls as f64
    }
}

/// Both cases.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cost {
    pub warm: PerCall,
    pub cold: PerCall,
}

/// Measures both cases (about two seconds).
pub fn measure() -> Result<Cost> {
    let config = RoutingConfig::default();
    let warm = warm(&Classifier::new(&config).context("build the classifier")?)?;
    let cold = cold(&Classifier::new(&config).context("build the classifier")?);
    Ok(Cost { warm, cold })
}

fn warm(classifier: &Classifier) -> Result<PerCall> {
    for sql in STATEMENTS {
        classifier.classify(sql);
    }
    let cached = classifier.cached();
    if cached != STATEMENTS.len() {
        bail!(
            "{cached} of {} statements cached after warm-up; the warm figure would include misses",
            STATEMENTS.len()
        );
    }
    let mut calls = 0;
    let start = Instant::now();
    let elapsed = loop {
        for _ in 0..WARM_ROUNDS_PER_CHECK {
            for sql in STATEMENTS {
                black_box(classifier.classify(black_box(sql)));
            }
        }
        calls += (WARM_ROUNDS_PER_CHECK * STATEMENTS.len()) as u64;
        let elapsed = start.elapsed();
        if elapsed >= MIN_DURATION {
            break elapsed;
        }
    };
    if classifier.cached() != cached {
        bail!("the cache changed during the warm run; some calls missed");
    }
    Ok(PerCall { calls, elapsed })
}

/// Every call misses: the literal comes from a counter that never repeats. So the figure is a full
/// classification of an unseen text, including inserting its decision into the cache (a copy of the
/// text, and once the cache is full, an eviction), which is what a real miss costs too.
fn cold(classifier: &Classifier) -> PerCall {
    let mut next_literal = 1_000_000;
    let mut batch = |size: usize| -> Vec<String> {
        (0..size)
            .map(|i| {
                next_literal += 1;
                COLD_SHAPES[i % COLD_SHAPES.len()](next_literal)
            })
            .collect()
    };
    for sql in batch(COLD_WARM_UP) {
        classifier.classify(&sql);
    }
    let mut calls = 0;
    let mut elapsed = Duration::ZERO;
    while elapsed < MIN_DURATION {
        let texts = batch(COLD_BATCH);
        let start = Instant::now();
        for sql in &texts {
            black_box(classifier.classify(black_box(sql)));
        }
        elapsed += start.elapsed();
        calls += texts.len() as u64;
    }
    PerCall { calls, elapsed }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_call_average() {
        let p = PerCall {
            calls: 4,
            elapsed: Duration::from_micros(10),
        };
        assert!((p.micros() - 2.5).abs() < 1e-9);
    }

    #[test]
    fn cold_shapes_differ_by_literal_and_are_reads_that_parse() {
        let classifier = Classifier::new(&RoutingConfig::default());
        let Ok(classifier) = classifier else {
            panic!("default routing config builds a classifier");
        };
        for shape in COLD_SHAPES {
            assert_ne!(shape(1), shape(2));
            let decision = classifier.classify(&shape(1));
            assert!(
                decision.is_some_and(|d| d.reason != pgroute::classify::Reason::ParseFailure),
                "{} -> {decision:?}",
                shape(1)
            );
        }
    }
}
