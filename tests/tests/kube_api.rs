//! The fake Kubernetes API server (`pgroute_tests::kube_api`) driven by the real `kube::Client`:
//! what the operator will rely on — CRUD with resource versions, finalizers, patches, server-side
//! apply, the status subresource, watches, Leases and Events, the CRD's schema and CEL rules,
//! discovery, and the request log RBAC checks read.

use std::time::Duration;

use anyhow::Context;
use futures_util::{StreamExt, TryStreamExt};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::runtime::watcher;
use pgroute_operator::crd::{DatabaseProxy, DatabaseProxyStatus};
use pgroute_tests::kube_api::{FakeApiServer, Request};
use serde_json::{json, Value};

const NS: &str = "shop";

async fn client(server: &FakeApiServer) -> anyhow::Result<kube::Client> {
    let config = kube::Config::new(server.url().parse()?);
    Ok(kube::Client::try_from(config)?)
}

fn proxy(name: &str) -> anyhow::Result<DatabaseProxy> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "pgroute.dev/v1alpha1",
        "kind": "DatabaseProxy",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "target": {"endpoints": [{"host": "pg-0", "port": 5432, "role": "primary"}]},
            "credentials": {"secretName": "db"},
            "podSelector": {"matchLabels": {"app": "orders"}},
        },
    }))?)
}

/// The fixture with `spec` merged into its spec (RFC 7386: `null` removes a field).
fn proxy_with(name: &str, spec: Value) -> anyhow::Result<DatabaseProxy> {
    let mut object = serde_json::to_value(proxy(name)?)?;
    json_patch::merge(&mut object, &json!({ "spec": spec }));
    Ok(serde_json::from_value(object)?)
}

/// The checked-in CRD, as `kubectl apply` would install it.
fn crd_from_repo() -> anyhow::Result<Value> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../crds/databaseproxies.pgroute.dev.yaml"
    );
    let yaml = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    Ok(yaml_serde::from_str(&yaml)?)
}

/// `details.causes` of a 422, as `(field, message)`.
fn causes(err: &kube::Error) -> Vec<(String, String)> {
    match err {
        kube::Error::Api(status) => status
            .details
            .iter()
            .flat_map(|d| &d.causes)
            .map(|c| (c.field.clone(), c.message.clone()))
            .collect(),
        _ => Vec::new(),
    }
}

fn api_status(err: &kube::Error) -> Option<(u16, String)> {
    match err {
        kube::Error::Api(status) => Some((status.code, status.reason.clone())),
        _ => None,
    }
}

async fn start() -> anyhow::Result<(FakeApiServer, Api<DatabaseProxy>)> {
    let server = FakeApiServer::start().await?;
    let api = Api::namespaced(client(&server).await?, NS);
    Ok((server, api))
}

#[tokio::test]
async fn create_get_and_already_exists() -> anyhow::Result<()> {
    let (_server, api) = start().await?;
    let created = api
        .create(&PostParams::default(), &proxy("orders")?)
        .await?;
    assert!(created.metadata.uid.is_some());
    assert!(created.metadata.resource_version.is_some());
    assert!(created.metadata.creation_timestamp.is_some());
    assert_eq!(created.metadata.generation, Some(1));
    assert_eq!(api.get("orders").await?, created);

    let err = api
        .create(&PostParams::default(), &proxy("orders")?)
        .await
        .expect_err("duplicate");
    assert_eq!(api_status(&err), Some((409, "AlreadyExists".into())));
    let err = api.get("missing").await.expect_err("missing");
    assert_eq!(api_status(&err), Some((404, "NotFound".into())));
    assert_eq!(api.get_opt("missing").await?, None);
    Ok(())
}

#[tokio::test]
async fn list_paginates_with_limit_and_continue() -> anyhow::Result<()> {
    let (_server, api) = start().await?;
    for i in 0..5 {
        api.create(&PostParams::default(), &proxy(&format!("p{i}"))?)
            .await?;
    }
    let first = api.list(&ListParams::default().limit(2)).await?;
    assert_eq!(first.items.len(), 2);
    assert!(first.metadata.resource_version.is_some());
    let mut names: Vec<String> = first
        .items
        .iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    let mut token = first.metadata.continue_.clone();
    while let Some(t) = token.filter(|t| !t.is_empty()) {
        let page = api
            .list(&ListParams::default().limit(2).continue_token(&t))
            .await?;
        names.extend(page.items.iter().filter_map(|p| p.metadata.name.clone()));
        token = page.metadata.continue_;
    }
    assert_eq!(names, ["p0", "p1", "p2", "p3", "p4"]);
    assert_eq!(api.list(&ListParams::default()).await?.items.len(), 5);
    Ok(())
}

#[tokio::test]
async fn replace_conflicts_on_stale_resource_version_and_bumps_generation_on_spec_change(
) -> anyhow::Result<()> {
    let (_server, api) = start().await?;
    let created = api
        .create(&PostParams::default(), &proxy("orders")?)
        .await?;

    let mut labelled = created.clone();
    labelled.metadata.labels = Some([("team".to_owned(), "db".to_owned())].into());
    let labelled = api
        .replace("orders", &PostParams::default(), &labelled)
        .await?;
    assert_eq!(
        labelled.metadata.generation,
        Some(1),
        "metadata-only change"
    );

    let mut changed = labelled.clone();
    changed.spec.credentials.secret_name = "db2".into();
    let changed = api
        .replace("orders", &PostParams::default(), &changed)
        .await?;
    assert_eq!(changed.metadata.generation, Some(2));

    // `created` carries the first resource version: stale now.
    let err = api
        .replace("orders", &PostParams::default(), &created)
        .await
        .expect_err("stale");
    assert_eq!(api_status(&err), Some((409, "Conflict".into())));
    Ok(())
}

#[tokio::test]
async fn delete_waits_for_finalizers() -> anyhow::Result<()> {
    let (_server, api) = start().await?;
    let mut p = proxy("orders")?;
    p.metadata.finalizers = Some(vec!["pgroute.dev/drain".into()]);
    api.create(&PostParams::default(), &p).await?;

    let pending = api.delete("orders", &DeleteParams::default()).await?;
    let pending = pending
        .left()
        .context("still there while a finalizer remains")?;
    assert!(pending.metadata.deletion_timestamp.is_some());
    let still = api.get("orders").await?;
    assert!(still.metadata.deletion_timestamp.is_some());

    api.patch(
        "orders",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await?;
    assert_eq!(api.get_opt("orders").await?, None);

    api.create(&PostParams::default(), &proxy("plain")?).await?;
    let gone = api.delete("plain", &DeleteParams::default()).await?;
    assert!(gone.is_right(), "deleted at once without finalizers");
    assert_eq!(api.get_opt("plain").await?, None);
    Ok(())
}

#[tokio::test]
async fn merge_and_json_patches() -> anyhow::Result<()> {
    let (_server, api) = start().await?;
    api.create(&PostParams::default(), &proxy("orders")?)
        .await?;
    let pp = PatchParams::default();

    let merged = api
        .patch(
            "orders",
            &pp,
            &Patch::Merge(json!({"spec": {"credentials": {"secretName": "merged"}}})),
        )
        .await?;
    assert_eq!(merged.spec.credentials.secret_name, "merged");
    assert_eq!(merged.metadata.generation, Some(2));

    let ops: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/spec/credentials/secretName", "value": "merged"},
        {"op": "replace", "path": "/spec/credentials/secretName", "value": "patched"},
    ]))?;
    let patched = api.patch("orders", &pp, &Patch::Json::<()>(ops)).await?;
    assert_eq!(patched.spec.credentials.secret_name, "patched");

    let failing: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/spec/credentials/secretName", "value": "merged"},
        {"op": "replace", "path": "/spec/credentials/secretName", "value": "never"},
    ]))?;
    let err = api
        .patch("orders", &pp, &Patch::Json::<()>(failing))
        .await
        .expect_err("test op fails");
    assert_eq!(api_status(&err), Some((422, "Invalid".into())));
    assert_eq!(
        api.get("orders").await?.spec.credentials.secret_name,
        "patched"
    );

    // As the real server: a `test` for null passes on a missing path (kube-runtime's finalizer
    // helper adds the first finalizer this way); for a value, it fails.
    let first_finalizer: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/metadata/finalizers", "value": null},
        {"op": "add", "path": "/metadata/finalizers", "value": ["pgroute.dev/drain"]},
    ]))?;
    let with = api
        .patch("orders", &pp, &Patch::Json::<()>(first_finalizer))
        .await?;
    assert_eq!(
        with.metadata.finalizers,
        Some(vec!["pgroute.dev/drain".to_owned()])
    );
    let wrong: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/metadata/labels", "value": {"a": "b"}},
    ]))?;
    let err = api
        .patch("orders", &pp, &Patch::Json::<()>(wrong))
        .await
        .expect_err("test of a missing path for a value fails");
    assert_eq!(api_status(&err), Some((422, "Invalid".into())));
    Ok(())
}

#[tokio::test]
async fn server_side_apply_creates_then_updates() -> anyhow::Result<()> {
    let (_server, api) = start().await?;
    let pp = PatchParams::apply("pgroute-operator").force();
    let created = api
        .patch("orders", &pp, &Patch::Apply(proxy("orders")?))
        .await?;
    assert_eq!(created.metadata.generation, Some(1));

    let mut desired = proxy("orders")?;
    desired.spec.credentials.secret_name = "applied".into();
    let updated = api.patch("orders", &pp, &Patch::Apply(&desired)).await?;
    assert_eq!(updated.spec.credentials.secret_name, "applied");
    assert_eq!(updated.metadata.uid, created.metadata.uid);
    assert_eq!(updated.metadata.generation, Some(2));

    // Applying the same thing again writes nothing.
    let again = api.patch("orders", &pp, &Patch::Apply(&desired)).await?;
    assert_eq!(
        again.metadata.resource_version,
        updated.metadata.resource_version
    );
    Ok(())
}

#[tokio::test]
async fn status_subresource_is_isolated_from_the_main_resource() -> anyhow::Result<()> {
    let (_server, api) = start().await?;
    let mut with_status = proxy("orders")?;
    with_status.status = Some(DatabaseProxyStatus {
        primary: Some("ignored:1".into()),
        ..DatabaseProxyStatus::default()
    });
    let created = api.create(&PostParams::default(), &with_status).await?;
    assert_eq!(created.status, None, "create ignores status");

    let status = json!({"status": {"primary": "pg-0:5432", "replicasReady": 2}, "spec": {"credentials": {"secretName": "sneaky"}}});
    let patched = api
        .patch_status("orders", &PatchParams::default(), &Patch::Merge(&status))
        .await?;
    assert_eq!(
        patched.status.as_ref().and_then(|s| s.primary.as_deref()),
        Some("pg-0:5432")
    );
    assert_eq!(
        patched.spec.credentials.secret_name, "db",
        "status writes leave spec alone"
    );
    assert_eq!(patched.metadata.generation, Some(1));

    let mut replaced = patched.clone();
    replaced.status = None;
    replaced.spec.credentials.secret_name = "db2".into();
    let replaced = api
        .replace("orders", &PostParams::default(), &replaced)
        .await?;
    assert_eq!(replaced.spec.credentials.secret_name, "db2");
    assert_eq!(
        replaced.status, patched.status,
        "main writes leave status alone"
    );

    let by_status = api.get_status("orders").await?;
    assert_eq!(by_status.status, patched.status);
    Ok(())
}

#[tokio::test]
async fn watch_sees_added_modified_deleted_in_order_and_bookmarks() -> anyhow::Result<()> {
    let (_server, api) = start().await?;
    let rv = api
        .list(&ListParams::default())
        .await?
        .metadata
        .resource_version
        .unwrap_or_default();
    let mut stream = api
        .watch(&WatchParams::default().timeout(10), &rv)
        .await?
        .boxed();

    api.create(&PostParams::default(), &proxy("orders")?)
        .await?;
    api.patch(
        "orders",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"a": "b"}}})),
    )
    .await?;
    api.delete("orders", &DeleteParams::default()).await?;

    let mut seen = Vec::new();
    while seen.len() < 3 {
        let event = tokio::time::timeout(Duration::from_secs(5), stream.try_next())
            .await
            .context("watch event")??
            .context("watch ended")?;
        match event {
            WatchEvent::Added(p) => seen.push(("ADDED", p.metadata.resource_version)),
            WatchEvent::Modified(p) => seen.push(("MODIFIED", p.metadata.resource_version)),
            WatchEvent::Deleted(p) => seen.push(("DELETED", p.metadata.resource_version)),
            WatchEvent::Bookmark(_) => {}
            WatchEvent::Error(e) => anyhow::bail!("watch error {e:?}"),
        }
    }
    let kinds: Vec<&str> = seen.iter().map(|(k, _)| *k).collect();
    assert_eq!(kinds, ["ADDED", "MODIFIED", "DELETED"]);
    let rvs: Vec<u64> = seen
        .iter()
        .filter_map(|(_, rv)| rv.as_deref()?.parse().ok())
        .collect();
    assert!(
        rvs.windows(2).all(|w| w[0] < w[1]),
        "resource versions increase: {rvs:?}"
    );

    // A bookmark arrives within the bookmark interval.
    let bookmark = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Some(WatchEvent::Bookmark(b)) = stream.try_next().await? {
                return anyhow::Ok(b);
            }
        }
    })
    .await??;
    assert!(bookmark.metadata.resource_version.parse::<u64>()? >= rvs[2]);
    Ok(())
}

#[tokio::test]
async fn runtime_watcher_lists_then_follows() -> anyhow::Result<()> {
    let (_server, api) = start().await?;
    api.create(&PostParams::default(), &proxy("before")?)
        .await?;
    let mut events = watcher(api.clone(), watcher::Config::default()).boxed();
    let mut initial = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(5), events.try_next())
            .await??
            .context("ended")?
        {
            watcher::Event::InitApply(p) => initial.extend(p.metadata.name),
            watcher::Event::InitDone => break,
            _ => {}
        }
    }
    assert_eq!(initial, ["before"]);
    api.create(&PostParams::default(), &proxy("after")?).await?;
    api.delete("before", &DeleteParams::default()).await?;
    let mut live = Vec::new();
    while live.len() < 2 {
        match tokio::time::timeout(Duration::from_secs(5), events.try_next())
            .await??
            .context("ended")?
        {
            watcher::Event::Apply(p) => {
                live.push(format!("apply {}", p.metadata.name.unwrap_or_default()))
            }
            watcher::Event::Delete(p) => {
                live.push(format!("delete {}", p.metadata.name.unwrap_or_default()))
            }
            _ => {}
        }
    }
    assert_eq!(live, ["apply after", "delete before"]);
    Ok(())
}

#[tokio::test]
async fn lease_create_and_replace_with_conflict() -> anyhow::Result<()> {
    let server = FakeApiServer::start().await?;
    let leases: Api<Lease> = Api::namespaced(client(&server).await?, "pgroute-system");
    let lease = Lease {
        metadata: kube::api::ObjectMeta {
            name: Some("pgroute-operator".into()),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some("a".into()),
            lease_duration_seconds: Some(15),
            ..Default::default()
        }),
    };
    let held = leases.create(&PostParams::default(), &lease).await?;
    assert_eq!(leases.get("pgroute-operator").await?, held);

    let mut by_b = held.clone();
    if let Some(spec) = by_b.spec.as_mut() {
        spec.holder_identity = Some("b".into());
    }
    let taken = leases
        .replace("pgroute-operator", &PostParams::default(), &by_b)
        .await?;
    assert_eq!(
        taken.spec.and_then(|s| s.holder_identity).as_deref(),
        Some("b")
    );

    // `a` tries to renew from its stale copy and loses.
    let err = leases
        .replace("pgroute-operator", &PostParams::default(), &held)
        .await
        .expect_err("stale");
    assert_eq!(api_status(&err), Some((409, "Conflict".into())));
    Ok(())
}

#[tokio::test]
async fn core_kinds_and_unsupported_patch_types() -> anyhow::Result<()> {
    let server = FakeApiServer::start().await?;
    let pods: Api<Pod> = Api::namespaced(client(&server).await?, NS);
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "orders-0", "labels": {"app": "orders"}},
        "spec": {"containers": [{"name": "app", "image": "app:1"}]},
    }))?;
    pods.create(&PostParams::default(), &pod).await?;
    let listed = pods
        .list(&ListParams::default().labels("app=orders"))
        .await?;
    assert_eq!(listed.items.len(), 1);
    assert!(pods
        .list(&ListParams::default().labels("app=other"))
        .await?
        .items
        .is_empty());
    let err = pods
        .patch(
            "orders-0",
            &PatchParams::default(),
            &Patch::Strategic(json!({"metadata": {"labels": {"x": "y"}}})),
        )
        .await
        .expect_err("strategic merge is not supported");
    assert_eq!(api_status(&err), Some((415, "UnsupportedMediaType".into())));
    Ok(())
}

#[tokio::test]
async fn installed_crd_schema_rejects_invalid_proxies() -> anyhow::Result<()> {
    use kube::CustomResourceExt;
    let (server, api) = start().await?;
    server.install_crd(&serde_json::to_value(DatabaseProxy::crd())?)?;
    api.create(&PostParams::default(), &proxy("valid")?).await?;

    let mut bad_port = proxy("bad-port")?;
    if let Some(endpoints) = bad_port.spec.target.endpoints.as_mut() {
        endpoints[0].port = 70000;
    }
    let err = api
        .create(&PostParams::default(), &bad_port)
        .await
        .expect_err("port out of range");
    assert_eq!(api_status(&err), Some((422, "Invalid".into())));

    let err = api
        .patch(
            "valid",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"credentials": null}})),
        )
        .await
        .expect_err("credentials are required");
    assert_eq!(api_status(&err), Some((422, "Invalid".into())));
    assert!(
        format!("{err}").contains("spec.credentials: Required value"),
        "{err}"
    );
    assert_eq!(api.get("valid").await?.spec.credentials.secret_name, "db");
    Ok(())
}

#[tokio::test]
async fn cel_rules_of_the_installed_crd_reject_each_broken_rule() -> anyhow::Result<()> {
    let (server, api) = start().await?;
    server.install_crd(&crd_from_repo()?)?;
    let replica = json!({"host": "pg-1", "port": 5432, "role": "replica"});
    let primary = json!({"host": "pg-0", "port": 5432, "role": "primary"});
    let cases = [
        (
            json!({"target": {"endpoints": null}}),
            "spec.target",
            "exactly one of endpoints, selector or cloudNativePG must be set",
        ),
        (
            json!({"target": {"cloudNativePG": {"name": "pg"}}}),
            "spec.target",
            "exactly one of endpoints, selector or cloudNativePG must be set",
        ),
        (
            json!({"target": {"endpoints": [replica]}}),
            "spec.target.endpoints",
            "endpoints must have exactly one primary",
        ),
        (
            json!({"target": {"endpoints": [primary, primary]}}),
            "spec.target.endpoints",
            "endpoints must have exactly one primary",
        ),
        (
            json!({"pool": {"poolSize": 4, "minIdle": 5}}),
            "spec.pool",
            "poolSize must be at least minIdle",
        ),
        (
            json!({"failover": {"policy": "follow", "detectionDelay": "5s"}}),
            "spec.failover",
            "detectionDelay is only allowed with policy promote",
        ),
    ];
    for (i, (spec, field, message)) in cases.into_iter().enumerate() {
        let err = api
            .create(
                &PostParams::default(),
                &proxy_with(&format!("bad-{i}"), spec.clone())?,
            )
            .await
            .expect_err("breaks a rule");
        assert_eq!(api_status(&err), Some((422, "Invalid".into())), "{spec}");
        let causes = causes(&err);
        assert_eq!(causes.len(), 1, "{spec}: {causes:?}");
        assert_eq!(causes[0].0, field, "{spec}");
        assert!(causes[0].1.ends_with(message), "{spec}: {causes:?}");
        assert!(err.to_string().contains(message), "{err}");
    }
    assert!(api.list(&ListParams::default()).await?.items.is_empty());

    // The same rules, kept: accepted.
    let valid = [
        json!({}),
        json!({"target": {"endpoints": [primary, replica]}}),
        json!({"pool": {"poolSize": 5, "minIdle": 5}}),
        json!({"failover": {"policy": "promote", "detectionDelay": "5s"}}),
        json!({"target": {"endpoints": null, "cloudNativePG": {"name": "pg"}}}),
    ];
    for (i, spec) in valid.into_iter().enumerate() {
        api.create(
            &PostParams::default(),
            &proxy_with(&format!("good-{i}"), spec)?,
        )
        .await?;
    }
    Ok(())
}

#[tokio::test]
async fn writes_that_break_a_cel_rule_leave_the_object_unchanged() -> anyhow::Result<()> {
    let (server, api) = start().await?;
    server.install_crd(&crd_from_repo()?)?;
    let stored = api
        .create(&PostParams::default(), &proxy("orders")?)
        .await?;

    let merge = Patch::Merge(json!({"spec": {"pool": {"poolSize": 2, "minIdle": 3}}}));
    let err = api
        .patch("orders", &PatchParams::default(), &merge)
        .await
        .expect_err("merge patch breaks poolSize >= minIdle");
    assert_eq!(api_status(&err), Some((422, "Invalid".into())));
    assert_eq!(
        causes(&err),
        [(
            "spec.pool".to_owned(),
            "Invalid value: \"object\": poolSize must be at least minIdle".to_owned()
        )]
    );

    let two_targets = proxy_with(
        "orders",
        json!({"target": {"cloudNativePG": {"name": "pg"}}}),
    )?;
    let apply = PatchParams::apply("pgroute-operator").force();
    let err = api
        .patch("orders", &apply, &Patch::Apply(&two_targets))
        .await
        .expect_err("apply breaks exactly-one-target");
    assert_eq!(api_status(&err), Some((422, "Invalid".into())));

    let mut replaced = stored.clone();
    replaced.spec.failover.detection_delay = Some("10s".into());
    let err = api
        .replace("orders", &PostParams::default(), &replaced)
        .await
        .expect_err("replace breaks detectionDelay-only-with-promote");
    assert_eq!(causes(&err)[0].0, "spec.failover");

    assert_eq!(api.get("orders").await?, stored, "nothing was written");
    Ok(())
}

#[tokio::test]
async fn a_crd_whose_cel_rules_do_not_compile_is_refused() -> anyhow::Result<()> {
    let server = FakeApiServer::start().await?;
    let mut crd = crd_from_repo()?;
    let rule = crd
        .pointer_mut("/spec/versions/0/schema/openAPIV3Schema/properties/spec/properties/pool/x-kubernetes-validations/0/rule")
        .context("the pool rule")?;
    *rule = "self.poolSize >=".into();
    let err = server.install_crd(&crd).expect_err("rule does not compile");
    assert!(err.to_string().contains("self.poolSize >="), "{err}");

    let client = client(&server).await?;
    let discovery = kube::discovery::Discovery::new(client).run().await?;
    assert!(
        !discovery.has_group("pgroute.dev"),
        "nothing half installed"
    );
    Ok(())
}

#[tokio::test]
async fn discovery_finds_installed_crds_and_built_in_kinds() -> anyhow::Result<()> {
    use kube::api::{DynamicObject, GroupVersionKind};
    use kube::discovery::{self, Discovery, Scope};

    let server = FakeApiServer::start().await?;
    let client = client(&server).await?;
    let before = Discovery::new(client.clone()).run().await?;
    assert!(!before.has_group("pgroute.dev"));

    server.install_crd(&crd_from_repo()?)?;
    let found = Discovery::new(client.clone()).run().await?;
    let proxy_gvk = GroupVersionKind::gvk("pgroute.dev", "v1alpha1", "DatabaseProxy");
    let (proxies, caps) = found.resolve_gvk(&proxy_gvk).context("DatabaseProxy")?;
    assert_eq!(proxies.plural, "databaseproxies");
    assert_eq!(caps.scope, Scope::Namespaced);
    assert!(caps.supports_operation("watch") && caps.supports_operation("patch"));
    let subresources: Vec<&str> = caps
        .subresources
        .iter()
        .map(|(r, _)| r.plural.as_str())
        .collect();
    assert_eq!(subresources, ["status"]);
    let group = found.get("pgroute.dev").context("the group")?;
    assert_eq!(group.preferred_version_or_latest(), "v1alpha1");

    let lease_gvk = GroupVersionKind::gvk("coordination.k8s.io", "v1", "Lease");
    let (leases, caps) = found.resolve_gvk(&lease_gvk).context("Lease")?;
    assert_eq!(
        (leases.plural.as_str(), caps.scope),
        ("leases", Scope::Namespaced)
    );
    let namespaces = GroupVersionKind::gvk("", "v1", "Namespace");
    let (_, caps) = found.resolve_gvk(&namespaces).context("Namespace")?;
    assert_eq!(caps.scope, Scope::Cluster);
    for (group, kind) in [
        ("events.k8s.io", "Event"),
        ("discovery.k8s.io", "EndpointSlice"),
        ("apps", "Deployment"),
        ("rbac.authorization.k8s.io", "ClusterRoleBinding"),
        (
            "admissionregistration.k8s.io",
            "MutatingWebhookConfiguration",
        ),
        ("policy", "PodDisruptionBudget"),
        ("apiextensions.k8s.io", "CustomResourceDefinition"),
    ] {
        let gvk = GroupVersionKind::gvk(group, "v1", kind);
        assert!(found.resolve_gvk(&gvk).is_some(), "{group} {kind}");
    }

    // The one-request form, and what it found used as a dynamic API.
    let (resource, _) = discovery::pinned_kind(&client, &proxy_gvk).await?;
    assert_eq!(resource, proxies);
    let dynamic: Api<DynamicObject> = Api::namespaced_with(client, NS, &resource);
    let object: DynamicObject = serde_json::from_value(serde_json::to_value(proxy("dyn")?)?)?;
    dynamic.create(&PostParams::default(), &object).await?;
    let listed = dynamic.list(&ListParams::default()).await?;
    assert_eq!(listed.items.len(), 1);
    Ok(())
}

fn request(verb: &str, resource: &str, subresource: Option<&str>, name: Option<&str>) -> Request {
    Request {
        verb: verb.into(),
        group: "pgroute.dev".into(),
        version: "v1alpha1".into(),
        resource: resource.into(),
        subresource: subresource.map(Into::into),
        namespace: Some(NS.into()),
        name: name.map(Into::into),
    }
}

#[tokio::test]
async fn request_log_records_what_rbac_authorizes() -> anyhow::Result<()> {
    use kube::api::GroupVersionKind;

    let (server, api) = start().await?;
    api.create(&PostParams::default(), &proxy("seed")?).await?;
    server.clear_requests();

    let created = api
        .create(&PostParams::default(), &proxy("orders")?)
        .await?;
    api.get("orders").await?;
    api.list(&ListParams::default()).await?;
    let _stream = api.watch(&WatchParams::default().timeout(1), "0").await?;
    api.replace("orders", &PostParams::default(), &created)
        .await?;
    api.patch(
        "orders",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"a": "b"}}})),
    )
    .await?;
    api.patch(
        "orders",
        &PatchParams::apply("pgroute-operator"),
        &Patch::Apply(proxy("orders")?),
    )
    .await?;
    api.patch_status(
        "orders",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"primary": "pg-0:5432"}})),
    )
    .await?;
    api.delete("orders", &DeleteParams::default()).await?;
    let all: Api<DatabaseProxy> = Api::all(api.clone().into_client());
    all.list(&ListParams::default()).await?;
    let deleted = api
        .delete_collection(&DeleteParams::default(), &ListParams::default())
        .await?;
    let deleted = deleted.left().context("the deleted objects")?;
    assert_eq!(deleted.items.len(), 1, "the seed");
    let gvk = GroupVersionKind::gvk("pgroute.dev", "v1alpha1", "DatabaseProxy");
    kube::discovery::pinned_kind(&all.into_client(), &gvk)
        .await
        .expect_err("the CRD is not installed, so discovery does not know it");

    let orders = Some("orders");
    let mut cluster_list = request("list", "databaseproxies", None, None);
    cluster_list.namespace = None;
    let mut discovery = Request::non_resource("get", "/apis/pgroute.dev/v1alpha1");
    discovery.group = "pgroute.dev".into();
    discovery.version = "v1alpha1".into();
    assert_eq!(
        server.requests(),
        [
            request("create", "databaseproxies", None, None),
            request("get", "databaseproxies", None, orders),
            request("list", "databaseproxies", None, None),
            request("watch", "databaseproxies", None, None),
            request("update", "databaseproxies", None, orders),
            request("patch", "databaseproxies", None, orders),
            request("patch", "databaseproxies", None, orders),
            request("patch", "databaseproxies", Some("status"), orders),
            request("delete", "databaseproxies", None, orders),
            cluster_list,
            request("deletecollection", "databaseproxies", None, None),
            discovery,
        ]
    );
    assert!(!server.requests()[11].is_resource());
    assert!(api.list(&ListParams::default()).await?.items.is_empty());
    Ok(())
}

#[tokio::test]
async fn recorder_publishes_events_and_patches_their_series() -> anyhow::Result<()> {
    use k8s_openapi::api::events::v1::Event;
    use kube::runtime::events::{Event as Published, EventType, Recorder, Reporter};
    use kube::Resource;

    let (server, api) = start().await?;
    let orders = api
        .create(&PostParams::default(), &proxy("orders")?)
        .await?;
    let client = client(&server).await?;
    let reporter = Reporter {
        controller: "pgroute-operator".into(),
        instance: Some("pgroute-operator-0".into()),
    };
    let recorder = Recorder::new(client.clone(), reporter);
    let event = Published {
        type_: EventType::Warning,
        reason: "PrimaryUnreachable".into(),
        note: Some("pg-0:5432 did not answer".into()),
        action: "Failover".into(),
        secondary: None,
    };
    server.clear_requests();
    recorder.publish(&event, &orders.object_ref(&())).await?;
    recorder.publish(&event, &orders.object_ref(&())).await?;

    let events: Api<Event> = Api::namespaced(client, NS);
    let listed = events.list(&ListParams::default()).await?;
    assert_eq!(
        listed.items.len(),
        1,
        "the second publish is the same series"
    );
    let published = &listed.items[0];
    assert_eq!(published.reason.as_deref(), Some("PrimaryUnreachable"));
    assert_eq!(published.note.as_deref(), Some("pg-0:5432 did not answer"));
    assert_eq!(published.type_.as_deref(), Some("Warning"));
    assert_eq!(
        published.regarding.as_ref().and_then(|r| r.name.as_deref()),
        Some("orders")
    );
    assert_eq!(published.series.as_ref().map(|s| s.count), Some(2));

    let verbs: Vec<(String, String, String)> = server
        .requests()
        .into_iter()
        .map(|r| (r.verb, r.group, r.resource))
        .collect();
    let events_k8s = |verb: &str| {
        (
            verb.to_owned(),
            "events.k8s.io".to_owned(),
            "events".to_owned(),
        )
    };
    assert_eq!(
        verbs,
        [
            events_k8s("create"),
            events_k8s("patch"),
            events_k8s("list")
        ]
    );
    Ok(())
}

#[tokio::test]
async fn old_self_rules_are_skipped_on_create_and_judge_updates() -> anyhow::Result<()> {
    let (server, api) = start().await?;
    let mut crd = crd_from_repo()?;
    let credentials = crd
        .pointer_mut(
            "/spec/versions/0/schema/openAPIV3Schema/properties/spec/properties/credentials",
        )
        .and_then(Value::as_object_mut)
        .context("the credentials schema")?;
    credentials.insert(
        "x-kubernetes-validations".into(),
        json!([{"rule": "self.secretName == oldSelf.secretName", "message": "secretName is immutable"}]),
    );
    server.install_crd(&crd)?;

    api.create(&PostParams::default(), &proxy("orders")?)
        .await?;
    let err = api
        .patch(
            "orders",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"credentials": {"secretName": "other"}}})),
        )
        .await
        .expect_err("secretName is immutable");
    assert_eq!(
        causes(&err),
        [(
            "spec.credentials".to_owned(),
            "Invalid value: \"object\": secretName is immutable".to_owned()
        )]
    );
    api.patch(
        "orders",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"credentials": {"usernameKey": "user"}}})),
    )
    .await?;
    Ok(())
}

#[tokio::test]
async fn an_object_stored_before_its_rule_is_ratcheted_until_the_broken_field_changes(
) -> anyhow::Result<()> {
    let (server, api) = start().await?;
    let broken = proxy_with("orders", json!({"pool": {"poolSize": 4, "minIdle": 5}}))?;
    api.create(&PostParams::default(), &broken).await?;
    server.install_crd(&crd_from_repo()?)?;

    let pp = PatchParams::default();
    api.patch(
        "orders",
        &pp,
        &Patch::Merge(json!({"metadata": {"labels": {"team": "db"}}})),
    )
    .await?;
    api.patch_status(
        "orders",
        &pp,
        &Patch::Merge(json!({"status": {"primary": "pg-0:5432"}})),
    )
    .await?;
    let err = api
        .patch(
            "orders",
            &pp,
            &Patch::Merge(json!({"spec": {"pool": {"minIdle": 6}}})),
        )
        .await
        .expect_err("the broken field changed and is still broken");
    assert_eq!(causes(&err)[0].0, "spec.pool");
    api.patch(
        "orders",
        &pp,
        &Patch::Merge(json!({"spec": {"pool": {"minIdle": 2}}})),
    )
    .await?;
    Ok(())
}
