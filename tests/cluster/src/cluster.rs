//! Building a primary with streaming replicas, and tearing all of it down.
//!
//! Start-up is a sequence of named steps on a `Cluster` that already owns its directory and every node
//! started so far, so a failure at any step (or a panic in the test afterwards) is cleaned up by the same
//! `Drop` that ends a successful run.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use crate::node::Node;
use crate::runner::{self, Runner};
use crate::workdir::ClusterDir;
use crate::{bin_dir, conf, psql, ClusterError, ClusterOptions};

/// How long replicas get to connect to the primary and reach `streaming`.
const STREAMING_TIMEOUT: Duration = Duration::from_secs(60);
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// A running primary and its replicas in a temporary directory; stopped and removed on drop.
#[derive(Debug)]
pub struct Cluster {
    runner: Runner,
    root: PathBuf,
    socket_dir: Option<PathBuf>,
    /// The primary first, then the replicas in order. Never empty once `start` has returned.
    nodes: Vec<Node>,
    /// `None` once stopped, which is what makes `stop` idempotent.
    dir: Option<ClusterDir>,
}

impl Cluster {
    /// Returns once the primary accepts connections and every replica is streaming from it.
    pub fn start(opts: ClusterOptions) -> Result<Cluster, ClusterError> {
        let bin_dir = bin_dir::resolve(opts.pg_bin_dir.as_deref())?;
        let runner = Runner::detect(bin_dir)?;
        let dir = ClusterDir::create()?;
        if runner.as_postgres() {
            dir.give_to_postgres()?;
        }
        let mut cluster = Cluster {
            runner,
            root: dir.path().to_path_buf(),
            socket_dir: dir.socket_dir(),
            nodes: Vec::new(),
            dir: Some(dir),
        };
        cluster.start_primary(&opts)?;
        for index in 1..=opts.replicas {
            cluster.start_replica(index)?;
        }
        cluster.wait_for_streaming(opts.replicas)?;
        Ok(cluster)
    }

    pub fn primary(&self) -> &Node {
        &self.nodes[0]
    }

    pub fn replicas(&self) -> &[Node] {
        &self.nodes[1..]
    }

    /// The PostgreSQL installation in use, for callers that run other tools (`pgbench`, `psql`).
    pub fn bin_dir(&self) -> &Path {
        self.runner.bin_dir()
    }

    /// Runs one statement on `node` and returns its unaligned, tuples-only output, trimmed.
    pub fn psql(&self, node: &Node, sql: &str) -> Result<String, ClusterError> {
        psql::query(&self.runner, node.port, sql)
    }

    /// Stops every node still running and removes the directory. Safe to call more than once; errors
    /// are ignored because this also runs from `Drop`, where there is nobody to report them to.
    pub fn stop(&mut self) {
        if self.dir.is_none() {
            return;
        }
        for node in self.nodes.iter().filter(|n| n.pid().is_some()) {
            let _ = node.stop_immediate();
        }
        self.dir = None;
    }

    fn start_primary(&mut self, opts: &ClusterOptions) -> Result<(), ClusterError> {
        let node = self.new_node("primary".to_owned());
        let mut initdb = self.runner.server("initdb");
        initdb
            .arg("-D")
            .arg(&node.data_dir)
            .args(["-U", "postgres", "-A", "trust", "-E", "UTF8"])
            .args(["--no-locale", "--no-sync", "--no-instructions"]);
        runner::run(&mut initdb)?;
        append(
            &node.data_dir.join("postgresql.conf"),
            &conf::shared_conf(opts),
        )?;
        write(&node.data_dir.join("pg_hba.conf"), conf::HBA_CONF)?;
        self.start_node(node)
    }

    fn start_replica(&mut self, index: usize) -> Result<(), ClusterError> {
        let node = self.new_node(format!("replica{index}"));
        let primary_port = self.primary().port;
        let mut basebackup = self.runner.server("pg_basebackup");
        basebackup
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &primary_port.to_string(),
                "-U",
                "postgres",
            ])
            .arg("-D")
            .arg(&node.data_dir)
            .args(["-X", "stream", "-R", "--no-sync", "--checkpoint=fast"]);
        runner::run(&mut basebackup)?;
        remove_copied_log(&node)?;
        let conninfo = conf::primary_conninfo(primary_port, &node.name);
        append(&node.data_dir.join("postgresql.auto.conf"), &conninfo)?;
        self.start_node(node)
    }

    /// Registers the node before starting it, so teardown covers a start that half-succeeded.
    fn start_node(&mut self, node: Node) -> Result<(), ClusterError> {
        self.nodes.push(node);
        match self.nodes.last_mut() {
            Some(node) => node.start_on_free_port(),
            None => Ok(()),
        }
    }

    fn new_node(&self, name: String) -> Node {
        let data_dir = self.root.join(&name);
        Node::new(name, data_dir, self.runner.clone(), self.socket_dir.clone())
    }

    fn wait_for_streaming(&self, replicas: usize) -> Result<(), ClusterError> {
        let deadline = Instant::now() + STREAMING_TIMEOUT;
        let sql = "select count(*) from pg_stat_replication where state = 'streaming'";
        let expected = replicas.to_string();
        loop {
            let streaming = self.psql(self.primary(), sql)?;
            if streaming == expected {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(ClusterError::Timeout {
                    what: format!("{replicas} replicas to stream (only {streaming} after {STREAMING_TIMEOUT:?})"),
                });
            }
            thread::sleep(POLL_INTERVAL);
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `pg_basebackup` copies the primary's `server.log`; the replica's log should start empty.
fn remove_copied_log(node: &Node) -> Result<(), ClusterError> {
    let path = node.log_path();
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(ClusterError::io(format!("remove {}", path.display()), e))
        }
        _ => Ok(()),
    }
}

fn append(path: &Path, text: &str) -> Result<(), ClusterError> {
    OpenOptions::new()
        .append(true)
        .open(path)
        .and_then(|mut file| file.write_all(text.as_bytes()))
        .map_err(|e| ClusterError::io(format!("append to {}", path.display()), e))
}

fn write(path: &Path, text: &str) -> Result<(), ClusterError> {
    std::fs::write(path, text).map_err(|e| ClusterError::io(format!("write {}", path.display()), e))
}
