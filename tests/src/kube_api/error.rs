//! Failed requests and the `metav1.Status` bodies that answer them, with the codes and reasons
//! the real API server uses (404 NotFound, 409 AlreadyExists / Conflict, 422 Invalid, 415, ...).

use serde_json::{json, Value};

use super::store::{ObjectKey, ResourceKey};

/// A failed request, answered as a `metav1.Status`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code} {reason}: {message}")]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            reason,
            message: message.into(),
        }
    }
    pub fn not_found(key: &ObjectKey) -> ApiError {
        ApiError::new(
            404,
            "NotFound",
            format!("{} \"{}\" not found", qualified(&key.resource), key.name),
        )
    }
    pub fn conflict(key: &ObjectKey, why: &str) -> ApiError {
        ApiError::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{}\": {why}",
                qualified(&key.resource),
                key.name
            ),
        )
    }
    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(422, "Invalid", message)
    }
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "BadRequest", message)
    }

    /// The `metav1.Status` body, with details naming the object when there is one.
    pub fn to_status(&self, key: Option<&ObjectKey>) -> Value {
        let mut status = json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": self.message, "reason": self.reason, "code": self.code,
        });
        if let Some(key) = key {
            status["details"] =
                json!({"name": key.name, "group": key.resource.group, "kind": key.resource.plural});
        }
        status
    }
}

/// `databaseproxies.pgroute.dev`, `pods`: how the real API names a resource in messages.
pub(super) fn qualified(r: &ResourceKey) -> String {
    if r.group.is_empty() {
        r.plural.clone()
    } else {
        format!("{}.{}", r.plural, r.group)
    }
}
