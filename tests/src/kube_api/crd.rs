//! Reading a CustomResourceDefinition (as JSON, e.g. `serde_json::to_value(DatabaseProxy::crd())`):
//! for each served version, the resource as discovery describes it and the `openAPIV3Schema` its
//! writes are validated against.

use serde_json::Value;

use super::discovery::{ApiResource, ALL_VERBS};

/// A CRD that lacks something the fake needs.
#[derive(Debug, thiserror::Error)]
#[error("the CRD has no {0}")]
pub struct MissingField(&'static str);

/// One served version of a CRD.
pub struct CrdVersion {
    pub resource: ApiResource,
    pub schema: Option<Value>,
}

pub fn served_versions(crd: &Value) -> Result<Vec<CrdVersion>, MissingField> {
    let text = |p: &'static str| {
        crd.pointer(p)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or(MissingField(p))
    };
    let group = text("/spec/group")?;
    let plural = text("/spec/names/plural")?;
    let kind = text("/spec/names/kind")?;
    let singular = text("/spec/names/singular").unwrap_or_else(|_| kind.to_lowercase());
    let namespaced = crd.pointer("/spec/scope").and_then(Value::as_str) != Some("Cluster");
    let short_names: Vec<String> = crd
        .pointer("/spec/names/shortNames")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect();
    let mut served = Vec::new();
    for version in crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let name = version
            .get("name")
            .and_then(Value::as_str)
            .ok_or(MissingField("/spec/versions/*/name"))?;
        if version.get("served").and_then(Value::as_bool) == Some(false) {
            continue;
        }
        // `/scale` is not served, so discovery does not offer it.
        let subresources = match version.pointer("/subresources/status") {
            Some(_) => vec!["status".to_owned()],
            None => Vec::new(),
        };
        served.push(CrdVersion {
            resource: ApiResource {
                group: group.clone(),
                version: name.to_owned(),
                plural: plural.clone(),
                singular: singular.clone(),
                kind: kind.clone(),
                namespaced,
                short_names: short_names.clone(),
                verbs: ALL_VERBS.iter().map(|v| (*v).to_owned()).collect(),
                subresources,
            },
            schema: version.pointer("/schema/openAPIV3Schema").cloned(),
        });
    }
    Ok(served)
}
