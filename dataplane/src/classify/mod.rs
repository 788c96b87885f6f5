//! SQL → route: whether a statement may run on a replica, and why.
//!
//! In order: leading-comment hints, configured query rules, a keyword fast path, then the `sqlparser`
//! AST. A replica is chosen only when sure: anything unparsable, unknown or writing goes to the primary.
//! Decisions are cached by query text (bounded, sharded, so concurrent sessions rarely contend), and
//! prepared statements keep their decision, so a statement is classified once, not per execution.

mod ast;
mod functions;
mod hint;
mod lexer;
mod normalize;
mod rules;

use quick_cache::sync::Cache;

pub use functions::{FunctionPolicy, KNOWN_READS, WRITES};
pub use hint::Hints;
pub use normalize::{fingerprint, fingerprint_sql, normalize};
pub use rules::{QueryRule, RuleError, RuleMatch};

use crate::config::RoutingConfig;
use ast::Verdict;
use lexer::{tokens, Token};

/// Where a statement may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Route {
    Primary,
    Replica,
}

impl Route {
    pub fn as_str(self) -> &'static str {
        match self {
            Route::Primary => "primary",
            Route::Replica => "replica",
        }
    }
}

/// Why a statement went where it did: reported in counters and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// A `/* pgroute: route=… */` comment.
    Hint,
    /// A configured query rule matched.
    Rule,
    /// The user's or database's configured default route.
    Default,
    /// A read-only statement.
    ReadOnly,
    /// `BEGIN READ ONLY` / `START TRANSACTION READ ONLY`.
    ReadOnlyTransaction,
    /// DML, DDL or any other statement that is not a read.
    Write,
    /// `FOR UPDATE / NO KEY UPDATE / SHARE / KEY SHARE`.
    LockClause,
    /// A call to a function that writes or locks.
    WriteFunction,
    /// `SELECT … INTO` creates a table.
    SelectInto,
    /// `WITH … AS (INSERT/UPDATE/DELETE …)`.
    WritingCte,
    /// `SHOW` of a setting whose value differs on replicas.
    PrimaryOnlySetting,
    /// A read-write transaction (plain `BEGIN`), or transaction control alone.
    Transaction,
    /// The parser could not read the statement.
    ParseFailure,
    /// The batch was not complete when routed (a Flush, or data still arriving).
    Incomplete,
    /// Session pooling: one connection for the whole session.
    SessionMode,
    /// No replica could take the read.
    NoReplica,
    /// Reads were configured to go to the primary too (`primary_reads_weight`), and it was picked.
    PrimaryShare,
    /// No replica has replayed the client's last write yet (read-your-writes, or its causal window).
    ReadYourWrites,
    /// Every replica is further behind than the client accepts.
    ReplicaLagging,
}

impl Reason {
    /// Every reason, in a fixed order (for counters).
    pub const ALL: [Reason; 19] = [
        Reason::Hint,
        Reason::Rule,
        Reason::Default,
        Reason::ReadOnly,
        Reason::ReadOnlyTransaction,
        Reason::Write,
        Reason::LockClause,
        Reason::WriteFunction,
        Reason::SelectInto,
        Reason::WritingCte,
        Reason::PrimaryOnlySetting,
        Reason::Transaction,
        Reason::ParseFailure,
        Reason::Incomplete,
        Reason::SessionMode,
        Reason::NoReplica,
        Reason::PrimaryShare,
        Reason::ReadYourWrites,
        Reason::ReplicaLagging,
    ];

    /// Position in [`Reason::ALL`], which lists the variants in declaration order: the discriminant,
    /// so counting a routed transaction does not search the list.
    pub fn index(self) -> usize {
        self as usize
    }

    /// A short snake_case name for logs and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Hint => "hint",
            Reason::Rule => "rule",
            Reason::Default => "default",
            Reason::ReadOnly => "read_only",
            Reason::ReadOnlyTransaction => "read_only_transaction",
            Reason::Write => "write",
            Reason::LockClause => "lock_clause",
            Reason::WriteFunction => "write_function",
            Reason::SelectInto => "select_into",
            Reason::WritingCte => "writing_cte",
            Reason::PrimaryOnlySetting => "primary_only_setting",
            Reason::Transaction => "transaction",
            Reason::ParseFailure => "parse_failure",
            Reason::Incomplete => "incomplete_batch",
            Reason::SessionMode => "session_mode",
            Reason::NoReplica => "no_replica",
            Reason::PrimaryShare => "primary_share",
            Reason::ReadYourWrites => "read_your_writes",
            Reason::ReplicaLagging => "replica_lagging",
        }
    }
}

/// A routing decision for one statement or batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub route: Route,
    pub reason: Reason,
    /// Lag the statement accepts (a `max_lag=` hint), instead of the configured limit.
    pub max_lag: Option<std::time::Duration>,
}

impl Decision {
    pub const fn primary(reason: Reason) -> Decision {
        Decision {
            route: Route::Primary,
            reason,
            max_lag: None,
        }
    }

    pub const fn replica(reason: Reason) -> Decision {
        Decision {
            route: Route::Replica,
            reason,
            max_lag: None,
        }
    }

    /// Hints and rules are about the statement itself and beat a user's or database's default.
    pub fn overrides_defaults(self) -> bool {
        matches!(self.reason, Reason::Hint | Reason::Rule)
    }

    /// `Neutral` statements (COMMIT…) route where the rest of their batch goes.
    fn from_verdict(v: Verdict) -> Option<Decision> {
        match v {
            Verdict::Read(r) => Some(Decision::replica(r)),
            Verdict::Write(r) => Some(Decision::primary(r)),
            Verdict::Neutral => None,
        }
    }
}

/// Longest query text whose decision is cached (longer ones are usually bulk loads with inline data).
const MAX_CACHED_LEN: usize = 16 * 1024;

/// Classifies statements under one routing configuration. Shared by every session of a proxy.
pub struct Classifier {
    functions: FunctionPolicy,
    rules: Vec<QueryRule>,
    cache: Cache<String, Option<Decision>>,
}

impl std::fmt::Debug for Classifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Classifier")
            .field("rules", &self.rules.len())
            .field("cached", &self.cache.len())
            .finish()
    }
}

impl Classifier {
    pub fn new(config: &RoutingConfig) -> Result<Classifier, RuleError> {
        Ok(Classifier {
            functions: FunctionPolicy::new(
                &config.write_functions,
                config.unknown_functions_are_writes,
            ),
            rules: config
                .rules
                .iter()
                .enumerate()
                .map(|(i, r)| QueryRule::compile_at(i, r))
                .collect::<Result<_, _>>()?,
            cache: Cache::new(config.cache_size.max(1)),
        })
    }

    /// The decision for `sql` (one Query message or one Parse), `None` for statements that route with
    /// the rest of their batch (COMMIT, ROLLBACK, SAVEPOINT, empty text).
    pub fn classify(&self, sql: &str) -> Option<Decision> {
        if sql.len() > MAX_CACHED_LEN {
            return self.classify_uncached(sql);
        }
        if let Some(d) = self.cache.get(sql) {
            return d;
        }
        let d = self.classify_uncached(sql);
        self.cache.insert(sql.to_owned(), d);
        d
    }

    /// Decisions held in the cache right now.
    pub fn cached(&self) -> usize {
        self.cache.len()
    }

    fn classify_uncached(&self, sql: &str) -> Option<Decision> {
        let hints = hint::parse(sql);
        let decision = self.classify_text(sql, hints.route);
        decision.map(|d| Decision {
            max_lag: hints.max_lag,
            ..d
        })
    }

    fn classify_text(&self, sql: &str, hinted: Option<Route>) -> Option<Decision> {
        if let Some(route) = hinted {
            return Some(Decision {
                route,
                reason: Reason::Hint,
                max_lag: None,
            });
        }
        if !self.rules.is_empty() {
            let normalized = normalize(sql);
            let print = fingerprint(&normalized);
            if let Some(rule) = self.rules.iter().find(|r| r.matches(&normalized, &print)) {
                return Some(Decision {
                    route: rule.route,
                    reason: Reason::Rule,
                    max_lag: None,
                });
            }
        }
        match fast_path(sql) {
            Fast::Decided(d) => d,
            Fast::Parse => match ast::classify(sql, &self.functions) {
                Some(v) => Decision::from_verdict(v),
                None => Some(Decision::primary(Reason::ParseFailure)),
            },
        }
    }
}

enum Fast {
    Decided(Option<Decision>),
    Parse,
}

/// Statements whose first keyword settles them, without a parse.
const WRITE_KEYWORDS: &[&str] = &[
    "insert",
    "update",
    "delete",
    "merge",
    "create",
    "alter",
    "drop",
    "truncate",
    "grant",
    "revoke",
    "comment",
    "do",
    "call",
    "refresh",
    "vacuum",
    "analyze",
    "analyse",
    "cluster",
    "reindex",
    "lock",
    "checkpoint",
    "listen",
    "unlisten",
    "notify",
    "prepare",
    "execute",
    "deallocate",
    "discard",
    "set",
    "reset",
    "declare",
    "fetch",
    "move",
    "close",
    "security",
    "import",
    "load",
    "reassign",
];

/// The keyword fast path: writes by their first keyword, `TABLE name` and `SHOW setting` (which the
/// parser does not read, or reads without adding anything). Reads (`SELECT`, `WITH`, `VALUES`…) always go
/// through the parser, whose answer is cached: a replica is chosen only for SQL that parsed, so even
/// malformed reads get their syntax error from the primary, like everything the parser cannot read.
fn fast_path(sql: &str) -> Fast {
    let mut toks = tokens(sql);
    let first = loop {
        match toks.next() {
            None => return Fast::Decided(None),
            Some(Token::Punct(';')) => continue,
            Some(Token::Word(w)) => break w.to_ascii_lowercase(),
            Some(_) => return Fast::Parse,
        }
    };
    match first.as_str() {
        "table" => {
            // `TABLE [schema.]name [;]`, nothing else.
            let rest: Vec<Token<'_>> = toks.collect();
            let body = match rest.last() {
                Some(Token::Punct(';')) => &rest[..rest.len() - 1],
                _ => &rest[..],
            };
            let well_formed = !body.is_empty()
                && body.iter().enumerate().all(|(i, t)| match t {
                    Token::Word(_) | Token::Quoted(_) => i % 2 == 0,
                    Token::Punct('.') => i % 2 == 1,
                    _ => false,
                })
                && body.len() % 2 == 1;
            if well_formed {
                Fast::Decided(Some(Decision::replica(Reason::ReadOnly)))
            } else {
                Fast::Decided(Some(Decision::primary(Reason::ParseFailure)))
            }
        }
        "show" => {
            let mut words = Vec::new();
            for t in toks.by_ref() {
                match t {
                    Token::Word(w) => words.push(w.to_ascii_lowercase()),
                    Token::Punct(';') => break,
                    _ => return Fast::Parse,
                }
            }
            if toks.next().is_some() || words.is_empty() {
                return Fast::Parse; // more than one statement, or a bare SHOW
            }
            if ast::PRIMARY_ONLY_SETTINGS.contains(&words.join(" ").as_str()) {
                return Fast::Decided(Some(Decision::primary(Reason::PrimaryOnlySetting)));
            }
            Fast::Decided(Some(Decision::replica(Reason::ReadOnly)))
        }
        w if WRITE_KEYWORDS.contains(&w) => Fast::Decided(Some(Decision::primary(Reason::Write))),
        _ => Fast::Parse,
    }
}

#[cfg(test)]
mod tests;
