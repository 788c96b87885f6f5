//! Normalised query text and its fingerprint: literals and parameters become `?`, comments go, words
//! are lower-cased, whitespace is one space. Two executions of the same query with different values
//! share a fingerprint, which is what query rules (and later per-query metrics) key on.

use super::lexer::{tokens, Token};

/// The normalised text of `sql`: one space between tokens, except around `.`, after `(` and before
/// `)`, `,` and `;` (so `Reporting.Daily(x, y)` becomes `reporting.daily(x, y)`, not `reporting . daily`).
pub fn normalize(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut glue_next = true;
    for token in tokens(sql) {
        let glue_before = matches!(token, Token::Punct('.' | ')' | ',' | ';' | '('));
        if !glue_next && !glue_before {
            out.push(' ');
        }
        glue_next = matches!(token, Token::Punct('.' | '('));
        match token {
            Token::Literal(_) | Token::Number(_) | Token::Param(_) => out.push('?'),
            Token::Word(w) => out.extend(w.chars().map(|c| c.to_ascii_lowercase())),
            Token::Quoted(q) => out.push_str(q),
            Token::Punct(c) => out.push(c),
        }
    }
    out
}

/// A stable 64-bit fingerprint of normalised text (FNV-1a, so the same query gives the same value in
/// every pgroute version and process), as 16 hex digits.
pub fn fingerprint(normalized: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in normalized.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_comments_and_case_do_not_change_the_normal_form() {
        let a = normalize("SELECT * FROM t WHERE id = 42 AND name = 'x' -- c");
        let b = normalize("select *\n  from t /* other */ where id = $1 and name = E'y'");
        assert_eq!(a, "select * from t where id = ? and name = ?");
        assert_eq!(a, b);
        assert_eq!(fingerprint(&a), fingerprint(&b));
        assert_ne!(fingerprint(&a), fingerprint(&normalize("SELECT * FROM u")));
    }

    #[test]
    fn quoted_identifiers_keep_their_case() {
        assert_eq!(
            normalize("SELECT \"Name\" FROM T"),
            "select \"Name\" from t"
        );
        assert_eq!(
            normalize("SELECT count(*), S.x FROM s WHERE a IN (1, 2);"),
            "select count(*), s.x from s where a in(?, ?);"
        );
    }
}
