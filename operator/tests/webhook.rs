//! The admission webhook over real HTTPS on loopback: certificates made by rcgen, a hyper HTTP/1
//! client over rustls that trusts only the test CA, and the certificate files rewritten under the
//! running server.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::prelude::{Engine as _, BASE64_STANDARD};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::Pod;
use pgroute_operator::crd::DatabaseProxy;
use pgroute_operator::webhook::{self, WebhookOptions};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_rustls::TlsConnector;

const RELOAD: Duration = Duration::from_millis(100);

/// A throwaway CA that signs server certificates for `localhost`, each with its own key and name.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

/// A server certificate: its PEM files' contents and the DER a client sees.
struct Leaf {
    cert_pem: String,
    key_pem: String,
    der: CertificateDer<'static>,
}

impl Ca {
    fn new() -> Ca {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "pgroute webhook test CA");
        let pem = params.self_signed(&key).expect("CA cert").pem();
        Ca {
            issuer: Issuer::new(params, key),
            pem,
        }
    }

    fn leaf(&self, common_name: &str) -> Leaf {
        let key = KeyPair::generate().expect("key");
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .expect("params");
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        let cert = params.signed_by(&key, &self.issuer).expect("signed");
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }

    fn connector(&self) -> TlsConnector {
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(self.pem.as_bytes()) {
            roots.add(cert.expect("CA PEM")).expect("CA");
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("protocols")
        .with_root_certificates(roots)
        .with_no_client_auth();
        TlsConnector::from(Arc::new(config))
    }
}

/// The certificate and key files, in a directory removed on drop.
struct Files {
    dir: PathBuf,
}

impl Files {
    fn new(leaf: &Leaf) -> Files {
        let dir = std::env::temp_dir().join(format!(
            "pgroute-webhook-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let files = Files { dir };
        files.write(leaf);
        files
    }

    fn cert(&self) -> PathBuf {
        self.dir.join("tls.crt")
    }

    fn key(&self) -> PathBuf {
        self.dir.join("tls.key")
    }

    /// Certificate first, then key, as two separate writes: a reload may see the new certificate
    /// with the old key in between, which must not break anything.
    fn write(&self, leaf: &Leaf) {
        std::fs::write(self.cert(), &leaf.cert_pem).expect("write cert");
        std::fs::write(self.key(), &leaf.key_pem).expect("write key");
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn orders_db() -> Arc<DatabaseProxy> {
    let proxy = json!({
        "apiVersion": "pgroute.dev/v1alpha1",
        "kind": "DatabaseProxy",
        "metadata": { "name": "orders-db", "namespace": "shop" },
        "spec": {
            "target": { "endpoints": [{ "host": "pg-0", "role": "primary" }] },
            "credentials": { "secretName": "pg-app" },
            "podSelector": { "matchLabels": { "app.kubernetes.io/name": "orders" } },
        }
    });
    Arc::new(serde_json::from_value(proxy).expect("a DatabaseProxy"))
}

struct Server {
    addr: std::net::SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), webhook::ServeError>>,
}

impl Server {
    async fn start(files: &Files) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let options = WebhookOptions {
            cert_file: files.cert(),
            key_file: files.key(),
            reload_interval: RELOAD,
            ..WebhookOptions::default()
        };
        let proxies = |namespace: &str| {
            let proxy = orders_db();
            if proxy.metadata.namespace.as_deref() == Some(namespace) {
                vec![proxy]
            } else {
                Vec::new()
            }
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(webhook::serve(listener, options, proxies, async {
            let _ = stopped.await;
        }));
        Server {
            addr,
            stop: Some(stop),
            task,
        }
    }

    async fn connect(&self, ca: &Ca) -> Client {
        let tcp = TcpStream::connect(self.addr).await.expect("connect");
        let name = ServerName::try_from("localhost").expect("name");
        let tls = ca.connector().connect(name, tcp).await.expect("handshake");
        let peer = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first())
            .expect("a server certificate")
            .clone()
            .into_owned();
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .expect("HTTP/1 handshake");
        tokio::spawn(conn);
        Client { sender, peer }
    }

    /// A new connection's certificate, polled until it is `want` or `deadline` passes.
    async fn await_certificate(&self, ca: &Ca, want: &CertificateDer<'_>) -> Client {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let client = self.connect(ca).await;
            if client.peer == *want {
                return client;
            }
            assert!(
                Instant::now() < deadline,
                "the new certificate is not served after 10s"
            );
            tokio::time::sleep(RELOAD / 2).await;
        }
    }

    async fn stop(mut self) -> Result<(), webhook::ServeError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("the server stops in time")
            .expect("the server task does not panic")
    }
}

struct Client {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    peer: CertificateDer<'static>,
}

impl Client {
    async fn send(&mut self, method: Method, path: &str, body: Vec<u8>) -> (StatusCode, Bytes) {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "localhost")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .expect("request");
        let response = self.sender.send_request(request).await.expect("response");
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        (status, body)
    }

    /// POSTs an AdmissionReview and returns the answer's `response`.
    async fn review(&mut self, review: &[u8]) -> Value {
        let (status, body) = self.send(Method::POST, "/mutate", review.to_vec()).await;
        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
        let answer: Value = serde_json::from_slice(&body).expect("JSON answer");
        assert_eq!(answer["kind"], "AdmissionReview");
        answer["response"].clone()
    }
}

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/fixtures/admission/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[tokio::test]
async fn a_matching_pod_is_injected_over_https() {
    let ca = Ca::new();
    let leaf = ca.leaf("webhook-a");
    let files = Files::new(&leaf);
    let server = Server::start(&files).await;
    let mut client = server.connect(&ca).await;
    assert_eq!(client.peer, leaf.der);

    let body = fixture("labels-match-bare.json");
    let response = client.review(&body).await;
    let request: Value = serde_json::from_slice(&body).expect("fixture");
    assert_eq!(response["uid"], request["request"]["uid"]);
    assert_eq!(response["allowed"], true);
    assert_eq!(response["patchType"], "JSONPatch");
    let patch = BASE64_STANDARD
        .decode(response["patch"].as_str().expect("a base64 patch"))
        .expect("base64");
    let patch: json_patch::Patch = serde_json::from_slice(&patch).expect("a JSON patch");
    let mut pod = request["request"]["object"].clone();
    json_patch::patch(&mut pod, &patch).expect("applies");
    let pod: Pod = serde_json::from_value(pod).expect("a Pod");
    let init = pod
        .spec
        .and_then(|s| s.init_containers)
        .expect("init containers");
    assert_eq!(init[0].name, "pgroute");
    assert_eq!(init[0].restart_policy.as_deref(), Some("Always"));

    // A pod nothing selects: allowed, no patch. Same connection (kept alive).
    let response = client.review(&fixture("no-match.json")).await;
    assert_eq!(response["allowed"], true);
    assert_eq!(response.get("patch"), None);

    let (status, _) = client.send(Method::GET, "/healthz", Vec::new()).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = client
        .send(Method::POST, "/mutate", b"{\"not\": \"a review\"".to_vec())
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = client.send(Method::GET, "/mutate", Vec::new()).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);

    server.stop().await.expect("a clean stop");
}

#[tokio::test]
async fn a_renewed_certificate_is_served_to_new_connections_and_garbage_is_ignored() {
    let ca = Ca::new();
    let first = ca.leaf("webhook-first");
    let files = Files::new(&first);
    let server = Server::start(&files).await;
    let mut before = server.connect(&ca).await;
    assert_eq!(before.peer, first.der);

    // Renewal: a new key and certificate, written in two steps.
    let second = ca.leaf("webhook-second");
    assert_ne!(second.der, first.der);
    files.write(&second);
    let mut after = server.await_certificate(&ca, &second.der).await;
    let review = fixture("labels-match-bare.json");
    assert!(after.review(&review).await.get("patch").is_some());
    // The connection made before the renewal keeps working.
    assert!(before.review(&review).await.get("patch").is_some());

    // A broken certificate file: logged, and the second certificate keeps being served.
    std::fs::write(files.cert(), b"-----BEGIN CERTIFICATE-----\nnot base64\n").expect("write");
    tokio::time::sleep(RELOAD * 5).await;
    let mut still = server.connect(&ca).await;
    assert_eq!(still.peer, second.der);
    assert!(still.review(&review).await.get("patch").is_some());

    // …and the next good pair is picked up: the reloader survived the garbage.
    let third = ca.leaf("webhook-third");
    files.write(&third);
    server.await_certificate(&ca, &third.der).await;

    server.stop().await.expect("a clean stop");
}

#[tokio::test]
async fn the_server_does_not_start_without_a_valid_pair() {
    let ca = Ca::new();
    let leaf = ca.leaf("webhook");
    let files = Files::new(&leaf);
    // The key of another certificate.
    std::fs::write(files.key(), ca.leaf("other").key_pem).expect("write");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let options = WebhookOptions {
        cert_file: files.cert(),
        key_file: files.key(),
        ..WebhookOptions::default()
    };
    let no_proxies = |_: &str| Vec::<Arc<DatabaseProxy>>::new();
    let started = tokio::time::timeout(
        Duration::from_secs(5),
        webhook::serve(listener, options, no_proxies, std::future::pending()),
    )
    .await
    .expect("fails at once");
    assert!(
        matches!(started, Err(webhook::ServeError::Certificate(_))),
        "{started:?}"
    );
}
