use k8s_openapi::api::discovery::v1::{
    Endpoint as SliceEndpoint, EndpointConditions, EndpointPort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

use super::*;

fn requirement(key: &str, operator: &str, values: Option<&[&str]>) -> LabelSelectorRequirement {
    LabelSelectorRequirement {
        key: key.into(),
        operator: operator.into(),
        values: values.map(|v| v.iter().map(|s| (*s).to_owned()).collect()),
    }
}

#[test]
fn selector_strings_cover_labels_and_every_operator() {
    let selector = LabelSelector {
        match_labels: Some(
            [("app", "orders-db"), ("cnpg.io/cluster", "orders")]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        ),
        match_expressions: Some(vec![
            requirement("role", "In", Some(&["primary", "replica"])),
            requirement("tier", "NotIn", Some(&["cache"])),
            requirement("postgres", "Exists", None),
            requirement("deprecated", "DoesNotExist", None),
        ]),
    };
    assert_eq!(
        selector_string(&selector).expect("valid"),
        "app=orders-db,cnpg.io/cluster=orders,role in (primary,replica),tier notin (cache),postgres,!deprecated"
    );
}

#[test]
fn bad_selectors_are_refused_with_a_reason() {
    let only = |r| LabelSelector {
        match_labels: None,
        match_expressions: Some(vec![r]),
    };
    let err = |s: &LabelSelector| selector_string(s).expect_err("invalid").to_string();
    assert_eq!(
        err(&LabelSelector::default()),
        "spec.target.selector.selector: empty: it would select everything in the namespace"
    );
    assert_eq!(
        err(&only(requirement("role", "In", Some(&[])))),
        "spec.target.selector.selector: `role` with operator In needs values"
    );
    assert_eq!(
        err(&only(requirement("role", "NotIn", None))),
        "spec.target.selector.selector: `role` with operator NotIn needs values"
    );
    assert!(err(&only(requirement("role", "Gt", Some(&["1"]))))
        .contains("unknown operator `Gt` for `role`"));
}

fn slice(ports: &[(&str, i32)], endpoints: &[(&str, Option<bool>)]) -> EndpointSlice {
    EndpointSlice {
        address_type: "IPv4".into(),
        endpoints: endpoints
            .iter()
            .map(|(a, ready)| SliceEndpoint {
                addresses: vec![(*a).to_owned()],
                conditions: Some(EndpointConditions {
                    ready: *ready,
                    ..EndpointConditions::default()
                }),
                ..SliceEndpoint::default()
            })
            .collect(),
        ports: Some(
            ports
                .iter()
                .map(|(name, port)| EndpointPort {
                    name: Some((*name).to_owned()),
                    port: Some(*port),
                    ..EndpointPort::default()
                })
                .collect(),
        ),
        ..EndpointSlice::default()
    }
}

fn addresses(slices: &[EndpointSlice], port: Option<IntOrString>) -> Vec<String> {
    ready_addresses(slices, port.as_ref())
        .into_iter()
        .map(|i| i.address)
        .collect()
}

#[test]
fn endpoint_slices_give_ready_addresses_at_the_chosen_port() {
    let slices = [
        slice(
            &[("postgres", 5433), ("metrics", 9187)],
            &[
                ("10.0.0.9", Some(true)),
                ("10.0.0.2", None),
                ("10.0.0.3", Some(false)),
            ],
        ),
        slice(&[("metrics", 9187)], &[("10.0.0.4", Some(true))]),
        slice(&[("postgres", 5433)], &[("10.0.0.2", Some(true))]),
    ];
    assert_eq!(
        addresses(&slices, Some(IntOrString::String("postgres".into()))),
        ["10.0.0.2:5433", "10.0.0.9:5433"],
        "named port: slices without it are skipped, unready endpoints too, duplicates merged"
    );
    assert_eq!(
        addresses(&slices, Some(IntOrString::Int(6000))),
        ["10.0.0.2:6000", "10.0.0.4:6000", "10.0.0.9:6000"]
    );
    assert_eq!(
        addresses(&slices, None),
        ["10.0.0.2:5432", "10.0.0.4:5432", "10.0.0.9:5432"]
    );
    assert!(addresses(&slices, Some(IntOrString::String("pg".into()))).is_empty());
}

#[test]
fn fixed_endpoints_keep_their_order_and_roles() {
    let e = |host: &str, port, role| Endpoint {
        host: host.into(),
        port,
        role,
    };
    let got = fixed(&[
        e("pg-1", 5432, EndpointRole::Replica),
        e("pg-0", 5433, EndpointRole::Primary),
        e("fd00::1", 5432, EndpointRole::Replica),
    ])
    .expect("valid");
    assert_eq!(
        got,
        [
            Instance {
                address: "pg-1:5432".into(),
                declared: Some(EndpointRole::Replica)
            },
            Instance {
                address: "pg-0:5433".into(),
                declared: Some(EndpointRole::Primary)
            },
            Instance {
                address: "[fd00::1]:5432".into(),
                declared: Some(EndpointRole::Replica)
            },
        ]
    );
    let twice = fixed(&[
        e("pg-0", 5432, EndpointRole::Primary),
        e("pg-0", 5432, EndpointRole::Replica),
    ])
    .expect_err("duplicate");
    assert_eq!(
        twice.to_string(),
        "spec.target: endpoints: pg-0:5432 is listed twice"
    );
}
