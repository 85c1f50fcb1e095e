//! What a PartiQL statement touches: whether it writes, and which table it names.
//!
//! The proxy never executes PartiQL; it forwards it. It reads just enough to keep the cache in
//! step (a write drops its table's entries) and, with inbound authentication, to check that the
//! caller may use the table. Whenever the table cannot be told for sure the answer is "unknown",
//! which callers treat as "any table": drop everything, or allow only a principal with `*`.

/// One statement, as far as the proxy needs to know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// `INSERT`, `UPDATE`, `DELETE`, or anything that is not a plain `SELECT`.
    pub writes: bool,
    /// The table named, without an index suffix; `None` when it cannot be told.
    pub table: Option<String>,
}

/// The statement texts of an ExecuteStatement, BatchExecuteStatement or ExecuteTransaction
/// request (`None` for an entry without a readable statement).
pub fn statements(request: &serde_json::Map<String, serde_json::Value>) -> Vec<Option<&str>> {
    let mut statements: Vec<Option<&str>> = Vec::new();
    if let Some(statement) = request.get("Statement") {
        statements.push(statement.as_str());
    }
    for list in ["Statements", "TransactStatements"] {
        for entry in request
            .get(list)
            .and_then(serde_json::Value::as_array)
            .into_iter()
            .flatten()
        {
            statements.push(entry.get("Statement").and_then(serde_json::Value::as_str));
        }
    }
    statements
}

/// Reads a statement's verb and table. A statement with a comment in it is not read at all:
/// its tables and whether it writes are unknown.
pub fn statement(text: &str) -> Statement {
    if text.contains("--") || text.contains("/*") {
        return Statement {
            writes: true,
            table: None,
        };
    }
    let words = Words { rest: text };
    let mut words = words.peekable();
    let verb = words.next().map(|w| w.text.to_ascii_uppercase());
    let (writes, after) = match verb.as_deref() {
        Some("SELECT") => (false, "FROM"),
        Some("INSERT") => (true, "INTO"),
        Some("DELETE") => (true, "FROM"),
        Some("UPDATE") => {
            let table = words.next().and_then(table_of);
            return Statement {
                writes: true,
                table,
            };
        }
        _ => {
            return Statement {
                writes: true,
                table: None,
            };
        }
    };
    // The first bare keyword (never a quoted name or a string) introduces the table.
    let table = words
        .by_ref()
        .find(|w| w.kind == Kind::Bare && w.text.eq_ignore_ascii_case(after))
        .and_then(|_| words.next())
        .and_then(table_of);
    Statement { writes, table }
}

/// `"orders"`, `orders`, `"orders"."by-date"`, `orders.by_date` -> `orders`.
fn table_of(word: Word<'_>) -> Option<String> {
    match word.kind {
        Kind::Quoted => return (!word.text.is_empty()).then(|| word.text.to_string()),
        Kind::Literal => return None,
        Kind::Bare => {}
    }
    let name: &str = word.text.split('.').next().unwrap_or("");
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'));
    valid.then(|| name.to_string())
}

/// One token of a statement.
#[derive(Debug, Clone, Copy)]
struct Word<'a> {
    text: &'a str,
    kind: Kind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A keyword or an unquoted name.
    Bare,
    /// The inside of a `"quoted name"`.
    Quoted,
    /// The inside of a `'string literal'`.
    Literal,
}

/// Splits a statement into words, skipping punctuation, so that a keyword inside a literal or
/// a quoted name is never taken for the real one.
struct Words<'a> {
    rest: &'a str,
}

impl<'a> Iterator for Words<'a> {
    type Item = Word<'a>;

    fn next(&mut self) -> Option<Word<'a>> {
        loop {
            let start = self.rest.find(|c: char| !c.is_whitespace())?;
            self.rest = &self.rest[start..];
            let first = self.rest.chars().next()?;
            match first {
                '"' | '\'' => {
                    let body = &self.rest[1..];
                    let end = body.find(first).unwrap_or(body.len());
                    self.rest = body.get(end + 1..).unwrap_or("");
                    let kind = if first == '"' {
                        Kind::Quoted
                    } else {
                        Kind::Literal
                    };
                    return Some(Word {
                        text: &body[..end],
                        kind,
                    });
                }
                c if c.is_alphanumeric() || c == '_' => {
                    let end = self
                        .rest
                        .find(|c: char| !(c.is_alphanumeric() || matches!(c, '_' | '-' | '.')))
                        .unwrap_or(self.rest.len());
                    let (text, rest) = self.rest.split_at(end);
                    self.rest = rest;
                    return Some(Word {
                        text: text.trim_end_matches('.'),
                        kind: Kind::Bare,
                    });
                }
                c => self.rest = &self.rest[c.len_utf8()..],
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(table: &str) -> Statement {
        Statement {
            writes: false,
            table: Some(table.into()),
        }
    }

    fn write(table: Option<&str>) -> Statement {
        Statement {
            writes: true,
            table: table.map(Into::into),
        }
    }

    #[test]
    fn reads_name_their_table() {
        assert_eq!(statement("SELECT * FROM t"), read("t"));
        assert_eq!(
            statement("  select a, b from \"my-table\" where pk = 'x'"),
            read("my-table")
        );
        assert_eq!(statement("SELECT * FROM \"t\".\"by-date\""), read("t"));
        assert_eq!(statement("SELECT * FROM t.by_date WHERE a = 1"), read("t"));
    }

    #[test]
    fn keywords_inside_names_and_literals_are_not_keywords() {
        assert_eq!(
            statement("SELECT \"from\" FROM secrets WHERE x = 'FROM public'"),
            read("secrets")
        );
        assert_eq!(statement("SELECT 'a FROM b' FROM \"real\""), read("real"));
    }

    #[test]
    fn writes_name_their_table() {
        assert_eq!(
            statement("INSERT INTO \"orders\" VALUE {'pk':'a'}"),
            write(Some("orders"))
        );
        assert_eq!(
            statement("UPDATE orders SET v = 1 WHERE pk = 'a'"),
            write(Some("orders"))
        );
        assert_eq!(
            statement("delete from \"my-table\" where pk = 'a'"),
            write(Some("my-table"))
        );
        assert_eq!(statement("INSERT   INTO   t VALUE {}"), write(Some("t")));
    }

    #[test]
    fn anything_unclear_is_an_unknown_write() {
        assert_eq!(statement("EXISTS(SELECT * FROM t)"), write(None));
        assert_eq!(statement(""), write(None));
        assert_eq!(statement("SELECT * FROM"), read_unknown());
        assert_eq!(statement("SELECT * FROM \"\""), read_unknown());
        assert_eq!(statement("UPDATE 'x' SET a = 1"), write(None));
    }

    #[test]
    fn a_comment_hides_what_a_statement_touches() {
        // The table after FROM is a decoy: DynamoDB skips the comment and reads "secret".
        assert_eq!(statement("SELECT * FROM /* t */ \"secret\""), write(None));
        assert_eq!(
            statement("DELETE FROM -- t\n\"secret\" WHERE pk='a'"),
            write(None)
        );
    }

    fn read_unknown() -> Statement {
        Statement {
            writes: false,
            table: None,
        }
    }
}
