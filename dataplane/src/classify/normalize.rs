//! Normalised query text and its fingerprint: literals and parameters become `?`, comments go, words
//! are lower-cased, whitespace is one space. Two executions of the same query with different values
//! share a fingerprint, which is what query rules (and later per-query metrics) key on.

use super::lexer::{tokens, Token};

/// The normalised text of `sql`: one space between tokens, except around `.`, after `(` and before
/// `)`, `,` and `;` (so `Reporting.Daily(x, y)` becomes `reporting.daily(x, y)`, not `reporting . daily`).
pub fn normalize(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    emit_normal(sql, |piece| match piece {
        Piece::Text(t) => out.push_str(t),
        Piece::Lower(w) => out.extend(w.chars().map(|c| c.to_ascii_lowercase())),
        Piece::Char(c) => out.push(c),
    });
    out
}

/// A stable 64-bit fingerprint of normalised text (FNV-1a, so the same query gives the same value in
/// every pgroute version and process), as 16 hex digits.
pub fn fingerprint(normalized: &str) -> String {
    let mut h = Fnv::default();
    h.write(normalized.as_bytes());
    format!("{:016x}", h.0)
}

/// `fingerprint(&normalize(sql))` as a number, computed without building the normalised text: per-query
/// metrics take it on the query path, where an allocation per statement would show.
pub fn fingerprint_sql(sql: &str) -> u64 {
    let mut h = Fnv::default();
    emit_normal(sql, |piece| match piece {
        Piece::Text(t) => h.write(t.as_bytes()),
        // ASCII lower-casing per byte leaves UTF-8 sequences as they are, like the char-wise one.
        Piece::Lower(w) => w.bytes().for_each(|b| h.byte(b.to_ascii_lowercase())),
        Piece::Char(c) => h.write(c.encode_utf8(&mut [0u8; 4]).as_bytes()),
    });
    h.0
}

#[derive(Clone, Copy)]
enum Piece<'a> {
    Text(&'a str),
    Lower(&'a str),
    Char(char),
}

/// The normal form as a sequence of pieces, shared by [`normalize`] and [`fingerprint_sql`] so the two
/// cannot drift apart.
fn emit_normal<'a>(sql: &'a str, mut emit: impl FnMut(Piece<'a>)) {
    let mut glue_next = true;
    for token in tokens(sql) {
        let glue_before = matches!(token, Token::Punct('.' | ')' | ',' | ';' | '('));
        if !glue_next && !glue_before {
            emit(Piece::Text(" "));
        }
        glue_next = matches!(token, Token::Punct('.' | '('));
        match token {
            Token::Literal(_) | Token::Number(_) | Token::Param(_) => emit(Piece::Text("?")),
            Token::Word(w) => emit(Piece::Lower(w)),
            Token::Quoted(q) => emit(Piece::Text(q)),
            Token::Punct(c) => emit(Piece::Char(c)),
        }
    }
}

/// FNV-1a, 64 bits.
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    fn byte(&mut self, b: u8) {
        self.0 ^= u64::from(b);
        self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
    }

    fn write(&mut self, bytes: &[u8]) {
        bytes.iter().for_each(|b| self.byte(*b));
    }
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
    fn streaming_fingerprint_matches_the_text_one() {
        for sql in [
            "SELECT * FROM t WHERE id = 42 AND name = 'x' -- c",
            "select count(*), S.x FROM s WHERE a IN (1, 2);",
            "SELECT \"Näme\" FROM Ünïcode WHERE x = $1",
            "",
            "BEGIN; UPDATE t SET v = v + 1; COMMIT",
        ] {
            let text = fingerprint(&normalize(sql));
            assert_eq!(format!("{:016x}", fingerprint_sql(sql)), text, "{sql}");
        }
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
