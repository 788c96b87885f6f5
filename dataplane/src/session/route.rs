//! Choosing where a client's next batch runs, before a backend is attached.
//!
//! The batch is what the client has already sent up to its first Sync or simple Query: every Query,
//! Parse, and Bind/Describe of a named statement in it is classified (from the cache, or the decision a
//! prepared statement keeps), and one write sends the whole batch to the primary. A batch that is not
//! complete yet (a Flush, or bytes still on their way) goes to the primary, since what follows in the
//! same implicit transaction cannot be known. Explicit transactions need nothing here: the relay keeps
//! the backend until the transaction ends, so everything in it runs where its first batch ran.

use pgroute_protocol::frame::tagged_frame_len;
use pgroute_protocol::frontend as fe;

use crate::classify::{Classifier, Decision, Reason, Route};
use crate::config::DefaultRoute;

use super::sql_prepared;
use super::tracker::Tracker;

/// Classifies what the client has sent so far: every whole frame in `buffer`, across Syncs (a pipelining
/// client may have several batches waiting, and the relay forwards all of them to the same server).
pub(super) fn classify_batch(
    buffer: &[u8],
    max_message_size: usize,
    classifier: &Classifier,
    tracker: &Tracker,
) -> Decision {
    let mut at = 0;
    let mut decided: Option<Decision> = None;
    // Frames since the last Sync or Query: their implicit transaction is still open.
    let mut open = false;
    // Statements parsed earlier in this batch (few: a small inline list, no allocation for none).
    let mut parsed_names: Vec<&str> = Vec::new();
    let mut note = |d: Option<Decision>| match (decided, d) {
        (_, None) => {}
        (Some(prev), _) if prev.route == Route::Primary => {}
        (_, Some(d)) if d.route == Route::Primary => decided = Some(d),
        (None, d) => decided = d,
        (Some(_), Some(_)) => {}
    };
    while let Ok(Some(len)) = tagged_frame_len(&buffer[at..], max_message_size) {
        let frame = &buffer[at..at + len];
        let body = &frame[5..];
        at += len;
        open = true;
        match frame[0] {
            fe::QUERY => {
                note(fe::query_text(body).ok().and_then(|sql| {
                    // `EXECUTE name(…)` of a client's own statement routes like what it prepared.
                    match sql_prepared::parse_execute(sql)
                        .and_then(|e| tracker.sql_statement(&e.name))
                    {
                        Some(stmt) => classifier.classify(&stmt.query),
                        None => classifier.classify(sql),
                    }
                }));
                open = false;
            }
            fe::SYNC => open = false,
            fe::PARSE => {
                if let Ok((name, sql)) = fe::parse_message(body) {
                    note(classifier.classify(sql));
                    // Its Bind and Describe in this batch need no lookup: the Parse already counted.
                    if !name.is_empty() {
                        parsed_names.push(name);
                    }
                } else {
                    note(Some(Decision::primary(Reason::ParseFailure)));
                }
            }
            fe::BIND => {
                if let Ok((_, name)) = fe::bind_names(body) {
                    if !parsed_names.contains(&name) {
                        note(statement_decision(name, classifier, tracker));
                    }
                }
            }
            fe::DESCRIBE => {
                if let Ok((b'S', name)) = fe::target_name(body, "Describe") {
                    if !parsed_names.contains(&name) {
                        note(statement_decision(name, classifier, tracker));
                    }
                }
            }
            fe::EXECUTE | fe::CLOSE => {}
            // Flush, function calls, anything else: not a batch the proxy can reason about.
            _ => note(Some(Decision::primary(Reason::Incomplete))),
        }
    }
    match decided {
        Some(d) if d.route == Route::Primary => d,
        _ if open || at == 0 => Decision::primary(Reason::Incomplete),
        Some(d) => d,
        // Only transaction control or empty queries: nothing to gain from a replica.
        None => Decision::primary(Reason::Transaction),
    }
}

/// Keeps a replica connection from receiving what must run on the primary: a pipelining client can send
/// its next batch while the first still runs, and the relay would otherwise forward it to the same
/// server. Between batches (no implicit or explicit transaction open), new input that routes to the
/// primary is held back until the replica is at rest, and then routed afresh.
pub(crate) struct RouteGate<'a> {
    pub(super) classifier: &'a Classifier,
    pub(super) default: DefaultRoute,
}

impl RouteGate<'_> {
    /// Whether the whole frames in `buffer` must wait for a new route.
    pub(crate) fn holds_back(
        &self,
        buffer: &[u8],
        max_message_size: usize,
        tracker: &Tracker,
    ) -> bool {
        if !tracker.between_batches()
            || tagged_frame_len(buffer, max_message_size)
                .ok()
                .flatten()
                .is_none()
        {
            return false;
        }
        let decision = apply_default(
            classify_batch(buffer, max_message_size, self.classifier, tracker),
            self.default,
        );
        decision.route == Route::Primary
    }
}

/// The decision of a client's named statement, classified once and kept on the statement.
fn statement_decision(name: &str, classifier: &Classifier, tracker: &Tracker) -> Option<Decision> {
    if name.is_empty() {
        return None; // the unnamed statement: its Parse is in this batch, or it is gone anyway
    }
    match tracker.statement(name) {
        Some(stmt) => *stmt
            .decision
            .get_or_init(|| classifier.classify(stmt.sql())),
        // Unknown to the proxy (session mode, or never prepared): PostgreSQL will say so on the primary.
        None => Some(Decision::primary(Reason::Write)),
    }
}

/// A user's or database's default applies unless a hint or rule spoke for the statement itself.
pub(super) fn apply_default(decision: Decision, default: DefaultRoute) -> Decision {
    if decision.overrides_defaults() {
        return decision;
    }
    match default {
        DefaultRoute::Auto => decision,
        DefaultRoute::Primary => Decision::primary(Reason::Default),
        DefaultRoute::Replica => Decision::replica(Reason::Default),
    }
}
