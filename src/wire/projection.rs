//! Projections evaluated from a cached item, so a projected read of a known item needs no
//! upstream call (DAX caches each projection separately and must go upstream for every new one).
//!
//! Deliberately conservative: an expression is evaluated here only if it parses as plain
//! document paths (names, `#placeholders`, `.field`, `[index]`) with no overlaps, and only if
//! every path exists in the item. Anything else (a path that is missing or crosses a scalar, a
//! syntax DynamoDB might refuse) is left to DynamoDB, which words the answer or the error.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// One step of a document path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Field(String),
    Index(usize),
}

/// The requested paths as a tree: a leaf takes the whole value, inner nodes pick parts of it.
#[derive(Debug, Default)]
enum Tree {
    #[default]
    Whole,
    Fields(BTreeMap<String, Tree>),
    Elements(BTreeMap<usize, Tree>),
}

/// A parsed projection, ready to apply to items.
#[derive(Debug)]
pub struct Projection {
    root: BTreeMap<String, Tree>,
}

impl Projection {
    /// Parses a `ProjectionExpression` with its `ExpressionAttributeNames`; `None` if it is not
    /// a plain list of non-overlapping document paths.
    pub fn parse(expr: &str, names: Option<&BTreeMap<String, String>>) -> Option<Projection> {
        let mut root = BTreeMap::new();
        for path in expr.split(',') {
            let steps = parse_path(path, names)?;
            insert(&mut root, &steps)?;
        }
        Some(Projection { root })
    }

    /// The legacy `AttributesToGet`: top-level names, taken literally.
    pub fn attributes(names: &[String]) -> Option<Projection> {
        let mut root = BTreeMap::new();
        for name in names {
            insert(&mut root, &[Step::Field(name.clone())])?;
        }
        Some(Projection { root })
    }

    /// The item reduced to the projected paths (as DynamoDB would return it), or `None` if any
    /// path does not exist in full.
    pub fn apply(&self, item: &Map<String, Value>) -> Option<Map<String, Value>> {
        let mut out = Map::new();
        for (name, tree) in &self.root {
            out.insert(name.clone(), pick(tree, item.get(name)?)?);
        }
        Some(out)
    }
}

fn parse_path(path: &str, names: Option<&BTreeMap<String, String>>) -> Option<Vec<Step>> {
    let path = path.trim();
    let mut steps = Vec::new();
    let mut rest = path;
    let mut first = true;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('[') {
            let (digits, tail) = after.split_once(']')?;
            if first || digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            steps.push(Step::Index(digits.parse().ok()?));
            rest = tail;
            continue;
        }
        if !first {
            rest = rest.strip_prefix('.')?;
        }
        let end = rest.find(['.', '[']).unwrap_or(rest.len());
        let token = &rest[..end];
        let name = if let Some(placeholder) = token.strip_prefix('#') {
            if placeholder.is_empty() {
                return None;
            }
            names?.get(token)?.clone()
        } else {
            let mut chars = token.chars();
            let starts_well = chars
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
            if !starts_well || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return None;
            }
            token.to_string()
        };
        steps.push(Step::Field(name));
        rest = &rest[end..];
        first = false;
    }
    (!steps.is_empty()).then_some(steps)
}

/// Adds one path to the tree; `None` if it overlaps a path already there (DynamoDB refuses).
fn insert(root: &mut BTreeMap<String, Tree>, steps: &[Step]) -> Option<()> {
    let (Step::Field(head), rest) = steps.split_first()? else {
        return None;
    };
    if rest.is_empty() {
        return root
            .insert(head.clone(), Tree::Whole)
            .is_none()
            .then_some(());
    }
    let node = root.entry(head.clone()).or_insert_with(|| match rest[0] {
        Step::Field(_) => Tree::Fields(BTreeMap::new()),
        Step::Index(_) => Tree::Elements(BTreeMap::new()),
    });
    insert_below(node, rest)
}

fn insert_below(node: &mut Tree, steps: &[Step]) -> Option<()> {
    let (step, rest) = steps.split_first()?;
    let fresh = |rest: &[Step]| match rest.first() {
        None => Tree::Whole,
        Some(Step::Field(_)) => Tree::Fields(BTreeMap::new()),
        Some(Step::Index(_)) => Tree::Elements(BTreeMap::new()),
    };
    let child = match (node, step) {
        (Tree::Fields(children), Step::Field(name)) => {
            if rest.is_empty() {
                return children
                    .insert(name.clone(), Tree::Whole)
                    .is_none()
                    .then_some(());
            }
            children.entry(name.clone()).or_insert_with(|| fresh(rest))
        }
        (Tree::Elements(children), Step::Index(i)) => {
            if rest.is_empty() {
                return children.insert(*i, Tree::Whole).is_none().then_some(());
            }
            children.entry(*i).or_insert_with(|| fresh(rest))
        }
        // A path through a whole value, or one that treats a value as both map and list.
        _ => return None,
    };
    insert_below(child, rest)
}

/// The part of a typed value (`{"M": ...}`, `{"L": ...}`, ...) that `tree` selects.
fn pick(tree: &Tree, value: &Value) -> Option<Value> {
    match tree {
        Tree::Whole => Some(value.clone()),
        Tree::Fields(children) => {
            let map = value.get("M")?.as_object()?;
            let mut out = Map::new();
            for (name, child) in children {
                out.insert(name.clone(), pick(child, map.get(name)?)?);
            }
            Some(serde_json::json!({ "M": out }))
        }
        Tree::Elements(children) => {
            let list = value.get("L")?.as_array()?;
            let picked = children
                .iter()
                .map(|(i, child)| pick(child, list.get(*i)?))
                .collect::<Option<Vec<_>>>()?;
            Some(serde_json::json!({ "L": picked }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn item() -> Map<String, Value> {
        json!({
            "pk": {"S": "a"},
            "name": {"S": "n"},
            "tags": {"L": [{"S": "x"}, {"S": "y"}, {"M": {"deep": {"N": "1"}, "other": {"N": "2"}}}]},
            "addr": {"M": {"city": {"S": "Oslo"}, "zip": {"S": "0150"}, "geo": {"M": {"lat": {"N": "59"}}}}}
        })
        .as_object()
        .unwrap()
        .clone()
    }

    fn apply(expr: &str, names: &[(&str, &str)]) -> Option<Value> {
        let names: BTreeMap<String, String> = names
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Projection::parse(expr, Some(&names))?
            .apply(&item())
            .map(Value::Object)
    }

    #[test]
    fn top_level_names_and_placeholders() {
        assert_eq!(
            apply("pk, #n", &[("#n", "name")]),
            Some(json!({"pk": {"S": "a"}, "name": {"S": "n"}}))
        );
    }

    #[test]
    fn nested_maps_and_list_indexes() {
        assert_eq!(
            apply("addr.city, addr.geo.lat", &[]),
            Some(
                json!({"addr": {"M": {"city": {"S": "Oslo"}, "geo": {"M": {"lat": {"N": "59"}}}}}})
            )
        );
        assert_eq!(
            apply("tags[2].deep, tags[0]", &[]),
            Some(json!({"tags": {"L": [{"S": "x"}, {"M": {"deep": {"N": "1"}}}]}}))
        );
    }

    #[test]
    fn missing_paths_are_left_to_dynamodb() {
        assert_eq!(apply("nope", &[]), None);
        assert_eq!(apply("addr.nope", &[]), None);
        assert_eq!(apply("tags[9]", &[]), None);
        assert_eq!(apply("name.x", &[]), None, "a path through a scalar");
        assert_eq!(apply("#missing", &[]), None, "undefined placeholder");
    }

    #[test]
    fn overlapping_or_odd_expressions_are_not_evaluated() {
        for expr in [
            "addr, addr.city",
            "addr.city, addr",
            "pk, pk",
            "tags[0], tags.x",
            "",
            "pk,",
            "[0]",
            "a b",
            "size(pk)",
            "a..b",
            "tags[x]",
            "9lives",
            ":v",
        ] {
            assert!(Projection::parse(expr, None).is_none(), "{expr:?}");
        }
    }

    #[test]
    fn hostile_input_never_panics() {
        for expr in [
            "[",
            "]",
            "a[",
            "a[]",
            "a[99999999999999999999]",
            "#",
            "..",
            "a.[0]",
        ] {
            let _ = Projection::parse(expr, None).and_then(|p| p.apply(&item()));
        }
    }
}

/// The parameters that select which attributes a read returns.
#[derive(Debug, serde::Deserialize, Default, Clone)]
#[serde(rename_all = "PascalCase")]
pub struct ProjectionInput {
    pub projection_expression: Option<String>,
    pub expression_attribute_names: Option<BTreeMap<String, String>>,
    pub attributes_to_get: Option<Vec<String>>,
}

impl ProjectionInput {
    /// Whether DynamoDB would accept these parameters together: one projection style at
    /// most, every `#name` defined and every defined name used, no empty or repeated
    /// attribute list. When unsure, `false`: the request goes to DynamoDB, which decides.
    pub fn acceptable(&self) -> bool {
        if self.projection_expression.is_some() && self.attributes_to_get.is_some() {
            return false;
        }
        if let Some(names) = &self.attributes_to_get {
            let mut seen = std::collections::BTreeSet::new();
            if names.is_empty() || !names.iter().all(|n| !n.is_empty() && seen.insert(n)) {
                return false;
            }
        }
        let used: std::collections::BTreeSet<&str> = self
            .projection_expression
            .iter()
            .flat_map(|expr| placeholders(expr))
            .collect();
        match (
            &self.projection_expression,
            &self.expression_attribute_names,
        ) {
            (Some(expr), _) if expr.trim().is_empty() => false,
            (None, Some(_)) => false,
            (_, names) => {
                let defined = names.iter().flat_map(|n| n.keys().map(String::as_str));
                let defined: std::collections::BTreeSet<&str> = defined.collect();
                used == defined
            }
        }
    }

    /// A canonical name for the projection; `None` when the whole item is read.
    /// Names are substituted so `#a` and `a` spellings of one projection are one entry.
    pub fn variant(&self) -> Option<std::sync::Arc<str>> {
        if let Some(expr) = &self.projection_expression {
            let mut canonical = String::with_capacity(expr.len() + 2);
            canonical.push('P');
            let mut token = String::new();
            let flush = |token: &mut String, out: &mut String| {
                match self
                    .expression_attribute_names
                    .as_ref()
                    .and_then(|n| n.get(token.as_str()))
                {
                    // Escaped so a substituted name can never read as expression syntax.
                    Some(name) => {
                        out.push('`');
                        out.push_str(&name.replace('`', "``"));
                        out.push('`');
                    }
                    None => out.push_str(token),
                }
                token.clear();
            };
            for c in expr.chars() {
                if c.is_alphanumeric() || c == '#' || c == '_' {
                    token.push(c);
                } else {
                    flush(&mut token, &mut canonical);
                    if !c.is_whitespace() {
                        canonical.push(c);
                    }
                }
            }
            flush(&mut token, &mut canonical);
            return Some(canonical.into());
        }
        self.attributes_to_get
            .as_ref()
            .map(|names| format!("A{}", names.join("\u{0}")).into())
    }

    /// The projection evaluated on a cached whole item (its JSON attribute map); `None` when
    /// it cannot be evaluated here with certainty.
    pub fn apply(&self, item: &[u8]) -> Option<bytes::Bytes> {
        let projection = match (&self.projection_expression, &self.attributes_to_get) {
            (Some(expr), _) => Projection::parse(expr, self.expression_attribute_names.as_ref())?,
            (None, Some(names)) => Projection::attributes(names)?,
            (None, None) => return None,
        };
        let item: Map<String, Value> = serde_json::from_slice(item).ok()?;
        let projected = projection.apply(&item)?;
        Some(bytes::Bytes::from(Value::Object(projected).to_string()))
    }
}

/// The `#name` placeholders an expression uses.
fn placeholders(expr: &str) -> impl Iterator<Item = &str> {
    expr.match_indices('#').map(move |(at, _)| {
        let rest = &expr[at + 1..];
        let len = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        &expr[at..at + 1 + len]
    })
}

#[cfg(test)]
mod input_tests {
    use super::*;

    #[test]
    fn projection_variants_substitute_names() {
        let a = ProjectionInput {
            projection_expression: Some("#a, b.c[1]".into()),
            expression_attribute_names: Some([("#a".to_string(), "x".to_string())].into()),
            attributes_to_get: None,
        };
        let b = ProjectionInput {
            projection_expression: Some("x,b.c[1]".into()),
            ..Default::default()
        };
        // `#a`->x is escaped, so it is not the same text as a bare x (which could also be a
        // reserved-word clash DynamoDB refuses); both are stable.
        assert_eq!(a.variant(), a.clone().variant());
        assert_ne!(a.variant(), None);
        assert_ne!(b.variant(), None);
        let atg = ProjectionInput {
            attributes_to_get: Some(vec!["x".into(), "y".into()]),
            ..Default::default()
        };
        assert_ne!(atg.variant(), b.variant());
        assert_eq!(ProjectionInput::default().variant(), None);
        assert!(a.acceptable() && b.acceptable() && atg.acceptable());
    }

    #[test]
    fn what_dynamodb_refuses_is_not_acceptable() {
        let names = |pairs: &[(&str, &str)]| {
            Some(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            )
        };
        let refused = [
            ProjectionInput {
                projection_expression: Some("a".into()),
                attributes_to_get: Some(vec!["a".into()]),
                ..Default::default()
            },
            ProjectionInput {
                projection_expression: Some("#a".into()),
                ..Default::default()
            },
            ProjectionInput {
                projection_expression: Some("a".into()),
                expression_attribute_names: names(&[("#a", "a")]),
                ..Default::default()
            },
            ProjectionInput {
                expression_attribute_names: names(&[("#a", "a")]),
                ..Default::default()
            },
            ProjectionInput {
                attributes_to_get: Some(vec![]),
                ..Default::default()
            },
            ProjectionInput {
                attributes_to_get: Some(vec!["a".into(), "a".into()]),
                ..Default::default()
            },
            ProjectionInput {
                projection_expression: Some(" ".into()),
                ..Default::default()
            },
        ];
        for input in refused {
            assert!(!input.acceptable(), "{input:?}");
        }
    }
}
