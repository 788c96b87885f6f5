//! The generated CRD (names, subresources, printer columns, CEL rules where they belong), its CEL rules
//! evaluated without an API server (kube's `cel` feature), the spec's serde shape, the examples in
//! `deploy/examples/`, and the checked-in `crds/` file against the generator.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::CustomResourceExt;
use serde_json::{json, Value};

use super::*;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("operator/ has a parent")
        .to_path_buf()
}

fn crd() -> CustomResourceDefinition {
    DatabaseProxy::crd()
}

/// The openAPIV3Schema of the only version, as JSON.
fn schema() -> Value {
    let crd = crd();
    let schema = crd.spec.versions[0]
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .expect("an openAPIV3Schema");
    serde_json::to_value(schema).expect("schema to JSON")
}

/// The CEL rules (`rule` strings) directly on the schema node at `pointer`.
fn rules_at(pointer: &str) -> Vec<String> {
    let schema = schema();
    let node = schema
        .pointer(pointer)
        .unwrap_or_else(|| panic!("no schema node at {pointer}"));
    node.get("x-kubernetes-validations")
        .and_then(Value::as_array)
        .map(|rules| {
            rules
                .iter()
                .filter_map(|r| r["rule"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Every schema node carrying CEL rules, as JSON pointers.
fn nodes_with_rules(node: &Value, at: String, out: &mut Vec<String>) {
    match node {
        Value::Object(map) => {
            if map.contains_key("x-kubernetes-validations") {
                out.push(at.clone());
            }
            for (k, v) in map {
                nodes_with_rules(v, format!("{at}/{k}"), out);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                nodes_with_rules(v, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

const TARGET: &str = "/properties/spec/properties/target";
const ENDPOINTS: &str = "/properties/spec/properties/target/properties/endpoints";
const POOL: &str = "/properties/spec/properties/pool";
const FAILOVER: &str = "/properties/spec/properties/failover";

#[test]
fn crd_names_group_version_scope_and_short_name() {
    let crd = crd();
    assert_eq!(
        crd.metadata.name.as_deref(),
        Some("databaseproxies.pgroute.dev")
    );
    assert_eq!(crd.spec.group, "pgroute.dev");
    assert_eq!(crd.spec.scope, "Namespaced");
    assert_eq!(crd.spec.names.kind, "DatabaseProxy");
    assert_eq!(crd.spec.names.plural, "databaseproxies");
    assert_eq!(crd.spec.names.short_names, Some(vec!["dbp".to_string()]));
    assert_eq!(crd.spec.versions.len(), 1);
    let version = &crd.spec.versions[0];
    assert_eq!(version.name, "v1alpha1");
    assert!(version.served && version.storage);
}

#[test]
fn crd_has_the_status_subresource() {
    let crd = crd();
    let subresources = crd.spec.versions[0]
        .subresources
        .as_ref()
        .expect("subresources");
    assert!(subresources.status.is_some(), "status subresource missing");
    assert!(subresources.scale.is_none());
}

#[test]
fn crd_has_the_printer_columns() {
    let crd = crd();
    let columns: Vec<(String, String, String)> = crd.spec.versions[0]
        .additional_printer_columns
        .as_ref()
        .expect("printer columns")
        .iter()
        .map(|c| (c.name.clone(), c.type_.clone(), c.json_path.clone()))
        .collect();
    let expected = [
        ("Primary", "string", ".status.primary"),
        ("Replicas ready", "integer", ".status.replicasReady"),
        ("Proxies in sync", "integer", ".status.proxiesSynced"),
        (
            "Ready",
            "string",
            ".status.conditions[?(@.type==\"Ready\")].status",
        ),
        ("Age", "date", ".metadata.creationTimestamp"),
    ];
    let expected: Vec<(String, String, String)> = expected
        .iter()
        .map(|(n, t, p)| (n.to_string(), t.to_string(), p.to_string()))
        .collect();
    assert_eq!(columns, expected);
}

#[test]
fn printer_column_paths_exist_in_the_status_schema() {
    let schema = schema();
    for field in ["primary", "replicasReady", "proxiesSynced", "conditions"] {
        assert!(
            schema
                .pointer(&format!("/properties/status/properties/{field}"))
                .is_some(),
            "status.{field} missing from the schema"
        );
    }
}

#[test]
fn cel_rules_sit_on_the_objects_they_are_about() {
    assert_eq!(
        rules_at(TARGET),
        ["[has(self.endpoints), has(self.selector), has(self.cloudNativePG)].filter(x, x).size() == 1"]
    );
    assert_eq!(
        rules_at(ENDPOINTS),
        ["self.filter(e, e.role == 'primary').size() == 1"]
    );
    assert_eq!(rules_at(POOL), ["self.poolSize >= self.minIdle"]);
    assert_eq!(
        rules_at(FAILOVER),
        ["!has(self.detectionDelay) || self.policy == 'promote'"]
    );
    // And nowhere else.
    let mut found = Vec::new();
    nodes_with_rules(&schema(), String::new(), &mut found);
    found.sort();
    let mut expected = vec![
        ENDPOINTS.to_string(),
        FAILOVER.to_string(),
        POOL.to_string(),
        TARGET.to_string(),
    ];
    expected.sort();
    assert_eq!(found, expected);
}

#[test]
fn conditions_are_a_map_list_keyed_by_type() {
    let schema = schema();
    let conditions = schema
        .pointer("/properties/status/properties/conditions")
        .expect("status.conditions");
    assert_eq!(conditions["x-kubernetes-list-type"], "map");
    assert_eq!(conditions["x-kubernetes-list-map-keys"], json!(["type"]));
    assert_eq!(
        condition::ALL,
        [
            "Ready",
            "TopologyResolved",
            "ProxiesSynced",
            "Degraded",
            "FailoverInProgress"
        ]
    );
}

fn full_spec() -> DatabaseProxySpec {
    DatabaseProxySpec {
        target: DatabaseTarget {
            endpoints: Some(vec![
                Endpoint {
                    host: "10.0.0.1".into(),
                    port: 5432,
                    role: EndpointRole::Primary,
                },
                Endpoint {
                    host: "10.0.0.2".into(),
                    port: 5433,
                    role: EndpointRole::Replica,
                },
            ]),
            selector: None,
            cloud_native_pg: None,
        },
        credentials: Credentials {
            secret_name: "db".into(),
            username_key: "user".into(),
            password_key: "pass".into(),
        },
        pool: PoolSettings {
            pool_size: 40,
            min_idle: 4,
            queue_timeout: "2500ms".into(),
        },
        routing: RoutingSettings {
            read_write_split: false,
            load_balancing: LoadBalancing::ConsistentHash,
            primary_reads_weight: 25,
        },
        consistency: ConsistencySettings {
            mode: ConsistencyMode::CausalWindow,
            max_lag: "500ms".into(),
            max_lag_bytes: 1 << 20,
            hysteresis: "10s".into(),
        },
        failover: FailoverSettings {
            policy: FailoverPolicy::Promote,
            detection_delay: Some("20s".into()),
        },
        sidecar: SidecarSettings {
            image: Some("pgroute:dev".into()),
            resources: Some(ResourceRequirements {
                limits: Some(BTreeMap::from([(
                    "memory".to_string(),
                    Quantity("128Mi".into()),
                )])),
                ..ResourceRequirements::default()
            }),
            ports: SidecarPorts {
                postgres: 7432,
                metrics: 9000,
            },
        },
        pod_selector: LabelSelector {
            match_labels: Some(BTreeMap::from([("app".to_string(), "web".to_string())])),
            ..LabelSelector::default()
        },
    }
}

#[test]
fn full_spec_round_trips_with_camel_case_names() {
    let spec = full_spec();
    let value = serde_json::to_value(&spec).expect("to JSON");
    let expected = json!({
        "target": {"endpoints": [
            {"host": "10.0.0.1", "port": 5432, "role": "primary"},
            {"host": "10.0.0.2", "port": 5433, "role": "replica"}
        ]},
        "credentials": {"secretName": "db", "usernameKey": "user", "passwordKey": "pass"},
        "pool": {"poolSize": 40, "minIdle": 4, "queueTimeout": "2500ms"},
        "routing": {"readWriteSplit": false, "loadBalancing": "consistentHash", "primaryReadsWeight": 25},
        "consistency": {"mode": "causalWindow", "maxLag": "500ms", "maxLagBytes": 1048576, "hysteresis": "10s"},
        "failover": {"policy": "promote", "detectionDelay": "20s"},
        "sidecar": {
            "image": "pgroute:dev",
            "resources": {"limits": {"memory": "128Mi"}},
            "ports": {"postgres": 7432, "metrics": 9000}
        },
        "podSelector": {"matchLabels": {"app": "web"}}
    });
    assert_eq!(value, expected);
    let back: DatabaseProxySpec = serde_json::from_value(value).expect("from JSON");
    assert_eq!(back, spec);
    // Through YAML too, as users write it.
    let yaml = yaml_serde::to_string(&spec).expect("to YAML");
    let back: DatabaseProxySpec = yaml_serde::from_str(&yaml).expect("from YAML");
    assert_eq!(back, spec);
}

#[test]
fn other_targets_use_camel_case_names() {
    let target = DatabaseTarget {
        selector: Some(SelectorTarget {
            kind: SelectorKind::EndpointSlice,
            selector: LabelSelector::default(),
            port: Some(IntOrString::String("postgres".into())),
        }),
        ..DatabaseTarget::default()
    };
    assert_eq!(
        serde_json::to_value(&target).expect("to JSON"),
        json!({"selector": {"kind": "endpointSlice", "selector": {}, "port": "postgres"}})
    );
    let target = DatabaseTarget {
        cloud_native_pg: Some(CloudNativePgTarget { name: "pg".into() }),
        ..DatabaseTarget::default()
    };
    assert_eq!(
        serde_json::to_value(&target).expect("to JSON"),
        json!({"cloudNativePG": {"name": "pg"}})
    );
}

#[test]
fn omitted_settings_take_their_documented_defaults() {
    let spec: DatabaseProxySpec = serde_json::from_value(json!({
        "target": {"cloudNativePG": {"name": "pg"}},
        "credentials": {"secretName": "pg-app"},
        "podSelector": {}
    }))
    .expect("minimal spec");
    assert_eq!(spec.credentials.username_key, "username");
    assert_eq!(spec.credentials.password_key, "password");
    assert_eq!(spec.pool, PoolSettings::default());
    assert_eq!(spec.pool.pool_size, 20);
    assert_eq!(spec.pool.queue_timeout, "5s");
    assert!(spec.routing.read_write_split);
    assert_eq!(spec.routing.load_balancing, LoadBalancing::LeastConnections);
    assert_eq!(spec.consistency.mode, ConsistencyMode::ReadYourWrites);
    assert_eq!(spec.consistency.max_lag, "2s");
    assert_eq!(spec.failover.policy, FailoverPolicy::Follow);
    assert_eq!(spec.sidecar.ports.postgres, 6432);
}

#[test]
fn status_serializes_with_camel_case_names() {
    let status = DatabaseProxyStatus {
        observed_generation: Some(3),
        primary: Some("10.0.0.1:5432".into()),
        replicas: vec![ReplicaStatus {
            address: "10.0.0.2:5432".into(),
            lag_bytes: Some(42),
            lag_millis: Some(7),
            eligible: false,
            reason: "LagOverLimit".into(),
        }],
        replicas_ready: 0,
        topology_version: 9,
        proxies_synced: 2,
        proxies_total: 3,
        last_failover_reason: Some("PrimaryUnreachable".into()),
        ..DatabaseProxyStatus::default()
    };
    let value = serde_json::to_value(&status).expect("to JSON");
    assert_eq!(
        value,
        json!({
            "observedGeneration": 3,
            "primary": "10.0.0.1:5432",
            "replicas": [{"address": "10.0.0.2:5432", "lagBytes": 42, "lagMillis": 7,
                          "eligible": false, "reason": "LagOverLimit"}],
            "replicasReady": 0,
            "topologyVersion": 9,
            "proxiesSynced": 2,
            "proxiesTotal": 3,
            "lastFailoverReason": "PrimaryUnreachable"
        })
    );
    let back: DatabaseProxyStatus = serde_json::from_value(value).expect("from JSON");
    assert_eq!(back, status);
}

/// The examples in `deploy/examples/`, by file name.
fn examples() -> Vec<(String, DatabaseProxy)> {
    let dir = repo_root().join("deploy/examples");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("deploy/examples") {
        let path = entry.expect("directory entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("readable example");
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        let object: DatabaseProxy = yaml_serde::from_str(&text)
            .unwrap_or_else(|e| panic!("{name} is not a DatabaseProxy: {e}"));
        out.push((name, object));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn examples_deserialize_and_cover_every_target_kind() {
    let examples = examples();
    let names: Vec<&str> = examples.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "databaseproxy-cloudnativepg.yaml",
            "databaseproxy-endpoints.yaml",
            "databaseproxy-service.yaml"
        ]
    );
    let target = |name: &str| {
        &examples
            .iter()
            .find(|(n, _)| n == name)
            .expect("example")
            .1
            .spec
            .target
    };
    let endpoints = target("databaseproxy-endpoints.yaml")
        .endpoints
        .as_ref()
        .expect("endpoints");
    assert_eq!(endpoints.len(), 3);
    assert_eq!(endpoints[1].port, 5432, "port defaults to 5432");
    let selector = target("databaseproxy-service.yaml")
        .selector
        .as_ref()
        .expect("selector");
    assert_eq!(selector.kind, SelectorKind::Service);
    assert_eq!(
        target("databaseproxy-cloudnativepg.yaml")
            .cloud_native_pg
            .as_ref()
            .map(|c| c.name.as_str()),
        Some("billing-pg")
    );
    for (name, object) in &examples {
        assert!(object.metadata.namespace.is_some(), "{name}: namespaced");
    }
}

#[test]
fn examples_pass_the_crd_cel_rules() {
    for (name, object) in examples() {
        if let Err(e) = kube::core::cel::validate_cel(&object) {
            panic!("{name} fails the CRD's CEL rules: {e}");
        }
    }
}

fn proxy(spec: Value) -> DatabaseProxy {
    let spec: DatabaseProxySpec = serde_json::from_value(spec).expect("a spec");
    DatabaseProxy {
        metadata: ObjectMeta {
            name: Some("p".into()),
            namespace: Some("ns".into()),
            ..ObjectMeta::default()
        },
        spec,
        status: None,
    }
}

/// A minimal valid spec with `patch` merged in at the top level.
fn spec_with(patch: Value) -> Value {
    let mut spec = json!({
        "target": {"endpoints": [
            {"host": "a", "role": "primary"},
            {"host": "b", "role": "replica"}
        ]},
        "credentials": {"secretName": "s"},
        "podSelector": {}
    });
    if let (Some(spec), Value::Object(patch)) = (spec.as_object_mut(), patch) {
        spec.extend(patch);
    }
    spec
}

/// The CEL errors of a spec, joined; empty when it passes.
fn cel_errors(spec: Value) -> String {
    match kube::core::cel::validate_cel(&proxy(spec)) {
        Ok(()) => String::new(),
        Err(e) => e.to_string(),
    }
}

#[test]
fn cel_accepts_a_minimal_spec() {
    assert_eq!(cel_errors(spec_with(json!({}))), "");
}

#[test]
fn cel_requires_exactly_one_target_kind() {
    let none = cel_errors(spec_with(json!({"target": {}})));
    assert!(none.contains("exactly one of endpoints"), "{none}");
    let two = cel_errors(spec_with(json!({"target": {
        "endpoints": [{"host": "a", "role": "primary"}],
        "cloudNativePG": {"name": "pg"}
    }})));
    assert!(two.contains("exactly one of endpoints"), "{two}");
    let selector = cel_errors(spec_with(
        json!({"target": {"selector": {"selector": {"matchLabels": {"a": "b"}}}}}),
    ));
    assert_eq!(selector, "");
}

#[test]
fn cel_requires_exactly_one_primary_endpoint() {
    let no_primary = cel_errors(spec_with(
        json!({"target": {"endpoints": [{"host": "a", "role": "replica"}]}}),
    ));
    assert!(no_primary.contains("exactly one primary"), "{no_primary}");
    let two_primaries = cel_errors(spec_with(json!({"target": {"endpoints": [
        {"host": "a", "role": "primary"},
        {"host": "b", "role": "primary"}
    ]}})));
    assert!(
        two_primaries.contains("exactly one primary"),
        "{two_primaries}"
    );
}

#[test]
fn cel_allows_detection_delay_only_with_promote() {
    let follow = cel_errors(spec_with(
        json!({"failover": {"policy": "follow", "detectionDelay": "5s"}}),
    ));
    assert!(
        follow.contains("only allowed with policy promote"),
        "{follow}"
    );
    let promote = cel_errors(spec_with(
        json!({"failover": {"policy": "promote", "detectionDelay": "5s"}}),
    ));
    assert_eq!(promote, "");
}

#[test]
fn cel_requires_pool_size_at_least_min_idle() {
    let bad = cel_errors(spec_with(json!({"pool": {"poolSize": 4, "minIdle": 5}})));
    assert!(bad.contains("poolSize must be at least minIdle"), "{bad}");
    let equal = cel_errors(spec_with(json!({"pool": {"poolSize": 5, "minIdle": 5}})));
    assert_eq!(equal, "");
}

#[test]
fn crd_yaml_parses_back_into_the_same_crd() {
    let yaml = crd_yaml().expect("CRD as YAML");
    let back: CustomResourceDefinition = yaml_serde::from_str(&yaml).expect("YAML parses");
    assert_eq!(back, crd());
}

#[test]
fn checked_in_crd_matches_the_generator() {
    let path = repo_root().join(CRD_PATH);
    let generated = crd_yaml().expect("CRD as YAML");
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "{CRD_PATH} is stale or missing; regenerate it from the repository root with:\n    {REGENERATE}"
    );
}
