//! Configured query rules, checked before the AST (like ProxySQL's query rules, simpler): a regular
//! expression on the normalised query text, or an exact fingerprint, sends matching statements to a
//! fixed destination. Rules see the normalised text, so one rule covers every literal value.

use regex::Regex;

use super::Route;

/// A rule as configured.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct RuleMatch {
    /// Regular expression searched in the normalised query (lower-case, literals as `?`, one space
    /// between tokens), e.g. `^select .* from reporting\.`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// A query fingerprint (16 hex digits, as logged), matched exactly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// Where matching statements go.
    pub route: Route,
}

#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    #[error("routing.rules[{index}]: invalid pattern: {source}")]
    Pattern {
        index: usize,
        #[source]
        source: regex::Error,
    },
    #[error("routing.rules[{index}]: set exactly one of `pattern` and `fingerprint`")]
    Shape { index: usize },
}

/// A compiled rule.
#[derive(Debug, Clone)]
pub struct QueryRule {
    matcher: Matcher,
    pub route: Route,
}

#[derive(Debug, Clone)]
enum Matcher {
    Pattern(Regex),
    Fingerprint(String),
}

impl QueryRule {
    pub fn compile(rule: &RuleMatch) -> Result<QueryRule, RuleError> {
        QueryRule::compile_at(0, rule)
    }

    /// Compiles rule number `index` (named in errors).
    pub fn compile_at(index: usize, rule: &RuleMatch) -> Result<QueryRule, RuleError> {
        let matcher = match (&rule.pattern, &rule.fingerprint) {
            (Some(p), None) => Matcher::Pattern(
                Regex::new(p).map_err(|source| RuleError::Pattern { index, source })?,
            ),
            (None, Some(f)) => Matcher::Fingerprint(f.to_ascii_lowercase()),
            _ => return Err(RuleError::Shape { index }),
        };
        Ok(QueryRule {
            matcher,
            route: rule.route,
        })
    }

    pub fn matches(&self, normalized: &str, fingerprint: &str) -> bool {
        match &self.matcher {
            Matcher::Pattern(re) => re.is_match(normalized),
            Matcher::Fingerprint(f) => f == fingerprint,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::{fingerprint, normalize};

    #[test]
    fn pattern_sees_the_normalised_text_and_fingerprints_match_exactly() {
        let rule = QueryRule::compile(&RuleMatch {
            pattern: Some(r"^select .* from reporting\.".into()),
            fingerprint: None,
            route: Route::Replica,
        })
        .expect("compiles");
        let n = normalize("SELECT *  FROM Reporting.daily WHERE day = '2026-01-01'");
        assert!(rule.matches(&n, &fingerprint(&n)));
        let by_print = QueryRule::compile(&RuleMatch {
            pattern: None,
            fingerprint: Some(fingerprint(&n).to_ascii_uppercase()),
            route: Route::Primary,
        })
        .expect("compiles");
        assert!(by_print.matches(&n, &fingerprint(&n)));
    }

    #[test]
    fn bad_rules_name_their_position() {
        let err = QueryRule::compile_at(
            3,
            &RuleMatch {
                pattern: Some("(".into()),
                fingerprint: None,
                route: Route::Primary,
            },
        )
        .expect_err("bad regex");
        assert!(err.to_string().starts_with("routing.rules[3]"), "{err}");
        assert!(matches!(
            QueryRule::compile_at(
                0,
                &RuleMatch {
                    pattern: None,
                    fingerprint: None,
                    route: Route::Primary
                }
            ),
            Err(RuleError::Shape { index: 0 })
        ));
    }
}
