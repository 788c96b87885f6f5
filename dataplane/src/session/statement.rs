//! What a statement does to session state, found without a full SQL parse.
//!
//! Transaction pooling hands a backend connection to many clients in turn, so anything a statement leaves
//! behind on the connection after its transaction ends would leak into the next client's session. This
//! module spots those statements: `SET`/`RESET`/`DISCARD ALL` are tracked (the proxy replays them), and
//! state that cannot be replayed safely (LISTEN, SQL-level PREPARE, WITH HOLD cursors, temporary objects
//! that outlive the transaction, session-level advisory locks) is refused with a clear error. It is a
//! keyword scan over the statement's first words, which is all these forms need; routing's full parse
//! comes later and does not replace it.

/// The effect of one statement on session state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// No lasting session state.
    None,
    /// Sets session variable `key` (lower-case GUC name) by running `stmt` again.
    Set { key: String, stmt: String },
    /// Resets one variable.
    Reset { key: String },
    /// `RESET ALL`.
    ResetAll,
    /// `DISCARD ALL`: variables reset and prepared statements dropped.
    DiscardAll,
    /// `DEALLOCATE [PREPARE] name`, or `ALL` (`None`).
    Deallocate(Option<String>),
    /// Session state pgroute cannot carry across backend connections in transaction mode.
    Unsupported(&'static str),
}

/// The effects of every statement in `sql` (a simple Query may hold several), in order. The common case
/// — one statement that touches no session state — allocates nothing.
pub fn effects(sql: &str, mut each: impl FnMut(Effect)) {
    for stmt in split_statements(sql) {
        let e = classify(stmt);
        if e != Effect::None {
            each(e);
        }
    }
}

/// Splits on `;` outside quotes, comments and dollar-quoted bodies.
pub fn split_statements(sql: &str) -> impl Iterator<Item = &str> {
    let bytes = sql.as_bytes();
    let mut start = 0;
    let mut i = 0;
    let mut done = false;
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        while i < bytes.len() {
            match bytes[i] {
                b';' => {
                    let s = &sql[start..i];
                    i += 1;
                    start = i;
                    return Some(s);
                }
                b'\'' => {
                    let escapes = i > 0 && matches!(bytes[i - 1], b'E' | b'e');
                    i = skip_quoted(bytes, i, b'\'', escapes);
                }
                b'"' => i = skip_quoted(bytes, i, b'"', false),
                b'-' if bytes.get(i + 1) == Some(&b'-') => {
                    i = bytes[i..]
                        .iter()
                        .position(|&b| b == b'\n')
                        .map_or(bytes.len(), |p| i + p + 1);
                }
                b'/' if bytes.get(i + 1) == Some(&b'*') => i = skip_block_comment(bytes, i),
                b'$' => i = skip_dollar_quoted(sql, i),
                _ => i += 1,
            }
        }
        done = true;
        Some(&sql[start..])
    })
    .filter(|s| !s.trim().is_empty())
}

fn skip_quoted(bytes: &[u8], open: usize, quote: u8, backslash_escapes: bool) -> usize {
    let mut i = open + 1;
    while i < bytes.len() {
        if backslash_escapes && bytes[i] == b'\\' {
            i += 2;
            continue;
        }
        if bytes[i] == quote {
            if bytes.get(i + 1) == Some(&quote) {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    bytes.len()
}

fn skip_block_comment(bytes: &[u8], open: usize) -> usize {
    // PostgreSQL block comments nest.
    let mut depth = 0;
    let mut i = open;
    while i + 1 < bytes.len() {
        if bytes[i] == b'/' && bytes[i + 1] == b'*' {
            depth += 1;
            i += 2;
        } else if bytes[i] == b'*' && bytes[i + 1] == b'/' {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return i;
            }
        } else {
            i += 1;
        }
    }
    bytes.len()
}

fn skip_dollar_quoted(sql: &str, open: usize) -> usize {
    let bytes = sql.as_bytes();
    let tag_end = bytes[open + 1..]
        .iter()
        .position(|&b| !(b.is_ascii_alphanumeric() || b == b'_'))
        .map(|p| open + 1 + p);
    match tag_end {
        Some(end) if bytes[end] == b'$' => {
            let tag = &sql[open..=end];
            sql[end + 1..]
                .find(tag)
                .map_or(bytes.len(), |p| end + 1 + p + tag.len())
        }
        _ => open + 1,
    }
}

/// Words of a statement, skipping leading whitespace and comments; a double-quoted identifier is one
/// word (quotes kept), and `=` ends a word.
struct Words<'a> {
    rest: &'a str,
}

impl<'a> Words<'a> {
    fn new(s: &'a str) -> Words<'a> {
        Words { rest: s }
    }

    fn skip_noise(&mut self) {
        loop {
            self.rest = self.rest.trim_start();
            if let Some(r) = self.rest.strip_prefix("--") {
                self.rest = r.find('\n').map_or("", |p| &r[p + 1..]);
            } else if self.rest.starts_with("/*") {
                let end = skip_block_comment(self.rest.as_bytes(), 0);
                self.rest = &self.rest[end..];
            } else {
                return;
            }
        }
    }

    fn next_word(&mut self) -> Option<&'a str> {
        self.skip_noise();
        let b = self.rest.as_bytes();
        if b.is_empty() {
            return None;
        }
        let end = if b[0] == b'"' {
            skip_quoted(b, 0, b'"', false)
        } else {
            b.iter()
                .position(|&c| c.is_ascii_whitespace() || c == b'=' || c == b'(' || c == b';')
                .unwrap_or(b.len())
                .max(1)
        };
        let (w, r) = self.rest.split_at(end);
        self.rest = r;
        Some(w)
    }
}

fn is(word: Option<&str>, keyword: &str) -> bool {
    word.is_some_and(|w| w.eq_ignore_ascii_case(keyword))
}

fn contains_ignore_case(haystack: &str, needle: &str) -> bool {
    let (h, n) = (haystack.as_bytes(), needle.as_bytes());
    h.len() >= n.len() && h.windows(n.len()).any(|w| w.eq_ignore_ascii_case(n))
}

/// A GUC name as PostgreSQL stores it: unquoted names fold to lower case, quoted ones keep theirs.
fn guc_key(word: &str) -> String {
    match word.strip_prefix('"').and_then(|w| w.strip_suffix('"')) {
        Some(quoted) => quoted.replace("\"\"", "\""),
        None => word.to_ascii_lowercase(),
    }
}

/// The effect of one statement.
pub fn classify(stmt: &str) -> Effect {
    let mut words = Words::new(stmt);
    let Some(first) = words.next_word() else {
        return Effect::None;
    };
    let stmt_text = || stmt.trim().to_owned();
    if first.eq_ignore_ascii_case("SET") {
        let mut w = words.next_word();
        if is(w, "LOCAL") || is(w, "TRANSACTION") {
            return Effect::None;
        }
        if is(w, "SESSION") {
            w = words.next_word();
            if is(w, "CHARACTERISTICS") {
                return Effect::Set {
                    key: "session_characteristics".into(),
                    stmt: stmt_text(),
                };
            }
            if is(w, "AUTHORIZATION") {
                return Effect::Set {
                    key: "session_authorization".into(),
                    stmt: stmt_text(),
                };
            }
        }
        let key = match w {
            None => return Effect::None,
            Some(w) if w.eq_ignore_ascii_case("TIME") && is(words.next_word(), "ZONE") => {
                "timezone".to_owned()
            }
            Some(w) if w.eq_ignore_ascii_case("NAMES") => "client_encoding".to_owned(),
            Some(w) if w.eq_ignore_ascii_case("SCHEMA") => "search_path".to_owned(),
            Some(w) if w.eq_ignore_ascii_case("XML") => "xmloption".to_owned(),
            Some(w) => guc_key(w),
        };
        return Effect::Set {
            key,
            stmt: stmt_text(),
        };
    }
    if first.eq_ignore_ascii_case("RESET") {
        let w = words.next_word();
        return match w {
            None => Effect::None,
            Some(w) if w.eq_ignore_ascii_case("ALL") => Effect::ResetAll,
            Some(w) if w.eq_ignore_ascii_case("SESSION") => Effect::Reset {
                key: "session_authorization".into(),
            },
            Some(w) if w.eq_ignore_ascii_case("TIME") => Effect::Reset {
                key: "timezone".into(),
            },
            Some(w) => Effect::Reset { key: guc_key(w) },
        };
    }
    if first.eq_ignore_ascii_case("DISCARD") {
        return if is(words.next_word(), "ALL") {
            Effect::DiscardAll
        } else {
            Effect::None
        };
    }
    if first.eq_ignore_ascii_case("DEALLOCATE") {
        let mut w = words.next_word();
        if is(w, "PREPARE") {
            w = words.next_word();
        }
        return match w {
            None => Effect::None,
            Some(w) if w.eq_ignore_ascii_case("ALL") => Effect::Deallocate(None),
            Some(w) => Effect::Deallocate(Some(guc_key(w))),
        };
    }
    if first.eq_ignore_ascii_case("LISTEN") {
        return Effect::Unsupported("LISTEN");
    }
    if first.eq_ignore_ascii_case("PREPARE") {
        return if is(words.next_word(), "TRANSACTION") {
            Effect::None
        } else {
            Effect::Unsupported(
                "PREPARE inside a multi-statement query or an extended-protocol Parse (send it as a query of its own)",
            )
        };
    }
    if first.eq_ignore_ascii_case("DECLARE") && contains_ignore_case(stmt, "WITH HOLD") {
        return Effect::Unsupported("DECLARE ... WITH HOLD (cursors that outlive the transaction)");
    }
    if first.eq_ignore_ascii_case("CREATE") {
        let mut w = words.next_word();
        if is(w, "GLOBAL") || is(w, "LOCAL") {
            w = words.next_word();
        }
        if (is(w, "TEMP") || is(w, "TEMPORARY")) && !contains_ignore_case(stmt, "ON COMMIT DROP") {
            return Effect::Unsupported(
                "temporary objects that outlive the transaction (use ON COMMIT DROP)",
            );
        }
    }
    if contains_ignore_case(stmt, "advisory_lock") {
        return Effect::Unsupported(
            "session-level advisory locks (use pg_advisory_xact_lock, released at commit)",
        );
    }
    Effect::None
}

#[cfg(test)]
mod tests;
