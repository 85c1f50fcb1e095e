//! Which tables a request names, and table names given as ARNs.
//!
//! DynamoDB accepts a table's ARN wherever it accepts its name. To the cache, the
//! configuration and the access checks, an ARN of the proxy's own region and account is the
//! plain name. An ARN of another region or account names another table: requests that use
//! one are forwarded uncached. The proxy learns its account from the first DescribeTable
//! answer; until then, reads by ARN are forwarded uncached and writes by ARN drop the table.

use std::borrow::Cow;
use std::sync::OnceLock;

use serde_json::{Map, Value};

use super::operation::Operation;
use super::partiql;

/// The tables a request names, for authorisation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Named {
    /// These tables (possibly none: ListTables, DescribeLimits).
    Tables(Vec<String>),
    /// The proxy cannot tell (an operation it does not know, a PartiQL statement it cannot
    /// read, an opaque shard iterator): only a principal allowed every table (`*`) passes.
    Unknown,
}

/// A table name as a request gives it, placed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableRef<'a> {
    /// A table of the proxy's own region and account, by plain name.
    Own(Cow<'a, str>),
    /// An ARN of the proxy's region whose account the proxy does not know yet (plain name).
    Unsure(Cow<'a, str>),
    /// An ARN of another region or account (the whole ARN).
    Foreign(Cow<'a, str>),
}

impl TableRef<'_> {
    /// The name the cache and the access checks use.
    pub fn name(&self) -> &str {
        match self {
            TableRef::Own(n) | TableRef::Unsure(n) | TableRef::Foreign(n) => n,
        }
    }

    pub fn into_owned(self) -> TableRef<'static> {
        match self {
            TableRef::Own(n) => TableRef::Own(Cow::Owned(n.into_owned())),
            TableRef::Unsure(n) => TableRef::Unsure(Cow::Owned(n.into_owned())),
            TableRef::Foreign(n) => TableRef::Foreign(Cow::Owned(n.into_owned())),
        }
    }
}

/// The proxy's region and account, for placing table ARNs.
#[derive(Debug)]
pub struct Naming {
    region: String,
    account: OnceLock<String>,
}

impl Naming {
    pub fn new(region: &str) -> Naming {
        Naming {
            region: region.to_string(),
            account: OnceLock::new(),
        }
    }

    /// Records the proxy's account, from a table ARN DynamoDB answered with.
    pub fn learn_account(&self, account: &str) {
        let _ = self.account.set(account.to_string());
    }

    /// Learns the account from a table ARN of the proxy's region.
    pub fn learn_from_arn(&self, arn: &str) {
        if let Some(parts) = Arn::parse(arn)
            && parts.region == self.region
        {
            self.learn_account(parts.account);
        }
    }

    /// Whether a resource ARN (a table's, its stream's, a backup's) may be of the proxy's
    /// own region and account.
    pub fn may_own(&self, arn: &str) -> bool {
        let mut parts = arn.splitn(6, ':').skip(3);
        let (region, account) = (parts.next(), parts.next());
        region == Some(self.region.as_str())
            && self
                .account
                .get()
                .is_none_or(|own| Some(own.as_str()) == account)
    }

    /// Places a table name or ARN.
    pub fn resolve<'a>(&self, name: &'a str) -> TableRef<'a> {
        let Some(arn) = Arn::parse(name) else {
            return TableRef::Own(Cow::Borrowed(name));
        };
        if arn.region != self.region {
            return TableRef::Foreign(Cow::Borrowed(name));
        }
        match self.account.get() {
            Some(account) if account == arn.account => TableRef::Own(Cow::Borrowed(arn.table)),
            Some(_) => TableRef::Foreign(Cow::Borrowed(name)),
            None => TableRef::Unsure(Cow::Borrowed(arn.table)),
        }
    }
}

/// `arn:PARTITION:dynamodb:REGION:ACCOUNT:table/NAME`.
struct Arn<'a> {
    region: &'a str,
    account: &'a str,
    table: &'a str,
}

impl<'a> Arn<'a> {
    fn parse(text: &'a str) -> Option<Arn<'a>> {
        let mut parts = text.splitn(6, ':');
        let (arn, _partition, service) = (parts.next()?, parts.next()?, parts.next()?);
        let (region, account, resource) = (parts.next()?, parts.next()?, parts.next()?);
        if arn != "arn" || service != "dynamodb" {
            return None;
        }
        let table = resource.strip_prefix("table/")?;
        let valid = !table.is_empty()
            && table
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        valid.then_some(Arn {
            region,
            account,
            table,
        })
    }
}

/// The tables `refs` name, for grants: an ARN of another region or account is not one of the
/// proxy's tables, so only a principal allowed every table (`*`) may use it.
pub fn of_refs<'a>(refs: impl IntoIterator<Item = &'a TableRef<'a>>) -> Named {
    let mut names = Vec::new();
    for r in refs {
        match r {
            TableRef::Foreign(_) => return Named::Unknown,
            r => names.push(r.name().to_string()),
        }
    }
    sorted(names)
}

/// `names`, sorted and without repeats.
pub fn sorted(mut names: Vec<String>) -> Named {
    names.sort_unstable();
    names.dedup();
    Named::Tables(names)
}

/// Top-level fields that name a table, directly or by ARN, in any operation.
const TABLE_FIELDS: &[&str] = &[
    "TableName",
    "SourceTableName",
    "TargetTableName",
    "GlobalTableName",
];
const ARN_FIELDS: &[&str] = &[
    "TableArn",
    "ResourceArn",
    "StreamArn",
    "SourceTableArn",
    "BackupArn",
    "ExportArn",
    "ImportArn",
];

/// Every table `object` names for `op`; `None` when a field that names tables has a shape
/// the proxy cannot read.
pub fn named(op: Operation, object: &Map<String, Value>, naming: &Naming) -> Option<Named> {
    let mut tables = Vec::new();
    let mut unknown = false;
    // Another region's or account's table is not one a grant names.
    let place = |name: &str, tables: &mut Vec<String>| match naming.resolve(name) {
        TableRef::Foreign(_) => false,
        placed => {
            tables.push(placed.name().to_string());
            true
        }
    };
    let mut push_name = |v: &Value, tables: &mut Vec<String>| {
        if !v.as_str().is_some_and(|name| place(name, tables)) {
            unknown = true;
        }
    };
    match op {
        Operation::Other | Operation::GetRecords => return Some(Named::Unknown),
        Operation::BatchGetItem | Operation::BatchWriteItem => match object.get("RequestItems") {
            Some(Value::Object(items)) => {
                for table in items.keys() {
                    if !place(table, &mut tables) {
                        return Some(Named::Unknown);
                    }
                }
            }
            None => {}
            Some(_) => return Some(Named::Unknown),
        },
        Operation::TransactGetItems | Operation::TransactWriteItems => {
            for entry in object
                .get("TransactItems")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let Some(actions) = entry.as_object() else {
                    return Some(Named::Unknown);
                };
                for action in actions.values() {
                    match action.get("TableName") {
                        Some(name) => push_name(name, &mut tables),
                        None => return Some(Named::Unknown),
                    }
                }
            }
        }
        Operation::ExecuteStatement
        | Operation::BatchExecuteStatement
        | Operation::ExecuteTransaction => {
            for statement in partiql::statements(object) {
                match statement.and_then(|s| partiql::statement(s).table) {
                    Some(table) if place(&table, &mut tables) => {}
                    _ => return Some(Named::Unknown),
                }
            }
        }
        _ => {}
    }
    for field in TABLE_FIELDS {
        if let Some(v) = object.get(*field) {
            push_name(v, &mut tables);
        }
    }
    if let Some(v) = object
        .get("TableCreationParameters")
        .and_then(|p| p.get("TableName"))
    {
        push_name(v, &mut tables);
    }
    for field in ARN_FIELDS {
        if let Some(v) = object.get(*field) {
            let arn = v.as_str().unwrap_or("");
            match table_of_arn(arn) {
                Some(table) if naming.may_own(arn) => tables.push(table.to_string()),
                _ => unknown = true,
            }
        }
    }
    if unknown {
        return Some(Named::Unknown);
    }
    Some(sorted(tables))
}

/// `arn:aws:dynamodb:us-east-1:123456789012:table/orders/stream/2026-...` -> `orders`; also
/// `global-table/NAME`.
fn table_of_arn(arn: &str) -> Option<&str> {
    let resource = arn.splitn(6, ':').nth(5)?;
    let rest = resource
        .strip_prefix("table/")
        .or_else(|| resource.strip_prefix("global-table/"))?;
    let name = rest.split('/').next()?;
    (!name.is_empty()).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(text: &str) -> Map<String, Value> {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn arns_are_placed_by_region_and_account() {
        let naming = Naming::new("us-east-1");
        let own = "arn:aws:dynamodb:us-east-1:111122223333:table/orders";
        assert_eq!(naming.resolve("orders"), TableRef::Own("orders".into()));
        assert_eq!(naming.resolve(own), TableRef::Unsure("orders".into()));
        naming.learn_from_arn(own);
        assert_eq!(naming.resolve(own), TableRef::Own("orders".into()));
        let other_account = "arn:aws:dynamodb:us-east-1:999999999999:table/orders";
        assert_eq!(
            naming.resolve(other_account),
            TableRef::Foreign(other_account.into())
        );
        let other_region = "arn:aws:dynamodb:eu-west-1:111122223333:table/orders";
        assert_eq!(
            naming.resolve(other_region),
            TableRef::Foreign(other_region.into())
        );
        // Not a table ARN: a plain (if odd) name, which DynamoDB will judge.
        assert_eq!(
            naming.resolve("arn:aws:dynamodb:us-east-1:1:table/a/stream/x"),
            TableRef::Own("arn:aws:dynamodb:us-east-1:1:table/a/stream/x".into())
        );
    }

    #[test]
    fn tables_named_by_every_field_and_arn() {
        let naming = Naming::new("us-east-1");
        let named = |op, text: &str| super::named(op, &object(text), &naming);
        assert_eq!(
            named(
                Operation::BatchWriteItem,
                r#"{"RequestItems":{"b":[],"arn:aws:dynamodb:us-east-1:1:table/a":[]}}"#
            ),
            Some(Named::Tables(vec!["a".into(), "b".into()]))
        );
        assert_eq!(
            named(
                Operation::TagResource,
                r#"{"ResourceArn":"arn:aws:dynamodb:us-east-1:1:table/t/stream/x"}"#
            ),
            Some(Named::Tables(vec!["t".into()]))
        );
        assert_eq!(named(Operation::Other, "{}"), Some(Named::Unknown));
        assert_eq!(
            named(Operation::DescribeTable, r#"{"TableName":1}"#),
            Some(Named::Unknown)
        );
        assert_eq!(
            named(
                Operation::ExecuteStatement,
                r#"{"Statement":"SELECT * FROM \"t\""}"#
            ),
            Some(Named::Tables(vec!["t".into()]))
        );
    }
}
