//! The CEL rules (`x-kubernetes-validations`) of an installed CRD, evaluated by kube-cel (kube's
//! `cel` feature) as the real API server evaluates them: at every level of the schema with `self`
//! bound to that node, rules that use `oldSelf` only on an update where the old value exists, and
//! each failure reported as a [`Cause`] on the rule's field. The rules are compiled once, when the
//! CRD is installed, and a rule that does not compile refuses the CRD, as the real server does.
//!
//! On an update, a failed rule (one without `oldSelf`) whose field the write left as it was is
//! forgiven, as validation ratcheting (on by default since Kubernetes 1.30) forgives it: an object
//! stored before a rule existed can still have its labels or its status changed. The field compared
//! is the one the failure names, which for a rule with `fieldPath` is not the node it sits on.
//!
//! kube-cel fills in the schema's `default`s before evaluating (the real server defaults before it
//! validates); the object that is stored is not defaulted.

use kube::core::cel::{compile_schema, validate_compiled, CompilationError, CompiledSchema};
use serde_json::Value;

use super::error::Cause;

/// Rules of a CRD version's schema that do not compile.
#[derive(Debug, thiserror::Error)]
#[error("the CRD's CEL rules do not compile: {}", .0.join("; "))]
pub struct CompileError(Vec<String>);

/// A CRD version's compiled rules.
pub struct Rules {
    compiled: CompiledSchema,
}

impl std::fmt::Debug for Rules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rules").finish_non_exhaustive()
    }
}

impl Rules {
    /// Compiles every rule in `schema` (an `openAPIV3Schema`).
    pub fn compile(schema: &Value) -> Result<Rules, CompileError> {
        let compiled = compile_schema(schema);
        let mut errors = Vec::new();
        compilation_errors(&compiled, &mut errors);
        if errors.is_empty() {
            Ok(Rules { compiled })
        } else {
            Err(CompileError(errors))
        }
    }

    /// The rules `object` breaks; `old` is the object before an update (`None` on create).
    pub fn check(&self, object: &Value, old: Option<&Value>) -> Vec<Cause> {
        let Err(failures) = validate_compiled(&self.compiled, object, old) else {
            return Vec::new();
        };
        let ratcheted = |path: &str, rule: &str| {
            old.is_some_and(|old| value_at(old, path) == value_at(object, path))
                && !rule.contains("oldSelf")
        };
        failures
            .iter()
            .filter(|failure| !ratcheted(&failure.field_path, &failure.rule))
            .map(|failure| {
                let field = if failure.field_path.is_empty() {
                    "<root>".to_owned()
                } else {
                    failure.field_path.clone()
                };
                let reason = reason(failure.reason.as_deref());
                let message = match reason {
                    "FieldValueForbidden" => format!("Forbidden: {}", failure.message),
                    "FieldValueRequired" => format!("Required value: {}", failure.message),
                    "FieldValueDuplicate" => format!("Duplicate value: {}", failure.message),
                    _ => format!(
                        "Invalid value: \"{}\": {}",
                        type_name(value_at(object, &failure.field_path)),
                        failure.message
                    ),
                };
                Cause {
                    reason,
                    field,
                    message,
                }
            })
            .collect()
    }
}

fn compilation_errors(node: &CompiledSchema, errors: &mut Vec<String>) {
    errors.extend(node.compilation_errors().into_iter().map(describe));
    let children = node
        .properties
        .values()
        .chain(node.items.as_deref())
        .chain(node.additional_properties.as_deref())
        .chain(&node.all_of)
        .chain(&node.one_of)
        .chain(&node.any_of);
    for child in children {
        compilation_errors(child, errors);
    }
}

fn describe(error: &CompilationError) -> String {
    match error {
        CompilationError::Parse { rule, source } => format!("{rule:?}: {source}"),
        CompilationError::MessageExpressionParse {
            rule,
            message_expression,
            source,
        } => format!("messageExpression {message_expression:?} of {rule:?}: {source}"),
        other => format!("{other:?}"),
    }
}

/// A rule's `reason` as the `field.ErrorType` the real server reports; `FieldValueInvalid` when
/// the rule names none (or one it does not know).
fn reason(rule_reason: Option<&str>) -> &'static str {
    match rule_reason {
        Some("FieldValueForbidden") => "FieldValueForbidden",
        Some("FieldValueRequired") => "FieldValueRequired",
        Some("FieldValueDuplicate") => "FieldValueDuplicate",
        _ => "FieldValueInvalid",
    }
}

/// The value at `path` (`spec.target.endpoints[0]`, as kube-cel names a field) of `object`.
fn value_at<'a>(object: &'a Value, path: &str) -> Option<&'a Value> {
    let mut node = Some(object);
    for segment in path.split('.').filter(|s| !s.is_empty()) {
        let mut parts = segment.split('[');
        let name = parts.next().unwrap_or_default();
        if !name.is_empty() {
            node = node.and_then(|n| n.get(name));
        }
        for index in parts {
            let index = index.trim_end_matches(']').parse::<usize>().ok();
            node = node.and_then(|n| n.get(index?));
        }
    }
    node
}

/// The JSON type of a failed rule's value, as the real server names it (`Invalid value: "object"`).
fn type_name(value: Option<&Value>) -> &'static str {
    match value {
        Some(Value::Object(_)) | None => "object",
        Some(Value::Array(_)) => "array",
        Some(Value::String(_)) => "string",
        Some(Value::Number(n)) if n.is_f64() => "number",
        Some(Value::Number(_)) => "integer",
        Some(Value::Bool(_)) => "boolean",
        Some(Value::Null) => "null",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::Rules;

    fn schema() -> serde_json::Value {
        json!({"type": "object", "properties": {"spec": {
            "type": "object",
            "x-kubernetes-validations": [
                {"rule": "self.max >= self.min", "message": "max must be at least min"},
                {"rule": "self.max == oldSelf.max", "messageExpression": "'max is immutable, was ' + string(oldSelf.max)"},
            ],
            "properties": {
                "min": {"type": "integer"},
                "max": {"type": "integer"},
                "hosts": {"type": "array", "items": {"type": "string"},
                          "x-kubernetes-validations": [{"rule": "self.size() > 0", "reason": "FieldValueRequired", "message": "at least one host"}]},
            },
        }}})
    }

    #[test]
    fn rules_fail_on_the_node_they_sit_on() -> anyhow::Result<()> {
        let rules = Rules::compile(&schema())?;
        assert!(rules
            .check(&json!({"spec": {"min": 1, "max": 2}}), None)
            .is_empty());
        let causes = rules.check(&json!({"spec": {"min": 3, "max": 2, "hosts": []}}), None);
        let shown: Vec<String> = causes.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "spec: Invalid value: \"object\": max must be at least min",
                "spec.hosts: Required value: at least one host",
            ]
        );
        assert_eq!(causes[1].reason, "FieldValueRequired");
        Ok(())
    }

    #[test]
    fn old_self_rules_run_only_on_update() -> anyhow::Result<()> {
        let rules = Rules::compile(&schema())?;
        let new = json!({"spec": {"min": 1, "max": 5}});
        assert!(rules.check(&new, None).is_empty(), "create skips oldSelf");
        let old = json!({"spec": {"min": 1, "max": 4}});
        let causes = rules.check(&new, Some(&old));
        assert_eq!(causes.len(), 1, "{causes:?}");
        assert_eq!(
            causes[0].message,
            "Invalid value: \"object\": max is immutable, was 4"
        );
        Ok(())
    }

    #[test]
    fn an_update_that_leaves_a_broken_field_alone_is_ratcheted() -> anyhow::Result<()> {
        let rules = Rules::compile(&schema())?;
        let stored = json!({"metadata": {}, "spec": {"min": 3, "max": 2}});
        let labelled = json!({"metadata": {"labels": {"a": "b"}}, "spec": {"min": 3, "max": 2}});
        assert!(rules.check(&labelled, Some(&stored)).is_empty());
        let still_broken = json!({"metadata": {}, "spec": {"min": 4, "max": 2}});
        assert_eq!(rules.check(&still_broken, Some(&stored)).len(), 1);
        Ok(())
    }

    #[test]
    fn a_rule_that_does_not_compile_refuses_the_schema() {
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object",
            "x-kubernetes-validations": [{"rule": "self.a >="}]}}});
        let err = Rules::compile(&schema).expect_err("does not compile");
        assert!(err.to_string().contains("self.a >="), "{err}");
    }
}
