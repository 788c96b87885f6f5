//! Routing hints in a statement's leading comments: `/* pgroute: route=replica */` (or `-- pgroute:
//! route=primary`). Only comments before the first token count, so a hint cannot be smuggled in from a
//! string literal or a comment in the middle of the statement, and unknown keys are ignored (other
//! tools' comments, such as sqlcommenter's, can sit in the same comment).

use super::Route;

/// What the leading comments ask for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Hints {
    pub route: Option<Route>,
    /// `max_lag=10s`: the statement accepts replicas this far behind (the client's consent to staler
    /// reads than `consistency.max_replica_lag`).
    pub max_lag: Option<std::time::Duration>,
}

/// Reads the hints in the comments at the start of `sql`.
pub fn parse(sql: &str) -> Hints {
    let mut hints = Hints::default();
    let mut rest = sql;
    loop {
        rest = rest.trim_start();
        let body = if let Some(r) = rest.strip_prefix("/*") {
            let Some(end) = r.find("*/") else { break };
            rest = &r[end + 2..];
            &r[..end]
        } else if let Some(r) = rest.strip_prefix("--") {
            let end = r.find('\n').unwrap_or(r.len());
            rest = &r[end..];
            &r[..end]
        } else {
            break;
        };
        let Some(at) = body.find("pgroute:") else {
            continue;
        };
        for pair in body[at + "pgroute:".len()..].split([' ', ',', '\t', '\n']) {
            if let Some((key, value)) = pair.split_once('=') {
                if key.trim().eq_ignore_ascii_case("max_lag") {
                    if let Ok(d) = humantime::parse_duration(value.trim()) {
                        hints.max_lag = Some(d);
                    }
                }
                if key.trim().eq_ignore_ascii_case("route") {
                    hints.route = match value.trim().to_ascii_lowercase().as_str() {
                        "primary" | "write" => Some(Route::Primary),
                        "replica" | "read" => Some(Route::Replica),
                        _ => hints.route,
                    };
                }
            }
        }
    }
    hints
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leading_block_and_line_comments_carry_hints() {
        assert_eq!(
            parse("/* pgroute: route=replica */ SELECT 1").route,
            Some(Route::Replica)
        );
        assert_eq!(
            parse("  -- pgroute: route=primary\nSELECT 1").route,
            Some(Route::Primary)
        );
        assert_eq!(
            parse("/* app=web */ /* pgroute: route=primary, other=x */ SELECT 1").route,
            Some(Route::Primary)
        );
    }

    #[test]
    fn max_lag_hint() {
        let h = parse("/* pgroute: max_lag=10s route=replica */ SELECT 1");
        assert_eq!(h.max_lag, Some(std::time::Duration::from_secs(10)));
        assert_eq!(h.route, Some(Route::Replica));
        assert_eq!(parse("/* pgroute: max_lag=soon */ SELECT 1").max_lag, None);
    }

    #[test]
    fn hints_after_the_first_token_or_malformed_are_ignored() {
        assert_eq!(parse("SELECT 1 /* pgroute: route=replica */").route, None);
        assert_eq!(parse("SELECT '/* pgroute: route=replica */'").route, None);
        assert_eq!(parse("/* pgroute: route=sideways */ SELECT 1").route, None);
        assert_eq!(parse("/* pgroute: route=replica SELECT 1").route, None);
    }
}
