//! Queries the proxy runs for itself on a backend connection (`auth_query`, WAL positions): one
//! parameterised statement over the extended protocol, parameters bound as text, never spliced into
//! the SQL, so a user name can never change what the statement does.

use bytes::BytesMut;
use pgroute_protocol::backend::{self, ErrorFields, TxStatus};
use pgroute_protocol::frontend;
use tokio::io::AsyncWriteExt;

use super::{read_frame, ConnectError, ServerConn};
use crate::topology::{parse_lsn, Lsn};

/// Most rows kept from one internal query; the rest are read and dropped, so a query that returns the
/// whole table cannot grow memory.
const MAX_ROWS: usize = 16;

/// Why an internal query failed.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The server answered with an error; the connection is still usable.
    #[error("{} ({})", .0.message, .0.code)]
    Server(ErrorFields),
    /// The connection failed or spoke nonsense; it must be closed.
    #[error("backend connection failed during an internal query")]
    Connection(#[from] ConnectError),
    #[error("internal query returned a column that is not UTF-8 text")]
    NotText,
    #[error("server left a transaction open after an internal query")]
    LeftOpen,
}

impl QueryError {
    /// Whether the connection can go back to the pool after this error (only a server error leaves it
    /// idle; the others stop reading mid-answer).
    pub fn connection_usable(&self) -> bool {
        matches!(self, QueryError::Server(_))
    }
}

/// One row of text values (`None` for SQL NULL).
pub type Row = Vec<Option<String>>;

impl ServerConn {
    /// Runs `sql`, whose first column is a WAL position as text (`pg_current_wal_lsn()::text` and the
    /// like), and reads it; `None` for NULL (e.g. the replay position of a server not in recovery).
    pub async fn query_lsn(&mut self, sql: &str) -> Result<Option<Lsn>, QueryError> {
        let rows = self.query_rows(sql, &[]).await?;
        Ok(rows
            .into_iter()
            .next()
            .and_then(|row| row.into_iter().next().flatten())
            .and_then(|text| parse_lsn(&text)))
    }

    /// Runs `sql` with `params` ($1, $2, …, as text) outside any transaction and returns the first
    /// rows. On `Ok` and on [`QueryError::Server`] the connection is idle again.
    pub async fn query_rows(
        &mut self,
        sql: &str,
        params: &[Option<&str>],
    ) -> Result<Vec<Row>, QueryError> {
        let mut out = BytesMut::with_capacity(sql.len() + 64);
        frontend::parse(&mut out, "", sql);
        frontend::bind_text(&mut out, "", "", params);
        frontend::execute(&mut out, "", 0);
        frontend::sync(&mut out);
        self.stream
            .write_all(&out)
            .await
            .map_err(ConnectError::Io)?;
        self.stream.flush().await.map_err(ConnectError::Io)?;
        let mut rows = Vec::new();
        let mut error = None;
        loop {
            let frame = read_frame(&mut self.stream, &mut self.reader).await?;
            match frame.tag {
                backend::DATA_ROW if error.is_none() && rows.len() < MAX_ROWS => {
                    let values =
                        backend::data_row_values(frame.body()).map_err(ConnectError::from)?;
                    let row = values
                        .into_iter()
                        .map(|v| {
                            v.map(|b| std::str::from_utf8(b).map(str::to_owned))
                                .transpose()
                        })
                        .collect::<Result<Row, _>>()
                        .map_err(|_| QueryError::NotText)?;
                    rows.push(row);
                }
                backend::ERROR_RESPONSE if error.is_none() => {
                    error = Some(backend::error_fields(frame.body()).map_err(ConnectError::from)?);
                }
                backend::READY_FOR_QUERY => {
                    let status = backend::ready_for_query_status(frame.body())
                        .map_err(ConnectError::from)?;
                    if status != TxStatus::Idle {
                        return Err(QueryError::LeftOpen);
                    }
                    return match error {
                        Some(e) => Err(QueryError::Server(e)),
                        None => Ok(rows),
                    };
                }
                _ => {}
            }
        }
    }
}
