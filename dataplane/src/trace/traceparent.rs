//! The W3C `traceparent` an application put in a SQL comment, sqlcommenter style
//! (`SELECT … /*traceparent='00-<trace id>-<span id>-<flags>'*/`), so pgroute's span joins the
//! application's trace. Only read when tracing is on; a malformed value is ignored, never an error.

/// A parsed `traceparent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub sampled: bool,
}

/// The first valid `traceparent='…'` inside a `/* … */` comment of `sql`.
pub fn in_sql(sql: &str) -> Option<TraceParent> {
    let mut rest = sql;
    while let Some(open) = rest.find("/*") {
        let after = &rest[open + 2..];
        let close = after.find("*/")?;
        if let Some(tp) = in_comment(&after[..close]) {
            return Some(tp);
        }
        rest = &after[close + 2..];
    }
    None
}

fn in_comment(comment: &str) -> Option<TraceParent> {
    let at = comment.find("traceparent=")?;
    let value = comment[at + "traceparent=".len()..].trim_start();
    let value = value.strip_prefix('\'').unwrap_or(value);
    // URL-encoding (sqlcommenter encodes values) leaves this alphabet alone.
    let end = value
        .find(|c: char| !(c.is_ascii_hexdigit() || c == '-'))
        .unwrap_or(value.len());
    parse(&value[..end])
}

/// `00-<32 hex>-<16 hex>-<2 hex>`; all-zero ids and version `ff` are invalid (W3C Trace Context).
pub fn parse(value: &str) -> Option<TraceParent> {
    let mut parts = value.split('-');
    let (version, trace, span, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if version.len() != 2 || version.eq_ignore_ascii_case("ff") {
        return None;
    }
    // Version 00 has exactly four fields; later versions may append more.
    if version == "00" && parts.next().is_some() {
        return None;
    }
    let trace_id: [u8; 16] = hex(trace)?;
    let span_id: [u8; 8] = hex(span)?;
    let [flags]: [u8; 1] = hex(flags)?;
    if trace_id == [0; 16] || span_id == [0; 8] {
        return None;
    }
    Some(TraceParent {
        trace_id,
        span_id,
        sampled: flags & 1 == 1,
    })
}

fn hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn reads_a_sqlcommenter_comment() {
        let sql = format!("SELECT * FROM t /*action='index',traceparent='{TP}',framework='x'*/");
        let tp = in_sql(&sql).expect("found");
        assert_eq!(tp.trace_id[0], 0x4b);
        assert_eq!(tp.span_id, [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]);
        assert!(tp.sampled);
        // A leading comment works too, and the flag can say "not sampled".
        let unsampled = TP.replace("-01", "-00");
        let tp = in_sql(&format!("/* traceparent='{unsampled}' */ select 1")).expect("found");
        assert!(!tp.sampled);
    }

    #[test]
    fn ignores_what_is_not_a_valid_traceparent() {
        assert_eq!(
            in_sql("select 'traceparent=00-…'"),
            None,
            "not in a comment"
        );
        assert_eq!(in_sql("select 1 /* no trace here */"), None);
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-zzf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(
                in_sql(&format!("select 1 /*traceparent='{bad}'*/")),
                None,
                "{bad}"
            );
        }
        assert_eq!(in_sql("select 1 /* unterminated traceparent='"), None);
    }
}
