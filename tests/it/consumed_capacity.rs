//! A hit answers `ReturnConsumedCapacity` in the shape DynamoDB gives the same request, with
//! zero units: for every cached read and every form, the hit's `ConsumedCapacity` has the keys
//! of the miss's, the emulator's own answer being the reference.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::common::{Relayed, attr, key_element, project_all, sdk, table_like_orders};

/// A table with a global index `by_g` (on `g`) and a local one `by_v` (on `pk`, `v`).
async fn create(url: &str) {
    use aws_sdk_dynamodb::types::*;
    table_like_orders(&sdk(url), "shapes")
        .attribute_definitions(attr("v", ScalarAttributeType::S))
        .local_secondary_indexes(
            LocalSecondaryIndex::builder()
                .index_name("by_v")
                .key_schema(key_element("pk", KeyType::Hash))
                .key_schema(key_element("v", KeyType::Range))
                .projection(project_all())
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
}

/// Every key path in a JSON value, numbers left out: the shape to compare.
fn shape(value: &Value, at: &str, out: &mut BTreeSet<String>) {
    if let Value::Object(fields) = value {
        for (name, inner) in fields {
            let path = format!("{at}/{name}");
            out.insert(path.clone());
            shape(inner, &path, out);
        }
    } else if let Value::Array(items) = value {
        for (i, inner) in items.iter().enumerate() {
            shape(inner, &format!("{at}[{i}]"), out);
        }
    }
}

fn shape_of(answer: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    if let Some(consumed) = answer.get("ConsumedCapacity") {
        out.insert("/ConsumedCapacity".into());
        shape(consumed, "/ConsumedCapacity", &mut out);
    }
    out
}

#[tokio::test]
async fn a_hit_reports_capacity_in_the_shape_of_the_miss_for_every_read_and_form() {
    let env = Relayed::start(|_| {}).await;
    create(&env.upstream.url).await;
    let upstream = sdk(&env.upstream.url);
    let forms = ["TOTAL", "INDEXES", "NONE"];
    // Items written straight to the emulator, so each first read is a miss.
    for form in forms {
        for op in ["get", "projected", "batch", "query", "lsi", "gsi"] {
            for sk in ["1", "2"] {
                upstream
                    .put_item()
                    .table_name("shapes")
                    .item("pk", attr_s(&format!("{op}-{form}")))
                    .item("sk", aws_sdk_dynamodb::types::AttributeValue::N(sk.into()))
                    .item("g", attr_s(&format!("{op}-{form}")))
                    .item("v", attr_s(sk))
                    .item("x", attr_s("payload"))
                    .send()
                    .await
                    .unwrap();
            }
        }
    }
    let mut checked = 0;
    for (n, form) in forms.into_iter().enumerate() {
        let pk = |op: &str| json!({"S": format!("{op}-{form}")});
        let key = |op: &str, sk: &str| json!({"pk": pk(op), "sk": {"N": sk}});
        let query = |op: &str, index: Option<&str>, field: &str| {
            let mut body = json!({
                "TableName": "shapes",
                "KeyConditionExpression": format!("#k = :k"),
                "ExpressionAttributeNames": {"#k": field},
                "ExpressionAttributeValues": {":k": pk(op)},
                "ReturnConsumedCapacity": form,
            });
            if let Some(index) = index {
                body["IndexName"] = json!(index);
            }
            body
        };
        // Scans differ by Limit from one form to the next, so each form's first is a miss.
        let scan = |index: Option<&str>| {
            let mut body =
                json!({"TableName": "shapes", "Limit": 5 + n, "ReturnConsumedCapacity": form});
            if let Some(index) = index {
                body["IndexName"] = json!(index);
            }
            body
        };
        let cases = [
            (
                "GetItem",
                json!({"TableName": "shapes", "Key": key("get", "1"), "ReturnConsumedCapacity": form}),
            ),
            (
                "GetItem",
                json!({"TableName": "shapes", "Key": key("projected", "1"),
                       "ProjectionExpression": "x", "ReturnConsumedCapacity": form}),
            ),
            (
                "BatchGetItem",
                json!({"RequestItems": {"shapes": {"Keys": [key("batch", "1"), key("batch", "2")]}},
                       "ReturnConsumedCapacity": form}),
            ),
            ("Query", query("query", None, "pk")),
            ("Query", query("lsi", Some("by_v"), "pk")),
            ("Query", query("gsi", Some("by_g"), "g")),
            ("Scan", scan(None)),
            ("Scan", scan(Some("by_v"))),
            ("Scan", scan(Some("by_g"))),
        ];
        for (op, body) in cases {
            let body = body.to_string();
            let miss = env.call(op, &body).await;
            assert_eq!(miss.cache_status(), "miss", "{op} {body}");
            let hit = env.call(op, &body).await;
            assert_eq!(hit.cache_status(), "hit", "{op} {body}");
            let (miss, hit) = (miss.json(), hit.json());
            let mut expected = shape_of(&miss);
            // DynamoDB reports every index a read accessed under INDEXES; the emulator leaves
            // the index out of a Scan's report, so the API reference decides there.
            let request: Value = serde_json::from_str(&body).unwrap();
            if op == "Scan"
                && form == "INDEXES"
                && let Some(index) = request["IndexName"].as_str()
            {
                let kind = if index == "by_v" {
                    "LocalSecondaryIndexes"
                } else {
                    "GlobalSecondaryIndexes"
                };
                for path in [
                    format!("/ConsumedCapacity/{kind}"),
                    format!("/ConsumedCapacity/{kind}/{index}"),
                    format!("/ConsumedCapacity/{kind}/{index}/CapacityUnits"),
                ] {
                    expected.insert(path);
                }
            }
            assert_eq!(
                shape_of(&hit),
                expected,
                "{op} {body}\nmiss: {miss}\nhit: {hit}"
            );
            if form == "NONE" {
                assert!(hit.get("ConsumedCapacity").is_none());
            } else {
                // Zero units wherever the hit reports any.
                assert!(
                    !hit["ConsumedCapacity"].to_string().contains(":0.5"),
                    "{hit}"
                );
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 27);
}

fn attr_s(s: &str) -> aws_sdk_dynamodb::types::AttributeValue {
    aws_sdk_dynamodb::types::AttributeValue::S(s.into())
}

#[tokio::test]
async fn a_partly_cached_batch_reports_each_table_once_in_dynamodbs_shape() {
    let env = Relayed::start(|_| {}).await;
    create(&env.upstream.url).await;
    let upstream = sdk(&env.upstream.url);
    for sk in ["1", "2", "3"] {
        upstream
            .put_item()
            .table_name("shapes")
            .item("pk", attr_s("part"))
            .item("sk", aws_sdk_dynamodb::types::AttributeValue::N(sk.into()))
            .send()
            .await
            .unwrap();
    }
    let key = |sk: &str| json!({"pk": {"S": "part"}, "sk": {"N": sk}});
    for form in ["TOTAL", "INDEXES"] {
        // One key cached (read alone first), the other not: the batch is merged from memory
        // and from DynamoDB's answer.
        let one = json!({"TableName": "shapes", "Key": key("1")}).to_string();
        env.call("GetItem", &one).await;
        let both = json!({"RequestItems": {"shapes": {"Keys": [key("1"), key(form_sk(form))]}},
                          "ReturnConsumedCapacity": form})
        .to_string();
        let merged = env.call("BatchGetItem", &both).await.json();
        let sent = env.relay.last_body("BatchGetItem").unwrap();
        assert_eq!(
            sent["RequestItems"]["shapes"]["Keys"]
                .as_array()
                .unwrap()
                .len(),
            1,
            "only the uncached key went upstream"
        );
        let consumed = merged["ConsumedCapacity"].as_array().unwrap();
        assert_eq!(consumed.len(), 1, "one entry for the table: {merged}");
        let mut keys: Vec<&str> = consumed[0]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort();
        let expected: &[&str] = if form == "INDEXES" {
            &["CapacityUnits", "Table", "TableName"]
        } else {
            &["CapacityUnits", "TableName"]
        };
        assert_eq!(keys, expected, "{merged}");
        assert_eq!(merged["Responses"]["shapes"].as_array().unwrap().len(), 2);
    }
}

/// The uncached key of each form's batch: a different one each time, so it is a miss.
fn form_sk(form: &str) -> &'static str {
    if form == "TOTAL" { "2" } else { "3" }
}
