//! Per-fingerprint latency for the busiest query shapes only, so the number of series stays bounded.
//!
//! The first `capacity` fingerprints seen get a series each; after that, a query of an untracked
//! fingerprint is observed in the `fingerprint="other"` series and counted as a candidate. At each scrape
//! [`Fingerprints::rebalance`] compares the candidates' counts with what each tracked fingerprint served
//! since the last scrape, and swaps the busiest candidates in for the quietest tracked ones (the evicted
//! series leave the exposition; Prometheus treats a returning one as a counter reset). At most
//! `capacity + 1` series exist, and every query is in exactly one of them.
//!
//! Sessions keep the slot of their last fingerprint, so a client repeating a statement takes no shared
//! lock; the map is read-locked only when the fingerprint changes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use prometheus_client::metrics::family::Family;

use super::histogram::{Histogram, QUERY_BUCKETS_US};

/// Label set of a fingerprint series: 16 hex digits (as in query rules), or `other`.
pub type FingerprintLabels = Vec<(&'static str, String)>;
type HistogramFamily = Family<FingerprintLabels, Histogram, fn() -> Histogram>;

/// Candidates remembered between scrapes, per tracked slot: bounded, so a flood of distinct statements
/// cannot grow memory; when full, the ones seen once are forgotten.
const CANDIDATES_PER_SLOT: usize = 4;

/// One fingerprint's series (or the `other` one).
#[derive(Debug)]
pub struct Slot {
    fingerprint: Option<u64>,
    histogram: Histogram,
    /// The histogram's count at the last rebalance: what it served since is its rank.
    ranked_at: AtomicU64,
    evicted: AtomicBool,
}

impl Slot {
    fn new(fingerprint: Option<u64>, histogram: Histogram) -> Arc<Slot> {
        Arc::new(Slot {
            fingerprint,
            histogram,
            ranked_at: AtomicU64::new(0),
            evicted: AtomicBool::new(false),
        })
    }

    pub fn observe(&self, d: Duration) {
        self.histogram.observe(d);
    }

    /// Whether a session may keep using this slot for `fingerprint`.
    fn serves(&self, fingerprint: u64) -> bool {
        self.fingerprint == Some(fingerprint) && !self.evicted.load(Ordering::Relaxed)
    }
}

/// The tracker: which fingerprints have a series.
#[derive(Debug)]
pub struct Fingerprints {
    capacity: usize,
    family: HistogramFamily,
    tracked: RwLock<HashMap<u64, Arc<Slot>>>,
    other: Arc<Slot>,
    candidates: Mutex<HashMap<u64, u64>>,
}

fn new_histogram() -> Histogram {
    Histogram::new(QUERY_BUCKETS_US)
}

fn labels(fingerprint: Option<u64>) -> FingerprintLabels {
    let value = match fingerprint {
        Some(f) => format!("{f:016x}"),
        None => "other".to_owned(),
    };
    vec![("fingerprint", value)]
}

impl Fingerprints {
    /// Tracks at most `capacity` fingerprints (0: everything is `other`).
    pub fn new(capacity: usize) -> Fingerprints {
        let family = HistogramFamily::new_with_constructor(new_histogram);
        let other = Slot::new(None, family.get_or_create_owned(&labels(None)));
        Fingerprints {
            capacity,
            family,
            tracked: RwLock::new(HashMap::new()),
            other,
            candidates: Mutex::new(HashMap::new()),
        }
    }

    /// The series family, for the registry.
    pub fn family(&self) -> &HistogramFamily {
        &self.family
    }

    /// The slot that observes `fingerprint` (`None`: a statement without text, counted as other).
    pub fn resolve(&self, fingerprint: Option<u64>) -> Arc<Slot> {
        let Some(fp) = fingerprint else {
            return self.other.clone();
        };
        {
            let tracked = self.tracked.read().unwrap_or_else(|e| e.into_inner());
            if let Some(slot) = tracked.get(&fp) {
                return slot.clone();
            }
            if tracked.len() >= self.capacity {
                drop(tracked);
                self.note_candidate(fp);
                return self.other.clone();
            }
        }
        let mut tracked = self.tracked.write().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = tracked.get(&fp) {
            return slot.clone();
        }
        if tracked.len() >= self.capacity {
            drop(tracked);
            self.note_candidate(fp);
            return self.other.clone();
        }
        let slot = self.admit(fp);
        tracked.insert(fp, slot.clone());
        slot
    }

    fn admit(&self, fp: u64) -> Arc<Slot> {
        let histogram = self.family.get_or_create_owned(&labels(Some(fp)));
        let slot = Slot::new(Some(fp), histogram);
        slot.ranked_at
            .store(slot.histogram.count(), Ordering::Relaxed);
        slot
    }

    fn note_candidate(&self, fp: u64) {
        let mut c = self.candidates.lock().unwrap_or_else(|e| e.into_inner());
        let limit = self.capacity.max(1) * CANDIDATES_PER_SLOT;
        if c.len() >= limit && !c.contains_key(&fp) {
            c.retain(|_, n| *n > 1);
            if c.len() >= limit {
                return;
            }
        }
        *c.entry(fp).or_default() += 1;
    }

    /// Swaps candidates seen more often since the last call than the quietest tracked fingerprints
    /// in for them. Called per scrape.
    pub fn rebalance(&self) {
        let mut candidates: Vec<(u64, u64)> =
            std::mem::take(&mut *self.candidates.lock().unwrap_or_else(|e| e.into_inner()))
                .into_iter()
                .collect();
        let mut tracked = self.tracked.write().unwrap_or_else(|e| e.into_inner());
        let mut ranks: Vec<(u64, u64)> = tracked
            .iter()
            .map(|(fp, slot)| {
                let now = slot.histogram.count();
                let before = slot.ranked_at.swap(now, Ordering::Relaxed);
                (*fp, now.saturating_sub(before))
            })
            .collect();
        if candidates.is_empty() {
            return;
        }
        candidates.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        ranks.sort_unstable_by(|a, b| a.1.cmp(&b.1).then(a.0.cmp(&b.0)));
        let mut quietest = ranks.into_iter();
        for (fp, seen) in candidates {
            let Some((victim, served)) = quietest.next() else {
                break;
            };
            if seen <= served {
                break;
            }
            if let Some(slot) = tracked.remove(&victim) {
                slot.evicted.store(true, Ordering::Relaxed);
                self.family.remove(&labels(Some(victim)));
            }
            tracked.insert(fp, self.admit(fp));
        }
    }

    /// Fingerprints with a series of their own right now.
    pub fn tracked(&self) -> usize {
        self.tracked.read().map(|t| t.len()).unwrap_or(0)
    }
}

/// A session's last slot: repeating a statement resolves nothing.
#[derive(Debug, Default)]
pub struct SlotCache(Option<Arc<Slot>>);

impl SlotCache {
    pub fn observe(&mut self, tracker: &Fingerprints, fingerprint: Option<u64>, d: Duration) {
        if let (Some(slot), Some(fp)) = (&self.0, fingerprint) {
            if slot.serves(fp) {
                slot.observe(d);
                return;
            }
        }
        let slot = tracker.resolve(fingerprint);
        slot.observe(d);
        // `other` is not kept: its queries must keep counting as candidates.
        self.0 = slot.fingerprint.is_some().then_some(slot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn series(f: &Fingerprints) -> Vec<String> {
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register("fp", "test", f.family().clone());
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encodes");
        let mut names: Vec<String> = text
            .lines()
            .filter(|l| l.starts_with("fp_count"))
            .map(str::to_owned)
            .collect();
        names.sort();
        names
    }

    #[test]
    fn first_fingerprints_are_tracked_and_the_rest_fold_into_other() {
        let f = Fingerprints::new(2);
        let mut cache = SlotCache::default();
        for fp in [1, 2, 3, 4, 1, 3] {
            cache.observe(&f, Some(fp), MS);
        }
        cache.observe(&f, None, MS);
        assert_eq!(f.tracked(), 2);
        assert_eq!(
            series(&f),
            [
                "fp_count{fingerprint=\"0000000000000001\"} 2",
                "fp_count{fingerprint=\"0000000000000002\"} 1",
                "fp_count{fingerprint=\"other\"} 4",
            ]
        );
    }

    #[test]
    fn a_busier_candidate_replaces_the_quietest_fingerprint_at_rebalance() {
        let f = Fingerprints::new(2);
        let mut cache = SlotCache::default();
        for fp in [1, 2, 1] {
            cache.observe(&f, Some(fp), MS);
        }
        f.rebalance(); // ranks: 1 served 2, 2 served 1; no candidates
        for fp in [3, 3, 3, 1, 1, 2] {
            cache.observe(&f, Some(fp), MS);
        }
        f.rebalance(); // 3 (seen 3 times) beats 2 (served 1); 1 (served 2) stays
        let s = series(&f);
        assert_eq!(s.len(), 3, "{s:?}");
        assert!(
            s.iter().any(|l| l.contains("0000000000000003\"} 0")),
            "{s:?}"
        );
        assert!(!s.iter().any(|l| l.contains("0000000000000002")), "{s:?}");
        // The evicted slot is no longer used from a session's cache.
        cache.observe(&f, Some(2), MS);
        cache.observe(&f, Some(3), MS);
        assert!(series(&f)
            .iter()
            .any(|l| l.contains("0000000000000003\"} 1")));
    }

    #[test]
    fn candidates_stay_bounded() {
        let f = Fingerprints::new(1);
        for fp in 0..10_000 {
            f.resolve(Some(fp));
        }
        let n = f.candidates.lock().map(|c| c.len()).unwrap_or(0);
        assert!(n <= CANDIDATES_PER_SLOT, "{n}");
    }
}
