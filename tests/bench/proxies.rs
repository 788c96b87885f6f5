//! PgBouncer and pgroute, started side by side with the same pool in front of the same primary.
//!
//! Either may fail to start; the failure is kept (not returned) so the other proxy and the direct rows
//! still run, and the failed proxy's rows show why.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::process::ChildGuard;
use crate::{pgbouncer, pgroute};

/// Pool size of both proxies (`default_pool_size`, `--pool-size`), also for the read-scaling runs.
pub const POOL_SIZE: u32 = 20;
/// Client limit of every proxy started (`max_client_conn`), above the largest workload and `--idle`.
pub const MAX_CLIENT_CONN: u32 = 10_000;

pub struct Proxies {
    pub pgbouncer: Result<ChildGuard>,
    pub pgroute: Result<ChildGuard>,
}

impl Proxies {
    /// Starts both with their configs and logs under `dir` (created here), reporting each on stderr.
    pub fn start(primary: SocketAddr, pgroute_binary: &Path, dir: PathBuf) -> Result<Self> {
        std::fs::create_dir(&dir).with_context(|| format!("create {}", dir.display()))?;
        let pgbouncer = pgbouncer::start(&pgbouncer::Options {
            primary,
            pool_size: POOL_SIZE,
            max_client_conn: MAX_CLIENT_CONN,
            dir: dir.join("pgbouncer"),
        });
        let pgroute = pgroute::start(&pgroute::Options {
            binary: pgroute_binary.to_path_buf(),
            primary,
            replicas: Vec::new(),
            pool_size: POOL_SIZE,
            max_client_conn: MAX_CLIENT_CONN,
            log: dir.join("pgroute.log"),
            config: None,
        });
        let proxies = Proxies { pgbouncer, pgroute };
        for (name, proxy) in proxies.named() {
            match proxy {
                Ok(guard) => eprintln!("{name} listening on {}", guard.addr()),
                Err(e) => eprintln!("{name} did not start (its rows show the error): {e:#}"),
            }
        }
        Ok(proxies)
    }

    /// Both, labelled as in the table, PgBouncer (the baseline) first.
    pub fn named(&self) -> [(&'static str, &Result<ChildGuard>); 2] {
        [("PgBouncer", &self.pgbouncer), ("pgroute", &self.pgroute)]
    }
}

/// The innermost cause on one line, for a table cell; the whole chain was printed at start-up.
pub fn not_started(error: &anyhow::Error) -> String {
    let cause = error.root_cause().to_string().replace('\n', " ");
    format!("not started: {cause}")
}
