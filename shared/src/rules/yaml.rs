//! A small YAML tree that remembers the line of every node.
//!
//! serde derives stop at the first error and lose positions inside nested values, but a rules
//! check must report every problem at once with its line. So the loader builds this tree from
//! the event stream of `granit-parser` (the parser under `serde-saphyr`) and validates it by hand.

use std::collections::HashMap;

use granit_parser::{Event, Parser, ScalarStyle};

/// One YAML node and the 1-based line it starts on.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    pub line: usize,
    pub kind: Kind,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Kind {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// Keys keep their order and their own lines; non-string keys are rendered as text.
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// What the node is, for "expected X, found Y" messages.
    pub fn type_name(&self) -> &'static str {
        match self.kind {
            Kind::Null => "null",
            Kind::Bool(_) => "a boolean",
            Kind::Int(_) | Kind::Float(_) => "a number",
            Kind::Str(_) => "a string",
            Kind::Seq(_) => "a list",
            Kind::Map(_) => "a mapping",
        }
    }

    /// The key text of a mapping key node.
    pub fn key_text(&self) -> String {
        match &self.kind {
            Kind::Str(s) => s.clone(),
            Kind::Int(i) => i.to_string(),
            Kind::Float(f) => f.to_string(),
            Kind::Bool(b) => b.to_string(),
            Kind::Null => "null".into(),
            Kind::Seq(_) | Kind::Map(_) => "<complex key>".into(),
        }
    }

    /// Scalars as text (numbers and booleans too); `None` for null, lists and mappings.
    pub fn scalar_text(&self) -> Option<String> {
        match &self.kind {
            Kind::Str(s) => Some(s.clone()),
            Kind::Int(i) => Some(i.to_string()),
            Kind::Float(f) => Some(f.to_string()),
            Kind::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }

    /// The node as JSON (for literal field values in actions).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value;
        match &self.kind {
            Kind::Null => Value::Null,
            Kind::Bool(b) => Value::Bool(*b),
            Kind::Int(i) => Value::from(*i),
            Kind::Float(f) => serde_json::Number::from_f64(*f).map(Value::Number).unwrap_or(Value::Null),
            Kind::Str(s) => Value::String(s.clone()),
            Kind::Seq(items) => Value::Array(items.iter().map(Node::to_json).collect()),
            Kind::Map(entries) => Value::Object(entries.iter().map(|(k, v)| (k.key_text(), v.to_json())).collect()),
        }
    }
}

/// A YAML syntax error with its line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SyntaxError {
    pub line: usize,
    pub message: String,
}

/// Parses the first document of `text`. An empty text is a null node on line 1.
pub(crate) fn parse(text: &str) -> Result<Node, SyntaxError> {
    let mut parser = Parser::new_from_str(text);
    let mut builder = Builder::default();
    for next in parser.by_ref() {
        let (event, span) = next.map_err(|e| SyntaxError { line: e.marker().line(), message: e.info().to_string() })?;
        let line = span.start.line();
        match event {
            Event::StreamEnd => break,
            // Only the first document counts; a rules file has one.
            Event::DocumentEnd if builder.root.is_some() => break,
            Event::Scalar(value, style, anchor, _tag) => {
                let kind =
                    if style == ScalarStyle::Plain { plain_scalar(&value) } else { Kind::Str(value.into_owned()) };
                builder.push(Node { line, kind }, anchor)?;
            }
            Event::SequenceStart(_, anchor, _) => {
                builder.stack.push(Open { line, anchor, kind: OpenKind::Seq(Vec::new()) })
            }
            Event::MappingStart(_, anchor, _) => {
                builder.stack.push(Open { line, anchor, kind: OpenKind::Map(Vec::new(), None) })
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let open =
                    builder.stack.pop().ok_or_else(|| SyntaxError { line, message: "unbalanced collection".into() })?;
                let kind = match open.kind {
                    OpenKind::Seq(items) => Kind::Seq(items),
                    OpenKind::Map(entries, _) => Kind::Map(entries),
                };
                builder.push(Node { line: open.line, kind }, open.anchor)?;
            }
            Event::Alias(id) => {
                let node = builder
                    .anchors
                    .get(&id)
                    .cloned()
                    .ok_or_else(|| SyntaxError { line, message: "alias to an unknown anchor".into() })?;
                builder.push(Node { line, kind: node.kind }, 0)?;
            }
            _ => {}
        }
    }
    Ok(builder.root.unwrap_or(Node { line: 1, kind: Kind::Null }))
}

#[derive(Default)]
struct Builder {
    stack: Vec<Open>,
    anchors: HashMap<usize, Node>,
    root: Option<Node>,
}

struct Open {
    line: usize,
    anchor: usize,
    kind: OpenKind,
}

enum OpenKind {
    Seq(Vec<Node>),
    /// Entries so far and a key waiting for its value.
    Map(Vec<(Node, Node)>, Option<Node>),
}

impl Builder {
    fn push(&mut self, node: Node, anchor: usize) -> Result<(), SyntaxError> {
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => {
                if self.root.is_none() {
                    self.root = Some(node);
                }
            }
            Some(Open { kind: OpenKind::Seq(items), .. }) => items.push(node),
            Some(Open { kind: OpenKind::Map(entries, pending), .. }) => match pending.take() {
                None => *pending = Some(node),
                Some(key) => entries.push((key, node)),
            },
        }
        Ok(())
    }
}

/// YAML 1.2 core schema resolution of a plain scalar.
fn plain_scalar(text: &str) -> Kind {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Kind::Null,
        "true" | "True" | "TRUE" => return Kind::Bool(true),
        "false" | "False" | "FALSE" => return Kind::Bool(false),
        _ => {}
    }
    if let Ok(i) = text.parse::<i64>() {
        return Kind::Int(i);
    }
    let looks_numeric = text.chars().next().is_some_and(|c| c.is_ascii_digit() || c == '-' || c == '+' || c == '.');
    if looks_numeric && let Ok(f) = text.parse::<f64>() {
        return Kind::Float(f);
    }
    Kind::Str(text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_carry_their_lines() {
        let node = parse("a: 1\nb:\n  - x\n  - 'y'\n").unwrap();
        let Kind::Map(entries) = node.kind else { panic!("map") };
        assert_eq!(entries[0].0.line, 1);
        assert_eq!(entries[1].0.line, 2);
        let Kind::Seq(items) = &entries[1].1.kind else { panic!("seq") };
        assert_eq!(items[0].line, 3);
        assert_eq!(items[1], Node { line: 4, kind: Kind::Str("y".into()) });
    }

    #[test]
    fn plain_scalars_resolve_to_core_types() {
        assert_eq!(plain_scalar("42"), Kind::Int(42));
        assert_eq!(plain_scalar("4.5"), Kind::Float(4.5));
        assert_eq!(plain_scalar("true"), Kind::Bool(true));
        assert_eq!(plain_scalar("~"), Kind::Null);
        assert_eq!(plain_scalar("inf-case"), Kind::Str("inf-case".into()));
    }

    #[test]
    fn syntax_errors_have_a_line() {
        let err = parse("a: 1\nb: [1, 2\n").unwrap_err();
        assert!(err.line >= 2, "{err:?}");
    }

    #[test]
    fn aliases_copy_the_anchored_node() {
        let node = parse("a: &x hello\nb: *x\n").unwrap();
        let Kind::Map(entries) = node.kind else { panic!("map") };
        assert_eq!(entries[1].1.kind, Kind::Str("hello".into()));
    }
}
