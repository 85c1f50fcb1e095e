//! The credentials file: every principal the proxy trusts, by access key id, with the tables
//! and classes of operation each may use. Secrets never print.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::Deserialize;

use crate::wire::operation::Operation;

/// What a principal may do: the three classes of operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    /// GetItem, BatchGetItem, Query, Scan, TransactGetItems.
    Read,
    /// PutItem, UpdateItem, DeleteItem, BatchWriteItem, TransactWriteItems.
    Write,
    /// Everything else: table management, PartiQL, streams, backups, tags, and whatever AWS adds.
    Admin,
}

impl Access {
    /// The class of an operation.
    pub fn of(op: Operation) -> Access {
        use Operation::*;
        match op {
            GetItem | BatchGetItem | Query | Scan | TransactGetItems => Access::Read,
            PutItem | UpdateItem | DeleteItem | BatchWriteItem | TransactWriteItems => {
                Access::Write
            }
            _ => Access::Admin,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Access::Read => "read",
            Access::Write => "write",
            Access::Admin => "admin",
        }
    }
}

/// Derived signing keys by scope date; never printed.
#[derive(Default)]
pub(crate) struct SigningKeys(pub(crate) Mutex<HashMap<String, Arc<[u8]>>>);

impl fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MASKED")
    }
}

/// A secret access key: never printed, never logged.
#[derive(Clone)]
pub(crate) struct Secret(pub(crate) String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MASKED")
    }
}

/// One caller the proxy trusts.
#[derive(Debug)]
pub struct Principal {
    /// Who it is, for logs and error messages.
    pub name: String,
    pub(crate) secret: Secret,
    /// Table globs it may use (`*` matches any run of characters).
    tables: Vec<wildmatch::WildMatch>,
    /// Whether one of the globs is `*` alone: needed when a request's tables cannot be told.
    pub(crate) any_table: bool,
    operations: Vec<Access>,
    /// Signing keys derived from this principal's secret, by scope date: deriving one costs
    /// four HMACs, and a caller signs with the same one all day. They belong to this loaded
    /// principal, so a reload that changes the secret starts afresh, even for a request that
    /// was being verified against the old file at the time.
    pub(crate) signing_keys: SigningKeys,
}

impl Principal {
    /// Whether the principal may use `table`.
    pub fn may_use(&self, table: &str) -> bool {
        self.tables.iter().any(|glob| glob.matches(table))
    }

    /// Whether the principal may use operations of class `access`.
    pub fn may(&self, access: Access) -> bool {
        self.operations.contains(&access)
    }
}

/// The credentials file: every principal, by access key id.
#[derive(Debug, Default)]
pub struct Principals {
    pub(crate) by_key: HashMap<String, Arc<Principal>>,
}

/// One `[[principal]]` of the credentials file, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PrincipalEntry {
    name: String,
    access_key_id: String,
    secret_access_key: Option<String>,
    /// A file holding the secret (a mounted Kubernetes or ECS secret); relative to the
    /// credentials file.
    secret_access_key_file: Option<PathBuf>,
    tables: Vec<String>,
    operations: Vec<Access>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PrincipalsFile {
    #[serde(default)]
    principal: Vec<PrincipalEntry>,
}

impl Principals {
    /// Reads and checks a credentials file.
    pub fn load(path: &Path) -> Result<Principals, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read credentials file {}: {e}", path.display()))?;
        Principals::parse(&text, path.parent().unwrap_or(Path::new(".")))
            .map_err(|e| format!("credentials file {}: {e}", path.display()))
    }

    /// Parses credentials-file text; secret files are read relative to `dir`.
    pub fn parse(text: &str, dir: &Path) -> Result<Principals, String> {
        let file: PrincipalsFile = toml::from_str(text).map_err(|e| e.to_string())?;
        if file.principal.is_empty() {
            return Err("no [[principal]]: nobody could call the proxy".into());
        }
        let mut by_key = HashMap::new();
        for entry in file.principal {
            let who = &entry.name;
            let secret = match (&entry.secret_access_key, &entry.secret_access_key_file) {
                (Some(secret), None) => secret.clone(),
                (None, Some(file)) => {
                    let path = dir.join(file);
                    std::fs::read_to_string(&path)
                        .map_err(|e| format!("{who}: cannot read {}: {e}", path.display()))?
                        .trim_end_matches(['\r', '\n'])
                        .to_string()
                }
                _ => {
                    return Err(format!(
                        "{who}: give exactly one of secret_access_key and secret_access_key_file"
                    ));
                }
            };
            if entry.access_key_id.is_empty() || secret.is_empty() {
                return Err(format!("{who}: empty access key id or secret"));
            }
            if entry.tables.is_empty() || entry.operations.is_empty() {
                return Err(format!(
                    "{who}: tables and operations must each list at least one entry"
                ));
            }
            let principal = Principal {
                name: entry.name.clone(),
                secret: Secret(secret),
                any_table: entry.tables.iter().any(|t| t == "*"),
                tables: entry
                    .tables
                    .iter()
                    .map(|t| wildmatch::WildMatch::new(t))
                    .collect(),
                operations: entry.operations,
                signing_keys: SigningKeys::default(),
            };
            if by_key
                .insert(entry.access_key_id.clone(), Arc::new(principal))
                .is_some()
            {
                return Err(format!(
                    "access key id {} is listed twice",
                    entry.access_key_id
                ));
            }
        }
        Ok(Principals { by_key })
    }

    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }
}
