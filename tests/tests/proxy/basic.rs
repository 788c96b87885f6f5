//! Simple and extended queries through the proxy with tokio-postgres.

use pgroute_tests::Stack;

#[tokio::test]
async fn simple_and_extended_queries_work() -> anyhow::Result<()> {
    let stack = Stack::start(0, |_| {}).await?;
    let client = stack.connect().await?;
    let rows = client
        .simple_query("select 1 as one; select 'two'")
        .await
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let values: Vec<String> = rows
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
            _ => None,
        })
        .collect();
    assert_eq!(values, vec!["1", "two"]);
    let row = client
        .query_one("select $1::int + 1", &[&41i32])
        .await
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    assert_eq!(row.get::<_, i32>(0), 42);
    Ok(())
}
