//! Which partition a Query reads: the value its key condition pins the partition key to, so
//! that a write invalidates only the queries of its own partition.
//!
//! Only an equality between the partition key and a value placeholder is looked for; anything
//! the parser does not understand makes the query belong to its whole table, which costs
//! hits but never freshness. Hostile input never panics.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::wire::keys::KeyValue;

/// The canonical partition key value a Query's `KeyConditionExpression` pins, given the table's
/// partition key attribute, or `None` if it cannot be told.
pub fn pinned_partition(
    expression: &str,
    partition_key: &str,
    names: Option<&BTreeMap<String, String>>,
    values: Option<&serde_json::Map<String, Value>>,
) -> Option<KeyValue> {
    let tokens = tokenize(expression)?;
    let resolves_to_key = |token: &Token| match token {
        Token::Name(n) => n == partition_key,
        Token::Placeholder(p) => names
            .and_then(|n| n.get(p))
            .is_some_and(|n| n == partition_key),
        _ => false,
    };
    // A top-level `key = :v` (either order); inside a function call (`begins_with(...)`) an
    // equality cannot appear, and BETWEEN/comparisons never pin the partition.
    for window in tokens.windows(3) {
        let value = match window {
            [a, Token::Equals, Token::Value(v)] if resolves_to_key(a) => v,
            [Token::Value(v), Token::Equals, b] if resolves_to_key(b) => v,
            _ => continue,
        };
        let raw = values?.get(value)?;
        return serde_json::from_value::<KeyValue>(raw.clone()).ok();
    }
    None
}

/// The same for the legacy `KeyConditions` parameter.
pub fn pinned_partition_legacy(conditions: &Value, partition_key: &str) -> Option<KeyValue> {
    let condition = conditions.get(partition_key)?;
    if condition.get("ComparisonOperator")?.as_str()? != "EQ" {
        return None;
    }
    let list = condition.get("AttributeValueList")?.as_array()?;
    match list.as_slice() {
        [value] => serde_json::from_value::<KeyValue>(value.clone()).ok(),
        _ => None,
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Name(String),
    Placeholder(String),
    Value(String),
    Equals,
    Other,
}

fn tokenize(expression: &str) -> Option<Vec<Token>> {
    if expression.len() > 64 * 1024 {
        return None;
    }
    let mut tokens = Vec::new();
    let mut chars = expression.char_indices().peekable();
    while let Some(&(start, c)) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        let word = |chars: &mut std::iter::Peekable<std::str::CharIndices>| {
            let mut end = start + c.len_utf8();
            chars.next();
            while let Some(&(i, c)) = chars.peek() {
                if c.is_alphanumeric() || c == '_' || c == '-' {
                    end = i + c.len_utf8();
                    chars.next();
                } else {
                    break;
                }
            }
            expression[start..end].to_string()
        };
        let token = match c {
            '#' => Token::Placeholder(word(&mut chars)),
            ':' => Token::Value(word(&mut chars)),
            '=' => {
                chars.next();
                Token::Equals
            }
            c if c.is_alphabetic() || c == '_' => Token::Name(word(&mut chars)),
            '<' | '>' => {
                chars.next();
                if chars.peek().is_some_and(|&(_, c)| c == '=' || c == '>') {
                    chars.next();
                }
                Token::Other
            }
            _ => {
                chars.next();
                Token::Other
            }
        };
        tokens.push(token);
    }
    Some(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pinned(expr: &str, names: &[(&str, &str)], values: Value) -> Option<String> {
        let names: BTreeMap<String, String> = names
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let values = values.as_object().cloned();
        match pinned_partition(expr, "pk", Some(&names), values.as_ref())? {
            KeyValue::S(s) => Some(format!("S:{s}")),
            KeyValue::N(n) => Some(format!("N:{n}")),
            KeyValue::B(b) => Some(format!("B:{b}")),
        }
    }

    #[test]
    fn finds_the_pinned_partition() {
        let v = json!({":p": {"S": "a"}, ":s": {"N": "1"}, ":t": {"N": "9"}});
        assert_eq!(pinned("pk = :p", &[], v.clone()), Some("S:a".into()));
        assert_eq!(pinned(":p=pk", &[], v.clone()), Some("S:a".into()));
        assert_eq!(
            pinned("#k = :p AND sk > :s", &[("#k", "pk")], v.clone()),
            Some("S:a".into())
        );
        assert_eq!(
            pinned("(pk = :p) AND sk BETWEEN :s AND :t", &[], v.clone()),
            Some("S:a".into())
        );
        assert_eq!(
            pinned("sk = :s AND pk = :p", &[], v.clone()),
            Some("S:a".into())
        );
        assert_eq!(
            pinned("pk = :p AND begins_with(sk, :s)", &[], v),
            Some("S:a".into())
        );
    }

    #[test]
    fn anything_unclear_belongs_to_the_whole_table() {
        let v = json!({":p": {"S": "a"}, ":s": {"N": "1"}});
        assert_eq!(
            pinned("sk = :s", &[], v.clone()),
            None,
            "not the partition key"
        );
        assert_eq!(pinned("pk <= :p", &[], v.clone()), None);
        assert_eq!(pinned("pk = :missing", &[], v.clone()), None);
        assert_eq!(pinned("#k = :p", &[("#k", "other")], v.clone()), None);
        assert_eq!(pinned("pkx = :p", &[], v.clone()), None);
        assert_eq!(pinned("", &[], v), None);
    }

    #[test]
    fn hostile_expressions_never_panic() {
        let v = json!({":p": {"BOOL": true}});
        for expr in [
            "=",
            "= = =",
            ":",
            "#",
            "pk =",
            "= :p",
            "pk = :p",
            "((((",
            "é = :p",
            "pk\u{0} = :p",
            "pk = :p = :p",
            "<>><=",
            "pk = :p AND",
            "\u{feff}pk = :p",
        ] {
            let _ = pinned(expr, &[], v.clone());
        }
        assert_eq!(pinned(&"(".repeat(100_000), &[], v), None);
    }

    #[test]
    fn legacy_key_conditions() {
        let conditions = json!({"pk": {"ComparisonOperator": "EQ", "AttributeValueList": [{"S": "a"}]},
            "sk": {"ComparisonOperator": "GT", "AttributeValueList": [{"N": "1"}]}});
        assert!(
            matches!(pinned_partition_legacy(&conditions, "pk"), Some(KeyValue::S(s)) if s == "a")
        );
        assert!(pinned_partition_legacy(&conditions, "sk").is_none());
        assert!(
            pinned_partition_legacy(&json!({"pk": {"ComparisonOperator": "EQ"}}), "pk").is_none()
        );
    }
}
