//! Per-user and per-database client limits (`max_user_client_connections`,
//! `max_db_client_connections`): counters keyed by name, and guards that give a place back when the
//! client leaves. Nothing is counted, and nothing allocated, while a limit is 0 (unlimited).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Clients per name (user or database).
#[derive(Debug, Default)]
pub struct NamedCounts {
    counts: Mutex<HashMap<String, u32>>,
}

impl NamedCounts {
    /// Takes a place for `name` under `max`; `None` if the limit is reached.
    pub fn admit(self: &Arc<Self>, name: &str, max: u32) -> Option<NamedSlot> {
        let mut counts = self
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = counts.entry(name.to_owned()).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(NamedSlot {
            counts: self.clone(),
            name: name.to_owned(),
        })
    }

    /// Clients counted for `name` right now.
    pub fn count(&self, name: &str) -> u32 {
        self.counts
            .lock()
            .map(|c| c.get(name).copied().unwrap_or(0))
            .unwrap_or(0)
    }
}

/// One client's place under a named limit.
#[derive(Debug)]
pub struct NamedSlot {
    counts: Arc<NamedCounts>,
    name: String,
}

impl Drop for NamedSlot {
    fn drop(&mut self) {
        let mut counts = self
            .counts
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = counts.get_mut(&self.name) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.remove(&self.name);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_up_to_the_limit_and_frees_on_drop() {
        let counts = Arc::new(NamedCounts::default());
        let a = counts.admit("app", 2).expect("first");
        let _b = counts.admit("app", 2).expect("second");
        assert!(counts.admit("app", 2).is_none());
        assert!(counts.admit("other", 2).is_some(), "limits are per name");
        drop(a);
        assert!(counts.admit("app", 2).is_some());
    }
}
