//! DAX clients compile condition, key condition, filter, update and projection expressions to
//! CBOR trees with their names and values substituted in. This turns each tree back into
//! DynamoDB's expression text, with every name and value as a placeholder, for the typed
//! request. A tree the proxy does not know is refused, never guessed at.

use std::collections::{BTreeMap, HashMap};

use minicbor::Decoder;
use minicbor::data::Type;

use super::DaxError;
use super::av::{self, TAG_PATH_ORDINAL};
use crate::wire::value::{AttributeValue, Item};

/// The only encoding version the clients write.
const VERSION: u64 = 1;
/// How deep an expression tree may nest. DynamoDB allows 300 operators and functions in an
/// expression, and the clients build a chain of ANDs as a tree as deep as the chain is long.
const MAX_DEPTH: usize = 320;
/// Nodes one expression may hold: each takes at least one character of DynamoDB's 4 KB of
/// expression text.
const MAX_NODES: usize = 4096;
/// The most operands an operator takes (BETWEEN).
const MAX_OPERANDS: u64 = 3;

/// One element of a document path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum PathElem {
    Name(String),
    Index(u64),
}

#[derive(Debug)]
enum Node {
    Op(u64, Vec<Node>),
    /// IN's operand list.
    List(Vec<Node>),
    Path(Vec<PathElem>),
    Var(u64),
}

const EQ: u64 = 0;
const NE: u64 = 1;
const LT: u64 = 2;
const GE: u64 = 3;
const GT: u64 = 4;
const LE: u64 = 5;
const AND: u64 = 6;
const OR: u64 = 7;
const NOT: u64 = 8;
const BETWEEN: u64 = 9;
const IN: u64 = 10;
const ATTRIBUTE_EXISTS: u64 = 11;
const ATTRIBUTE_NOT_EXISTS: u64 = 12;
const ATTRIBUTE_TYPE: u64 = 13;
const BEGINS_WITH: u64 = 14;
const CONTAINS: u64 = 15;
const SIZE: u64 = 16;
const VARIABLE: u64 = 17;
const PATH: u64 = 18;
const SET: u64 = 19;
const ADD: u64 = 20;
const DELETE: u64 = 21;
const REMOVE: u64 = 22;
const IF_NOT_EXISTS: u64 = 23;
const LIST_APPEND: u64 = 24;
const PLUS: u64 = 25;
const MINUS: u64 = 26;

/// The expressions of one request, rendered with one shared set of placeholders.
#[derive(Debug, Default)]
pub(super) struct Expressions {
    /// `#n0` -> name.
    pub names: BTreeMap<String, String>,
    name_ids: HashMap<String, String>,
    /// `:c0` -> value, as its DynamoDB JSON text.
    pub values: BTreeMap<String, String>,
}

/// What a value placeholder is rendered against: its prefix and the expression's own values.
struct Vars<'a> {
    prefix: &'a str,
    table: &'a [String],
}

impl Expressions {
    /// A condition, key condition or filter; `prefix` keeps its values apart from the other
    /// expressions' (`c`, `k`, `f`).
    pub(super) fn condition(&mut self, bytes: &[u8], prefix: &str) -> Result<String, DaxError> {
        let (spec, table) = parse_full(bytes)?;
        let vars = Vars {
            prefix,
            table: &table,
        };
        self.render_condition(&spec, &vars)
    }

    pub(super) fn update(&mut self, bytes: &[u8]) -> Result<String, DaxError> {
        let (spec, table) = parse_full(bytes)?;
        let Node::List(actions) = spec else {
            return Err(unknown("an update is a list of actions"));
        };
        let vars = Vars {
            prefix: "u",
            table: &table,
        };
        let mut clauses: [(&str, Vec<String>); 4] = [
            ("SET", Vec::new()),
            ("REMOVE", Vec::new()),
            ("ADD", Vec::new()),
            ("DELETE", Vec::new()),
        ];
        for action in &actions {
            match action {
                Node::Op(SET, args) if args.len() == 2 => {
                    let text = format!(
                        "{} = {}",
                        self.path(&args[0])?,
                        self.render_operand(&args[1], &vars)?
                    );
                    clauses[0].1.push(text);
                }
                Node::Op(REMOVE, args) if args.len() == 1 => {
                    let text = self.path(&args[0])?;
                    clauses[1].1.push(text);
                }
                Node::Op(op @ (ADD | DELETE), args) if args.len() == 2 => {
                    let text = format!(
                        "{} {}",
                        self.path(&args[0])?,
                        self.render_operand(&args[1], &vars)?
                    );
                    clauses[if *op == ADD { 2 } else { 3 }].1.push(text);
                }
                _ => return Err(unknown("an update action")),
            }
        }
        let text: Vec<String> = clauses
            .iter()
            .filter(|(_, items)| !items.is_empty())
            .map(|(keyword, items)| format!("{keyword} {}", items.join(", ")))
            .collect();
        if text.is_empty() {
            return Err(unknown("an update with no actions"));
        }
        Ok(text.join(" "))
    }

    /// A projection: its text and its paths, whose positions are the ordinals of the answer.
    pub(super) fn projection(
        &mut self,
        bytes: &[u8],
    ) -> Result<(String, Vec<Vec<PathElem>>), DaxError> {
        let mut d = Decoder::new(bytes);
        if d.array()? != Some(2) || d.u64()? != VERSION {
            return Err(unknown("a projection is [1, [paths]]"));
        }
        let spec = parse_list(&mut d, 0, &mut 0)?;
        end(&d, bytes)?;
        let Node::List(nodes) = spec else {
            unreachable!("parse_list returns a list")
        };
        let mut paths = Vec::new();
        let mut text = Vec::new();
        for node in &nodes {
            let Node::Path(path) = node else {
                return Err(unknown("a projection lists document paths"));
            };
            text.push(self.path(node)?);
            paths.push(path.clone());
        }
        if paths.is_empty() {
            return Err(unknown("an empty projection"));
        }
        Ok((text.join(", "), paths))
    }

    fn name(&mut self, name: &str) -> String {
        if let Some(placeholder) = self.name_ids.get(name) {
            return placeholder.clone();
        }
        let placeholder = format!("#n{}", self.name_ids.len());
        self.name_ids.insert(name.to_string(), placeholder.clone());
        self.names.insert(placeholder.clone(), name.to_string());
        placeholder
    }

    fn path(&mut self, node: &Node) -> Result<String, DaxError> {
        let Node::Path(elems) = node else {
            return Err(unknown("expected a document path"));
        };
        let mut text = String::new();
        for (i, elem) in elems.iter().enumerate() {
            match elem {
                PathElem::Name(name) => {
                    if i > 0 {
                        text.push('.');
                    }
                    let placeholder = self.name(name);
                    text.push_str(&placeholder);
                }
                PathElem::Index(n) if i > 0 => text.push_str(&format!("[{n}]")),
                PathElem::Index(_) => return Err(unknown("a path that starts with an index")),
            }
        }
        Ok(text)
    }

    fn var(&mut self, id: u64, vars: &Vars<'_>) -> Result<String, DaxError> {
        let value = vars
            .table
            .get(id as usize)
            .ok_or_else(|| unknown("a variable outside the expression's values"))?;
        let placeholder = format!(":{}{id}", vars.prefix);
        self.values.insert(placeholder.clone(), value.clone());
        Ok(placeholder)
    }

    fn render_operand(&mut self, node: &Node, vars: &Vars<'_>) -> Result<String, DaxError> {
        match node {
            Node::Path(_) => self.path(node),
            Node::Var(id) => self.var(*id, vars),
            Node::Op(SIZE, args) if args.len() == 1 => {
                Ok(format!("size({})", self.path(&args[0])?))
            }
            Node::Op(op @ (PLUS | MINUS), args) if args.len() == 2 => Ok(format!(
                "{} {} {}",
                self.render_operand(&args[0], vars)?,
                if *op == PLUS { "+" } else { "-" },
                self.render_operand(&args[1], vars)?
            )),
            Node::Op(IF_NOT_EXISTS, args) if args.len() == 2 => Ok(format!(
                "if_not_exists({}, {})",
                self.path(&args[0])?,
                self.render_operand(&args[1], vars)?
            )),
            Node::Op(LIST_APPEND, args) if args.len() == 2 => Ok(format!(
                "list_append({}, {})",
                self.render_operand(&args[0], vars)?,
                self.render_operand(&args[1], vars)?
            )),
            _ => Err(unknown("an operand")),
        }
    }

    fn render_condition(&mut self, node: &Node, vars: &Vars<'_>) -> Result<String, DaxError> {
        let Node::Op(op, args) = node else {
            return Err(unknown("a condition"));
        };
        let n = args.len();
        Ok(match (*op, n) {
            (EQ | NE | LT | GE | GT | LE, 2) => {
                let symbol = ["=", "<>", "<", ">=", ">", "<="][*op as usize];
                format!(
                    "{} {symbol} {}",
                    self.render_operand(&args[0], vars)?,
                    self.render_operand(&args[1], vars)?
                )
            }
            (AND | OR, 2) => format!(
                "({}) {} ({})",
                self.render_condition(&args[0], vars)?,
                if *op == AND { "AND" } else { "OR" },
                self.render_condition(&args[1], vars)?
            ),
            (NOT, 1) => format!("NOT ({})", self.render_condition(&args[0], vars)?),
            (BETWEEN, 3) => format!(
                "{} BETWEEN {} AND {}",
                self.render_operand(&args[0], vars)?,
                self.render_operand(&args[1], vars)?,
                self.render_operand(&args[2], vars)?
            ),
            (IN, 2) => {
                let Node::List(options) = &args[1] else {
                    return Err(unknown("IN takes a list"));
                };
                let options = options
                    .iter()
                    .map(|o| self.render_operand(o, vars))
                    .collect::<Result<Vec<_>, _>>()?;
                format!(
                    "{} IN ({})",
                    self.render_operand(&args[0], vars)?,
                    options.join(", ")
                )
            }
            (ATTRIBUTE_EXISTS, 1) => format!("attribute_exists({})", self.path(&args[0])?),
            (ATTRIBUTE_NOT_EXISTS, 1) => {
                format!("attribute_not_exists({})", self.path(&args[0])?)
            }
            (ATTRIBUTE_TYPE, 2) => format!(
                "attribute_type({}, {})",
                self.path(&args[0])?,
                self.render_operand(&args[1], vars)?
            ),
            (BEGINS_WITH | CONTAINS, 2) => format!(
                "{}({}, {})",
                if *op == BEGINS_WITH {
                    "begins_with"
                } else {
                    "contains"
                },
                self.render_operand(&args[0], vars)?,
                self.render_operand(&args[1], vars)?
            ),
            _ => return Err(unknown("a condition")),
        })
    }
}

fn unknown(what: &str) -> DaxError {
    DaxError::validation(format!(
        "Invalid expression: the proxy cannot read the encoded form of {what}"
    ))
}

fn end(d: &Decoder<'_>, bytes: &[u8]) -> Result<(), DaxError> {
    if d.position() == bytes.len() {
        Ok(())
    } else {
        Err(unknown("an expression with trailing bytes"))
    }
}

/// `[1, SPEC, [values]]`.
fn parse_full(bytes: &[u8]) -> Result<(Node, Vec<String>), DaxError> {
    let mut d = Decoder::new(bytes);
    if d.array()? != Some(3) || d.u64()? != VERSION {
        return Err(unknown("an expression: it is not [1, tree, values]"));
    }
    let spec = match d.datatype()? {
        // An update is a plain array of actions; anything else is one node.
        Type::Array | Type::ArrayIndef if is_list_of_nodes(&d) => parse_list(&mut d, 0, &mut 0)?,
        _ => parse_node(&mut d, 0, &mut 0)?,
    };
    let mut table = Vec::new();
    let mut size = av::Budget::expression();
    av::each(&mut d, |d| {
        // DynamoDB refuses values no expression uses, and each use is a node.
        if table.len() >= MAX_NODES {
            return Err(DaxError::validation(
                "Value provided in ExpressionAttributeValues unused in expressions",
            ));
        }
        table.push(av::decode_raw(d, &mut size)?);
        Ok(())
    })?;
    end(&d, bytes)?;
    Ok((spec, table))
}

/// Whether the array at the decoder holds nodes (an update's actions) rather than being one.
fn is_list_of_nodes(d: &Decoder<'_>) -> bool {
    let mut probe = d.clone();
    match probe.array() {
        Ok(Some(0)) => true,
        Ok(_) => matches!(probe.datatype(), Ok(Type::Array | Type::ArrayIndef)),
        Err(_) => false,
    }
}

fn parse_list(d: &mut Decoder<'_>, depth: usize, count: &mut usize) -> Result<Node, DaxError> {
    let mut nodes = Vec::new();
    av::each(d, |d| {
        nodes.push(parse_node(d, depth + 1, count)?);
        Ok(())
    })?;
    Ok(Node::List(nodes))
}

/// One node; `count` is how many the expression has so far.
fn parse_node(d: &mut Decoder<'_>, depth: usize, count: &mut usize) -> Result<Node, DaxError> {
    if depth > MAX_DEPTH {
        return Err(DaxError::validation(
            "Invalid expression: nested too deeply",
        ));
    }
    *count += 1;
    if *count > MAX_NODES {
        return Err(DaxError::validation(
            "Invalid expression: Expression size has exceeded the maximum allowed size",
        ));
    }
    let len = d.array()?.ok_or_else(|| unknown("an indefinite node"))?;
    if len == 0 {
        return Err(unknown("an empty node"));
    }
    let code = d.u64()?;
    let args = len - 1;
    Ok(match code {
        VARIABLE if args == 1 => Node::Var(d.u64()?),
        PATH if args >= 1 => {
            let mut elems = Vec::new();
            for _ in 0..args {
                // Each element takes some of the expression's text too.
                *count += 1;
                if *count > MAX_NODES {
                    return Err(unknown("a path longer than an expression may be"));
                }
                match d.datatype()? {
                    Type::Tag => {
                        if d.tag()?.as_u64() != TAG_PATH_ORDINAL {
                            return Err(unknown("a path element"));
                        }
                        elems.push(PathElem::Index(d.u64()?));
                    }
                    _ => elems.push(PathElem::Name(av::text(d)?)),
                }
            }
            Node::Path(elems)
        }
        IN if args == 2 => {
            let subject = parse_node(d, depth + 1, count)?;
            let options = parse_list(d, depth, count)?;
            Node::Op(IN, vec![subject, options])
        }
        // No operator takes more than three operands; a longer claim is not a client's, and
        // the count never sizes an allocation.
        EQ..=MINUS if args <= MAX_OPERANDS => {
            let mut children = Vec::new();
            for _ in 0..args {
                children.push(parse_node(d, depth + 1, count)?);
            }
            Node::Op(code, children)
        }
        _ => return Err(unknown("an unknown function")),
    })
}

/// The value at a projected path of an item DynamoDB projected. DynamoDB packs the list
/// elements a projection selects (`a[3]` alone comes back as a one-element list), so a list
/// index is found by its rank among the indexes the projection selects from that list.
pub(super) fn value_at<'i>(
    item: &'i Item<'_>,
    paths: &[Vec<PathElem>],
    path: &[PathElem],
) -> Option<&'i AttributeValue<'i>> {
    let PathElem::Name(first) = path.first()? else {
        return None;
    };
    let mut value = item.get(first)?;
    for (depth, elem) in path.iter().enumerate().skip(1) {
        value = match elem {
            PathElem::Name(name) => match value {
                AttributeValue::M(map) => map.get(name)?,
                _ => return None,
            },
            PathElem::Index(index) => {
                let mut selected: Vec<u64> = paths
                    .iter()
                    .filter(|p| p.len() > depth && p[..depth] == path[..depth])
                    .filter_map(|p| match p[depth] {
                        PathElem::Index(i) => Some(i),
                        PathElem::Name(_) => None,
                    })
                    .collect();
                selected.sort_unstable();
                selected.dedup();
                let rank = selected.iter().position(|i| i == index)?;
                match value {
                    AttributeValue::L(list) => list.get(rank)?,
                    _ => return None,
                }
            }
        };
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use minicbor::Encoder;
    use minicbor::data::Tag;

    type E<'a> = Encoder<&'a mut Vec<u8>>;

    fn path(e: &mut E<'_>, elems: &[&str]) {
        e.array(elems.len() as u64 + 1).unwrap().u64(PATH).unwrap();
        for elem in elems {
            match elem.parse::<u64>() {
                Ok(n) => {
                    e.tag(Tag::new(TAG_PATH_ORDINAL)).unwrap().u64(n).unwrap();
                }
                Err(_) => {
                    e.str(elem).unwrap();
                }
            }
        }
    }

    fn var(e: &mut E<'_>, id: u64) {
        e.array(2).unwrap().u64(VARIABLE).unwrap().u64(id).unwrap();
    }

    #[test]
    fn a_condition_comes_back_as_text_with_placeholders() {
        // attribute_not_exists(pk) OR (#n = :v AND size(a.b[2]) > :w)
        let mut bytes = Vec::new();
        let mut e = Encoder::new(&mut bytes);
        e.array(3).unwrap().u64(1).unwrap();
        e.array(3).unwrap().u64(OR).unwrap();
        e.array(2).unwrap().u64(ATTRIBUTE_NOT_EXISTS).unwrap();
        path(&mut e, &["pk"]);
        e.array(3).unwrap().u64(AND).unwrap();
        e.array(3).unwrap().u64(EQ).unwrap();
        path(&mut e, &["status"]);
        var(&mut e, 0);
        e.array(3).unwrap().u64(GT).unwrap();
        e.array(2).unwrap().u64(SIZE).unwrap();
        path(&mut e, &["a", "b", "2"]);
        var(&mut e, 1);
        e.array(2).unwrap().str("on").unwrap().u64(3).unwrap();
        let mut x = Expressions::default();
        let text = x.condition(&bytes, "c").unwrap();
        assert_eq!(
            text,
            "(attribute_not_exists(#n0)) OR ((#n1 = :c0) AND (size(#n2.#n3[2]) > :c1))"
        );
        assert_eq!(x.names["#n1"], "status");
        // Values are held as their JSON text, written as it is into the request body.
        assert_eq!(x.values[":c0"], r#"{"S":"on"}"#);
        assert_eq!(x.values[":c1"], r#"{"N":"3"}"#);
    }

    #[test]
    fn an_update_groups_its_clauses() {
        // SET a = :x, b = b + :y REMOVE c ADD s :z
        let mut bytes = Vec::new();
        let mut e = Encoder::new(&mut bytes);
        e.array(3).unwrap().u64(1).unwrap();
        e.array(4).unwrap();
        e.array(3).unwrap().u64(SET).unwrap();
        path(&mut e, &["a"]);
        var(&mut e, 0);
        e.array(2).unwrap().u64(REMOVE).unwrap();
        path(&mut e, &["c"]);
        e.array(3).unwrap().u64(SET).unwrap();
        path(&mut e, &["b"]);
        e.array(3).unwrap().u64(PLUS).unwrap();
        path(&mut e, &["b"]);
        var(&mut e, 1);
        e.array(3).unwrap().u64(ADD).unwrap();
        path(&mut e, &["s"]);
        var(&mut e, 2);
        e.array(3)
            .unwrap()
            .u64(1)
            .unwrap()
            .u64(2)
            .unwrap()
            .u64(3)
            .unwrap();
        let mut x = Expressions::default();
        assert_eq!(
            x.update(&bytes).unwrap(),
            "SET #n0 = :u0, #n2 = #n2 + :u1 REMOVE #n1 ADD #n3 :u2"
        );
    }

    #[test]
    fn unknown_codes_and_versions_are_refused() {
        let mut x = Expressions::default();
        // Version 2.
        assert!(x.condition(&[0x83, 0x02, 0x80, 0x80], "c").is_err());
        // Function 99.
        assert!(
            x.condition(&[0x83, 0x01, 0x81, 0x18, 99, 0x80], "c")
                .is_err()
        );
        // A variable past the values.
        assert!(
            x.condition(&[0x83, 0x01, 0x82, 0x11, 0x05, 0x80], "c")
                .is_err()
        );
    }

    #[test]
    fn projected_list_elements_are_found_by_rank() {
        let paths = vec![
            vec![PathElem::Name("a".into()), PathElem::Index(3)],
            vec![PathElem::Name("a".into()), PathElem::Index(1)],
        ];
        let item: Item =
            serde_json::from_str(r#"{"a": {"L": [{"S": "one"}, {"S": "three"}]}}"#).unwrap();
        assert_eq!(
            value_at(&item, &paths, &paths[0]),
            Some(&AttributeValue::S("three".into()))
        );
        assert_eq!(
            value_at(&item, &paths, &paths[1]),
            Some(&AttributeValue::S("one".into()))
        );
    }

    #[test]
    fn a_huge_operand_count_is_refused_without_allocating_for_it() {
        for header in [
            // An array claiming 2^43 items, then 2^64 - 1.
            vec![0x9B, 0, 0, 0x08, 0, 0, 0, 0, 0],
            vec![0x9B, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF],
        ] {
            // [1, [EQ, ...], []]
            let mut bytes = vec![0x83, 0x01];
            bytes.extend_from_slice(&header);
            bytes.extend_from_slice(&[0x00, 0x80]);
            let mut x = Expressions::default();
            assert!(x.condition(&bytes, "c").is_err());
            assert!(x.update(&bytes).is_err());
            // [1, [[PATH...]]] as a projection.
            let mut projection = vec![0x82, 0x01, 0x81];
            projection.extend_from_slice(&header);
            projection.push(PATH as u8);
            assert!(x.projection(&projection).is_err());
        }
    }

    #[test]
    fn an_expression_is_bounded_by_its_node_count() {
        // NOT(NOT(...(attribute_exists(a)))) deeper than any 4 KB expression.
        let mut bytes = vec![0x83, 0x01];
        for _ in 0..MAX_NODES + 1 {
            bytes.extend_from_slice(&[0x82, NOT as u8]);
        }
        bytes.extend_from_slice(&[0x82, ATTRIBUTE_EXISTS as u8, 0x82, PATH as u8, 0x61, b'a']);
        bytes.push(0x80);
        let mut x = Expressions::default();
        assert!(x.condition(&bytes, "c").is_err());
    }
}
