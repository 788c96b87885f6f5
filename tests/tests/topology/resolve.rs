//! `topology::instances` and `topology::login` with the real `kube::Client` against the fake API
//! server: Services and their EndpointSlices, EndpointSlices alone, a CloudNativePG Cluster and its
//! Pods (as dynamic objects), Secrets, and the errors a user would see in the status.

use k8s_openapi::api::core::v1::{Pod, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::ByteString;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use pgroute_operator::crd::{Credentials, DatabaseTarget, EndpointRole};
use pgroute_operator::topology::{self, Instance, ResolveError};
use pgroute_tests::kube_api::FakeApiServer;
use serde_json::{json, Value};

const NS: &str = "shop";

async fn start() -> anyhow::Result<(FakeApiServer, kube::Client)> {
    let server = FakeApiServer::start().await?;
    let client = kube::Client::try_from(kube::Config::new(server.url().parse()?))?;
    Ok((server, client))
}

async fn create<K>(client: &kube::Client, object: Value) -> anyhow::Result<K>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + k8s_openapi::serde::Serialize
        + k8s_openapi::serde::de::DeserializeOwned,
{
    let object: K = serde_json::from_value(object)?;
    Ok(Api::<K>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &object)
        .await?)
}

fn target(value: Value) -> anyhow::Result<DatabaseTarget> {
    Ok(serde_json::from_value(value)?)
}

fn found(address: &str, declared: Option<EndpointRole>) -> Instance {
    Instance {
        address: address.into(),
        declared,
    }
}

async fn service(client: &kube::Client, name: &str, labels: Value) -> anyhow::Result<()> {
    create::<Service>(
        client,
        json!({"metadata": {"name": name, "labels": labels}, "spec": {"ports": [{"name": "postgres", "port": 5432}]}}),
    )
    .await?;
    Ok(())
}

/// An EndpointSlice with `labels`, the given ports, and endpoints `(address, ready)`.
async fn slice(
    client: &kube::Client,
    name: &str,
    labels: Value,
    ports: Value,
    endpoints: &[(&str, Option<bool>)],
) -> anyhow::Result<()> {
    let endpoints: Vec<Value> = endpoints
        .iter()
        .map(|(address, ready)| match ready {
            Some(ready) => json!({"addresses": [address], "conditions": {"ready": ready}}),
            None => json!({"addresses": [address]}),
        })
        .collect();
    create::<EndpointSlice>(
        client,
        json!({
            "metadata": {"name": name, "labels": labels},
            "addressType": "IPv4",
            "ports": ports,
            "endpoints": endpoints,
        }),
    )
    .await?;
    Ok(())
}

#[tokio::test]
async fn services_resolve_to_the_ready_endpoints_of_their_slices() -> anyhow::Result<()> {
    let (_server, client) = start().await?;
    service(
        &client,
        "orders-a",
        json!({"app": "orders-db", "pgroute.dev/target": "yes"}),
    )
    .await?;
    service(
        &client,
        "orders-b",
        json!({"app": "orders-db", "pgroute.dev/target": "yes"}),
    )
    .await?;
    service(
        &client,
        "orders-legacy",
        json!({"app": "orders-db", "legacy": "true"}),
    )
    .await?;
    service(&client, "billing", json!({"app": "billing-db"})).await?;
    let ports = json!([{"name": "metrics", "port": 9187}, {"name": "postgres", "port": 5433}]);
    slice(
        &client,
        "orders-a-1",
        json!({"kubernetes.io/service-name": "orders-a"}),
        ports.clone(),
        &[
            ("10.0.0.12", Some(true)),
            ("10.0.0.11", None),
            ("10.0.0.13", Some(false)),
        ],
    )
    .await?;
    slice(
        &client,
        "orders-b-1",
        json!({"kubernetes.io/service-name": "orders-b"}),
        ports.clone(),
        &[("10.0.0.12", Some(true)), ("10.0.0.14", Some(true))],
    )
    .await?;
    for (svc, address) in [("orders-legacy", "10.0.0.90"), ("billing", "10.0.0.91")] {
        slice(
            &client,
            &format!("{svc}-1"),
            json!({"kubernetes.io/service-name": svc}),
            ports.clone(),
            &[(address, Some(true))],
        )
        .await?;
    }

    let by_name = target(json!({"selector": {
        "selector": {
            "matchLabels": {"app": "orders-db"},
            "matchExpressions": [
                {"key": "pgroute.dev/target", "operator": "Exists"},
                {"key": "legacy", "operator": "DoesNotExist"},
            ],
        },
        "port": "postgres",
    }}))?;
    assert_eq!(
        topology::instances(&client, NS, &by_name).await?,
        [
            found("10.0.0.11:5433", None),
            found("10.0.0.12:5433", None),
            found("10.0.0.14:5433", None),
        ],
        "ready (or unset) endpoints of both Services at the named port, each once, sorted"
    );

    let default_port =
        target(json!({"selector": {"selector": {"matchLabels": {"app": "billing-db"}}}}))?;
    assert_eq!(
        topology::instances(&client, NS, &default_port).await?,
        [found("10.0.0.91:5432", None)]
    );

    let unknown_port = target(json!({"selector": {
        "selector": {"matchLabels": {"app": "billing-db"}},
        "port": "pg",
    }}))?;
    let err = topology::instances(&client, NS, &unknown_port)
        .await
        .expect_err("no such port");
    assert_eq!(
        err.to_string(),
        "no database instances found: 1 EndpointSlice(s) for `app=billing-db` in namespace `shop` have no ready endpoint with a port named `pg`"
    );

    let nothing = target(json!({"selector": {"selector": {"matchLabels": {"app": "nope"}}}}))?;
    let err = topology::instances(&client, NS, &nothing)
        .await
        .expect_err("no Service");
    assert_eq!(
        err.to_string(),
        "no database instances found: no Service in namespace `shop` matches `app=nope`"
    );
    Ok(())
}

#[tokio::test]
async fn endpoint_slices_can_be_selected_directly() -> anyhow::Result<()> {
    let (_server, client) = start().await?;
    let ports = json!([{"name": "postgres", "port": 5432}]);
    slice(
        &client,
        "pg-a",
        json!({"db": "orders"}),
        ports.clone(),
        &[("10.1.0.2", Some(true))],
    )
    .await?;
    slice(
        &client,
        "pg-b",
        json!({"db": "orders"}),
        ports.clone(),
        &[("10.1.0.1", Some(true))],
    )
    .await?;
    slice(
        &client,
        "other",
        json!({"db": "billing"}),
        ports,
        &[("10.1.0.9", Some(true))],
    )
    .await?;
    let t = target(json!({"selector": {
        "kind": "endpointSlice",
        "selector": {"matchLabels": {"db": "orders"}},
        "port": 6432,
    }}))?;
    assert_eq!(
        topology::instances(&client, NS, &t).await?,
        [found("10.1.0.1:6432", None), found("10.1.0.2:6432", None)],
        "a port number is used as is"
    );
    Ok(())
}

#[tokio::test]
async fn fixed_endpoints_need_no_api_server() -> anyhow::Result<()> {
    // Nothing listens here: any request would fail.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let client = kube::Client::try_from(kube::Config::new(format!("http://{closed}").parse()?))?;
    let t = target(json!({"endpoints": [
        {"host": "pg-0.db", "role": "primary"},
        {"host": "pg-1.db", "port": 5433, "role": "replica"},
    ]}))?;
    assert_eq!(
        topology::instances(&client, NS, &t).await?,
        [
            found("pg-0.db:5432", Some(EndpointRole::Primary)),
            found("pg-1.db:5433", Some(EndpointRole::Replica)),
        ]
    );
    Ok(())
}

fn cnpg_cluster() -> ApiResource {
    ApiResource {
        group: "postgresql.cnpg.io".into(),
        version: "v1".into(),
        api_version: "postgresql.cnpg.io/v1".into(),
        kind: "Cluster".into(),
        plural: "clusters".into(),
    }
}

/// A Pod with `status.podIP` (written through the status subresource, as the kubelet does).
async fn pod(client: &kube::Client, name: &str, ip: Option<&str>) -> anyhow::Result<()> {
    create::<Pod>(
        client,
        json!({"metadata": {"name": name, "labels": {"cnpg.io/cluster": "orders"}},
               "spec": {"containers": [{"name": "postgres", "image": "postgres"}]}}),
    )
    .await?;
    if let Some(ip) = ip {
        Api::<Pod>::namespaced(client.clone(), NS)
            .patch_status(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"podIP": ip}})),
            )
            .await?;
    }
    Ok(())
}

#[tokio::test]
async fn a_cloudnativepg_cluster_resolves_to_its_instance_pods() -> anyhow::Result<()> {
    let (_server, client) = start().await?;
    let clusters = Api::<DynamicObject>::namespaced_with(client.clone(), NS, &cnpg_cluster());
    let mut cluster = DynamicObject::new("orders", &cnpg_cluster()).within(NS);
    cluster.data = json!({"spec": {"instances": 4}});
    clusters.create(&PostParams::default(), &cluster).await?;
    let t = target(json!({"cloudNativePG": {"name": "orders"}}))?;

    let err = topology::instances(&client, NS, &t)
        .await
        .expect_err("no status yet");
    assert_eq!(
        err.to_string(),
        "no database instances found: CloudNativePG Cluster `orders` in namespace `shop` lists no instances in its status yet"
    );

    clusters
        .patch_status(
            "orders",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {
                "currentPrimary": "orders-2",
                "instanceNames": ["orders-1", "orders-2", "orders-3", "orders-4"],
            }})),
        )
        .await?;
    pod(&client, "orders-1", Some("10.2.0.31")).await?;
    pod(&client, "orders-2", Some("10.2.0.12")).await?;
    pod(&client, "orders-3", None).await?;
    // orders-4 has no Pod yet.
    assert_eq!(
        topology::instances(&client, NS, &t).await?,
        [
            found("10.2.0.12:5432", Some(EndpointRole::Primary)),
            found("10.2.0.31:5432", Some(EndpointRole::Replica)),
        ],
        "Pods without an IP (or without a Pod) are skipped"
    );

    let missing = target(json!({"cloudNativePG": {"name": "inventory"}}))?;
    let err = topology::instances(&client, NS, &missing)
        .await
        .expect_err("no such Cluster");
    assert!(
        matches!(err, ResolveError::ClusterNotFound { .. }),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "CloudNativePG Cluster `inventory` not found in namespace `shop` (is the name right, and CloudNativePG installed?)"
    );
    Ok(())
}

fn credentials(secret: &str) -> Credentials {
    Credentials {
        secret_name: secret.into(),
        username_key: "username".into(),
        password_key: "password".into(),
    }
}

#[tokio::test]
async fn the_login_comes_from_the_secret() -> anyhow::Result<()> {
    let (_server, client) = start().await?;
    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some("orders-app".into()),
            ..Default::default()
        },
        data: Some(
            [
                ("username", b"app".to_vec()),
                ("password", "pässword".as_bytes().to_vec()),
                ("user", b"typo".to_vec()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), ByteString(v)))
            .collect(),
        ),
        ..Default::default()
    };
    let secrets = Api::<Secret>::namespaced(client.clone(), NS);
    secrets.create(&PostParams::default(), &secret).await?;

    let login = topology::login(&client, NS, &credentials("orders-app")).await?;
    assert_eq!(
        (
            login.user.as_str(),
            login.password.as_str(),
            login.dbname.as_str()
        ),
        ("app", "pässword", "postgres")
    );

    let err = topology::login(&client, NS, &credentials("orders"))
        .await
        .expect_err("no such Secret");
    assert_eq!(
        err.to_string(),
        "Secret `orders` not found in namespace `shop`"
    );

    let wrong_key = Credentials {
        username_key: "login".into(),
        ..credentials("orders-app")
    };
    let err = topology::login(&client, NS, &wrong_key)
        .await
        .expect_err("no such key");
    assert_eq!(
        err.to_string(),
        "Secret `orders-app` has no key `login` (it has: password, user, username)"
    );

    let binary = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some("binary".into()),
            ..Default::default()
        },
        data: Some(
            [
                ("username".to_owned(), ByteString(b"app".to_vec())),
                ("password".to_owned(), ByteString(vec![0xff, 0xfe])),
            ]
            .into(),
        ),
        ..Default::default()
    };
    secrets.create(&PostParams::default(), &binary).await?;
    let err = topology::login(&client, NS, &credentials("binary"))
        .await
        .expect_err("not text");
    assert_eq!(
        err.to_string(),
        "Secret `binary`: the value of `password` is not UTF-8 text"
    );
    Ok(())
}

#[tokio::test]
async fn api_errors_say_what_was_being_read() -> anyhow::Result<()> {
    let (_server, client) = start().await?;
    // The fake refuses set-based selectors with 400, as a stand-in for any API error.
    let t = target(json!({"selector": {"selector": {"matchExpressions": [
        {"key": "app", "operator": "In", "values": ["orders-db"]},
    ]}}}))?;
    let err = topology::instances(&client, NS, &t)
        .await
        .expect_err("refused by the fake");
    let message = err.to_string();
    assert!(
        message.starts_with(
            "listing Services matching `app in (orders-db)` in namespace `shop`: set-based selector"
        ) && message.ends_with("(400 BadRequest)"),
        "{message}"
    );
    assert!(matches!(err, ResolveError::Kube { .. }));
    assert!(
        std::error::Error::source(&err).is_some(),
        "the kube error is kept"
    );
    Ok(())
}
