//! OpenTelemetry traces: pgroute exports a span per routed transaction over OTLP/gRPC to a collector
//! (the test kit's, speaking the real protobuf service), as a child of the `traceparent` the
//! application put in a sqlcommenter-style comment.

use std::time::{Duration, Instant};

use anyhow::Context;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use pgroute_tests::otlp::Collector;
use pgroute_tests::Stack;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn attribute(span: &Span, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
        .map(|v| match v {
            Value::StringValue(s) => s.clone(),
            Value::IntValue(i) => i.to_string(),
            other => format!("{other:?}"),
        })
}

#[tokio::test]
async fn spans_join_the_application_trace_from_a_traceparent_comment() -> anyhow::Result<()> {
    let collector = Collector::start().await?;
    let endpoint = collector.endpoint();
    let stack = Stack::start(1, move |c| {
        c.tracing.otlp_endpoint = Some(endpoint);
        c.tracing.export_interval = Duration::from_millis(100);
    })
    .await?;
    stack.wait_for_replicas().await?;
    let client = stack.connect().await?;
    client.batch_execute("CREATE TABLE traced (x int)").await?;
    let replica_port = stack.cluster.replicas()[0].port;
    // Wait until reads reach the replica, so the traced read's route is known.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let port: i32 = client
            .query_one("SELECT inet_server_port()", &[])
            .await?
            .get(0);
        if port == i32::from(replica_port) {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "reads never reached the replica");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let traced_read =
        format!("SELECT count(*) FROM traced /*traceparent='00-{TRACE}-{PARENT}-01'*/");
    client.simple_query(&traced_read).await?;
    let write_trace = "0af7651916cd43dd8448eb211c80319c";
    let traced_write = format!(
        "INSERT INTO traced VALUES (1) /*application='shop',traceparent='00-{write_trace}-b7ad6b7169203331-01'*/"
    );
    client.simple_query(&traced_write).await?;
    // Not sampled by its parent, and no traceparent with sample_ratio 0: no spans.
    client
        .simple_query(&format!(
            "SELECT 2 /*traceparent='00-{TRACE}-{PARENT}-00'*/"
        ))
        .await?;
    client.simple_query("SELECT 3").await?;

    let tracing = stack.proxy.proxy.tracing().context("tracing is on")?;
    tracing.flush();
    let deadline = Instant::now() + Duration::from_secs(10);
    while collector.spans().len() < 2 {
        anyhow::ensure!(
            Instant::now() < deadline,
            "spans received: {:?}",
            collector.spans()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Give a stray span time to show up before counting (spans only accumulate).
    tokio::time::sleep(Duration::from_millis(500)).await;
    tracing.flush();
    let spans = collector.spans();
    assert_eq!(
        spans.len(),
        2,
        "one span per traced, sampled transaction: {spans:#?}"
    );

    let read = spans
        .iter()
        .find(|s| hex(&s.trace_id) == TRACE)
        .context("no span in the read's trace")?;
    assert_eq!(hex(&read.parent_span_id), PARENT);
    assert_eq!(read.name, "pgroute.transaction");
    assert_eq!(attribute(read, "pgroute.route").as_deref(), Some("replica"));
    assert_eq!(
        attribute(read, "server.address"),
        Some(stack.cluster.replicas()[0].host_port())
    );
    assert!(attribute(read, "pgroute.pool_wait_us").is_some());
    let backend_us: i64 = attribute(read, "pgroute.backend_time_us")
        .context("backend time")?
        .parse()?;
    assert!(backend_us > 0);
    assert!(read.end_time_unix_nano >= read.start_time_unix_nano);

    let write = spans
        .iter()
        .find(|s| hex(&s.trace_id) == write_trace)
        .context("no span in the write's trace")?;
    assert_eq!(
        attribute(write, "pgroute.route").as_deref(),
        Some("primary")
    );
    assert_eq!(attribute(write, "pgroute.reason").as_deref(), Some("write"));
    assert_eq!(
        attribute(write, "server.address"),
        Some(stack.cluster.primary().host_port())
    );
    Ok(())
}
