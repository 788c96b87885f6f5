//! `auth_query`: secrets of users missing from the auth file, read from the database by a dedicated
//! `auth_user` and cached for `cache_ttl`.
//!
//! The query runs on the primary through the ordinary pool of (`auth_user`, database), so lookups are
//! bounded by that pool's size and queue like any other client. Only found secrets are cached: an unknown
//! name is asked about again next time (so a new role can log in at once), and a failed login drops the
//! cached secret (so a changed password works from the next attempt).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::userlist::classify;
use super::Secret;
use crate::config::{AuthConfig, BackendAddr};
use crate::pool::{PoolError, PoolKey, Pools, QueryError};

/// Most cached secrets; past this, expired entries are dropped, and if none are, the whole cache.
const MAX_CACHED: usize = 10_000;

/// Why a lookup failed (not "no such user", which is `Ok(None)`).
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error("auth_query could not get a connection")]
    Pool(#[from] PoolError),
    #[error("auth_query failed")]
    Query(#[from] QueryError),
}

#[derive(Debug)]
pub struct AuthQuery {
    user: String,
    query: String,
    dbname: Option<String>,
    ttl: Duration,
    /// (database the query ran in, user) → secret and when it was read.
    cache: Mutex<HashMap<(String, String), (Instant, Secret)>>,
}

impl AuthQuery {
    /// `None` when `auth.user` is not set.
    pub fn new(config: &AuthConfig) -> Option<AuthQuery> {
        Some(AuthQuery {
            user: config.user.clone()?,
            query: config.query.clone(),
            dbname: config.dbname.clone(),
            ttl: config.cache_ttl,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// The user the query runs as; it is never looked up with the query itself.
    pub fn auth_user(&self) -> &str {
        &self.user
    }

    /// The secret of `user`, from the cache or by running the query on `primary`.
    pub async fn lookup(
        &self,
        pools: &Pools,
        primary: &BackendAddr,
        user: &str,
        database: &str,
    ) -> Result<Option<Secret>, LookupError> {
        let db = self.dbname.as_deref().unwrap_or(database);
        let key = (db.to_owned(), user.to_owned());
        if let Some(secret) = self.cached(&key) {
            return Ok(Some(secret));
        }
        let pool = pools.get(&PoolKey {
            backend: primary.clone(),
            database: db.to_owned(),
            user: self.user.clone(),
        });
        let mut conn = pool.checkout().await?;
        let rows = conn.conn().query_rows(&self.query, &[Some(user)]).await;
        let rows = match rows {
            Ok(rows) => {
                conn.release();
                rows
            }
            Err(e) => {
                if e.connection_usable() {
                    conn.release();
                }
                return Err(e.into());
            }
        };
        // The second column holds the secret (PgBouncer's contract); NULL means "may not log in".
        let secret = rows
            .into_iter()
            .next()
            .and_then(|row| row.into_iter().nth(1).flatten())
            .filter(|s| !s.is_empty())
            .map(|s| classify(&s));
        if let Some(secret) = &secret {
            self.store(key, secret.clone());
        }
        Ok(secret)
    }

    /// Drops the cached secret of `user` (after a failed login with it).
    pub fn forget(&self, user: &str, database: &str) {
        let db = self.dbname.as_deref().unwrap_or(database);
        if let Ok(mut cache) = self.cache.lock() {
            cache.remove(&(db.to_owned(), user.to_owned()));
        }
    }

    fn cached(&self, key: &(String, String)) -> Option<Secret> {
        let cache = self.cache.lock().ok()?;
        let (at, secret) = cache.get(key)?;
        (at.elapsed() < self.ttl).then(|| secret.clone())
    }

    fn store(&self, key: (String, String), secret: Secret) {
        if self.ttl.is_zero() {
            return;
        }
        let Ok(mut cache) = self.cache.lock() else {
            return;
        };
        if cache.len() >= MAX_CACHED {
            let ttl = self.ttl;
            cache.retain(|_, (at, _)| at.elapsed() < ttl);
            if cache.len() >= MAX_CACHED {
                cache.clear();
            }
        }
        cache.insert(key, (Instant::now(), secret));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth_query(ttl: Duration) -> AuthQuery {
        AuthQuery::new(&AuthConfig {
            user: Some("pgroute_auth".into()),
            cache_ttl: ttl,
            ..AuthConfig::default()
        })
        .expect("auth_user set")
    }

    #[test]
    fn cache_keeps_found_secrets_for_the_ttl_and_forgets_on_request() {
        let q = auth_query(Duration::from_secs(60));
        let key = ("db".to_owned(), "app".to_owned());
        q.store(key.clone(), Secret::Md5("md5x".into()));
        assert_eq!(q.cached(&key), Some(Secret::Md5("md5x".into())));
        q.forget("app", "db");
        assert_eq!(q.cached(&key), None);
    }

    #[test]
    fn zero_ttl_caches_nothing() {
        let q = auth_query(Duration::ZERO);
        let key = ("db".to_owned(), "app".to_owned());
        q.store(key.clone(), Secret::Md5("md5x".into()));
        assert_eq!(q.cached(&key), None);
    }

    #[test]
    fn auth_dbname_makes_every_database_share_one_entry() {
        let q = AuthQuery::new(&AuthConfig {
            user: Some("pgroute_auth".into()),
            dbname: Some("postgres".into()),
            ..AuthConfig::default()
        })
        .expect("auth_user set");
        q.store(
            ("postgres".into(), "app".into()),
            Secret::Md5("md5x".into()),
        );
        q.forget("app", "any_other_db");
        assert_eq!(q.cached(&("postgres".into(), "app".into())), None);
    }
}
