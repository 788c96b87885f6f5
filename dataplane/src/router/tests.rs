use std::sync::Arc;

use super::*;
use crate::auth::Keyring;
use crate::config::PoolConfig;
use crate::pool::{PoolKey, Pools};

fn candidates(weights: &[u32]) -> Vec<Candidate> {
    let pools = Pools::new(
        PoolConfig::default(),
        1 << 20,
        Arc::new(Keyring::default()),
        None,
        Arc::new(crate::health::Backends::new(
            Default::default(),
            std::iter::empty(),
        )),
    );
    weights
        .iter()
        .enumerate()
        .map(|(i, w)| Candidate {
            pool: pools.get(&PoolKey {
                backend: format!("10.0.0.{}:5432", i + 1).parse().expect("addr"),
                database: "db".into(),
                user: "u".into(),
            }),
            weight: *w,
            is_primary: false,
            state: None,
        })
        .collect()
}

fn shares(router: &Router, c: &[Candidate], n: usize, key: impl Fn(usize) -> u64) -> Vec<usize> {
    let mut counts = vec![0; c.len()];
    for i in 0..n {
        let picked = router.pick(c, key(i)).expect("a candidate");
        let at = c
            .iter()
            .position(|x| Arc::ptr_eq(&x.pool, &picked.pool))
            .expect("one of them");
        counts[at] += 1;
    }
    counts
}

#[tokio::test]
async fn weighted_policies_follow_the_weights() {
    let c = candidates(&[1, 3]);
    for policy in [
        LoadBalancing::RoundRobin,
        LoadBalancing::Random,
        LoadBalancing::LeastConnections,
    ] {
        let counts = shares(&Router::new(policy), &c, 10_000, |_| 0);
        if policy == LoadBalancing::LeastConnections {
            // Nothing busy: ties rotate evenly whatever the weights.
            assert!(
                (4_500..=5_500).contains(&counts[0]),
                "{policy:?}: {counts:?}"
            );
        } else {
            assert!(
                (2_250..=2_750).contains(&counts[0]),
                "{policy:?}: {counts:?}"
            );
        }
    }
}

#[tokio::test]
async fn hashing_keeps_a_key_on_its_replica_and_spreads_keys() {
    let c = candidates(&[1, 1, 1]);
    let router = Router::new(LoadBalancing::Hash);
    let first = router.pick(&c, 42).expect("pick").pool.key().clone();
    for _ in 0..10 {
        assert_eq!(router.pick(&c, 42).expect("pick").pool.key(), &first);
    }
    let counts = shares(&router, &c, 3_000, |i| hash64(0, &i.to_le_bytes()));
    assert!(
        counts.iter().all(|n| (800..=1_200).contains(n)),
        "{counts:?}"
    );
    // Removing one replica moves only its keys.
    let fewer: Vec<Candidate> = c[..2].to_vec();
    for i in 0..500u64 {
        let key = hash64(0, &i.to_le_bytes());
        let before = router.pick(&c, key).expect("pick").pool.key().clone();
        let after = router.pick(&fewer, key).expect("pick").pool.key().clone();
        if before != c[2].pool.key().clone() {
            assert_eq!(before, after);
        }
    }
}

#[tokio::test]
async fn zero_weight_is_never_picked_and_counters_count() {
    let c = candidates(&[0, 1]);
    let router = Router::new(LoadBalancing::RoundRobin);
    for _ in 0..10 {
        assert!(Arc::ptr_eq(
            &router.pick(&c, 0).expect("pick").pool,
            &c[1].pool
        ));
    }
    assert!(router.pick(&candidates(&[0]), 0).is_none());
    router.counters().record(Route::Replica, Reason::ReadOnly);
    router.counters().record(Route::Primary, Reason::LockClause);
    assert_eq!(router.counters().get(Route::Replica, Reason::ReadOnly), 1);
    assert_eq!(router.counters().snapshot().len(), 2);
}
