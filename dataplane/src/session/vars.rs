//! Session variables a client has set, and the SQL that moves a backend connection from one set to
//! another.
//!
//! In transaction mode a client's `SET search_path = …` must follow it to whichever backend connection
//! runs its next transaction, and must not stay behind for the next client. Each client keeps its
//! [`SessionVars`]; each backend connection remembers the ones last applied to it; when they differ at
//! checkout, one round trip of `RESET`/`SET` statements makes them equal. Clients that never `SET`
//! anything (most of them) match every connection and pay nothing.

use super::statement::Effect;

/// Variables in the order they were set, keyed by lower-case GUC name, each with the statement that sets
/// it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionVars {
    entries: Vec<(String, String)>,
}

impl SessionVars {
    /// Startup parameters a client sent, as variables (the server connection was opened with
    /// `client_encoding=UTF8`, so that value needs no replay). Settings inside `options`
    /// (`-c name=value`, `--name=value`, as libpq's PGOPTIONS sends them) count too; any other
    /// command-line option there is refused, because a setting silently dropped is worse than an error.
    pub fn from_startup<'a>(
        params: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<SessionVars, String> {
        let mut vars = SessionVars::default();
        for (name, value) in params {
            let key = name.to_ascii_lowercase();
            if key == "options" {
                for (k, v) in parse_options(value)? {
                    vars.set_value(&k, &v);
                }
                continue;
            }
            if matches!(key.as_str(), "user" | "database" | "replication")
                || key.starts_with("_pq_.")
                || (key == "client_encoding" && value.eq_ignore_ascii_case("UTF8"))
            {
                continue;
            }
            vars.set_value(&key, value);
        }
        // Held by every idle client for its whole life: no spare capacity.
        vars.entries.shrink_to_fit();
        Ok(vars)
    }

    fn set_value(&mut self, name: &str, value: &str) {
        let key = name.to_ascii_lowercase();
        let stmt = format!("SET {} = {}", quote_ident(&key), quote_literal(value));
        self.set(key, stmt);
    }

    /// Sets `name` unless the client already set it (a default the proxy applies for the client).
    pub fn set_default(&mut self, name: &str, value: &str) {
        if self.get(&name.to_ascii_lowercase()).is_none() {
            self.set_value(name, value);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, s)| s.as_str())
    }

    fn set(&mut self, key: String, stmt: String) {
        match self.entries.iter_mut().find(|(k, _)| *k == key) {
            Some(entry) => entry.1 = stmt,
            None => self.entries.push((key, stmt)),
        }
    }

    /// Applies a tracked statement's effect.
    pub fn apply(&mut self, effect: Effect) {
        match effect {
            Effect::Set { key, stmt } => self.set(key, stmt),
            Effect::Reset { key } => self.entries.retain(|(k, _)| *k != key),
            Effect::ResetAll | Effect::DiscardAll => self.entries.clear(),
            Effect::None | Effect::Unsupported(_) | Effect::Deallocate(_) => {}
        }
    }

    /// SQL that turns a connection whose applied variables are `from` into one with `self`, or `None` if
    /// they already match.
    pub fn sync_sql(&self, from: &SessionVars) -> Option<String> {
        if self == from {
            return None;
        }
        let mut sql = String::new();
        for (key, _) in &from.entries {
            if self.get(key).is_none() {
                sql.push_str(&reset_sql(key));
                sql.push_str("; ");
            }
        }
        for (key, stmt) in &self.entries {
            if from.get(key) != Some(stmt.as_str()) {
                sql.push_str(stmt);
                sql.push_str("; ");
            }
        }
        Some(sql)
    }
}

/// Splits PostgreSQL's `options` startup parameter (whitespace-separated, `\` escapes the next
/// character) into `-c name=value` / `--name=value` settings.
fn parse_options(options: &str) -> Result<Vec<(String, String)>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut chars = options.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    word.push(n);
                }
            }
            c if c.is_whitespace() => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    let mut settings = Vec::new();
    let mut it = words.into_iter();
    while let Some(w) = it.next() {
        let setting = if w == "-c" {
            it.next()
                .ok_or_else(|| "startup option -c needs name=value".to_owned())?
        } else if let Some(rest) = w.strip_prefix("-c") {
            rest.to_owned()
        } else if let Some(rest) = w.strip_prefix("--") {
            rest.to_owned()
        } else {
            return Err(format!(
                "unsupported startup option `{w}` (pgroute supports -c name=value and --name=value)"
            ));
        };
        let (name, value) = setting
            .split_once('=')
            .ok_or_else(|| format!("startup option `{setting}` is not name=value"))?;
        settings.push((name.replace('-', "_"), value.to_owned()));
    }
    Ok(settings)
}

fn reset_sql(key: &str) -> String {
    match key {
        "session_authorization" => "RESET SESSION AUTHORIZATION".into(),
        "session_characteristics" => "RESET default_transaction_isolation; RESET default_transaction_read_only; RESET default_transaction_deferrable".into(),
        key => format!("RESET {}", quote_ident(key)),
    }
}

/// Quotes an identifier unless it is plainly safe (lower-case letters, digits, `_`, and `.` for
/// custom-variable prefixes).
pub fn quote_ident(s: &str) -> String {
    let plain = s.bytes().enumerate().all(|(i, b)| {
        b.is_ascii_lowercase() || b == b'_' || (i > 0 && (b.is_ascii_digit() || b == b'.'))
    });
    if plain && !s.is_empty() {
        s.to_owned()
    } else {
        format!("\"{}\"", s.replace('"', "\"\""))
    }
}

/// Quotes a string literal (standard_conforming_strings is on by default since PostgreSQL 9.1; `E''` is
/// avoided so backslashes pass as written).
pub fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(key: &str, stmt: &str) -> Effect {
        Effect::Set {
            key: key.into(),
            stmt: stmt.into(),
        }
    }

    #[test]
    fn equal_sets_need_no_sync() {
        let a =
            SessionVars::from_startup([("user", "u"), ("client_encoding", "UTF8")]).expect("valid");
        assert!(a.is_empty());
        assert_eq!(a.sync_sql(&SessionVars::default()), None);
    }

    #[test]
    fn startup_params_become_sets() {
        let v = SessionVars::from_startup([("application_name", "it's"), ("DateStyle", "ISO")])
            .expect("valid");
        assert_eq!(
            v.get("application_name"),
            Some("SET application_name = 'it''s'")
        );
        assert_eq!(v.get("datestyle"), Some("SET datestyle = 'ISO'"));
    }

    #[test]
    fn sync_resets_what_the_previous_client_left_and_sets_what_is_missing() {
        let mut previous = SessionVars::default();
        previous.apply(set("search_path", "SET search_path = a"));
        previous.apply(set("work_mem", "SET work_mem = '8MB'"));
        let mut wanted = SessionVars::default();
        wanted.apply(set("work_mem", "SET work_mem = '8MB'"));
        wanted.apply(set("timezone", "SET TIME ZONE 'UTC'"));
        assert_eq!(
            wanted.sync_sql(&previous).as_deref(),
            Some("RESET search_path; SET TIME ZONE 'UTC'; ")
        );
    }

    #[test]
    fn options_settings_become_sets_and_other_options_are_refused() {
        let v = SessionVars::from_startup([(
            "options",
            "-c statement_timeout=5s --search-path=app\\ schema -cwork_mem=1MB",
        )])
        .expect("valid");
        assert_eq!(
            v.get("statement_timeout"),
            Some("SET statement_timeout = '5s'")
        );
        assert_eq!(v.get("search_path"), Some("SET search_path = 'app schema'"));
        assert_eq!(v.get("work_mem"), Some("SET work_mem = '1MB'"));
        let err = SessionVars::from_startup([("options", "-B 100")]).expect_err("refused");
        assert!(err.contains("-B"), "{err}");
    }

    #[test]
    fn reset_all_clears() {
        let mut v = SessionVars::default();
        v.apply(set("a", "SET a = 1"));
        v.apply(Effect::ResetAll);
        assert!(v.is_empty());
    }

    #[test]
    fn identifiers_are_quoted_when_needed() {
        assert_eq!(quote_ident("myapp.tenant"), "myapp.tenant");
        assert_eq!(quote_ident("Weird\"Name"), "\"Weird\"\"Name\"");
    }
}
