//! Double-quoted tokens as PostgreSQL writes identifiers and PgBouncer writes its auth file: `""` inside
//! stands for one quote. One reader for both, so the two cannot disagree on an edge case.

/// Reads the double-quoted token at the start of `s` (which must begin with `"`), returning its text
/// and what follows the closing quote; `None` when it is not quoted or never closed.
pub(crate) fn double_quoted(s: &str) -> Option<(String, &str)> {
    let q = s.strip_prefix('"')?;
    let mut out = String::new();
    let mut chars = q.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c == '"' {
            if matches!(chars.peek(), Some((_, '"'))) {
                out.push('"');
                chars.next();
                continue;
            }
            return Some((out, &q[i + 1..]));
        }
        out.push(c);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubled_quotes_and_the_rest() {
        assert_eq!(
            double_quoted(r#""a""b" rest"#),
            Some((r#"a"b"#.to_owned(), " rest"))
        );
        assert_eq!(double_quoted(r#""""#), Some((String::new(), "")));
        assert_eq!(double_quoted(r#""open"#), None);
        assert_eq!(double_quoted("bare"), None);
    }
}
