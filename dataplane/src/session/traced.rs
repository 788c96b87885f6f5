//! The session's side of tracing (`crate::trace`): note when a batch starts and whose trace it
//! belongs to, and record its span once it is answered. With tracing off, [`begin`] returns `None`
//! after one check and nothing else runs.

use std::time::{Instant, SystemTime};

use crate::classify::Decision;
use crate::proxy::Proxy;
use crate::trace::{BatchSpan, TraceParent};

/// A batch being traced.
#[derive(Debug, Clone, Copy)]
pub(super) struct Timing {
    started: SystemTime,
    begun: Instant,
    parent: Option<TraceParent>,
}

/// Starts timing the batch in `buffer`, when tracing is on.
pub(super) fn begin(proxy: &Proxy, buffer: &[u8], max_message_size: usize) -> Option<Timing> {
    let tracing = proxy.tracing()?;
    let parent = super::audit::first_sql(buffer, max_message_size)
        .and_then(crate::trace::traceparent_in_sql);
    tracing.should_trace(parent).then(|| Timing {
        started: SystemTime::now(),
        begun: Instant::now(),
        parent,
    })
}

/// What the batch did, once answered.
pub(super) struct Outcome<'a> {
    pub decision: Decision,
    /// When a backend connection was attached (`None`: the batch failed before one was).
    pub attached: Option<Instant>,
    pub backend: &'a str,
    pub user: &'a str,
    pub database: &'a str,
    pub error: Option<&'a str>,
}

pub(super) fn end(proxy: &Proxy, timing: Timing, outcome: &Outcome<'_>) {
    let Some(tracing) = proxy.tracing() else {
        return;
    };
    let now = Instant::now();
    let attached = outcome.attached.unwrap_or(now);
    tracing.record(&BatchSpan {
        parent: timing.parent,
        started: timing.started,
        pool_wait: attached.saturating_duration_since(timing.begun),
        backend_time: now.saturating_duration_since(attached),
        route: outcome.decision.route.as_str(),
        reason: outcome.decision.reason.as_str(),
        backend: outcome.backend,
        user: outcome.user,
        database: outcome.database,
        error: outcome.error,
    });
}
