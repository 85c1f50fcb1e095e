//! Which DynamoDB operation a request is, read from its `X-Amz-Target` header.
//!
//! Classification is the first step of the request path: it decides whether a request may be
//! answered from memory, must be written through, or is forwarded untouched. Metric labels come
//! from [`Operation::name`], never from raw input, so a hostile header cannot grow them.

/// The two APIs that DynamoDB serves at one endpoint. Anything else is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// `DynamoDB_20120810.*`: tables and items.
    DynamoDb,
    /// `DynamoDBStreams_20120810.*`: change streams; forwarded, never cached.
    Streams,
}

const DYNAMODB_PREFIX: &str = "DynamoDB_20120810.";
const STREAMS_PREFIX: &str = "DynamoDBStreams_20120810.";

/// The target prefix of an API, as a literal (for `concat!`).
macro_rules! prefix {
    (DynamoDb) => {
        "DynamoDB_20120810."
    };
    (Streams) => {
        "DynamoDBStreams_20120810."
    };
}

macro_rules! operations {
    ($($api:ident: $($op:ident),+;)+) => {
        /// Every operation of the DynamoDB and DynamoDB Streams APIs, plus [`Operation::Other`]
        /// for names AWS adds later (still forwarded).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Operation {
            $($($op,)+)+
            /// A well-formed target with a name this build does not know.
            Other,
        }

        impl Operation {
            /// Every known operation, in declaration order (for pre-registering metrics).
            pub const ALL: &'static [Operation] = &[$($(Operation::$op,)+)+ Operation::Other];

            /// The operation's wire name (and its metric label).
            pub fn name(self) -> &'static str {
                match self {
                    $($(Operation::$op => stringify!($op),)+)+
                    Operation::Other => "Other",
                }
            }

            /// The API the operation belongs to.
            pub fn api(self) -> Api {
                match self {
                    $($(Operation::$op => Api::$api,)+)+
                    Operation::Other => Api::DynamoDb,
                }
            }

            /// The operation's `X-Amz-Target`, for requests the proxy writes itself (a DAX
            /// request's DynamoDB form).
            pub fn target(self) -> http::HeaderValue {
                http::HeaderValue::from_static(match self {
                    $($(Operation::$op => concat!(prefix!($api), stringify!($op)),)+)+
                    Operation::Other => concat!(prefix!(DynamoDb), "Other"),
                })
            }

            fn lookup(api: Api, name: &str) -> Operation {
                match (api, name) {
                    $($((Api::$api, stringify!($op)) => Operation::$op,)+)+
                    _ => Operation::Other,
                }
            }
        }
    };
}

operations! {
    DynamoDb:
        BatchExecuteStatement, BatchGetItem, BatchWriteItem, CreateBackup, CreateGlobalTable,
        CreateTable, DeleteBackup, DeleteItem, DeleteResourcePolicy, DeleteTable, DescribeBackup,
        DescribeContinuousBackups, DescribeContributorInsights, DescribeEndpoints, DescribeExport,
        DescribeGlobalTable, DescribeGlobalTableSettings, DescribeImport,
        DescribeKinesisStreamingDestination, DescribeLimits, DescribeTable,
        DescribeTableReplicaAutoScaling, DescribeTimeToLive, DisableKinesisStreamingDestination,
        EnableKinesisStreamingDestination, ExecuteStatement, ExecuteTransaction,
        ExportTableToPointInTime, GetItem, GetResourcePolicy, ImportTable, ListBackups,
        ListContributorInsights, ListExports, ListGlobalTables, ListImports, ListTables,
        ListTagsOfResource, PutItem, PutResourcePolicy, Query, RestoreTableFromBackup,
        RestoreTableToPointInTime, Scan, TagResource, TransactGetItems, TransactWriteItems,
        UntagResource, UpdateContinuousBackups, UpdateContributorInsights, UpdateGlobalTable,
        UpdateGlobalTableSettings, UpdateItem, UpdateKinesisStreamingDestination, UpdateTable,
        UpdateTableReplicaAutoScaling, UpdateTimeToLive;
    Streams:
        DescribeStream, GetRecords, GetShardIterator, ListStreams;
}

/// A classified `X-Amz-Target`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    pub api: Api,
    pub op: Operation,
}

impl Target {
    /// Classifies a raw `X-Amz-Target` value; `None` when it names neither DynamoDB API.
    pub fn parse(raw: &str) -> Option<Target> {
        let (api, name) = if let Some(name) = raw.strip_prefix(DYNAMODB_PREFIX) {
            (Api::DynamoDb, name)
        } else if let Some(name) = raw.strip_prefix(STREAMS_PREFIX) {
            (Api::Streams, name)
        } else {
            return None;
        };
        if name.is_empty() {
            return None;
        }
        Some(Target {
            api,
            op: Operation::lookup(api, name),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_both_apis() {
        assert_eq!(
            Target::parse("DynamoDB_20120810.GetItem"),
            Some(Target {
                api: Api::DynamoDb,
                op: Operation::GetItem
            })
        );
        assert_eq!(
            Target::parse("DynamoDBStreams_20120810.GetRecords"),
            Some(Target {
                api: Api::Streams,
                op: Operation::GetRecords
            })
        );
    }

    #[test]
    fn unknown_names_under_a_known_prefix_are_other() {
        let t = Target::parse("DynamoDB_20120810.SomethingAwsAddsNextYear").unwrap();
        assert_eq!(t.op, Operation::Other);
        // A streams name under the table prefix is not a table operation.
        assert_eq!(
            Target::parse("DynamoDB_20120810.GetRecords").unwrap().op,
            Operation::Other
        );
    }

    #[test]
    fn refuses_foreign_or_empty_targets() {
        for raw in [
            "",
            "DynamoDB_20120810.",
            "dynamodb_20120810.GetItem",
            "Kinesis_20131202.PutRecord",
            "GetItem",
        ] {
            assert_eq!(Target::parse(raw), None, "{raw:?}");
        }
    }

    #[test]
    fn names_round_trip() {
        for op in Operation::ALL.iter().filter(|op| **op != Operation::Other) {
            let api = match op {
                Operation::DescribeStream
                | Operation::GetRecords
                | Operation::GetShardIterator
                | Operation::ListStreams => STREAMS_PREFIX,
                _ => DYNAMODB_PREFIX,
            };
            let parsed = Target::parse(&format!("{api}{}", op.name())).unwrap();
            assert_eq!(parsed.op, *op);
            assert_eq!(parsed.api, op.api());
            assert_eq!(op.target(), format!("{api}{}", op.name()).as_str());
        }
    }
}
