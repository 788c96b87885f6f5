//! AdmissionReview fixtures (`operator/tests/fixtures/admission/`) in, JSON patch out, applied to the
//! pod the way the API server applies it, and the result read back as a `Pod` and checked.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::prelude::{Engine as _, BASE64_STANDARD};
use json_patch::{Patch, PatchOperation};
use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::{json, Value};

use super::inject::{mutate, Decision, SkipReason};
use super::review::{review, ReviewError};
use super::settings::{InjectSettings, OPERATOR_VERSION};
use crate::crd::DatabaseProxy;

const CONTROL_PLANE: &str = "https://pgroute-operator.pgroute-system.svc:6500";

fn settings() -> InjectSettings {
    InjectSettings {
        control_plane_url: CONTROL_PLANE.to_owned(),
        ..InjectSettings::default()
    }
}

fn proxy(namespace: &str, name: &str, selector: Value, sidecar: Value) -> Arc<DatabaseProxy> {
    let object = json!({
        "apiVersion": "pgroute.dev/v1alpha1",
        "kind": "DatabaseProxy",
        "metadata": { "name": name, "namespace": namespace },
        "spec": {
            "target": { "endpoints": [{ "host": "pg-0", "role": "primary" }] },
            "credentials": { "secretName": "pg-app" },
            "sidecar": sidecar,
            "podSelector": selector,
        }
    });
    Arc::new(serde_json::from_value(object).expect("a valid DatabaseProxy"))
}

/// The DatabaseProxies the fixtures are written against.
fn proxies() -> Vec<Arc<DatabaseProxy>> {
    vec![
        // Sorts first and selects the same labels as shop/orders-db, but in another namespace.
        proxy(
            "elsewhere",
            "aaa-orders",
            json!({ "matchLabels": { "app.kubernetes.io/name": "orders" } }),
            json!({}),
        ),
        proxy(
            "shop",
            "orders-db",
            json!({ "matchLabels": { "app.kubernetes.io/name": "orders" } }),
            json!({}),
        ),
        // Reached by annotation only; every sidecar setting overridden.
        proxy(
            "shop",
            "analytics-db",
            json!({ "matchLabels": { "app": "selects-nothing" } }),
            json!({
                "image": "registry.example/pgroute:custom",
                "resources": { "limits": { "cpu": "1", "memory": "256Mi" } },
                "ports": { "postgres": 7432, "metrics": 9500 },
            }),
        ),
        proxy(
            "analytics",
            "warehouse-db",
            json!({
                "matchExpressions": [
                    { "key": "tier", "operator": "In", "values": ["batch", "etl"] },
                    { "key": "team", "operator": "Exists" },
                    { "key": "env", "operator": "NotIn", "values": ["dev"] },
                    { "key": "legacy", "operator": "DoesNotExist" },
                ]
            }),
            json!({}),
        ),
        proxy(
            "pgroute-system",
            "ops-db",
            json!({ "matchLabels": { "app": "tooling" } }),
            json!({}),
        ),
    ]
}

fn all_proxies(_namespace: &str) -> Vec<Arc<DatabaseProxy>> {
    proxies()
}

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/fixtures/admission/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn request_object(body: &[u8]) -> Value {
    let review: Value = serde_json::from_slice(body).expect("fixture is JSON");
    review["request"]["object"].clone()
}

/// The fixture with its `request.object` replaced.
fn with_object(body: &[u8], object: Value) -> Vec<u8> {
    let mut review: Value = serde_json::from_slice(body).expect("fixture is JSON");
    review["request"]["object"] = object;
    serde_json::to_vec(&review).expect("encodes")
}

/// The parts of an AdmissionReview answer the API server acts on.
#[derive(Debug)]
struct Answer {
    uid: String,
    allowed: bool,
    patch: Option<Patch>,
    warnings: Option<Vec<String>>,
}

fn respond(body: &[u8]) -> Answer {
    let answer = review(body, &all_proxies, &settings()).expect("a readable review");
    assert_eq!(answer["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(answer["kind"], "AdmissionReview");
    let response = &answer["response"];
    let patch = response.get("patch").map(|patch| {
        assert_eq!(response["patchType"], "JSONPatch");
        let encoded = patch.as_str().expect("the patch is a base64 string");
        let bytes = BASE64_STANDARD.decode(encoded).expect("base64");
        serde_json::from_slice(&bytes).expect("the patch is RFC 6902 JSON")
    });
    Answer {
        uid: response["uid"].as_str().expect("a uid").to_owned(),
        allowed: response["allowed"].as_bool().expect("allowed is a bool"),
        patch,
        warnings: response
            .get("warnings")
            .map(|w| serde_json::from_value(w.clone()).expect("warnings are strings")),
    }
}

fn uid(body: &[u8]) -> String {
    let review: Value = serde_json::from_slice(body).expect("fixture is JSON");
    review["request"]["uid"]
        .as_str()
        .expect("fixture has a uid")
        .to_owned()
}

fn paths(patch: &Patch) -> Vec<String> {
    patch
        .0
        .iter()
        .map(|op| match op {
            PatchOperation::Add(add) => add.path.to_string(),
            other => panic!("only adds expected, got {other:?}"),
        })
        .collect()
}

/// Runs the fixture through the webhook and applies its patch to the pod: the pod the API server
/// would store, and the raw patched JSON.
fn injected(name: &str) -> (Pod, Value, Patch) {
    let body = fixture(name);
    let response = respond(&body);
    assert_eq!(response.uid, uid(&body));
    assert!(response.allowed);
    assert_eq!(response.warnings, None);
    let patch = response.patch.expect("a patch");
    let mut object = request_object(&body);
    json_patch::patch(&mut object, &patch).expect("the patch applies to the pod");
    let pod: Pod = serde_json::from_value(object.clone()).expect("the patched pod is a Pod");
    (pod, object, patch)
}

fn init_containers(pod: &Pod) -> &[Container] {
    pod.spec
        .as_ref()
        .and_then(|s| s.init_containers.as_deref())
        .expect("init containers")
}

fn annotations(pod: &Pod) -> &BTreeMap<String, String> {
    pod.metadata.annotations.as_ref().expect("annotations")
}

fn env_field_ref(container: &Container, name: &str) -> Option<String> {
    container
        .env
        .as_ref()?
        .iter()
        .find(|e| e.name == name)?
        .value_from
        .as_ref()?
        .field_ref
        .as_ref()
        .map(|f| f.field_path.clone())
}

fn env_value(container: &Container, name: &str) -> Option<String> {
    container
        .env
        .as_ref()?
        .iter()
        .find(|e| e.name == name)?
        .value
        .clone()
}

fn probe_target(probe: Option<&k8s_openapi::api::core::v1::Probe>) -> (String, IntOrString) {
    let get = probe
        .and_then(|p| p.http_get.as_ref())
        .expect("an httpGet probe");
    (get.path.clone().unwrap_or_default(), get.port.clone())
}

#[test]
fn a_pod_selected_by_its_labels_gets_the_sidecar() {
    let (pod, _, patch) = injected("labels-match-bare.json");
    // Neither the array nor the map existed: both added whole.
    assert_eq!(
        paths(&patch),
        ["/spec/initContainers", "/metadata/annotations"]
    );

    let init = init_containers(&pod);
    assert_eq!(init.len(), 1);
    let sidecar = &init[0];
    assert_eq!(sidecar.name, "pgroute");
    assert_eq!(sidecar.restart_policy.as_deref(), Some("Always"));
    assert_eq!(
        sidecar.image.as_deref(),
        Some(format!("ghcr.io/pgroute/pgroute:{OPERATOR_VERSION}").as_str())
    );
    assert_eq!(
        sidecar.args.as_deref().expect("args"),
        [
            "--listen",
            "127.0.0.1:6432",
            "--metrics-listen",
            "0.0.0.0:9432",
            "--control-plane",
            CONTROL_PLANE
        ]
    );
    assert_eq!(
        env_field_ref(sidecar, "POD_NAMESPACE").as_deref(),
        Some("metadata.namespace")
    );
    assert_eq!(
        env_field_ref(sidecar, "POD_NAME").as_deref(),
        Some("metadata.name")
    );
    assert_eq!(
        env_value(sidecar, "PGROUTE_PROXY").as_deref(),
        Some("orders-db")
    );
    let ports: Vec<(Option<&str>, i32)> = sidecar
        .ports
        .as_deref()
        .expect("ports")
        .iter()
        .map(|p| (p.name.as_deref(), p.container_port))
        .collect();
    assert_eq!(
        ports,
        [(Some("pgroute-pg"), 6432), (Some("pgroute-metrics"), 9432)]
    );

    let startup = sidecar.startup_probe.as_ref();
    assert_eq!(
        probe_target(startup),
        ("/readyz".to_owned(), IntOrString::Int(9432))
    );
    assert_eq!(startup.and_then(|p| p.period_seconds), Some(1));
    assert_eq!(startup.and_then(|p| p.failure_threshold), Some(60));
    assert_eq!(
        probe_target(sidecar.liveness_probe.as_ref()),
        ("/healthz".to_owned(), IntOrString::Int(9432))
    );
    assert_eq!(sidecar.readiness_probe, None);

    let security = sidecar.security_context.as_ref().expect("securityContext");
    assert_eq!(security.run_as_non_root, Some(true));
    assert_eq!(security.run_as_user, Some(65532));
    assert_eq!(security.read_only_root_filesystem, Some(true));
    assert_eq!(security.allow_privilege_escalation, Some(false));
    assert_eq!(
        security.capabilities.as_ref().and_then(|c| c.drop.clone()),
        Some(vec!["ALL".to_owned()])
    );
    assert_eq!(
        security.seccomp_profile.as_ref().map(|s| s.type_.as_str()),
        Some("RuntimeDefault")
    );
    assert_eq!(
        sidecar.resources.as_ref(),
        Some(&settings().default_resources)
    );

    // The application container is untouched.
    let containers = &pod.spec.as_ref().expect("spec").containers;
    assert_eq!(containers.len(), 1);
    assert_eq!(containers[0].name, "app");

    let annotations = annotations(&pod);
    assert_eq!(annotations["pgroute.dev/injected"], "orders-db");
    let spec: Value =
        serde_json::from_str(&annotations["pgroute.dev/injected-spec"]).expect("JSON");
    assert_eq!(spec["operator"], OPERATOR_VERSION);
    assert_eq!(spec["image"], sidecar.image.clone().unwrap_or_default());
    assert_eq!(spec["sha256"].as_str().map(str::len), Some(16));
}

#[test]
fn the_annotation_names_the_proxy_and_existing_init_containers_and_annotations_stay() {
    let (pod, _, patch) = injected("annotation-with-init-containers.json");
    assert_eq!(
        paths(&patch),
        [
            "/spec/initContainers/0",
            "/metadata/annotations/pgroute.dev~1injected",
            "/metadata/annotations/pgroute.dev~1injected-spec",
        ]
    );
    let names: Vec<&str> = init_containers(&pod)
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(names, ["pgroute", "migrate"]);

    let sidecar = &init_containers(&pod)[0];
    assert_eq!(
        sidecar.image.as_deref(),
        Some("registry.example/pgroute:custom")
    );
    let args = sidecar.args.as_deref().expect("args");
    assert_eq!(args[1], "127.0.0.1:7432");
    assert_eq!(args[3], "0.0.0.0:9500");
    assert_eq!(
        probe_target(sidecar.startup_probe.as_ref()).1,
        IntOrString::Int(9500)
    );
    let limits = sidecar
        .resources
        .as_ref()
        .and_then(|r| r.limits.as_ref())
        .expect("limits");
    assert_eq!(limits["memory"].0, "256Mi");
    assert_eq!(
        env_value(sidecar, "PGROUTE_PROXY").as_deref(),
        Some("analytics-db")
    );

    let annotations = annotations(&pod);
    assert_eq!(annotations["pgroute.dev/injected"], "analytics-db");
    assert_eq!(annotations["pgroute.dev/inject"], "analytics-db");
    assert_eq!(annotations["prometheus.io/scrape"], "true");
    let spec: Value =
        serde_json::from_str(&annotations["pgroute.dev/injected-spec"]).expect("JSON");
    assert_eq!(spec["image"], "registry.example/pgroute:custom");
}

#[test]
fn match_expressions_select_and_a_missing_annotations_map_is_added_whole() {
    let (pod, _, patch) = injected("expressions-with-init-containers.json");
    assert_eq!(
        paths(&patch),
        ["/spec/initContainers/0", "/metadata/annotations"]
    );
    let names: Vec<&str> = init_containers(&pod)
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(names, ["pgroute", "fetch", "unpack"]);
    assert_eq!(annotations(&pod)["pgroute.dev/injected"], "warehouse-db");
}

#[test]
fn an_injected_pod_submitted_again_is_left_unchanged() {
    for name in [
        "labels-match-bare.json",
        "annotation-with-init-containers.json",
        "expressions-with-init-containers.json",
    ] {
        let (pod, patched, _) = injected(name);
        let mut pod = pod;
        if pod.metadata.namespace.is_none() {
            pod.metadata.namespace = Some("shop".to_owned());
        }
        assert_eq!(
            mutate(&pod, &proxies(), &settings()),
            Decision::Skip {
                reason: SkipReason::AlreadyInjected
            },
            "{name}"
        );
        let again = respond(&with_object(&fixture(name), patched));
        assert!(again.allowed, "{name}");
        assert!(again.patch.is_none(), "{name}");
    }
}

/// Each fixture that must come out unchanged, and why.
#[test]
fn pods_that_get_no_sidecar_are_allowed_unchanged_with_the_reason() {
    let cases = [
        ("opted-out.json", SkipReason::OptedOut),
        ("operator-namespace.json", SkipReason::OperatorNamespace),
        ("operator-pod.json", SkipReason::OperatorPod),
        ("no-match.json", SkipReason::NoMatchingProxy),
        ("already-injected.json", SkipReason::AlreadyInjected),
        (
            "unknown-proxy.json",
            SkipReason::UnknownProxy {
                name: "orders-db-typo".to_owned(),
                namespace: "shop".to_owned(),
            },
        ),
    ];
    for (name, reason) in cases {
        let body = fixture(name);
        let mut pod: Pod = serde_json::from_value(request_object(&body)).expect("a Pod");
        if pod.metadata.namespace.is_none() {
            pod.metadata.namespace = Some("shop".to_owned());
        }
        assert_eq!(
            mutate(&pod, &proxies(), &settings()),
            Decision::Skip {
                reason: reason.clone()
            },
            "{name}"
        );

        let response = respond(&body);
        assert_eq!(response.uid, uid(&body), "{name}");
        assert!(response.allowed, "{name}");
        assert!(response.patch.is_none(), "{name}");
        assert_eq!(
            response.warnings,
            reason.warning().map(|w| vec![w]),
            "{name}"
        );
    }
}

#[test]
fn a_name_that_does_not_exist_is_told_to_the_pods_author() {
    let response = respond(&fixture("unknown-proxy.json"));
    let warnings = response.warnings.expect("a warning");
    assert_eq!(warnings.len(), 1);
    assert!(
        warnings[0].contains("orders-db-typo") && warnings[0].contains("shop"),
        "{warnings:?}"
    );
}

#[test]
fn an_update_is_never_mutated() {
    let response = respond(&fixture("update.json"));
    assert!(response.allowed);
    assert!(response.patch.is_none());
}

fn pod_with(namespace: &str, labels: Value, annotations: Value) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "p",
            "namespace": namespace,
            "labels": labels,
            "annotations": annotations,
        },
        "spec": { "containers": [{ "name": "app", "image": "app:1" }] }
    }))
    .expect("a Pod")
}

fn chosen(decision: Decision) -> Option<String> {
    match decision {
        Decision::Inject { proxy, .. } => Some(proxy),
        Decision::Skip { .. } => None,
    }
}

#[test]
fn of_several_matching_proxies_the_first_by_name_wins_whatever_the_order() {
    let selector = json!({ "matchLabels": { "app": "web" } });
    let mut candidates = vec![
        proxy("shop", "zeta", selector.clone(), json!({})),
        proxy("shop", "beta", selector.clone(), json!({})),
        proxy("elsewhere", "alpha", selector.clone(), json!({})),
        proxy("shop", "gamma", selector, json!({})),
    ];
    let pod = pod_with("shop", json!({ "app": "web" }), json!({}));
    for _ in 0..candidates.len() {
        assert_eq!(
            chosen(mutate(&pod, &candidates, &settings())).as_deref(),
            Some("beta")
        );
        candidates.rotate_left(1);
    }
}

#[test]
fn label_selector_operators_each_decide() {
    let warehouse = [proxies()
        .into_iter()
        .find(|p| p.metadata.name.as_deref() == Some("warehouse-db"))
        .expect("warehouse-db")];
    let selected = |labels: Value| {
        chosen(mutate(
            &pod_with("analytics", labels, json!({})),
            &warehouse,
            &settings(),
        ))
        .is_some()
    };
    assert!(selected(json!({ "tier": "batch", "team": "data" })));
    assert!(selected(
        json!({ "tier": "etl", "team": "data", "env": "prod" })
    ));
    // In
    assert!(!selected(json!({ "tier": "web", "team": "data" })));
    assert!(!selected(json!({ "team": "data" })));
    // Exists
    assert!(!selected(json!({ "tier": "batch" })));
    // NotIn
    assert!(!selected(
        json!({ "tier": "batch", "team": "data", "env": "dev" })
    ));
    // DoesNotExist
    assert!(!selected(
        json!({ "tier": "batch", "team": "data", "legacy": "" })
    ));
}

#[test]
fn an_empty_selector_selects_every_pod_of_its_namespace_only() {
    let everything = [proxy("shop", "all", json!({}), json!({}))];
    let inject = |namespace: &str| {
        chosen(mutate(
            &pod_with(namespace, json!({ "any": "thing" }), json!({})),
            &everything,
            &settings(),
        ))
    };
    assert_eq!(inject("shop").as_deref(), Some("all"));
    assert_eq!(inject("other"), None);
}

#[test]
fn the_annotation_wins_over_a_matching_selector_and_only_in_the_pods_namespace() {
    let candidates = [
        proxy(
            "shop",
            "a-by-label",
            json!({ "matchLabels": { "app": "web" } }),
            json!({}),
        ),
        proxy(
            "shop",
            "b-named",
            json!({ "matchLabels": { "app": "x" } }),
            json!({}),
        ),
        proxy("elsewhere", "c-named", json!({}), json!({})),
    ];
    let named = |name: &str| {
        mutate(
            &pod_with(
                "shop",
                json!({ "app": "web" }),
                json!({ "pgroute.dev/inject": name }),
            ),
            &candidates,
            &settings(),
        )
    };
    assert_eq!(chosen(named("b-named")).as_deref(), Some("b-named"));
    assert_eq!(
        named("c-named"),
        Decision::Skip {
            reason: SkipReason::UnknownProxy {
                name: "c-named".to_owned(),
                namespace: "shop".to_owned()
            }
        }
    );
}

#[test]
fn a_proxy_being_deleted_gets_no_new_pods() {
    let mut leaving = (*proxy("shop", "leaving", json!({}), json!({}))).clone();
    leaving.metadata.deletion_timestamp = Some(Time(Default::default()));
    let pod = pod_with("shop", json!({}), json!({}));
    assert_eq!(
        mutate(&pod, &[leaving], &settings()),
        Decision::Skip {
            reason: SkipReason::NoMatchingProxy
        }
    );
}

#[test]
fn a_pod_with_its_own_container_named_pgroute_is_left_alone_with_a_warning() {
    let mut pod = pod_with("shop", json!({}), json!({}));
    if let Some(spec) = pod.spec.as_mut() {
        spec.containers[0].name = "pgroute".to_owned();
    }
    let decision = mutate(
        &pod,
        &[proxy("shop", "all", json!({}), json!({}))],
        &settings(),
    );
    assert_eq!(
        decision,
        Decision::Skip {
            reason: SkipReason::NameTaken
        }
    );
    assert!(SkipReason::NameTaken.warning().is_some());
}

#[test]
fn a_body_that_is_not_an_admission_review_is_an_error() {
    let settings = settings();
    assert!(matches!(
        review(b"{not json", &all_proxies, &settings),
        Err(ReviewError::Malformed(_))
    ));
    assert!(matches!(
        review(
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#,
            &all_proxies,
            &settings
        ),
        Err(ReviewError::NoRequest)
    ));
}

#[test]
fn an_object_that_is_not_a_readable_pod_is_allowed_with_a_warning() {
    let body = fixture("labels-match-bare.json");
    let mut object = request_object(&body);
    object["spec"]["containers"] = json!("not a list");
    let response = respond(&with_object(&body, object));
    assert_eq!(response.uid, uid(&body));
    assert!(response.allowed);
    assert!(response.patch.is_none());
    let warnings = response.warnings.expect("a warning");
    assert!(warnings[0].contains("cannot read the pod"), "{warnings:?}");
}

#[test]
fn a_review_for_another_kind_is_allowed_with_a_warning() {
    let body = fixture("labels-match-bare.json");
    let mut review_json: Value = serde_json::from_slice(&body).expect("JSON");
    review_json["request"]["kind"] =
        json!({ "group": "apps", "version": "v1", "kind": "Deployment" });
    let response = respond(&serde_json::to_vec(&review_json).expect("encodes"));
    assert!(response.allowed);
    assert!(response.patch.is_none());
    assert!(response
        .warnings
        .is_some_and(|w| w[0].contains("Deployment")));
}
