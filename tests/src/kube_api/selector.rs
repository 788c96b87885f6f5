//! `labelSelector` and `fieldSelector` query parameters, equality-based: `k=v`, `k==v`, `k!=v`,
//! `k` (exists) and `!k` for labels; `path=v` and `path!=v` for fields (`metadata.name`, ...).
//! Set-based label requirements (`k in (a,b)`) are not understood and are rejected with 400.

use serde_json::Value;

use super::store::ApiError;

#[derive(Clone, Debug, Default)]
pub struct Selector {
    requirements: Vec<Requirement>,
}

#[derive(Clone, Debug)]
enum Requirement {
    Label {
        key: String,
        op: Op,
    },
    Field {
        path: String,
        value: String,
        equal: bool,
    },
}

#[derive(Clone, Debug)]
enum Op {
    Equals(String),
    NotEquals(String),
    Exists,
    NotExists,
}

impl Selector {
    pub fn parse(labels: Option<&str>, fields: Option<&str>) -> Result<Selector, ApiError> {
        let mut requirements = Vec::new();
        for term in labels
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
        {
            if term.contains(" in ") || term.contains(" notin ") || term.contains('(') {
                return Err(ApiError::bad_request(format!(
                    "set-based selector `{term}` is not supported by the fake"
                )));
            }
            let (key, op) = if let Some((k, v)) = term.split_once("!=") {
                (k, Op::NotEquals(v.into()))
            } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                (k, Op::Equals(v.into()))
            } else if let Some(k) = term.strip_prefix('!') {
                (k, Op::NotExists)
            } else {
                (term, Op::Exists)
            };
            requirements.push(Requirement::Label {
                key: key.trim().into(),
                op,
            });
        }
        for term in fields
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
        {
            let (path, value, equal) = if let Some((k, v)) = term.split_once("!=") {
                (k, v, false)
            } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                (k, v, true)
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid field selector `{term}`"
                )));
            };
            requirements.push(Requirement::Field {
                path: path.trim().into(),
                value: value.trim().into(),
                equal,
            });
        }
        Ok(Selector { requirements })
    }

    pub fn matches(&self, object: &Value) -> bool {
        self.requirements.iter().all(|r| match r {
            Requirement::Label { key, op } => {
                let value = object
                    .pointer("/metadata/labels")
                    .and_then(|l| l.get(key))
                    .and_then(Value::as_str);
                match op {
                    Op::Equals(v) => value == Some(v.as_str()),
                    Op::NotEquals(v) => value != Some(v.as_str()),
                    Op::Exists => value.is_some(),
                    Op::NotExists => value.is_none(),
                }
            }
            Requirement::Field { path, value, equal } => {
                let pointer = format!("/{}", path.replace('.', "/"));
                let actual = match object.pointer(&pointer) {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Null) | None => String::new(),
                    Some(other) => other.to_string(),
                };
                (actual == *value) == *equal
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::Selector;

    #[test]
    fn equality_existence_and_fields() {
        let pod = json!({"metadata": {"name": "a", "labels": {"app": "db", "tier": "x"}}});
        let sel = |l: &str, f: &str| {
            Selector::parse(Some(l), Some(f))
                .map(|s| s.matches(&pod))
                .ok()
        };
        assert_eq!(sel("app=db,tier", ""), Some(true));
        assert_eq!(sel("app!=db", ""), Some(false));
        assert_eq!(sel("!missing", "metadata.name=a"), Some(true));
        assert_eq!(sel("", "metadata.name!=a"), Some(false));
        assert_eq!(sel("app in (db)", ""), None);
    }
}
