//! A minimal, honest SOQL for the simulator's `GET query?q=...`:
//! `SELECT Field, ... FROM Object [WHERE Field op value [AND Field op value ...]]
//! [ORDER BY Field [ASC|DESC]] [LIMIT n]`, `op` one of `=`, `<`, `<=`, `>`, `>=`, with string
//! literals in single quotes (`\'` escapes a quote), `true`, `false`, `null`, numbers and
//! date-time literals (`2026-12-03T08:00:00Z`, unquoted, as SOQL writes them). Keywords and field
//! names are case-insensitive. Answers longer than the batch size come in batches through
//! `nextRecordsUrl` ([`super::query`]).
//! What it cannot parse is answered `MALFORMED_QUERY` (relationship paths, `OR`, other operators,
//! sub-queries, functions), an unknown object `INVALID_TYPE`, an unknown field `INVALID_FIELD`, as
//! Salesforce answers them. The call counts against the daily API limit like any other.

use std::cmp::Ordering;

use axum::http::StatusCode;
use serde_json::{Map, Value, json};

use super::{Records, schema, sf_error};

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Text(String),
    Number(f64),
    Comma,
    Compare(Cmp),
    DateTime(String),
}

/// A condition's comparison.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Cmp {
    Eq,
    Lt,
    Le,
    Gt,
    Ge,
}

fn malformed(message: &str) -> (StatusCode, Value) {
    sf_error(StatusCode::BAD_REQUEST, "MALFORMED_QUERY", message, None)
}

fn tokens(q: &str) -> Result<Vec<Token>, (StatusCode, Value)> {
    let mut out = Vec::new();
    let mut chars = q.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            ',' => {
                chars.next();
                out.push(Token::Comma);
            }
            '=' => {
                chars.next();
                out.push(Token::Compare(Cmp::Eq));
            }
            '<' | '>' => {
                chars.next();
                let or_equal = chars.peek() == Some(&'=');
                if or_equal {
                    chars.next();
                }
                out.push(Token::Compare(match (c, or_equal) {
                    ('<', false) => Cmp::Lt,
                    ('<', true) => Cmp::Le,
                    ('>', false) => Cmp::Gt,
                    _ => Cmp::Ge,
                }));
            }
            '\'' => {
                chars.next();
                let mut text = String::new();
                loop {
                    match chars.next() {
                        Some('\\') => match chars.next() {
                            Some(escaped) => text.push(escaped),
                            None => return Err(malformed("unterminated string literal")),
                        },
                        Some('\'') => break,
                        Some(c) => text.push(c),
                        None => return Err(malformed("unterminated string literal")),
                    }
                }
                out.push(Token::Text(text));
            }
            c if c.is_ascii_digit() || c == '-' => {
                let mut number = String::new();
                while let Some(&d) =
                    chars.peek().filter(|d| d.is_ascii_digit() || matches!(**d, '.' | '-' | ':' | 'T' | 'Z' | '+'))
                {
                    number.push(d);
                    chars.next();
                }
                if number.contains('T') {
                    if shared::salesforce::time::parse_datetime(&number).is_none() {
                        return Err(malformed(&format!("invalid date-time literal: {number}")));
                    }
                    out.push(Token::DateTime(number));
                    continue;
                }
                out.push(Token::Number(number.parse().map_err(|_| malformed(&format!("unexpected token: {number}")))?));
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                let mut word = String::new();
                while let Some(&d) = chars.peek().filter(|d| d.is_ascii_alphanumeric() || **d == '_' || **d == '.') {
                    word.push(d);
                    chars.next();
                }
                out.push(Token::Word(word));
            }
            other => return Err(malformed(&format!("unexpected token: {other}"))),
        }
    }
    Ok(out)
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
}

impl Parser {
    fn peek_keyword(&self, keyword: &str) -> bool {
        matches!(self.tokens.get(self.at), Some(Token::Word(w)) if w.eq_ignore_ascii_case(keyword))
    }

    fn keyword(&mut self, keyword: &str) -> Result<(), (StatusCode, Value)> {
        if self.peek_keyword(keyword) {
            self.at += 1;
            Ok(())
        } else {
            Err(malformed(&format!("expected {keyword} at token {}", self.at + 1)))
        }
    }

    fn word(&mut self) -> Result<String, (StatusCode, Value)> {
        match self.tokens.get(self.at) {
            Some(Token::Word(w)) => {
                self.at += 1;
                Ok(w.clone())
            }
            _ => Err(malformed(&format!("expected a name at token {}", self.at + 1))),
        }
    }

    fn value(&mut self) -> Result<Value, (StatusCode, Value)> {
        let value = match self.tokens.get(self.at) {
            Some(Token::Text(t)) => json!(t),
            Some(Token::Number(n)) => json!(n),
            Some(Token::DateTime(t)) => json!(t),
            Some(Token::Word(w)) if w.eq_ignore_ascii_case("true") => json!(true),
            Some(Token::Word(w)) if w.eq_ignore_ascii_case("false") => json!(false),
            Some(Token::Word(w)) if w.eq_ignore_ascii_case("null") => Value::Null,
            _ => return Err(malformed(&format!("expected a value at token {}", self.at + 1))),
        };
        self.at += 1;
        Ok(value)
    }

    fn done(&self) -> bool {
        self.at >= self.tokens.len()
    }
}

struct Query {
    fields: Vec<String>,
    object: String,
    conditions: Vec<(String, Cmp, Value)>,
    order: Option<(String, bool)>,
    limit: Option<usize>,
}

const KEYWORDS: &[&str] = &["select", "from", "where", "and", "order", "by", "asc", "desc", "limit"];

fn parse(q: &str) -> Result<Query, (StatusCode, Value)> {
    let mut p = Parser { tokens: tokens(q)?, at: 0 };
    p.keyword("SELECT")?;
    let mut fields = vec![p.word()?];
    while matches!(p.tokens.get(p.at), Some(Token::Comma)) {
        p.at += 1;
        fields.push(p.word()?);
    }
    p.keyword("FROM")?;
    let object = p.word()?;
    let mut conditions = Vec::new();
    if p.peek_keyword("WHERE") {
        p.at += 1;
        loop {
            let field = p.word()?;
            let Some(Token::Compare(cmp)) = p.tokens.get(p.at).cloned() else {
                return Err(malformed("only Field = value conditions (or <, <=, >, >=) are supported"));
            };
            p.at += 1;
            conditions.push((field, cmp, p.value()?));
            if !p.peek_keyword("AND") {
                break;
            }
            p.at += 1;
        }
    }
    let mut order = None;
    if p.peek_keyword("ORDER") {
        p.at += 1;
        p.keyword("BY")?;
        let field = p.word()?;
        let descending = if p.peek_keyword("DESC") {
            p.at += 1;
            true
        } else {
            if p.peek_keyword("ASC") {
                p.at += 1;
            }
            false
        };
        order = Some((field, descending));
    }
    let mut limit = None;
    if p.peek_keyword("LIMIT") {
        p.at += 1;
        match p.tokens.get(p.at) {
            Some(Token::Number(n)) if *n >= 0.0 && n.fract() == 0.0 => limit = Some(*n as usize),
            _ => return Err(malformed("LIMIT needs a whole number")),
        }
        p.at += 1;
    }
    if !p.done() {
        return Err(malformed(&format!(
            "unexpected token at {}: the simulator parses SELECT ... FROM ... [WHERE a = x AND ...] [ORDER BY f [ASC|DESC]] [LIMIT n]",
            p.at + 1
        )));
    }
    for name in fields.iter().chain(conditions.iter().map(|(f, _, _)| f)).chain(order.iter().map(|(f, _)| f)) {
        if name.contains('.') {
            return Err(malformed(&format!("relationship paths ({name}) are not supported by the simulator")));
        }
        if KEYWORDS.contains(&name.to_ascii_lowercase().as_str()) {
            return Err(malformed(&format!("unexpected keyword {name}")));
        }
    }
    Ok(Query { fields, object, conditions, order, limit })
}

/// The field's API name (its describe casing), or `INVALID_FIELD`.
fn field_name(object: &str, name: &str) -> Result<String, (StatusCode, Value)> {
    match schema::describe(object) {
        Some(fields) => match fields.iter().find(|f| f.name.eq_ignore_ascii_case(name)) {
            Some(f) => Ok(f.name.to_string()),
            None if name.ends_with("__c") => Ok(name.to_string()),
            None => Err(sf_error(
                StatusCode::BAD_REQUEST,
                "INVALID_FIELD",
                &format!(
                    "No such column '{name}' on entity '{object}'. If you are attempting to use a custom field, be sure to append the '__c' after the custom field name."
                ),
                None,
            )),
        },
        // Custom objects without describe metadata: any name.
        None => Ok(name.to_string()),
    }
}

fn matches(value: &Value, wanted: &Value) -> bool {
    match (value, wanted) {
        (Value::String(a), Value::String(b)) if schema::well_formed(a) && schema::well_formed(b) => {
            schema::id15(a) == schema::id15(b)
        }
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (a, b) => a == b,
    }
}

/// Whether `value cmp wanted` holds. Ordering comparisons read date-times as instants (a record
/// keeps `.000+0000`, a literal may say `Z`); null never compares.
fn holds(value: &Value, cmp: Cmp, wanted: &Value) -> bool {
    if cmp == Cmp::Eq {
        return matches(value, wanted);
    }
    if value.is_null() || wanted.is_null() {
        return false;
    }
    let instant = |v: &Value| v.as_str().and_then(shared::salesforce::time::parse_datetime);
    let ordering = match (instant(value), instant(wanted)) {
        (Some(a), Some(b)) => a.cmp(&b),
        _ => compare(value, wanted),
    };
    match cmp {
        Cmp::Lt => ordering == Ordering::Less,
        Cmp::Le => ordering != Ordering::Greater,
        Cmp::Gt => ordering == Ordering::Greater,
        Cmp::Ge => ordering != Ordering::Less,
        Cmp::Eq => ordering == Ordering::Equal,
    }
}

fn compare(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Null, Value::Null) => Ordering::Equal,
        (Value::Null, _) => Ordering::Less,
        (_, Value::Null) => Ordering::Greater,
        (Value::Number(x), Value::Number(y)) => x.as_f64().partial_cmp(&y.as_f64()).unwrap_or(Ordering::Equal),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::String(x), Value::String(y)) => match (
            shared::salesforce::time::parse_datetime(x).filter(|_| x.contains('T')),
            shared::salesforce::time::parse_datetime(y).filter(|_| y.contains('T')),
        ) {
            (Some(x), Some(y)) => x.cmp(&y),
            _ => x.cmp(y),
        },
        (x, y) => value_text(x).cmp(&value_text(y)),
    }
}

fn value_text(v: &Value) -> String {
    v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())
}

/// Runs `q` over the records: `{totalSize, done, records}` or the error Salesforce would answer.
pub(super) fn run(records: &Records, version: &str, q: &str) -> Result<(StatusCode, Value), (StatusCode, Value)> {
    let query = parse(q)?;
    if !schema::object_known(&query.object) {
        return Err(sf_error(
            StatusCode::BAD_REQUEST,
            "INVALID_TYPE",
            &format!("sObject type '{}' is not supported.", query.object),
            None,
        ));
    }
    let object = &query.object;
    let fields: Vec<String> = query.fields.iter().map(|f| field_name(object, f)).collect::<Result<_, _>>()?;
    let conditions: Vec<(String, Cmp, Value)> = query
        .conditions
        .iter()
        .map(|(f, c, v)| Ok((field_name(object, f)?, *c, v.clone())))
        .collect::<Result<_, _>>()?;
    let order = query.order.as_ref().map(|(f, desc)| Ok((field_name(object, f)?, *desc))).transpose()?;
    let all = records.by_object.get(object.as_str()).map(Vec::as_slice).unwrap_or_default();
    let mut found: Vec<&Value> = all
        .iter()
        .filter(|r| conditions.iter().all(|(f, c, v)| holds(r.get(f).unwrap_or(&Value::Null), *c, v)))
        .collect();
    if let Some((field, descending)) = &order {
        // Salesforce puts nulls first ascending and last descending.
        found.sort_by(|a, b| {
            let ordering = compare(a.get(field).unwrap_or(&Value::Null), b.get(field).unwrap_or(&Value::Null));
            if *descending { ordering.reverse() } else { ordering }
        });
    }
    if let Some(limit) = query.limit {
        found.truncate(limit);
    }
    let out: Vec<Value> = found
        .iter()
        .map(|r| {
            let id = r["Id"].as_str().unwrap_or_default();
            let mut m = Map::new();
            m.insert(
                "attributes".into(),
                json!({"type": object, "url": format!("/services/data/{version}/sobjects/{object}/{id}")}),
            );
            for f in &fields {
                m.insert(f.clone(), r.get(f).cloned().unwrap_or(Value::Null));
            }
            Value::Object(m)
        })
        .collect();
    Ok((StatusCode::OK, json!({"totalSize": out.len(), "done": true, "records": out})))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(result: Result<(StatusCode, Value), (StatusCode, Value)>) -> String {
        let (status, body) = result.unwrap_err();
        assert_eq!(status, StatusCode::BAD_REQUEST);
        body[0]["errorCode"].as_str().unwrap().to_string()
    }

    #[test]
    fn what_it_cannot_parse_is_a_malformed_query() {
        let r = Records::default();
        for q in [
            "SELECT FROM Case",
            "SELECT Id FROM Case WHERE Status != 'New'",
            "SELECT Id FROM Case WHERE SystemModstamp >= 2026-13-45T99:00:00Z",
            "SELECT Id FROM Case WHERE Status = 'New' OR Status = 'Closed'",
            "SELECT Account.Name FROM Case",
            "SELECT Id FROM Case LIMIT x",
            "SELECT Id FROM Case WHERE Subject = 'open",
            "DELETE FROM Case",
        ] {
            assert_eq!(code(run(&r, "v62.0", q)), "MALFORMED_QUERY", "{q}");
        }
        assert_eq!(code(run(&r, "v62.0", "SELECT Id FROM Nope")), "INVALID_TYPE");
        assert_eq!(code(run(&r, "v62.0", "SELECT Bogus FROM Case")), "INVALID_FIELD");
    }

    #[test]
    fn a_query_selects_filters_orders_and_limits() {
        let mut r = Records::default();
        for (i, body) in ["one", "two it\'s", "three"].iter().enumerate() {
            let id = schema::make_id("00a", i as u64 + 1);
            r.push(
                "CaseComment",
                json!({"attributes": {"type": "CaseComment"}, "Id": id, "ParentId": "5005g0000000001AAA",
                       "CommentBody": body, "CreatedDate": format!("2026-01-0{}T00:00:00.000+0000", i + 1)}),
            );
        }
        r.push(
            "CaseComment",
            json!({"Id": schema::make_id("00a", 9), "ParentId": "5005g0000000002AAA", "CommentBody": "other"}),
        );
        let (status, v) = run(
            &r,
            "v62.0",
            "select id, commentbody from CaseComment where ParentId = '5005g0000000001' order by CreatedDate desc limit 2",
        )
        .unwrap();
        assert_eq!(status, StatusCode::OK);
        assert_eq!(v["totalSize"], 2);
        assert_eq!(v["done"], true);
        assert_eq!(v["records"][0]["CommentBody"], "three", "newest first; the 15-character id matches");
        assert_eq!(v["records"][1]["CommentBody"], "two it's");
        assert_eq!(v["records"][0]["attributes"]["type"], "CaseComment");
        assert!(
            v["records"][0]["attributes"]["url"]
                .as_str()
                .unwrap()
                .starts_with("/services/data/v62.0/sobjects/CaseComment/00a")
        );
        let (_, v) = run(&r, "v62.0", r"SELECT Id FROM CaseComment WHERE CommentBody = 'two it\'s'").unwrap();
        assert_eq!(v["totalSize"], 1);
    }
}
