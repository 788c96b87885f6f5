//! An admin console session: a client that logged in to `admin.database`. It gets no backend; each
//! simple Query goes to [`crate::admin::Console`] and the answer goes back with ReadyForQuery. The
//! extended protocol is refused (0A000) up to the next Sync, as the console speaks only the simple
//! protocol, like PgBouncer's.

use pgroute_protocol::backend::{self, TxStatus};
use pgroute_protocol::frontend;

use super::client::ClientConn;
use super::{CancelHandle, SessionError};
use crate::admin::Console;
use crate::clients::ClientHandle;
use crate::proxy::ClientSlot;

/// What the console says it is at login (no backend is asked). `server_version` in PgBouncer's style
/// (`<version>/pgroute`).
const SERVER_PARAMS: &[(&str, &str)] = &[
    (
        "server_version",
        concat!(env!("CARGO_PKG_VERSION"), "/pgroute"),
    ),
    ("server_encoding", "UTF8"),
    ("client_encoding", "UTF8"),
    ("DateStyle", "ISO"),
    ("TimeZone", "UTC"),
    ("integer_datetimes", "on"),
    ("standard_conforming_strings", "on"),
    ("application_name", ""),
];

/// A logged-in console client.
pub(super) struct ConsoleSession {
    console: Console,
    _cancel: CancelHandle,
    _entry: ClientHandle,
    _slot: ClientSlot,
}

impl ConsoleSession {
    pub(super) fn new(
        console: Console,
        cancel: CancelHandle,
        entry: ClientHandle,
        slot: ClientSlot,
    ) -> ConsoleSession {
        ConsoleSession {
            console,
            _cancel: cancel,
            _entry: entry,
            _slot: slot,
        }
    }

    /// The parameters the console reports at login.
    pub(super) fn server_params() -> Vec<(String, String)> {
        SERVER_PARAMS
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// Serves the console until the client leaves (or shutdown begins: 57P01, as for any client).
    pub(super) async fn serve(
        self,
        client: &mut ClientConn,
        proxy: &crate::Proxy,
    ) -> Result<(), SessionError> {
        // After an extended-protocol message: everything up to Sync is discarded.
        let mut skipping = false;
        loop {
            client.release_buffers();
            let frame = tokio::select! {
                frame = client.next_frame() => frame?,
                () = proxy.gate().shutting_down() => return Err(crate::ops::ShuttingDown.into()),
            };
            let Some(frame) = frame else {
                return Ok(());
            };
            match frame.tag {
                frontend::TERMINATE => return Ok(()),
                frontend::QUERY => {
                    let sql = frontend::query_text(frame.body())?;
                    self.console.query(sql, &mut client.out).await;
                    backend::ready_for_query(&mut client.out, TxStatus::Idle);
                }
                frontend::SYNC => {
                    skipping = false;
                    backend::ready_for_query(&mut client.out, TxStatus::Idle);
                }
                frontend::FLUSH => {}
                _ if skipping => continue,
                tag if frontend::is_known_tag(tag) => {
                    skipping = true;
                    backend::error_response(
                        &mut client.out,
                        "ERROR",
                        "0A000",
                        "the pgroute admin console supports only the simple query protocol (as PgBouncer's); send commands as plain queries",
                    );
                }
                tag => {
                    return Err(pgroute_protocol::ProtocolError::UnexpectedTag {
                        tag: tag as char,
                        context: "admin console message",
                    }
                    .into())
                }
            }
            client.flush_out().await?;
        }
    }
}
