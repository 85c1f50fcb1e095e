//! The typed request: a DynamoDB request parsed once, from its operation and body, into what
//! every later step reads (authorisation, cache keys, metrics, logs, warm starts).
//!
//! The body itself is kept only to be forwarded byte for byte. A body that does not have the
//! shape DynamoDB accepts, or that DynamoDB might refuse, is typed as [`Form::Forward`]: it
//! goes upstream as it came, DynamoDB words the answer, and nothing is cached from it.
//!
//! Two ways in, each reading the body once: the operations on the hot path (GetItem and the
//! item writes) deserialise straight into their typed form; the rest are read as one JSON
//! object that refuses repeated keys, and typed from that.
//!
//! Each family of operations has its file, as in the request path (`crate::proxy`): [`get`],
//! [`batch_get`], [`query`] (Query and Scan) and [`write`] (the item writes, batches and
//! transactions). This file holds the request itself, the dispatch by operation, and what
//! the families share.

mod batch_get;
mod get;
mod query;
mod write;

pub use batch_get::{BatchGet, BatchTable};
pub use get::GetItem;
pub use query::QueryOrScan;
pub use write::{KeyedWrite, NewItem, PutItem, WriteAction};

use std::borrow::Cow;

use bytes::Bytes;
use http::HeaderValue;
use serde_json::{Map, Value};

use super::json;
use super::operation::Operation;
use super::partiql;
use super::tables::{self, Named, Naming, TableRef};

/// Most keys one BatchGetItem may ask for.
pub(crate) const BATCH_GET_MAX_KEYS: usize = 100;
/// Most writes one BatchWriteItem may make.
pub(crate) const BATCH_WRITE_MAX_ITEMS: usize = 25;
/// Most items one transaction may hold.
pub(crate) const TRANSACT_MAX_ITEMS: usize = 100;

/// A request as the engine sees it.
#[derive(Debug)]
pub struct DynamoRequest {
    pub op: Operation,
    /// The `X-Amz-Target` it is forwarded with.
    pub target: HeaderValue,
    /// The body as the caller sent it: forwarded byte for byte, never re-read.
    pub body: Bytes,
    /// The tables it names (see [`DynamoRequest::tables`]); for a typed GetItem, its form
    /// names its one table and this is not built, so a hit allocates nothing for it.
    named: Option<Named>,
    /// What the engine does with it.
    pub form: Form,
}

/// The typed forms of the requests the engine reads.
///
/// A read has one variant per family of operations, not per operation: the family's typed
/// form covers each of its operations (Query and Scan share [`QueryOrScan`], which the
/// request's `op` tells apart), and the request path dispatches on the family. So a read
/// operation joins a family in three files: its parser and its case of the family's form in
/// the family's file here, its dispatch line in [`DynamoRequest::parse`], and its handling in
/// the family's file of the request path (`crate::proxy`).
#[derive(Debug)]
pub enum Form {
    /// GetItem.
    Get(GetItem),
    /// BatchGetItem.
    BatchGet(BatchGet),
    /// Query and Scan.
    Query(QueryOrScan),
    PutItem(PutItem),
    DeleteItem(KeyedWrite),
    UpdateItem(KeyedWrite),
    BatchWriteItem(Vec<WriteAction>),
    TransactWriteItems(Vec<WriteAction>),
    /// CreateTable, UpdateTable, DeleteTable (`None`: the table cannot be read).
    TableChange(Option<String>),
    /// PartiQL: the tables its writing statements change (`None`: a table the proxy cannot
    /// tell, so everything is dropped).
    PartiQl {
        writes: Vec<Option<String>>,
    },
    /// A write the proxy cannot attribute to keys (a table named by an ARN it cannot place):
    /// forwarded, then these tables are dropped.
    WriteToTables(Vec<String>),
    /// Forwarded as it came, uncached.
    Forward,
    /// Not one JSON object, for an operation whose body the proxy reads.
    NotJson,
}
impl DynamoRequest {
    /// Types `body` as `op`. Never fails: what the proxy cannot read is forwarded.
    pub fn parse(op: Operation, target: HeaderValue, body: Bytes, naming: &Naming) -> Self {
        let (tables, form) = match op {
            Operation::GetItem => derived(op, &body, naming, get::get_item),
            Operation::PutItem => derived(op, &body, naming, write::put_item),
            Operation::DeleteItem => derived(op, &body, naming, |b, n| {
                write::keyed_write(b, n, Form::DeleteItem)
            }),
            Operation::UpdateItem => derived(op, &body, naming, |b, n| {
                write::keyed_write(b, n, Form::UpdateItem)
            }),
            Operation::BatchWriteItem => derived(op, &body, naming, write::batch_write),
            Operation::TransactWriteItems => derived(op, &body, naming, write::transact_write),
            _ => match json::strict_object(&body) {
                Some(object) => {
                    let tables = tables::named(op, &object, naming);
                    let form = typed(op, object, naming);
                    (tables, form)
                }
                None => (None, unreadable(op, &body)),
            },
        };
        DynamoRequest {
            op,
            target,
            body,
            named: tables,
            form,
        }
    }

    /// A GetItem of `key` in `table`, as a warm start reads it.
    pub fn get_item(table: &str, key: &Value, naming: &Naming) -> Self {
        let body = serde_json::json!({"TableName": table, "Key": key});
        DynamoRequest::parse(
            Operation::GetItem,
            HeaderValue::from_static("DynamoDB_20120810.GetItem"),
            Bytes::from(body.to_string()),
            naming,
        )
    }

    /// The tables it names, plain names for the proxy's own region; `None` when they cannot
    /// be read with certainty (then only a principal allowed every table may send it).
    pub fn tables(&self) -> Option<Cow<'_, Named>> {
        match &self.form {
            Form::Get(get) => Some(Cow::Owned(Named::Tables(vec![get.table.clone()]))),
            _ => self.named.as_ref().map(Cow::Borrowed),
        }
    }

    /// The first table the request names, for logs.
    pub fn table(&self) -> Option<&str> {
        match (&self.form, &self.named) {
            (Form::Get(get), _) => Some(&get.table),
            (_, Some(Named::Tables(tables))) => tables.first().map(String::as_str),
            _ => None,
        }
    }
}

/// Runs a typed parse; a body it refuses (a shape DynamoDB will refuse, a repeated field) is
/// read the strict way for its tables, and forwarded. Nothing is cached from it.
fn derived(
    op: Operation,
    body: &Bytes,
    naming: &Naming,
    typed: impl FnOnce(&Bytes, &Naming) -> Option<(Named, Form)>,
) -> (Option<Named>, Form) {
    if let Some((named, form)) = typed(body, naming) {
        return (Some(named), form);
    }
    match json::strict_object(body) {
        Some(object) => (tables::named(op, &object, naming), Form::Forward),
        None if json::is_object(body) => (None, Form::Forward),
        None => (None, Form::NotJson),
    }
}

/// A body that is not one JSON object with unique keys.
fn unreadable(op: Operation, body: &[u8]) -> Form {
    if reads_body(op) && !json::is_object(body) {
        Form::NotJson
    } else {
        Form::Forward
    }
}

/// Operations whose request body the proxy itself reads (to derive keys, invalidate, or
/// answer from memory): the ones [`DynamoRequest::parse`] types. A body that is not a JSON
/// object is refused before going upstream; every other operation is forwarded without the
/// proxy looking inside.
fn reads_body(op: Operation) -> bool {
    matches!(
        op,
        Operation::GetItem
            | Operation::BatchGetItem
            | Operation::Query
            | Operation::Scan
            | Operation::PutItem
            | Operation::UpdateItem
            | Operation::DeleteItem
            | Operation::BatchWriteItem
            | Operation::TransactWriteItems
            | Operation::ExecuteStatement
            | Operation::BatchExecuteStatement
            | Operation::ExecuteTransaction
            | Operation::CreateTable
            | Operation::DeleteTable
            | Operation::UpdateTable
    )
}

fn typed(op: Operation, object: Map<String, Value>, naming: &Naming) -> Form {
    match op {
        Operation::BatchGetItem => {
            batch_get::batch_get(object, naming).map_or(Form::Forward, Form::BatchGet)
        }
        Operation::Query | Operation::Scan => {
            query::query_or_scan(op, object, naming).map_or(Form::Forward, Form::Query)
        }
        Operation::CreateTable | Operation::UpdateTable | Operation::DeleteTable => {
            let table = object
                .get("TableName")
                .and_then(Value::as_str)
                .map(|name| naming.resolve(name).name().to_string());
            Form::TableChange(table)
        }
        Operation::ExecuteStatement
        | Operation::BatchExecuteStatement
        | Operation::ExecuteTransaction => {
            let writes = partiql::statements(&object)
                .iter()
                .map(|text| text.map(partiql::statement))
                .filter(|s| s.as_ref().is_none_or(|s| s.writes))
                .map(|s| {
                    s.and_then(|s| s.table)
                        .map(|t| naming.resolve(&t).name().to_string())
                })
                .collect();
            Form::PartiQl { writes }
        }
        _ => Form::Forward,
    }
}

/// What a `ReturnConsumedCapacity` value asks for (an unknown value asks for nothing; such a
/// request is never answered from memory).
fn wants_capacity(rcc: Option<&str>) -> Capacity {
    match rcc {
        Some("TOTAL") => Capacity::Total,
        Some("INDEXES") => Capacity::Indexes,
        _ => Capacity::None,
    }
}

/// The `ConsumedCapacity` a caller asked for: a hit answers it in the shape DynamoDB would.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Capacity {
    /// `NONE`, or not asked.
    #[default]
    None,
    /// `TOTAL`: the table and its units.
    Total,
    /// `INDEXES`: also the table's own units, and each index read.
    Indexes,
}

impl Capacity {
    /// Whether the answer carries `ConsumedCapacity` at all.
    pub fn wanted(self) -> bool {
        self != Capacity::None
    }
}

/// Whether DynamoDB accepts a `ReturnConsumedCapacity` value.
fn capacity_acceptable(rcc: Option<&str>) -> bool {
    matches!(rcc, None | Some("NONE" | "TOTAL" | "INDEXES"))
}

fn named(table: &str) -> Named {
    Named::Tables(vec![table.to_string()])
}

/// A write to tables of which one at least the proxy cannot place (another region or
/// account, or an account it does not know yet).
fn unplaced(refs: Vec<TableRef<'_>>) -> (Named, Form) {
    let own: Vec<String> = refs
        .iter()
        .filter(|r| !matches!(r, TableRef::Foreign(_)))
        .map(|r| r.name().to_string())
        .collect();
    (tables::of_refs(&refs), Form::WriteToTables(own))
}

/// A batch or transaction: typed when every table is the proxy's own, else table-wide.
fn writes_to(refs: Vec<TableRef<'static>>, form: Form) -> (Named, Form) {
    if refs.iter().all(|r| matches!(r, TableRef::Own(_))) {
        let names = refs.iter().map(|r| r.name().to_string()).collect();
        (tables::sorted(names), form)
    } else {
        unplaced(refs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naming() -> Naming {
        Naming::new("us-east-1")
    }

    fn parse(op: Operation, body: &str) -> DynamoRequest {
        DynamoRequest::parse(
            op,
            HeaderValue::from_static("DynamoDB_20120810.X"),
            Bytes::from(body.to_string()),
            &naming(),
        )
    }

    #[test]
    fn get_item_is_typed_once_with_its_key_and_projection() {
        let r = parse(
            Operation::GetItem,
            r##"{"TableName":"t","Key":{"pk":{"S":"a"}},"ProjectionExpression":"#v","ExpressionAttributeNames":{"#v":"v"}}"##,
        );
        assert_eq!(
            r.tables().as_deref(),
            Some(&Named::Tables(vec!["t".into()]))
        );
        let Form::Get(get) = r.form else {
            panic!("{:?}", r.form)
        };
        assert_eq!(get.table, "t");
        assert_eq!(&get.wire_key[..], br#"{"pk":{"S":"a"}}"#);
        assert!(get.variant.is_some());
        assert!(!get.capacity.wanted());
    }

    #[test]
    fn requests_dynamodb_would_refuse_are_forwarded() {
        for body in [
            // both projection styles
            r#"{"TableName":"t","Key":{"pk":{"S":"a"}},"ProjectionExpression":"v","AttributesToGet":["v"]}"#,
            // a name no expression uses
            r##"{"TableName":"t","Key":{"pk":{"S":"a"}},"ExpressionAttributeNames":{"#v":"v"}}"##,
            r#"{"TableName":"t","Key":{"pk":{"S":"a"}},"ReturnConsumedCapacity":"LOTS"}"#,
            r#"{"TableName":"t","Key":{"pk":{"S":"a"}},"ConsistentRead":true}"#,
        ] {
            let r = parse(Operation::GetItem, body);
            assert!(matches!(r.form, Form::Forward), "{body}: {:?}", r.form);
        }
        for body in [
            r#"{"RequestItems":{}}"#,
            r#"{"RequestItems":{"t":{"Keys":[]}}}"#,
            r#"{"RequestItems":{"t":{"Keys":[{"pk":{"S":"a"}},{"pk":{"S":"a"}}]}}}"#,
            r#"{"RequestItems":{"t":{"Keys":[{"pk":{"S":"a"}}]}},"ReturnConsumedCapacity":"LOTS"}"#,
        ] {
            let r = parse(Operation::BatchGetItem, body);
            assert!(matches!(r.form, Form::Forward), "{body}: {:?}", r.form);
        }
        let keys: Vec<String> = (0..101)
            .map(|i| format!(r#"{{"pk":{{"S":"{i}"}}}}"#))
            .collect();
        let body = format!(
            r#"{{"RequestItems":{{"t":{{"Keys":[{}]}}}}}}"#,
            keys.join(",")
        );
        assert!(matches!(
            parse(Operation::BatchGetItem, &body).form,
            Form::Forward
        ));
    }

    #[test]
    fn repeated_fields_leave_the_tables_unknown() {
        let r = parse(
            Operation::GetItem,
            r#"{"TableName":"a","TableName":"b","Key":{"pk":{"S":"a"}}}"#,
        );
        assert_eq!(r.tables(), None);
        assert!(matches!(r.form, Form::Forward));
        let r = parse(Operation::Query, r#"{"TableName":"a","TableName":"b"}"#);
        assert_eq!(r.tables(), None);
    }

    #[test]
    fn not_json_is_refused_for_operations_the_proxy_reads() {
        assert!(matches!(
            parse(Operation::GetItem, "nope").form,
            Form::NotJson
        ));
        assert!(matches!(parse(Operation::Query, "[]").form, Form::NotJson));
        assert!(matches!(
            parse(Operation::ListTables, "nope").form,
            Form::Forward
        ));
    }

    #[test]
    fn an_update_asks_for_all_new_without_its_body_being_read_again() {
        for (body, expected) in [
            (
                r#"{"TableName":"t","Key":{"pk":{"S":"a"}},"ReturnValues":"NONE"}"#,
                r#"{"TableName":"t","Key":{"pk":{"S":"a"}},"ReturnValues":"ALL_NEW"}"#,
            ),
            (
                r#"{"TableName":"t","Key":{"pk":{"S":"a"}}} "#,
                r#"{"TableName":"t","Key":{"pk":{"S":"a"}},"ReturnValues":"ALL_NEW"} "#,
            ),
            (
                r#"{"ReturnValues" : "NONE" , "TableName":"t","Key":{"pk":{"S":"a"}}}"#,
                r#"{"ReturnValues" : "ALL_NEW" , "TableName":"t","Key":{"pk":{"S":"a"}}}"#,
            ),
        ] {
            let r = parse(Operation::UpdateItem, body);
            let Form::UpdateItem(update) = r.form else {
                panic!("{:?}", r.form)
            };
            assert_eq!(&update.asking_all_new(&r.body)[..], expected.as_bytes());
        }
    }

    #[test]
    fn a_partiql_write_the_proxy_cannot_read_drops_everything() {
        let r = parse(
            Operation::ExecuteStatement,
            r#"{"Statement":"DELETE FROM -- orders\n\"other\" WHERE pk='a'"}"#,
        );
        assert!(
            matches!(r.form, Form::PartiQl { ref writes } if writes == &[None]),
            "{:?}",
            r.form
        );
        let r = parse(
            Operation::BatchExecuteStatement,
            r#"{"Statements":[{"Statement":"SELECT * FROM t"},{"Statement":"UPDATE u SET a=1 WHERE pk='a'"}]}"#,
        );
        assert!(
            matches!(r.form, Form::PartiQl { ref writes } if writes == &[Some("u".to_string())]),
            "{:?}",
            r.form
        );
    }

    #[test]
    fn an_arn_of_the_own_region_is_the_plain_name() {
        let r = parse(
            Operation::GetItem,
            r#"{"TableName":"arn:aws:dynamodb:us-east-1:123456789012:table/orders","Key":{"pk":{"S":"a"}}}"#,
        );
        assert_eq!(
            r.tables().as_deref(),
            Some(&Named::Tables(vec!["orders".into()]))
        );
        // The account is not known yet: read through, never from memory.
        assert!(matches!(r.form, Form::Forward));
        let n = naming();
        n.learn_account("123456789012");
        let r = DynamoRequest::parse(
            Operation::GetItem,
            HeaderValue::from_static("DynamoDB_20120810.GetItem"),
            Bytes::from_static(
                br#"{"TableName":"arn:aws:dynamodb:us-east-1:123456789012:table/orders","Key":{"pk":{"S":"a"}}}"#,
            ),
            &n,
        );
        let Form::Get(get) = r.form else {
            panic!("{:?}", r.form)
        };
        assert_eq!(get.table, "orders");
        // A write naming another region's table is not this cache's business.
        let r = parse(
            Operation::PutItem,
            r#"{"TableName":"arn:aws:dynamodb:eu-west-1:123456789012:table/orders","Item":{"pk":{"S":"a"}}}"#,
        );
        assert!(
            matches!(r.form, Form::WriteToTables(ref t) if t.is_empty()),
            "{:?}",
            r.form
        );
    }
}
