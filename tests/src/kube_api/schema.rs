//! Structural OpenAPI v3 validation of objects against a CRD version's `openAPIV3Schema`, as the
//! API server does before storing a custom resource: types (with `nullable` and
//! `x-kubernetes-int-or-string`), `required`, `enum`, numeric and length bounds, `pattern`, and
//! `additionalProperties`. CEL rules (`x-kubernetes-validations`) are [`super::cel`]'s, and
//! unknown fields are neither rejected nor pruned.

use serde_json::Value;

use super::error::Cause;

/// Every violation in `object`, each naming its field (`spec.credentials`, `Required value`).
pub fn validate(schema: &Value, object: &Value) -> Vec<Cause> {
    let mut errors = Vec::new();
    check(schema, object, "", &mut errors);
    errors
}

fn cause(reason: &'static str, field: &str, message: String) -> Cause {
    Cause {
        reason,
        field: field.to_owned(),
        message,
    }
}

fn check(schema: &Value, value: &Value, path: &str, errors: &mut Vec<Cause>) {
    let at = if path.is_empty() { "<root>" } else { path };
    if value.is_null() {
        if !schema
            .get("nullable")
            .and_then(Value::as_bool)
            .unwrap_or(false)
            && schema.get("type").is_some()
        {
            errors.push(cause(
                "FieldValueTypeInvalid",
                at,
                "Invalid value: \"null\": must not be null".into(),
            ));
        }
        return;
    }
    let int_or_string = schema
        .get("x-kubernetes-int-or-string")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if int_or_string {
        if !(value.is_i64() || value.is_u64() || value.is_string()) {
            errors.push(cause(
                "FieldValueTypeInvalid",
                at,
                "Invalid value: must be an integer or a string".into(),
            ));
        }
        return;
    }
    if let Some(ty) = schema.get("type").and_then(Value::as_str) {
        let ok = match ty {
            "object" => value.is_object(),
            "array" => value.is_array(),
            "string" => value.is_string(),
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            "boolean" => value.is_boolean(),
            _ => true,
        };
        if !ok {
            errors.push(cause(
                "FieldValueTypeInvalid",
                at,
                format!(
                    "Invalid value: \"{}\": {at} in body must be of type {ty}",
                    kind_of(value)
                ),
            ));
            return;
        }
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
        if !allowed.contains(value) {
            errors.push(cause(
                "FieldValueNotSupported",
                at,
                format!("Unsupported value: {value}"),
            ));
        }
    }
    bounds(schema, value, at, errors);
    match value {
        Value::Object(map) => {
            for name in schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                if !map.contains_key(name) {
                    errors.push(cause(
                        "FieldValueRequired",
                        &join(path, name),
                        "Required value".into(),
                    ));
                }
            }
            let properties = schema.get("properties").and_then(Value::as_object);
            for (name, child) in map {
                let sub = properties
                    .and_then(|p| p.get(name))
                    .or_else(|| schema.get("additionalProperties").filter(|a| a.is_object()));
                match sub {
                    Some(sub) => check(sub, child, &join(path, name), errors),
                    None if schema.get("additionalProperties") == Some(&Value::Bool(false)) => {
                        errors.push(cause(
                            "FieldValueForbidden",
                            &join(path, name),
                            "Forbidden: field not declared in schema".into(),
                        ));
                    }
                    None => {}
                }
            }
        }
        Value::Array(items) => {
            if let Some(sub) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    check(sub, item, &format!("{path}[{i}]"), errors);
                }
            }
        }
        _ => {}
    }
}

fn bounds(schema: &Value, value: &Value, at: &str, errors: &mut Vec<Cause>) {
    let limit = |k: &str| schema.get(k).and_then(Value::as_f64);
    if let Some(n) = value.as_f64() {
        if limit("minimum").is_some_and(|m| n < m) || limit("maximum").is_some_and(|m| n > m) {
            errors.push(cause(
                "FieldValueInvalid",
                at,
                format!("Invalid value: {value}: out of range"),
            ));
        }
    }
    let len = match value {
        Value::String(s) => Some(s.chars().count()),
        Value::Array(a) => Some(a.len()),
        _ => None,
    };
    if let Some(len) = len.map(|l| l as f64) {
        let (min, max) = if value.is_string() {
            ("minLength", "maxLength")
        } else {
            ("minItems", "maxItems")
        };
        if limit(min).is_some_and(|m| len < m) || limit(max).is_some_and(|m| len > m) {
            errors.push(cause(
                "FieldValueInvalid",
                at,
                format!("Invalid value: length {len} outside [{min}, {max}]"),
            ));
        }
    }
    if let (Some(s), Some(pattern)) = (
        value.as_str(),
        schema.get("pattern").and_then(Value::as_str),
    ) {
        match regex::Regex::new(pattern) {
            Ok(re) if !re.is_match(s) => {
                errors.push(cause(
                    "FieldValueInvalid",
                    at,
                    format!("Invalid value: \"{s}\": should match '{pattern}'"),
                ));
            }
            Ok(_) => {}
            Err(e) => errors.push(cause(
                "InternalError",
                at,
                format!("the schema's pattern does not compile: {e}"),
            )),
        }
    }
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn reports_each_violation_with_its_path() {
        let schema = json!({"type": "object", "required": ["spec"], "properties": {"spec": {
        "type": "object", "required": ["name"], "properties": {
            "name": {"type": "string", "minLength": 1, "pattern": "^[a-z]+$"},
            "port": {"type": "integer", "minimum": 1, "maximum": 65535},
            "role": {"type": "string", "enum": ["primary", "replica"]},
            "target": {"x-kubernetes-int-or-string": true},
            "opt": {"type": "string", "nullable": true},
        }}}});
        assert!(super::validate(
            &schema,
            &json!({"spec": {"name": "a", "port": 5432, "target": "pg", "opt": null}})
        )
        .is_empty());
        let errors = super::validate(
            &schema,
            &json!({"spec": {"name": "A", "port": "x", "role": "other", "target": 1.5}}),
        );
        assert_eq!(errors.len(), 4, "{errors:?}");
        assert_eq!(errors[0].field, "spec.name");
        assert!(errors[0].message.starts_with("Invalid value"), "{errors:?}");
        let missing: Vec<String> = super::validate(&schema, &json!({}))
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(missing, ["spec: Required value"]);
    }
}
