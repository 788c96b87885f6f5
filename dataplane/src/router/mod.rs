//! Route + topology → backend: which replica takes a read, and the counters of where everything went.
//!
//! The candidates are a session's pools on each replica (and the primary, when it takes a share of
//! reads). Least-connections compares busy connections per unit of weight, with ties rotating so an idle
//! proxy still spreads reads; round robin and random are weighted; `hash` is rendezvous hashing on the
//! session key, so a session keeps its replica and only the sessions of a replica that leaves move.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::classify::{Reason, Route};
use crate::config::LoadBalancing;
use crate::pool::Pool;

/// One place a read may go.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub pool: Arc<Pool>,
    pub weight: u32,
    pub is_primary: bool,
    /// The replica's lag and eligibility (`None` for the primary's share of reads).
    pub state: Option<Arc<crate::topology::ReplicaState>>,
}

/// Picks read targets and counts routing decisions. One per proxy.
#[derive(Debug)]
pub struct Router {
    policy: LoadBalancing,
    /// Rotates round robin and least-connections ties.
    turn: AtomicU64,
    counters: RouteCounters,
}

impl Router {
    pub fn new(policy: LoadBalancing) -> Router {
        Router {
            policy,
            turn: AtomicU64::new(0),
            counters: RouteCounters::default(),
        }
    }

    pub fn counters(&self) -> &RouteCounters {
        &self.counters
    }

    /// The candidate that takes the next read, `None` when there is none with a positive weight. Runs
    /// once per routed transaction, so it walks the slice without allocating.
    pub fn pick<'a>(&self, candidates: &'a [Candidate], session_key: u64) -> Option<&'a Candidate> {
        self.pick_where(candidates, session_key, |_| true)
    }

    /// [`Router::pick`] among the candidates `usable` accepts (lag, read-your-writes).
    pub fn pick_where<'a>(
        &self,
        candidates: &'a [Candidate],
        session_key: u64,
        usable: impl Fn(&Candidate) -> bool,
    ) -> Option<&'a Candidate> {
        let live = || candidates.iter().filter(|c| c.weight > 0 && usable(c));
        let count = live().count();
        if count <= 1 {
            return live().next();
        }
        let total: u64 = live().map(|c| u64::from(c.weight)).sum();
        match self.policy {
            LoadBalancing::LeastConnections => {
                let start = self.turn.fetch_add(1, Ordering::Relaxed) as usize % count;
                let load = |c: &Candidate| u64::from(c.pool.stats().active.load(Ordering::Relaxed));
                // Start at a rotating position so ties spread; keep the first strictly less loaded
                // (active_i / weight_i < active_best / weight_best, compared without division).
                live().cycle().skip(start).take(count).reduce(|best, c| {
                    if load(c) * u64::from(best.weight) < load(best) * u64::from(c.weight) {
                        c
                    } else {
                        best
                    }
                })
            }
            LoadBalancing::RoundRobin => {
                weighted_slot(live(), self.turn.fetch_add(1, Ordering::Relaxed) % total)
            }
            LoadBalancing::Random => weighted_slot(live(), rand::random_range(0..total)),
            LoadBalancing::Hash => rendezvous(live(), session_key),
        }
    }
}

/// The candidate whose cumulative weight range holds `slot` (0 ≤ slot < total weight).
fn weighted_slot<'a>(
    live: impl Iterator<Item = &'a Candidate>,
    mut slot: u64,
) -> Option<&'a Candidate> {
    for c in live {
        let w = u64::from(c.weight);
        if slot < w {
            return Some(c);
        }
        slot -= w;
    }
    None
}

/// Weighted rendezvous hashing: the candidate with the highest `-weight / ln(u)`, where `u` in (0, 1)
/// is a hash of the session key and the candidate's address.
fn rendezvous<'a>(live: impl Iterator<Item = &'a Candidate>, key: u64) -> Option<&'a Candidate> {
    let mut best: Option<(&Candidate, f64)> = None;
    for c in live {
        let backend = &c.pool.key().backend;
        let h = hash64(key ^ u64::from(backend.port()), backend.host().as_bytes());
        let u = ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
        let score = -f64::from(c.weight) / u.ln();
        if best.is_none_or(|(_, s)| score > s) {
            best = Some((c, score));
        }
    }
    best.map(|(c, _)| c)
}

/// FNV-1a over a seed and bytes, then a final mix (so nearby keys spread).
pub fn hash64(seed: u64, bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h
}

/// Transactions routed, by destination kind and reason.
#[derive(Debug, Default)]
pub struct RouteCounters {
    primary: [AtomicU64; Reason::ALL.len()],
    replica: [AtomicU64; Reason::ALL.len()],
}

impl RouteCounters {
    pub fn record(&self, route: Route, reason: Reason) {
        let table = match route {
            Route::Primary => &self.primary,
            Route::Replica => &self.replica,
        };
        table[reason.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(&self, route: Route, reason: Reason) -> u64 {
        let table = match route {
            Route::Primary => &self.primary,
            Route::Replica => &self.replica,
        };
        table[reason.index()].load(Ordering::Relaxed)
    }

    /// Non-zero counts as (route, reason, count).
    pub fn snapshot(&self) -> Vec<(Route, Reason, u64)> {
        [Route::Primary, Route::Replica]
            .into_iter()
            .flat_map(|route| Reason::ALL.into_iter().map(move |reason| (route, reason)))
            .map(|(route, reason)| (route, reason, self.get(route, reason)))
            .filter(|(_, _, n)| *n > 0)
            .collect()
    }
}

#[cfg(test)]
mod tests;
