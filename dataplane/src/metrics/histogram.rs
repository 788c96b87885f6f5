//! A latency histogram made of atomics, encoded by `prometheus-client`.
//!
//! `prometheus-client`'s own `Histogram` takes a write lock per observation; every session of a pool
//! observes into the same handle, so on the query path that lock would be shared by all of them. Here an
//! observation is a bucket search over a short fixed array and two relaxed atomic adds (the bucket and
//! the sum); the count is the sum of the buckets, so `_count` always equals the `+Inf` bucket.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

/// Upper bounds of query and transaction times, in microseconds (100 µs … 10 s): dense enough around
/// typical OLTP latencies that p50/p95/p99 come out of `histogram_quantile` within a bucket's width.
pub const QUERY_BUCKETS_US: &[u64] = &[
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000,
];

/// Upper bounds of pool waits, in microseconds (10 µs … 30 s): most checkouts find an idle connection
/// at once, and the tail reaches `queue_timeout`.
pub const WAIT_BUCKETS_US: &[u64] = &[
    10, 50, 100, 500, 1_000, 5_000, 10_000, 50_000, 100_000, 500_000, 1_000_000, 5_000_000,
    30_000_000,
];

/// A histogram handle; clones share the counts.
#[derive(Debug, Clone)]
pub struct Histogram(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    bounds_us: &'static [u64],
    /// One per bound, then the `+Inf` bucket; not cumulative (encoding sums them).
    buckets: Box<[AtomicU64]>,
    sum_ns: AtomicU64,
}

impl Histogram {
    pub fn new(bounds_us: &'static [u64]) -> Histogram {
        Histogram(Arc::new(Inner {
            bounds_us,
            buckets: (0..=bounds_us.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_ns: AtomicU64::new(0),
        }))
    }

    pub fn observe(&self, d: Duration) {
        let us = d.as_micros().min(u128::from(u64::MAX)) as u64;
        let i = self.0.bounds_us.partition_point(|b| *b < us);
        self.0.buckets[i].fetch_add(1, Ordering::Relaxed);
        let ns = d.as_nanos().min(u128::from(u64::MAX)) as u64;
        self.0.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.0
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .sum()
    }

    /// Sum of the observations, in seconds.
    pub fn sum_seconds(&self) -> f64 {
        self.0.sum_ns.load(Ordering::Relaxed) as f64 / 1e9
    }
}

impl TypedMetric for Histogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Histogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        // Read the buckets once, so `_count` and `+Inf` agree even while observations come in.
        let buckets: Vec<(f64, u64)> = self
            .0
            .buckets
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let bound = match self.0.bounds_us.get(i) {
                    Some(us) => *us as f64 / 1e6,
                    None => f64::MAX,
                };
                (bound, b.load(Ordering::Relaxed))
            })
            .collect();
        let count = buckets.iter().map(|(_, n)| n).sum();
        encoder.encode_histogram::<NoLabelSet>(self.sum_seconds(), count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_the_first_bucket_at_or_above_them() {
        let h = Histogram::new(&[100, 1_000]);
        h.observe(Duration::from_micros(100));
        h.observe(Duration::from_micros(101));
        h.observe(Duration::from_secs(1));
        let counts: Vec<u64> =
            h.0.buckets
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect();
        assert_eq!(counts, [1, 1, 1]);
        assert_eq!(h.count(), 3);
        assert!((h.sum_seconds() - 1.000_201).abs() < 1e-9);
    }
}
