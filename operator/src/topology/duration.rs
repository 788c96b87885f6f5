//! Durations as the CRD writes them (`500ms`, `5s`, `1m30s`, `1.5s`: [`DURATION_PATTERN`]) and
//! [`SpecError`], what is wrong with a spec value the operator turns into limits or a snapshot.
//!
//! A parser of its own rather than `humantime`: it accepts exactly what the CRD's pattern accepts
//! (humantime also takes `1 day`, `30 min` or `1m 30s`), so a value that reaches the operator without
//! the API server's validation (tests, an older CRD) means the same thing or is refused.
//!
//! [`DURATION_PATTERN`]: crate::crd::DURATION_PATTERN

use std::time::Duration;

/// A spec value the operator cannot use. The message goes into a status condition.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// A duration that does not parse, as [`parse_duration`] sees it (no field known).
    #[error("`{value}` is not a duration such as 500ms, 5s or 1m30s: {problem}")]
    Duration {
        value: String,
        problem: &'static str,
    },
    /// A value the sidecars would refuse or that does not fit, named by its field in the spec
    /// (`pool.queueTimeout`, ...).
    #[error("spec.{field}: {problem}")]
    Field {
        field: &'static str,
        problem: String,
    },
    /// No primary is known: every sidecar refuses a snapshot without one (`primary: required`).
    #[error("no primary is known, and a snapshot without one is refused by the sidecars")]
    NoPrimary,
}

impl SpecError {
    pub(crate) fn field(field: &'static str, problem: impl Into<String>) -> SpecError {
        SpecError::Field {
            field,
            problem: problem.into(),
        }
    }
}

/// Parses a CRD duration: one or more `<number>[.<digits>]<unit>` with unit `ms`, `s`, `m` or `h`,
/// summed (`1m30s` is 90 s). Fractions below a nanosecond are dropped.
pub fn parse_duration(s: &str) -> Result<Duration, SpecError> {
    let fail = |problem| SpecError::Duration {
        value: s.to_owned(),
        problem,
    };
    if s.is_empty() {
        return Err(fail("empty"));
    }
    let mut rest = s;
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let whole_len = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if whole_len == 0 {
            return Err(fail("expected a number"));
        }
        let (whole, after) = rest.split_at(whole_len);
        let (fraction, after) = match after.strip_prefix('.') {
            Some(after) => {
                let len = after
                    .find(|c: char| !c.is_ascii_digit())
                    .unwrap_or(after.len());
                if len == 0 {
                    return Err(fail("expected digits after the decimal point"));
                }
                after.split_at(len)
            }
            None => ("", after),
        };
        let unit_len = after
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let unit_nanos: u128 = match unit {
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" if after.is_empty() => return Err(fail("a number needs a unit (ms, s, m or h)")),
            "" => return Err(fail("expected a unit (ms, s, m or h) after the number")),
            _ => return Err(fail("unknown unit (use ms, s, m or h)")),
        };
        let whole: u128 = whole.parse().map_err(|_| fail("too large"))?;
        // Up to 9 fractional digits matter (nanoseconds of a second; fewer for ms).
        let digits = &fraction[..fraction.len().min(12)];
        let scale = 10u128.pow(u32::try_from(digits.len()).unwrap_or(12));
        let fraction: u128 = if digits.is_empty() {
            0
        } else {
            digits.parse().map_err(|_| fail("too large"))?
        };
        total = whole
            .checked_mul(unit_nanos)
            .and_then(|n| n.checked_add(fraction * unit_nanos / scale))
            .and_then(|n| total.checked_add(n))
            .ok_or_else(|| fail("too large"))?;
        rest = after;
    }
    let nanos = u64::try_from(total).map_err(|_| fail("too large"))?;
    Ok(Duration::from_nanos(nanos))
}

/// `field`'s duration, with the field named in the error.
pub(crate) fn duration_field(field: &'static str, value: &str) -> Result<Duration, SpecError> {
    parse_duration(value).map_err(|e| SpecError::field(field, e.to_string()))
}

/// Milliseconds, saturating (a duration of 584 million years is not a lag limit anyone means).
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> Duration {
        parse_duration(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn problem(s: &str) -> String {
        parse_duration(s).expect_err(s).to_string()
    }

    #[test]
    fn durations_the_crd_pattern_accepts() {
        assert_eq!(ok("500ms"), Duration::from_millis(500));
        assert_eq!(ok("5s"), Duration::from_secs(5));
        assert_eq!(ok("1m30s"), Duration::from_secs(90));
        assert_eq!(ok("2h"), Duration::from_secs(7200));
        assert_eq!(ok("1h2m3s4ms"), Duration::from_millis(3_723_004));
        assert_eq!(ok("1.5s"), Duration::from_millis(1500));
        assert_eq!(ok("0.25m"), Duration::from_secs(15));
        assert_eq!(ok("1.0000005ms"), Duration::from_nanos(1_000_000));
        assert_eq!(ok("0s"), Duration::ZERO);
        assert_eq!(ok("1s1s"), Duration::from_secs(2), "repeated units add up");
    }

    #[test]
    fn durations_it_refuses_say_why() {
        assert_eq!(
            problem(""),
            "`` is not a duration such as 500ms, 5s or 1m30s: empty"
        );
        assert!(problem("5").ends_with("a number needs a unit (ms, s, m or h)"));
        assert!(problem("5d").ends_with("unknown unit (use ms, s, m or h)"));
        assert!(problem("5sec").ends_with("unknown unit (use ms, s, m or h)"));
        assert!(problem("1m 30s").ends_with("expected a number"));
        assert!(problem("1 m").ends_with("expected a unit (ms, s, m or h) after the number"));
        assert!(problem("s").ends_with("expected a number"));
        assert!(problem("1.s").ends_with("expected digits after the decimal point"));
        assert!(problem("-1s").ends_with("expected a number"));
        assert!(problem("99999999999999999999h").ends_with("too large"));
        assert!(
            problem("9999999h").ends_with("too large"),
            "over u64 nanoseconds"
        );
    }

    #[test]
    fn a_field_error_names_the_field() {
        let e = duration_field("pool.queueTimeout", "soon").expect_err("bad");
        assert_eq!(
            e.to_string(),
            "spec.pool.queueTimeout: `soon` is not a duration such as 500ms, 5s or 1m30s: expected a number"
        );
    }
}
