//! Just enough of PostgreSQL's lexical rules to look at a statement without parsing it: skip comments,
//! string literals (standard, `E''` escapes, dollar-quoted) and quoted identifiers, and see bare words
//! and punctuation. Used by the keyword fast path and by normalisation; it never decides a write is a
//! read on its own (anything unusual sends the statement on to the parser).

/// A piece of SQL outside literals and comments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Token<'a> {
    /// A bare word: keyword or unquoted identifier (as written; compare case-insensitively).
    Word(&'a str),
    /// A `"quoted identifier"`, quotes included.
    Quoted(&'a str),
    /// A string literal of any kind, quotes included.
    Literal(&'a str),
    /// A number.
    Number(&'a str),
    /// A positional parameter such as `$1`.
    Param(&'a str),
    /// Any other single character (operators, punctuation).
    Punct(char),
}

/// Iterates over the tokens of `sql`, skipping whitespace and comments. An unterminated literal or
/// comment ends the iteration (the rest is treated as one literal).
pub(crate) struct Tokens<'a> {
    sql: &'a str,
    at: usize,
}

pub(crate) fn tokens(sql: &str) -> Tokens<'_> {
    Tokens { sql, at: 0 }
}

impl<'a> Iterator for Tokens<'a> {
    type Item = Token<'a>;

    fn next(&mut self) -> Option<Token<'a>> {
        let b = self.sql.as_bytes();
        loop {
            let c = *b.get(self.at)?;
            match c {
                b' ' | b'\t' | b'\n' | b'\r' | b'\x0c' => self.at += 1,
                b'-' if b.get(self.at + 1) == Some(&b'-') => {
                    self.at = find(b, self.at, b"\n").map_or(b.len(), |i| i + 1);
                }
                b'/' if b.get(self.at + 1) == Some(&b'*') => {
                    self.at = block_comment_end(b, self.at);
                }
                _ => break,
            }
        }
        let start = self.at;
        let c = b[start];
        let end = match c {
            b'\'' => quoted_end(b, start, b'\'', false),
            b'e' | b'E' if b.get(start + 1) == Some(&b'\'') => {
                quoted_end(b, start + 1, b'\'', true)
            }
            b'"' => quoted_end(b, start, b'"', false),
            b'$' => match dollar_tag(b, start) {
                Some(tag_len) => {
                    let tag = &b[start..start + tag_len];
                    find(b, start + tag_len, tag).map_or(b.len(), |i| i + tag_len)
                }
                None => {
                    let digits = b[start + 1..]
                        .iter()
                        .take_while(|c| c.is_ascii_digit())
                        .count();
                    start + 1 + digits
                }
            },
            c if c.is_ascii_digit()
                || (c == b'.' && b.get(start + 1).is_some_and(u8::is_ascii_digit)) =>
            {
                start
                    + b[start..]
                        .iter()
                        .take_while(|c| c.is_ascii_alphanumeric() || **c == b'.' || **c == b'_')
                        .count()
            }
            c if is_word_start(c) => {
                start + b[start..].iter().take_while(|c| is_word_char(**c)).count()
            }
            _ => start + self.sql[start..].chars().next().map_or(1, char::len_utf8),
        };
        self.at = end.max(start + 1).min(b.len());
        let text = &self.sql[start..self.at];
        Some(match c {
            b'\'' => Token::Literal(text),
            b'e' | b'E' if text.len() > 1 && text.as_bytes()[1] == b'\'' => Token::Literal(text),
            b'"' => Token::Quoted(text),
            b'$' if text.len() > 1 && text.as_bytes()[1].is_ascii_digit() => Token::Param(text),
            b'$' if text.len() > 1 => Token::Literal(text),
            c if c.is_ascii_digit() || c == b'.' && text.len() > 1 => Token::Number(text),
            c if is_word_start(c) => Token::Word(text),
            _ => Token::Punct(text.chars().next().unwrap_or(' ')),
        })
    }
}

fn is_word_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c >= 0x80
}

fn is_word_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80
}

fn find(hay: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    if from > hay.len() || needle.is_empty() {
        return None;
    }
    hay[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| from + i)
}

/// End of a `/* … */` comment (PostgreSQL nests them).
fn block_comment_end(b: &[u8], start: usize) -> usize {
    let mut depth = 0usize;
    let mut i = start;
    while i + 1 < b.len() {
        match (b[i], b[i + 1]) {
            (b'/', b'*') => {
                depth += 1;
                i += 2;
            }
            (b'*', b'/') => {
                depth -= 1;
                i += 2;
                if depth == 0 {
                    return i;
                }
            }
            _ => i += 1,
        }
    }
    b.len()
}

/// End (exclusive) of a quoted token opening at `start` with `quote`; a doubled quote escapes it, and
/// with `backslash` (E'' strings) so does a backslash.
fn quoted_end(b: &[u8], start: usize, quote: u8, backslash: bool) -> usize {
    let mut i = start + 1;
    while i < b.len() {
        match b[i] {
            b'\\' if backslash => i += 2,
            c if c == quote => {
                if b.get(i + 1) == Some(&quote) {
                    i += 2;
                } else {
                    return i + 1;
                }
            }
            _ => i += 1,
        }
    }
    b.len()
}

/// Length of a dollar-quote tag (`$$` or `$name$`) opening at `start`, if there is one.
fn dollar_tag(b: &[u8], start: usize) -> Option<usize> {
    let rest = &b[start + 1..];
    if rest.first().is_some_and(u8::is_ascii_digit) {
        return None;
    }
    let name = rest
        .iter()
        .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_' || **c >= 0x80)
        .count();
    (rest.get(name) == Some(&b'$')).then_some(name + 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(sql: &str) -> Vec<Token<'_>> {
        tokens(sql).collect()
    }

    #[test]
    fn skips_comments_and_keeps_literals_whole() {
        assert_eq!(
            all("/* a /* nested */ b */ SELECT 'it''s -- not' -- gone\n, $1"),
            vec![
                Token::Word("SELECT"),
                Token::Literal("'it''s -- not'"),
                Token::Punct(','),
                Token::Param("$1"),
            ]
        );
    }

    #[test]
    fn dollar_quotes_escapes_and_identifiers() {
        assert_eq!(
            all(r#"DO $x$ BEGIN; END $x$; E'a\'b' "for" 1.5e3"#),
            vec![
                Token::Word("DO"),
                Token::Literal("$x$ BEGIN; END $x$"),
                Token::Punct(';'),
                Token::Literal(r"E'a\'b'"),
                Token::Quoted("\"for\""),
                Token::Number("1.5e3"),
            ]
        );
    }

    #[test]
    fn unterminated_input_ends_without_panicking() {
        for sql in [
            "'open",
            "$tag$ never closed",
            "/* open",
            "\"open",
            "E'\\",
            "$",
            "é",
        ] {
            let _ = all(sql);
        }
    }
}
