//! Reading console commands: PgBouncer's grammar (`WORD [ARG]`, case-insensitive), plus pgroute's own
//! `DRAIN`/`UNDRAIN` and `SHOW REPLICAS`/`ROUTES`. Pure, so every spelling is unit-tested.
//!
//! Unlike PgBouncer, which takes one command per query, a query may hold several commands separated by
//! `;` (psql's `-c "SHOW POOLS; SHOW STATS"`): they run in order, each with its own result, and the
//! first that fails ends the query (as PostgreSQL does with a multi-statement simple query).

/// One console command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Show(Show),
    Pause,
    Resume,
    Reload,
    /// `DRAIN host:port`: the replica takes no new transactions.
    Drain(String),
    /// `UNDRAIN host:port`.
    Undrain(String),
    Shutdown,
    /// `SET key = value`: drivers send some on connect; accepted and ignored with a notice, as PgBouncer
    /// does for the settings it fakes.
    Set,
}

/// What a `SHOW` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Show {
    Help,
    Pools,
    Stats,
    Clients,
    Servers,
    Databases,
    Config,
    Lists,
    Version,
    State,
    Replicas,
    Routes,
}

impl Show {
    fn named(word: &str) -> Option<Show> {
        Some(match word.to_ascii_lowercase().as_str() {
            "help" => Show::Help,
            "pools" => Show::Pools,
            "stats" => Show::Stats,
            "clients" => Show::Clients,
            "servers" => Show::Servers,
            "databases" => Show::Databases,
            "config" => Show::Config,
            "lists" => Show::Lists,
            "version" => Show::Version,
            "state" => Show::State,
            "replicas" => Show::Replicas,
            "routes" => Show::Routes,
            _ => return None,
        })
    }
}

/// Why a statement is not a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// PgBouncer's wording, so scripts that match on it keep working.
    #[error("invalid command '{0}', use SHOW HELP;")]
    Invalid(String),
    #[error("{0}")]
    Unsupported(String),
}

impl ParseError {
    /// SQLSTATE: syntax_error, or feature_not_supported for PgBouncer commands pgroute lacks.
    pub fn code(&self) -> &'static str {
        match self {
            ParseError::Invalid(_) => "42601",
            ParseError::Unsupported(_) => "0A000",
        }
    }
}

/// The statements of a query, each parsed on its own (an empty query yields none).
pub fn parse(query: &str) -> Vec<Result<Command, ParseError>> {
    split(query).into_iter().map(parse_one).collect()
}

/// Splits on `;` outside quotes; blank statements are dropped.
fn split(query: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut quote = None;
    for (i, c) in query.char_indices() {
        match (quote, c) {
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, ';') => {
                out.push(&query[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&query[start..]);
    out.into_iter()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect()
}

fn parse_one(statement: &str) -> Result<Command, ParseError> {
    let invalid = || ParseError::Invalid(statement.to_owned());
    let words: Vec<&str> = statement.split_whitespace().collect();
    let (first, args) = words.split_first().ok_or_else(invalid)?;
    let verb = first.to_ascii_lowercase();
    if verb == "set" {
        return Ok(Command::Set);
    }
    let arg = match args {
        [] => None,
        [a] => Some(unquote(a)),
        _ => return Err(invalid()),
    };
    let unsupported = |what: &str| Err(ParseError::Unsupported(what.to_owned()));
    match (verb.as_str(), arg) {
        ("show", Some(what)) => Show::named(what).map(Command::Show).ok_or_else(invalid),
        ("pause", None) => Ok(Command::Pause),
        ("resume", None) => Ok(Command::Resume),
        ("pause" | "resume", Some(_)) => unsupported(
            "PAUSE/RESUME of one database is not supported: pgroute pauses all databases at once",
        ),
        ("reload", None) => Ok(Command::Reload),
        ("shutdown", None) => Ok(Command::Shutdown),
        ("shutdown", Some(_)) => unsupported(
            "SHUTDOWN takes no argument: pgroute's shutdown always lets transactions in flight finish (up to server.shutdown_timeout)",
        ),
        ("drain", Some(addr)) => Ok(Command::Drain(addr.to_owned())),
        ("undrain", Some(addr)) => Ok(Command::Undrain(addr.to_owned())),
        ("suspend" | "kill" | "kill_client" | "disable" | "enable" | "reconnect" | "wait_close", _) => {
            unsupported(&format!("{} is a PgBouncer command pgroute does not have", first.to_ascii_uppercase()))
        }
        _ => Err(invalid()),
    }
}

/// `'x'` or `"x"` → `x`.
fn unquote(word: &str) -> &str {
    for q in ['\'', '"'] {
        if let Some(inner) = word.strip_prefix(q).and_then(|w| w.strip_suffix(q)) {
            return inner;
        }
    }
    word
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(q: &str) -> Result<Command, ParseError> {
        let mut all = parse(q);
        assert_eq!(all.len(), 1, "{q}");
        all.remove(0)
    }

    #[test]
    fn commands_are_case_insensitive_with_optional_semicolon() {
        assert_eq!(one("SHOW POOLS"), Ok(Command::Show(Show::Pools)));
        assert_eq!(one("  show\tpools ;  "), Ok(Command::Show(Show::Pools)));
        assert_eq!(one("Show Replicas;"), Ok(Command::Show(Show::Replicas)));
        assert_eq!(one("pause"), Ok(Command::Pause));
        assert_eq!(one("RESUME;"), Ok(Command::Resume));
        assert_eq!(one("reload"), Ok(Command::Reload));
        assert_eq!(one("SHUTDOWN"), Ok(Command::Shutdown));
        assert_eq!(one("set extra_float_digits = 3"), Ok(Command::Set));
    }

    #[test]
    fn drain_takes_an_address_quoted_or_not() {
        assert_eq!(
            one("DRAIN 127.0.0.1:5433"),
            Ok(Command::Drain("127.0.0.1:5433".into()))
        );
        assert_eq!(
            one("undrain 'db-1:5432'"),
            Ok(Command::Undrain("db-1:5432".into()))
        );
        assert!(matches!(one("DRAIN"), Err(ParseError::Invalid(_))));
    }

    #[test]
    fn several_statements_run_in_order() {
        let all = parse("SHOW POOLS; show stats;;  ");
        assert_eq!(
            all,
            vec![
                Ok(Command::Show(Show::Pools)),
                Ok(Command::Show(Show::Stats))
            ]
        );
        assert!(parse("").is_empty());
        assert!(parse(" ; ").is_empty());
        // A quoted semicolon is part of the argument.
        assert_eq!(parse("DRAIN 'a;b'").len(), 1);
    }

    #[test]
    fn unknown_commands_name_the_statement() {
        let err = one("SHOW NOTHING").expect_err("unknown");
        assert_eq!(err.code(), "42601");
        assert_eq!(
            err.to_string(),
            "invalid command 'SHOW NOTHING', use SHOW HELP;"
        );
        assert!(matches!(one("SELECT 1"), Err(ParseError::Invalid(_))));
        assert!(matches!(one("SHOW"), Err(ParseError::Invalid(_))));
        assert!(matches!(one("SHOW POOLS now"), Err(ParseError::Invalid(_))));
    }

    #[test]
    fn pgbouncer_commands_pgroute_lacks_are_refused_as_unsupported() {
        for q in [
            "SUSPEND",
            "KILL app",
            "PAUSE app",
            "SHUTDOWN WAIT_FOR_CLIENTS",
        ] {
            let err = one(q).expect_err(q);
            assert_eq!(err.code(), "0A000", "{q}");
        }
    }
}
