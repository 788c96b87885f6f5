//! Applying a PATCH body to an object: merge patch, JSON patch (with `test` ops) and server-side
//! apply approximated as a merge patch of the applied object (see [`PatchKind::Apply`]).

use serde_json::Value;

use super::store::{ApiError, PatchKind};

pub fn apply(current: &Value, kind: PatchKind, body: &[u8]) -> Result<Value, ApiError> {
    let mut doc = current.clone();
    match kind {
        PatchKind::Merge => {
            let patch: Value = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("invalid merge patch: {e}")))?;
            json_patch::merge(&mut doc, &patch);
        }
        PatchKind::Json => {
            let mut patch: json_patch::Patch = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}")))?;
            // The API server's JSON patch (evanphx/json-patch) passes a `test` for `null` on a
            // path that does not exist; kube-runtime's finalizer helper relies on that when it adds
            // the first finalizer. The json-patch crate fails it, so such tests are dropped here.
            patch.0.retain(|op| match op {
                json_patch::PatchOperation::Test(t) => {
                    !(t.value.is_null() && doc.pointer(t.path.as_str()).is_none())
                }
                _ => true,
            });
            json_patch::patch(&mut doc, &patch)
                .map_err(|e| ApiError::invalid(format!("the JSON patch failed: {e}")))?;
        }
        PatchKind::Apply => json_patch::merge(&mut doc, &parse_apply(body)?),
    }
    Ok(doc)
}

/// The applied configuration: YAML (of which JSON, what kube sends, is a subset).
pub fn parse_apply(body: &[u8]) -> Result<Value, ApiError> {
    let object: Value = yaml_serde::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid apply configuration: {e}")))?;
    if !object.is_object() {
        return Err(ApiError::bad_request(
            "the apply configuration is not an object",
        ));
    }
    Ok(object)
}
