//! Key schemas come from DescribeTable on the real upstream and are cached until forgotten.

use crate::common::*;
use dynamo_cache::upstream::schema::SchemaError;

#[tokio::test]
async fn describes_tables_and_their_indexes() {
    let upstream = Upstream::start().await;
    let proxy = Proxy::start(&upstream.url).await;
    create_table(&sdk(&upstream.url), "orders").await;

    let schema = proxy.state.schemas.get("orders").await.unwrap();
    assert_eq!(schema.key.partition, "pk");
    assert_eq!(schema.key.sort.as_deref(), Some("sk"));
    let gsi = &schema.indexes["by_g"];
    assert_eq!(gsi.partition, "g");
    assert_eq!(gsi.sort, None);

    // Cached: still known after the table is gone upstream, until forgotten.
    sdk(&upstream.url)
        .delete_table()
        .table_name("orders")
        .send()
        .await
        .unwrap();
    assert!(proxy.state.schemas.cached("orders").is_some());
    proxy.state.schemas.forget("orders");
    assert!(matches!(
        proxy.state.schemas.get("orders").await,
        Err(SchemaError::NotFound(_))
    ));
}
