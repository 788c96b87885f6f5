//! The `pgroute` binary as a user runs it: configuration errors, startup and shutdown, and `pgroute demo`
//! (which starts real PostgreSQL servers).

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn pgroute() -> Command {
    Command::new(env!("CARGO_BIN_EXE_pgroute"))
}

fn run_to_end(cmd: &mut Command) -> (Option<i32>, String, String) {
    let out = cmd.output().expect("pgroute runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn invalid_configuration_is_one_line_naming_the_key_and_exit_2() {
    let dir = std::env::temp_dir().join(format!("pgroute-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec![], "backends.primary"),
        (
            vec![
                "--primary".into(),
                "127.0.0.1:5432".into(),
                "--listen".into(),
                "nowhere".into(),
            ],
            "server.listen",
        ),
        (
            vec![
                "--primary".into(),
                "127.0.0.1:5432".into(),
                "--metrics-listen".into(),
                "nowhere".into(),
            ],
            "server.metrics_listen",
        ),
        (
            vec![
                "--primary".into(),
                "127.0.0.1:5432".into(),
                "--auth-type".into(),
                "md5".into(),
            ],
            "auth.file",
        ),
    ];
    for (args, key) in cases {
        let (code, _, stderr) = run_to_end(pgroute().args(&args));
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains(key), "{args:?}: {stderr}");
    }
    let file = dir.join("bad.toml");
    let mut f = std::fs::File::create(&file).expect("file");
    writeln!(f, "[pool]\npool_sise = 3").expect("write");
    let (code, _, stderr) = run_to_end(pgroute().arg("--config").arg(&file));
    assert_eq!(code, Some(2));
    assert!(stderr.contains("pool_sise"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

#[test]
fn starts_listening_and_stops_on_sigterm() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let mut child = pgroute()
        .args([
            "--primary",
            "127.0.0.1:1",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "never listened");
        std::thread::sleep(Duration::from_millis(50));
    }
    // SIGHUP reloads (here: nothing to reload) and must not end the process, as it would by default.
    let status = Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        child.try_wait().expect("wait").is_none(),
        "SIGHUP ended pgroute"
    );
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            assert!(status.success(), "{status}");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn leftover_cluster_dirs(pid: u32) -> Vec<std::path::PathBuf> {
    let prefix = format!("pgroute-cluster-{pid}-");
    std::fs::read_dir(std::env::temp_dir())
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with(&prefix))
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn demo_runs_a_workload_and_cleans_up() {
    let child = pgroute()
        .args(["demo", "--clients", "8", "--transactions", "30"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let pid = child.id();
    let out = child.wait_with_output().expect("demo ends");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("8 clients shared"), "{stdout}");
    assert!(stdout.contains("0 errors"), "{stdout}");
    assert!(stdout.contains("p99"), "{stdout}");
    assert!(stdout.contains("(primary)"), "{stdout}");
    assert!(stdout.contains("(replica)"), "{stdout}");
    assert!(stdout.contains("cleaned up"), "{stdout}");
    assert!(leftover_cluster_dirs(pid).is_empty());
}

#[test]
fn demo_cleans_up_on_ctrl_c() {
    let mut child = pgroute()
        .args(["demo", "--clients", "4", "--transactions", "1000000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let pid = child.id();
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    // Wait until the workload runs (the cluster exists), then interrupt.
    loop {
        let line = lines.next().expect("demo output").expect("utf-8");
        if line.starts_with("running") {
            break;
        }
    }
    assert!(
        !leftover_cluster_dirs(pid).is_empty(),
        "cluster should exist while running"
    );
    std::thread::sleep(Duration::from_millis(300));
    let status = Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let status = child.wait().expect("demo ends");
    assert_eq!(status.code(), Some(130));
    assert!(
        leftover_cluster_dirs(pid).is_empty(),
        "data directory left behind"
    );
}

/// Sends `sig` (a `kill` name) to `pid`.
fn signal(pid: u32, sig: &str) {
    let status = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "kill -{sig}");
}

/// `psql -c sql` through pgroute on `port`, as a child process.
fn psql(bin: &std::path::Path, port: u16, sql: &str) -> std::process::Child {
    Command::new(bin.join("psql"))
        .args(["-X", "-At", "-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-U", "postgres", "-d", "postgres", "-c", sql])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("psql runs")
}

fn wait_with_deadline(child: &mut std::process::Child, limit: Duration) -> Option<bool> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return Some(status.success());
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// PgBouncer's signals on the real binary: SIGUSR1 pauses (a new transaction waits), SIGUSR2 resumes
/// it, SIGHUP re-reads the config file and applies what changed; the admin console's SHUTDOWN stops it
/// cleanly (SIGTERM is `starts_listening_and_stops_on_sigterm`).
#[test]
fn signals_pause_resume_reload_and_console_shutdown() {
    let cluster = pgroute_cluster::Cluster::start(pgroute_cluster::ClusterOptions {
        replicas: 0,
        ..Default::default()
    })
    .expect("cluster");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let dir = std::env::temp_dir().join(format!("pgroute-signals-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let config = dir.join("pgroute.toml");
    let write_config = |pool_size: u32| {
        std::fs::write(
            &config,
            format!(
                "[server]\nlisten = \"127.0.0.1:{port}\"\n[backends]\nprimary = \"{}\"\n[pool]\npool_size = {pool_size}\n[admin]\nusers = [\"postgres\"]\n",
                cluster.primary().host_port()
            ),
        )
        .expect("config");
    };
    write_config(2);
    let log = dir.join("stderr.log");
    let mut child = pgroute()
        .arg("--config")
        .arg(&config)
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("spawn");
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "never listened");
        std::thread::sleep(Duration::from_millis(50));
    }
    let bin = cluster.bin_dir().to_path_buf();
    assert_eq!(
        wait_with_deadline(&mut psql(&bin, port, "select 1"), Duration::from_secs(10)),
        Some(true)
    );

    signal(pid, "USR1");
    std::thread::sleep(Duration::from_millis(300));
    let mut held = psql(&bin, port, "select 42");
    assert_eq!(
        wait_with_deadline(&mut held, Duration::from_secs(1)),
        None,
        "a transaction ran while paused"
    );
    signal(pid, "USR2");
    assert_eq!(
        wait_with_deadline(&mut held, Duration::from_secs(10)),
        Some(true)
    );
    let out = held.wait_with_output().expect("output");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "42");

    write_config(3);
    signal(pid, "HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("configuration reloaded") && text.contains("pool.pool_size") {
            break;
        }
        assert!(Instant::now() < deadline, "no reload in the log:\n{text}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        wait_with_deadline(&mut psql(&bin, port, "select 1"), Duration::from_secs(10)),
        Some(true)
    );

    // The admin console's SHUTDOWN stops the binary as SIGTERM does.
    let mut shutdown = Command::new(bin.join("psql"))
        .args(["-X", "-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-U", "postgres", "-d", "pgroute", "-c", "SHUTDOWN"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("psql runs");
    let _ = wait_with_deadline(&mut shutdown, Duration::from_secs(10));
    let status = wait_with_deadline(&mut child, Duration::from_secs(10));
    assert_eq!(status, Some(true), "SHUTDOWN did not stop pgroute cleanly");
    std::fs::remove_dir_all(&dir).expect("cleanup");
}
