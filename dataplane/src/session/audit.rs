//! Structured log events about routing: an audit event per decision (debug) and a rate limit for the
//! info-level anomalies a busy client could otherwise repeat per transaction.
//!
//! Field names are shared with the other anomaly events (`event`, `backend`, `route`, `reason`,
//! `fingerprint`), so a JSON log (`--log-format json`) can be filtered on them.

use std::time::{Duration, Instant};

use pgroute_protocol::frame::tagged_frame_len;
use pgroute_protocol::frontend as fe;

use crate::classify::Decision;
use crate::config::BackendAddr;

/// At most one info-level anomaly line per session per this long; the rest are counted in the next.
pub(super) const ANOMALY_EVERY: Duration = Duration::from_secs(10);

/// The routing audit event (debug level): the fingerprint is only computed when the event is enabled.
pub(super) fn routed(decision: Decision, backend: &BackendAddr, batch: &[u8], max: usize) {
    tracing::debug!(
        event = "route",
        route = decision.route.as_str(),
        reason = decision.reason.as_str(),
        backend = %backend,
        fingerprint = first_fingerprint(batch, max).map(|f| format!("{f:016x}")),
        "routed"
    );
}

/// Fingerprint of the first Query or Parse in a client's buffered batch.
pub(super) fn first_fingerprint(buffer: &[u8], max: usize) -> Option<u64> {
    first_sql(buffer, max).map(crate::classify::fingerprint_sql)
}

/// The SQL of the first Query or Parse in a client's buffered batch (the audit event's fingerprint,
/// the trace's `traceparent`).
pub(super) fn first_sql(buffer: &[u8], max: usize) -> Option<&str> {
    let mut at = 0;
    while let Ok(Some(len)) = tagged_frame_len(&buffer[at..], max) {
        let body = &buffer[at + 5..at + len];
        at += len;
        let sql = match buffer[at - len] {
            fe::QUERY => fe::query_text(body).ok(),
            fe::PARSE => fe::parse_message(body).ok().map(|(_, sql)| sql),
            _ => None,
        };
        if sql.is_some() {
            return sql;
        }
    }
    None
}

/// Lets one event through per [`ANOMALY_EVERY`], telling how many were held back since.
#[derive(Debug, Default)]
pub(super) struct LogLimit {
    last: Option<Instant>,
    suppressed: u64,
}

impl LogLimit {
    /// `Some(suppressed since the last one)` when this event may be logged.
    pub(super) fn allow(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(t) if now.duration_since(t) < ANOMALY_EVERY => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_anomaly_line_per_window() {
        let mut l = LogLimit::default();
        let t = Instant::now();
        assert_eq!(l.allow(t), Some(0));
        assert_eq!(l.allow(t + Duration::from_secs(1)), None);
        assert_eq!(l.allow(t + Duration::from_secs(2)), None);
        assert_eq!(l.allow(t + ANOMALY_EVERY + Duration::from_secs(1)), Some(2));
    }

    #[test]
    fn first_statement_of_the_batch_is_fingerprinted() {
        let mut buf = bytes::BytesMut::new();
        fe::sync(&mut buf);
        fe::query(&mut buf, "SELECT 1");
        assert_eq!(
            first_fingerprint(&buf, 1 << 20),
            Some(crate::classify::fingerprint_sql("select ?"))
        );
    }
}
