//! The control plane on loopback: the operator's gRPC service with real tonic clients, and a real
//! sidecar (`pgroute::Running` in managed mode, no database needed: nothing here logs a client in).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use pgroute_operator::control::{ControlService, ProxyKey, ServeOptions, SidecarId, TopologyIndex};
use pgroute_proto::v1::control_client::ControlClient;
use pgroute_proto::v1::{self, Snapshot, WatchRequest};
use tokio::sync::oneshot;
use tonic::transport::Channel;

const DEBOUNCE: Duration = Duration::from_millis(300);

struct Server {
    addr: SocketAddr,
    service: ControlService,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    async fn start(index: TopologyIndex, options: ServeOptions) -> Server {
        Server::start_on("127.0.0.1:0".parse().expect("addr"), index, options).await
    }

    async fn start_on(addr: SocketAddr, index: TopologyIndex, options: ServeOptions) -> Server {
        let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let service = ControlService::new(index, options);
        let server_side = service.clone();
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            let stopped = async {
                let _ = stopped.await;
            };
            if let Err(e) = pgroute_operator::control::serve(server_side, listener, stopped).await {
                eprintln!("control server: {e:?}");
            }
        });
        Server {
            addr,
            service,
            stop: Some(stop),
            task,
        }
    }

    /// Stops the server and closes its connections.
    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut self.task)
            .await
            .expect("the server stops in time");
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

fn key() -> ProxyKey {
    ProxyKey::new("ns", "db")
}

fn who(pod: &str) -> WatchRequest {
    WatchRequest {
        namespace: "ns".into(),
        pod: pod.into(),
        proxy: "db".into(),
        sidecar_version: "test".into(),
    }
}

fn snapshot(primary: &str, replicas: &[&str]) -> Snapshot {
    Snapshot {
        primary: primary.into(),
        replicas: replicas
            .iter()
            .map(|r| v1::Replica {
                address: (*r).into(),
                weight: 1,
                eligible: true,
                ..v1::Replica::default()
            })
            .collect(),
        ..Snapshot::default()
    }
}

async fn client(addr: SocketAddr) -> ControlClient<Channel> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("url")
        .connect()
        .await
        .expect("connect");
    ControlClient::new(channel)
}

async fn next(stream: &mut tonic::Streaming<Snapshot>) -> Snapshot {
    tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .expect("a message within 5s")
        .expect("no error")
        .expect("stream open")
}

#[tokio::test]
async fn subscribe_gets_the_current_snapshot_then_each_change() {
    let index = TopologyIndex::new(DEBOUNCE);
    let v1 = index.publish(&key(), snapshot("db-0:5432", &[]), true);
    let server = Server::start(index.clone(), ServeOptions::default()).await;
    let mut stream = client(server.addr)
        .await
        .watch(who("a"))
        .await
        .expect("watch")
        .into_inner();
    let first = next(&mut stream).await;
    assert_eq!((first.version, first.primary.as_str()), (v1, "db-0:5432"));

    let v2 = index.publish(&key(), snapshot("db-0:5432", &["db-1:5432"]), false);
    let second = next(&mut stream).await;
    assert!(v2 > v1);
    assert_eq!((second.version, second.replicas.len()), (v2, 1));
    server.stop().await;
}

#[tokio::test]
async fn failover_is_pushed_without_the_debounce() {
    let index = TopologyIndex::new(Duration::from_secs(2));
    index.publish(&key(), snapshot("db-0:5432", &["db-1:5432"]), true);
    let server = Server::start(index.clone(), ServeOptions::default()).await;
    let mut stream = client(server.addr)
        .await
        .watch(who("a"))
        .await
        .expect("watch")
        .into_inner();
    next(&mut stream).await;

    let started = Instant::now();
    index.publish(
        &key(),
        snapshot("db-0:5432", &["db-1:5432", "db-2:5432"]),
        false,
    );
    let mut failover = snapshot("db-1:5432", &[]);
    failover.failover = Some(v1::Failover {
        state: v1::FailoverState::None as i32,
        new_primary: String::new(),
    });
    let urgent = index.publish(&key(), failover, true);
    let got = next(&mut stream).await;
    let took = started.elapsed();
    assert_eq!((got.version, got.primary.as_str()), (urgent, "db-1:5432"));
    assert!(
        took < Duration::from_millis(500),
        "urgent took {took:?}, debounce is 2s"
    );
    server.stop().await;
}

#[tokio::test]
async fn quiet_streams_get_resends_and_end_after_their_lifetime() {
    let index = TopologyIndex::new(DEBOUNCE);
    let v = index.publish(&key(), snapshot("db-0:5432", &[]), true);
    let options = ServeOptions {
        resend_interval: Duration::from_millis(200),
        max_stream_lifetime: Duration::from_millis(900),
        ..ServeOptions::default()
    };
    let server = Server::start(index, options).await;
    let mut stream = client(server.addr)
        .await
        .watch(who("a"))
        .await
        .expect("watch")
        .into_inner();
    let mut versions = Vec::new();
    let started = Instant::now();
    while let Some(s) = tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .expect("ends in time")
        .expect("ends with OK")
    {
        versions.push(s.version);
    }
    assert!(
        versions.len() >= 3,
        "the first send and resends: {versions:?}"
    );
    assert!(versions.iter().all(|x| *x == v), "resends keep the version");
    assert!(started.elapsed() >= Duration::from_millis(850));
    server.stop().await;
}

/// A sidecar in managed mode, with nothing that dials a backend on its own.
async fn sidecar(url: &str, pod: &str) -> pgroute::Running {
    let mut config = pgroute::Config::default();
    config.server.listen = "127.0.0.1:0".into();
    config.health.checks = false;
    config.consistency.monitor = false;
    config.control.url = Some(url.into());
    config.control.namespace = Some("ns".into());
    config.control.pod = Some(pod.into());
    config.control.proxy = Some("db".into());
    config.control.backoff_min = Duration::from_millis(50);
    config.control.backoff_max = Duration::from_millis(200);
    pgroute::Running::start(config)
        .await
        .expect("sidecar starts")
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_sidecar_applies_snapshots_and_rejects_bad_ones_keeping_the_old() {
    let index = TopologyIndex::new(Duration::from_millis(50));
    let good = index.publish(
        &key(),
        snapshot("127.0.0.1:6001", &["127.0.0.1:6002"]),
        true,
    );
    let server = Server::start(index.clone(), ServeOptions::default()).await;
    let running = sidecar(&server.url(), "pod-a").await;
    let proxy = running.proxy.clone();
    eventually("the first snapshot applied", || {
        proxy.control_status().applied_version() == good
    })
    .await;
    assert_eq!(proxy.primary().address().to_string(), "127.0.0.1:6001");
    assert_eq!(proxy.replicas().len(), 1);
    let reports = server.service.reports().clone();
    let id = SidecarId {
        namespace: "ns".into(),
        pod: "pod-a".into(),
    };
    eventually("the applied version reported", || {
        reports.get(&id).is_some_and(|s| s.applied == good)
    })
    .await;
    assert_eq!(server.service.in_sync(&key()), (1, 1));

    let bad = index.publish(&key(), snapshot("no-port", &[]), true);
    eventually("the rejection reported", || {
        reports.get(&id).is_some_and(|s| s.rejected.is_some())
    })
    .await;
    let state = reports.get(&id).expect("reported");
    let (version, reason) = state.rejected.expect("rejected");
    assert_eq!(version, bad);
    assert!(reason.contains("primary"), "reason: {reason}");
    assert_eq!(state.applied, good, "the old version stays in force");
    assert_eq!(server.service.in_sync(&key()), (0, 1));
    assert_eq!(proxy.primary().address().to_string(), "127.0.0.1:6001");
    assert_eq!(proxy.control_status().applied_version(), good);
    let status = proxy.control_status().state();
    assert!(status.connected);
    assert!(status.last_error.is_some_and(|e| e.contains("rejected")));
    running.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn a_sidecar_keeps_its_topology_while_the_server_is_down_and_resubscribes() {
    let index = TopologyIndex::new(Duration::from_millis(50));
    let first = index.publish(&key(), snapshot("127.0.0.1:6001", &[]), true);
    let server = Server::start(index.clone(), ServeOptions::default()).await;
    let addr = server.addr;
    let running = sidecar(&server.url(), "pod-b").await;
    let proxy = running.proxy.clone();
    eventually("the first snapshot applied", || {
        proxy.control_status().applied_version() == first
    })
    .await;

    server.stop().await;
    eventually("the sidecar sees the control plane gone", || {
        !proxy.control_status().state().connected
    })
    .await;
    assert_eq!(proxy.primary().address().to_string(), "127.0.0.1:6001");
    assert_eq!(proxy.control_status().applied_version(), first);

    // A restarted operator (same address) with a newer topology: the sidecar gets it on resubscribe.
    let second = index.publish(&key(), snapshot("127.0.0.1:6003", &[]), true);
    let server = Server::start_on(addr, index.clone(), ServeOptions::default()).await;
    eventually("the current snapshot after reconnecting", || {
        proxy.control_status().applied_version() == second
    })
    .await;
    assert_eq!(proxy.primary().address().to_string(), "127.0.0.1:6003");
    assert!(proxy.control_status().state().connected);
    running.stop().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_subscribers_get_an_update_within_a_second() {
    const SUBSCRIBERS: usize = 1000;
    let index = TopologyIndex::new(Duration::from_millis(50));
    index.publish(&key(), snapshot("db-0:5432", &[]), true);
    let server = Server::start(index.clone(), ServeOptions::default()).await;
    // A few HTTP/2 connections, many streams each, as many sidecars behind a few operator replicas
    // would not be; the server's fan-out is per stream either way.
    let mut channels = Vec::new();
    for _ in 0..10 {
        channels.push(client(server.addr).await);
    }
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel(SUBSCRIBERS);
    let (done_tx, mut done_rx) = tokio::sync::mpsc::channel(SUBSCRIBERS);
    for i in 0..SUBSCRIBERS {
        let mut client = channels[i % channels.len()].clone();
        let ready = ready_tx.clone();
        let done = done_tx.clone();
        tokio::spawn(async move {
            let mut stream = client
                .watch(who(&format!("pod-{i}")))
                .await
                .expect("watch")
                .into_inner();
            let first = next(&mut stream).await;
            let _ = ready.send(()).await;
            loop {
                let s = next(&mut stream).await;
                if s.version > first.version {
                    let _ = done.send(Instant::now()).await;
                    return;
                }
            }
        });
    }
    for _ in 0..SUBSCRIBERS {
        ready_rx.recv().await.expect("subscribed");
    }
    let published = Instant::now();
    index.publish(&key(), snapshot("db-1:5432", &[]), true);
    let mut last = published;
    for _ in 0..SUBSCRIBERS {
        let at = tokio::time::timeout(Duration::from_secs(5), done_rx.recv())
            .await
            .expect("every subscriber updated")
            .expect("sender alive");
        last = last.max(at);
    }
    let took = last - published;
    eprintln!("{SUBSCRIBERS} subscribers updated in {took:?}");
    assert!(took < Duration::from_secs(1), "took {took:?}");
    server.stop().await;
}

#[tokio::test]
async fn a_sidecar_without_a_primary_waits_for_the_first_snapshot() {
    let index = TopologyIndex::new(Duration::from_millis(50));
    let server = Server::start(index.clone(), ServeOptions::default()).await;
    let running = sidecar(&server.url(), "pod-c").await;
    let proxy = running.proxy.clone();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let state = proxy.control_status().state();
    assert!(state.managed && state.awaiting_first_snapshot && state.connected);
    let v = index.publish(&key(), snapshot("127.0.0.1:6001", &[]), true);
    eventually("the first snapshot applied", || {
        proxy.control_status().applied_version() == v
    })
    .await;
    assert!(!proxy.control_status().awaiting_first_snapshot());
    assert!(proxy.primary().available());
    running.stop().await;
    server.stop().await;
}
