//! Answers the proxy can give without a backend connection.
//!
//! Closing a named statement only forgets the client's name for it (the backend copy is a shared
//! cache), so a batch of statement Closes and a Sync is answered here. A batch of named Parses
//! followed by Sync, outside a transaction, for statements this pool has
//! already prepared successfully, needs nothing from PostgreSQL: the proxy records the statements and
//! answers ParseComplete and ReadyForQuery itself; each is prepared on a backend when a Bind first
//! needs it there. Besides saving a round trip, this keeps clients that prepare synchronously from one
//! thread for many connections (pgbench `-M prepared`) from deadlocking behind a full pool: their
//! connections already inside transactions could never finish while the thread waits for a backend
//! just to prepare `BEGIN`.

use std::sync::Arc;

use pgroute_protocol::backend::{self, TxStatus};
use pgroute_protocol::frame::tagged_frame_len;
use pgroute_protocol::frontend as fe;
use pgroute_protocol::ProtocolError;

use super::client::ClientConn;
use super::prepared::Statement;
use super::statement::{self, Effect};
use super::tracker::Tracker;
use crate::pool::Pool;

/// Answers a batch of statement Closes and a Sync if that is what the client sent; `true` if it did.
pub(crate) fn answer_closes(
    client: &mut ClientConn,
    tracker: &mut Tracker,
) -> Result<bool, ProtocolError> {
    let buf = client.reader.buffer();
    let max = client.reader.max_message_size();
    let mut end = 0;
    let mut names = Vec::new();
    loop {
        let Some(len) = tagged_frame_len(&buf[end..], max)? else {
            return Ok(false);
        };
        let (tag, body) = (buf[end], &buf[end + 5..end + len]);
        end += len;
        match tag {
            fe::CLOSE => match fe::target_name(body, "Close")? {
                (b'S', name) if !name.is_empty() => names.push(name.to_owned()),
                _ => return Ok(false),
            },
            fe::SYNC if !names.is_empty() => break,
            _ => return Ok(false),
        }
    }
    client.reader.discard(end);
    for name in names {
        tracker.remove_statement(&name);
        client
            .out
            .extend_from_slice(&[backend::CLOSE_COMPLETE, 0, 0, 0, 4]);
    }
    backend::ready_for_query(&mut client.out, TxStatus::Idle);
    Ok(true)
}

/// Answers a known-statement Parse batch if that is what the client sent; `true` if it did.
pub(crate) fn answer_known_parses(
    client: &mut ClientConn,
    tracker: &mut Tracker,
    pool: &Pool,
) -> Result<bool, ProtocolError> {
    let buf = client.reader.buffer();
    let max = client.reader.max_message_size();
    let mut end = 0;
    let mut statements: Vec<(String, Arc<Statement>)> = Vec::new();
    loop {
        let Some(len) = tagged_frame_len(&buf[end..], max)? else {
            return Ok(false); // the batch is not all here yet: take the normal path
        };
        let (tag, body) = (buf[end], &buf[end + 5..end + len]);
        end += len;
        match tag {
            fe::PARSE => {
                let (name, sql) = fe::parse_message(body)?;
                if name.is_empty()
                    || tracker.has_statement(name)
                    || statements.iter().any(|(n, _)| n == name)
                    || statement::classify(sql) != Effect::None
                {
                    return Ok(false);
                }
                let stmt = Statement::from_parse_body(body)?;
                if !pool.statement_known_valid(&stmt.server_name) {
                    return Ok(false);
                }
                statements.push((name.to_owned(), Arc::new(stmt)));
            }
            fe::SYNC if !statements.is_empty() => break,
            _ => return Ok(false),
        }
    }
    client.reader.discard(end);
    for (name, stmt) in statements {
        tracker.add_statement(&name, stmt);
        client
            .out
            .extend_from_slice(&[backend::PARSE_COMPLETE, 0, 0, 0, 4]);
    }
    backend::ready_for_query(&mut client.out, TxStatus::Idle);
    Ok(true)
}
