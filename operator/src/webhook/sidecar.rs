//! The pgroute container the webhook injects, and the annotation that records it.
//!
//! It is a *native sidecar*: an init container with `restartPolicy: Always`. The kubelet starts it
//! before the application containers, waits for its startup probe, keeps it running beside them, and
//! stops it after them — so the application never sees `127.0.0.1:<postgres>` refuse a connection
//! at start or at shutdown, and a Job's pod still completes when its main container exits.

use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction,
    ObjectFieldSelector, Probe, SeccompProfile, SecurityContext,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;
use sha2::Digest;

use super::settings::{InjectSettings, OPERATOR_VERSION};
use crate::crd::DatabaseProxy;

/// The injected container's name; its presence among a pod's containers means "already injected".
pub const CONTAINER_NAME: &str = "pgroute";
/// Annotation set on injected pods: the DatabaseProxy the sidecar follows.
pub const INJECTED_ANNOTATION: &str = "pgroute.dev/injected";
/// Annotation set on injected pods: what was injected (see [`injected_spec`]).
pub const INJECTED_SPEC_ANNOTATION: &str = "pgroute.dev/injected-spec";

/// The user that runs the sidecar: distroless' `nonroot`, so the image needs no `/etc/passwd` entry.
pub const RUN_AS_USER: i64 = 65532;

/// The startup probe's period, in seconds. Short, because the application's containers wait on it.
pub const STARTUP_PERIOD_SECONDS: i32 = 1;
/// Failed startup probes before the kubelet restarts the sidecar: 60 × 1s gives the sidecar a minute
/// to get its first topology snapshot and reach the primary (`/readyz` fails until then) — enough to
/// ride out an operator restart or leader election — while a sidecar that cannot get there at all
/// shows up as container restarts rather than as an application crash-looping on refused
/// connections.
pub const STARTUP_FAILURE_THRESHOLD: i32 = 60;

/// The sidecar container for `proxy`.
///
/// Probes: a startup probe on `/readyz` (no application container starts before the proxy can route)
/// and a liveness probe on `/healthz` (the process answers). Deliberately no readiness probe: a
/// native sidecar's readiness counts towards the pod's, and `/readyz` fails while the primary is
/// down, which would pull every application pod out of its Services at once during a failover —
/// reads from replicas and the queue inside the proxy are worth keeping then.
pub fn container(proxy: &DatabaseProxy, settings: &InjectSettings) -> Container {
    let sidecar = &proxy.spec.sidecar;
    let ports = &sidecar.ports;
    let http_probe = |path: &str, period: i32, failures: i32| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::Int(ports.metrics),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        timeout_seconds: Some(1),
        ..Probe::default()
    };
    Container {
        name: CONTAINER_NAME.to_owned(),
        image: Some(
            sidecar
                .image
                .clone()
                .unwrap_or_else(|| settings.default_image.clone()),
        ),
        restart_policy: Some("Always".to_owned()),
        args: Some(vec![
            "--listen".to_owned(),
            format!("127.0.0.1:{}", ports.postgres),
            "--metrics-listen".to_owned(),
            format!("0.0.0.0:{}", ports.metrics),
            "--control-plane".to_owned(),
            settings.control_plane_url.clone(),
        ]),
        env: Some(vec![
            field_ref_env("POD_NAMESPACE", "metadata.namespace"),
            field_ref_env("POD_NAME", "metadata.name"),
            EnvVar {
                name: "PGROUTE_PROXY".to_owned(),
                value: Some(proxy.name_any()),
                ..EnvVar::default()
            },
        ]),
        // Prefixed names: the application's own containers often have a port named `metrics`, and
        // a PodMonitor selecting that name should not scrape the sidecar by accident.
        ports: Some(vec![
            tcp_port("pgroute-pg", ports.postgres),
            tcp_port("pgroute-metrics", ports.metrics),
        ]),
        startup_probe: Some(http_probe(
            "/readyz",
            STARTUP_PERIOD_SECONDS,
            STARTUP_FAILURE_THRESHOLD,
        )),
        liveness_probe: Some(http_probe("/healthz", 10, 3)),
        resources: Some(
            sidecar
                .resources
                .clone()
                .unwrap_or_else(|| settings.default_resources.clone()),
        ),
        security_context: Some(hardened()),
        ..Container::default()
    }
}

/// The value of [`INJECTED_SPEC_ANNOTATION`]: the operator version, the image and a hash of the whole
/// container as injected, as compact JSON, e.g.
/// `{"operator":"0.1.0","image":"ghcr.io/pgroute/pgroute:0.1.0","sha256":"3f2a…"}` (16 hex digits).
/// Comparing the hash with what the operator would inject today tells which pods run an outdated
/// sidecar, without storing the container twice in the pod.
pub fn injected_spec(container: &Container) -> String {
    // k8s-openapi serializes fields in a fixed order and maps as BTreeMaps: the hash is stable.
    let bytes = serde_json::to_vec(container).unwrap_or_default();
    let digest = sha2::Sha256::digest(&bytes);
    let hash: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    serde_json::json!({
        "operator": OPERATOR_VERSION,
        "image": container.image.as_deref().unwrap_or_default(),
        "sha256": hash,
    })
    .to_string()
}

fn field_ref_env(name: &str, field_path: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: field_path.to_owned(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

fn tcp_port(name: &str, port: i32) -> ContainerPort {
    ContainerPort {
        name: Some(name.to_owned()),
        container_port: port,
        protocol: Some("TCP".to_owned()),
        ..ContainerPort::default()
    }
}

/// Passes the `restricted` Pod Security Standard on its own: the proxy needs no privilege, writes
/// no files and binds ports above 1024.
fn hardened() -> SecurityContext {
    SecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(RUN_AS_USER),
        run_as_group: Some(RUN_AS_USER),
        read_only_root_filesystem: Some(true),
        allow_privilege_escalation: Some(false),
        privileged: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_owned()]),
            ..Capabilities::default()
        }),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".to_owned(),
            ..SeccompProfile::default()
        }),
        ..SecurityContext::default()
    }
}
