//! The rules loader: reads the YAML tree (with line numbers) into [`Rules`], validating everything
//! at once so that one run reports every problem of a document, each with its line.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use regex::RegexBuilder;
use serde::Serialize;

use crate::model::Direction;

use crate::rules::action::ActionKind;
use crate::rules::template::Template;
use crate::rules::yaml::{self, Kind, Node};

use super::types::*;
use crate::salesforce::object_name::{CASE_COMMENT, same_object};

/// Child objects whose inserts arrive with the links of their parent (a CaseComment carries the
/// incidents linked to its Case), so new_only rules on them may act on linked incidents.
const LINKED_THROUGH_PARENT: &[&str] = &[CASE_COMMENT];

/// One problem in a rules document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ValidationError {
    /// Where: `ruleset "X" / rule "Y" / condition 2`.
    pub path: String,
    /// 1-based line in the YAML text.
    pub line: usize,
    pub message: String,
}

/// Every problem found in a rules document, in document order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
pub struct ValidationErrors(pub Vec<ValidationError>);

impl ValidationErrors {
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &ValidationError> {
        self.0.iter()
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}: {}", self.line, self.path, self.message)
    }
}

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl Rules {
    /// Parses and validates a rules document; on failure, returns every problem found.
    pub fn from_yaml(text: &str) -> Result<Rules, ValidationErrors> {
        let root = yaml::parse(text).map_err(|e| {
            ValidationErrors(vec![ValidationError {
                path: "document".into(),
                line: e.line,
                message: format!("YAML syntax error: {}", e.message),
            }])
        })?;
        let mut cx = Loader::default();
        let rules = cx.document(&root);
        if cx.errors.is_empty() { Ok(rules) } else { Err(ValidationErrors(cx.errors)) }
    }

    /// How many rules there are in all rulesets.
    pub fn rule_count(&self) -> usize {
        self.rulesets.iter().map(|s| s.rules.len()).sum()
    }
}

/// The `name` of a mapping node, if it has a usable one (for paths in error messages).
fn peek_name(node: &Node) -> Option<String> {
    let Kind::Map(entries) = &node.kind else { return None };
    entries
        .iter()
        .find(|(k, _)| k.key_text() == "name")
        .and_then(|(_, v)| v.scalar_text())
        .filter(|n| !n.trim().is_empty())
}

#[derive(Default)]
struct Loader {
    errors: Vec<ValidationError>,
}

/// A mapping being read: reports unknown and duplicate keys once, then hands out values.
struct Obj<'a> {
    entries: &'a [(Node, Node)],
    line: usize,
}

impl<'a> Obj<'a> {
    fn get(&self, key: &str) -> Option<&'a Node> {
        self.entries.iter().find(|(k, _)| k.key_text() == key).map(|(_, v)| v)
    }
}

impl Loader {
    fn err(&mut self, path: &str, line: usize, message: impl Into<String>) {
        self.errors.push(ValidationError { path: path.to_string(), line, message: message.into() });
    }

    /// Reads `node` as a mapping with only `allowed` keys (all others are reported).
    fn obj<'a>(&mut self, node: &'a Node, path: &str, allowed: &[&str]) -> Option<Obj<'a>> {
        let Kind::Map(entries) = &node.kind else {
            self.err(path, node.line, format!("expected a mapping, found {}", node.type_name()));
            return None;
        };
        let mut seen = HashSet::new();
        for (k, _) in entries {
            let key = k.key_text();
            if !allowed.contains(&key.as_str()) {
                self.err(path, k.line, format!("unknown field `{key}`; expected one of: {}", allowed.join(", ")));
            } else if !seen.insert(key.clone()) {
                self.err(path, k.line, format!("field `{key}` is given twice"));
            }
        }
        Some(Obj { entries, line: node.line })
    }

    fn req<'a>(&mut self, obj: &Obj<'a>, key: &str, path: &str) -> Option<&'a Node> {
        let v = obj.get(key);
        if v.is_none() {
            self.err(path, obj.line, format!("missing required field `{key}`"));
        }
        v
    }

    fn string(&mut self, node: &Node, path: &str, key: &str) -> Option<String> {
        match &node.kind {
            Kind::Str(s) if !s.trim().is_empty() => Some(s.clone()),
            Kind::Str(_) => {
                self.err(path, node.line, format!("`{key}` must not be empty"));
                None
            }
            Kind::Int(_) | Kind::Float(_) => node.scalar_text(),
            _ => {
                self.err(path, node.line, format!("`{key}` must be a string, found {}", node.type_name()));
                None
            }
        }
    }

    fn req_string(&mut self, obj: &Obj<'_>, key: &str, path: &str) -> Option<String> {
        let node = self.req(obj, key, path)?;
        self.string(node, path, key)
    }

    fn opt_string(&mut self, obj: &Obj<'_>, key: &str, path: &str) -> Option<String> {
        let node = obj.get(key)?;
        self.string(node, path, key)
    }

    fn opt_bool(&mut self, obj: &Obj<'_>, key: &str, path: &str, default: bool) -> bool {
        match obj.get(key).map(|n| (n, &n.kind)) {
            None => default,
            Some((_, Kind::Bool(b))) => *b,
            Some((n, _)) => {
                self.err(path, n.line, format!("`{key}` must be true or false, found {}", n.type_name()));
                default
            }
        }
    }

    fn string_list(&mut self, obj: &Obj<'_>, key: &str, path: &str) -> Vec<String> {
        match obj.get(key) {
            None => Vec::new(),
            Some(Node { kind: Kind::Seq(items), .. }) => {
                items.iter().filter_map(|n| self.string(n, path, key)).collect()
            }
            Some(n) => {
                self.err(path, n.line, format!("`{key}` must be a list of strings, found {}", n.type_name()));
                Vec::new()
            }
        }
    }

    fn template(&mut self, node: &Node, path: &str, key: &str, direction: Direction) -> Option<Template> {
        let text = match &node.kind {
            Kind::Str(s) => s.clone(),
            _ => {
                self.err(path, node.line, format!("`{key}` must be a string template, found {}", node.type_name()));
                return None;
            }
        };
        match Template::parse(&text, direction) {
            Ok(t) => Some(t),
            Err(message) => {
                self.err(path, node.line, format!("`{key}`: {message}"));
                None
            }
        }
    }

    fn opt_template(&mut self, obj: &Obj<'_>, key: &str, path: &str, direction: Direction) -> Option<Template> {
        let node = obj.get(key)?;
        self.template(node, path, key, direction)
    }

    fn document(&mut self, root: &Node) -> Rules {
        let mut rules = Rules { rulesets: Vec::new() };
        let Some(obj) = self.obj(root, "document", &["rulesets"]) else { return rules };
        let Some(list) = self.req(&obj, "rulesets", "document") else { return rules };
        let Kind::Seq(items) = &list.kind else {
            self.err("document", list.line, format!("`rulesets` must be a list, found {}", list.type_name()));
            return rules;
        };
        let mut names = HashSet::new();
        let mut rule_names = HashSet::new();
        for (i, node) in items.iter().enumerate() {
            if let Some(set) = self.ruleset(node, i + 1, &mut rule_names) {
                if !names.insert(set.name.clone()) {
                    self.err(
                        &format!("ruleset {:?}", set.name),
                        set.line,
                        "duplicate ruleset name; names must be unique",
                    );
                }
                rules.rulesets.push(set);
            }
        }
        rules
    }

    fn ruleset(&mut self, node: &Node, index: usize, rule_names: &mut HashSet<String>) -> Option<RuleSet> {
        let path = match peek_name(node) {
            Some(n) => format!("ruleset {n:?}"),
            None => format!("ruleset {index}"),
        };
        let obj = self.obj(node, &path, &["name", "enabled", "rules"])?;
        let name = self.req_string(&obj, "name", &path);
        let enabled = self.opt_bool(&obj, "enabled", &path, true);
        let mut rules = Vec::new();
        match self.req(&obj, "rules", &path).map(|n| (n, &n.kind)) {
            Some((_, Kind::Seq(items))) => {
                for (i, item) in items.iter().enumerate() {
                    if let Some(rule) = self.rule(item, i + 1, &path) {
                        // Rule names key idempotency (incident_key, external ids): unique across the document.
                        if !rule_names.insert(rule.name.clone()) {
                            self.err(&format!("{path} / rule {:?}", rule.name), rule.line, "duplicate rule name; rule names must be unique across all rulesets because they key idempotency");
                        }
                        rules.push(rule);
                    }
                }
            }
            Some((n, _)) => self.err(&path, n.line, format!("`rules` must be a list, found {}", n.type_name())),
            None => {}
        }
        let name = name?;
        Some(RuleSet { shared_name: name.as_str().into(), name, enabled, rules, line: node.line })
    }

    fn rule(&mut self, node: &Node, index: usize, set_path: &str) -> Option<Rule> {
        let path = match peek_name(node) {
            Some(n) => format!("{set_path} / rule {n:?}"),
            None => format!("{set_path} / rule {index}"),
        };
        let obj =
            self.obj(node, &path, &["name", "direction", "object", "match", "applies_to", "conditions", "actions"])?;
        let name = self.req_string(&obj, "name", &path);
        let direction = match self.req_string(&obj, "direction", &path).as_deref() {
            Some("salesforce_to_pagerduty") => Some(Direction::SalesforceToPagerduty),
            Some("pagerduty_to_salesforce") => Some(Direction::PagerdutyToSalesforce),
            Some(other) => {
                let line = obj.get("direction").map_or(node.line, |n| n.line);
                self.err(
                    &path,
                    line,
                    format!("unknown direction `{other}`; expected salesforce_to_pagerduty or pagerduty_to_salesforce"),
                );
                None
            }
            None => None,
        };
        let object = self.req_string(&obj, "object", &path);
        let match_mode = match self.opt_string(&obj, "match", &path).as_deref() {
            None | Some("all") => MatchMode::All,
            Some("any") => MatchMode::Any,
            Some(other) => {
                self.err(
                    &path,
                    obj.get("match").map_or(node.line, |n| n.line),
                    format!("unknown match mode `{other}`; expected all or any"),
                );
                MatchMode::All
            }
        };
        let applies_to = match self.opt_string(&obj, "applies_to", &path).as_deref() {
            None | Some("all_linked") => AppliesTo::AllLinked,
            Some("new_only") => AppliesTo::NewOnly,
            Some(other) => {
                self.err(
                    &path,
                    obj.get("applies_to").map_or(node.line, |n| n.line),
                    format!("unknown applies_to `{other}`; expected new_only or all_linked"),
                );
                AppliesTo::AllLinked
            }
        };
        // Without a valid direction, conditions and actions cannot be checked meaningfully.
        let direction = direction?;
        let mut conditions = Vec::new();
        match obj.get("conditions").map(|n| (n, &n.kind)) {
            None | Some((_, Kind::Null)) => {}
            Some((_, Kind::Seq(items))) => {
                for (i, item) in items.iter().enumerate() {
                    if let Some(c) = self.condition(item, &format!("{path} / condition {}", i + 1), direction) {
                        conditions.push(c);
                    }
                }
            }
            Some((n, _)) => self.err(&path, n.line, format!("`conditions` must be a list, found {}", n.type_name())),
        }
        let mut actions = Vec::new();
        match self.req(&obj, "actions", &path).map(|n| (n, &n.kind)) {
            Some((_, Kind::Seq(items))) if !items.is_empty() => {
                for (i, item) in items.iter().enumerate() {
                    let apath = format!("{path} / action {}", i + 1);
                    if let Some(a) = self.action(item, &apath, direction, applies_to, object.as_deref()) {
                        actions.push(a);
                    }
                }
            }
            Some((n, Kind::Seq(_))) => self.err(&path, n.line, "`actions` is empty; a rule must do something"),
            Some((n, _)) => self.err(&path, n.line, format!("`actions` must be a list, found {}", n.type_name())),
            None => {}
        }
        let name = name?;
        Some(Rule {
            shared_name: name.as_str().into(),
            name,
            direction,
            object: object?.into(),
            match_mode,
            applies_to,
            conditions,
            actions,
            line: node.line,
        })
    }

    fn condition(&mut self, node: &Node, path: &str, direction: Direction) -> Option<Condition> {
        let obj = self.obj(node, path, &["field", "operator", "value", "case_sensitive"])?;
        let case_sensitive = self.opt_bool(&obj, "case_sensitive", path, false);
        let field_text = self.req_string(&obj, "field", path);
        let field_line = obj.get("field").map_or(node.line, |n| n.line);
        let field = field_text.as_deref().and_then(|t| self.field(t, path, field_line, direction));
        let op_text = self.req_string(&obj, "operator", path);
        let op_line = obj.get("operator").map_or(node.line, |n| n.line);
        let operator = op_text.as_deref().and_then(|t| match OPERATORS.iter().find(|(n, _)| *n == t) {
            Some((_, op)) => Some(*op),
            None => {
                let names: Vec<&str> = OPERATORS.iter().map(|(n, _)| *n).collect();
                self.err(path, op_line, format!("unknown operator `{t}`; expected one of: {}", names.join(", ")));
                None
            }
        });
        let operator = operator?;
        if matches!(operator, Operator::Changed | Operator::ChangedTo | Operator::ChangedFrom) {
            match &field {
                Some(Field::Salesforce { old: false, .. }) if direction == Direction::SalesforceToPagerduty => {}
                Some(_) => self.err(path, op_line, format!("`{operator}` compares a Salesforce record's old and new values; it needs a Salesforce field (without `old.`) in a salesforce_to_pagerduty rule")),
                None => {}
            }
        }
        let value = obj.get("value");
        let expected = match operator {
            Operator::IsEmpty | Operator::IsNotEmpty | Operator::Changed => {
                if let Some(v) = value {
                    self.err(path, v.line, format!("`{operator}` takes no `value`"));
                }
                Expected::None
            }
            Operator::In | Operator::NotIn => match value.map(|v| (v, &v.kind)) {
                Some((_, Kind::Seq(items))) => {
                    let list: Vec<Scalar> = items
                        .iter()
                        .filter_map(|n| match n.scalar_text() {
                            Some(t) => Some(Scalar::new(t, case_sensitive)),
                            None => {
                                self.err(
                                    path,
                                    n.line,
                                    format!(
                                        "`{operator}` list items must be strings or numbers, found {}",
                                        n.type_name()
                                    ),
                                );
                                None
                            }
                        })
                        .collect();
                    Expected::List(list)
                }
                Some((v, _)) => {
                    self.err(path, v.line, format!("`{operator}` needs a list as `value`, found {}", v.type_name()));
                    Expected::None
                }
                None => {
                    self.err(path, obj.line, format!("missing required field `value` (a list) for `{operator}`"));
                    Expected::None
                }
            },
            Operator::Matches => match value.map(|v| (v, v.scalar_text())) {
                Some((v, Some(pattern))) => {
                    match RegexBuilder::new(&pattern).case_insensitive(!case_sensitive).size_limit(1 << 20).build() {
                        Ok(re) => Expected::Regex(re),
                        Err(e) => {
                            let msg = e.to_string().lines().last().unwrap_or("invalid").trim().to_string();
                            self.err(path, v.line, format!("regex {pattern:?} does not compile: {msg}"));
                            Expected::None
                        }
                    }
                }
                Some((v, None)) => {
                    self.err(
                        path,
                        v.line,
                        format!("`matches` needs a regex string as `value`, found {}", v.type_name()),
                    );
                    Expected::None
                }
                None => {
                    self.err(path, obj.line, "missing required field `value` (a regex) for `matches`");
                    Expected::None
                }
            },
            _ => match value.map(|v| (v, v.scalar_text())) {
                Some((v, Some(text))) => {
                    let s = Scalar::new(text, case_sensitive);
                    if matches!(operator, Operator::GreaterThan | Operator::LessThan)
                        && s.number.is_none()
                        && s.date.is_none()
                    {
                        self.err(
                            path,
                            v.line,
                            format!("`{operator}` needs a number or an ISO date/datetime, found {:?}", s.text),
                        );
                    }
                    Expected::One(s)
                }
                Some((v, None)) => {
                    self.err(
                        path,
                        v.line,
                        format!("`{operator}` needs a single string or number as `value`, found {}", v.type_name()),
                    );
                    Expected::None
                }
                None => {
                    self.err(path, obj.line, format!("missing required field `value` for `{operator}`"));
                    Expected::None
                }
            },
        };
        let expected_json = match &expected {
            Expected::None => None,
            Expected::One(s) => Some(serde_json::Value::String(s.text.clone())),
            Expected::List(l) => {
                Some(serde_json::Value::Array(l.iter().map(|s| serde_json::Value::String(s.text.clone())).collect()))
            }
            Expected::Regex(r) => Some(serde_json::Value::String(r.as_str().to_string())),
        }
        .map(Arc::new);
        let field_text = field_text?;
        Some(Condition {
            shared_field: field_text.as_str().into(),
            field_text,
            field: field?,
            operator,
            expected,
            case_sensitive,
            line: node.line,
            expected_json,
        })
    }

    fn field(&mut self, text: &str, path: &str, line: usize, direction: Direction) -> Option<Field> {
        if let Some(name) = text.strip_prefix("pagerduty.") {
            if direction == Direction::SalesforceToPagerduty {
                self.err(path, line, format!("field `{text}`: a salesforce_to_pagerduty rule runs on a Salesforce change and has no PagerDuty incident to read; use a field of the record"));
                return None;
            }
            if let Some(custom) = name.strip_prefix(PD_CUSTOM_FIELDS) {
                if custom.is_empty() || !custom.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
                    self.err(path, line, format!("field `{text}`: name the custom field (`pagerduty.custom_fields.NAME`, its name in PagerDuty)"));
                    return None;
                }
                return Some(Field::PagerdutyCustomField(custom.to_string()));
            }
            return match PD_FIELDS.iter().find(|(n, _)| *n == name) {
                Some((_, f)) => Some(Field::Pagerduty(*f)),
                None => {
                    let mut names: Vec<String> = PD_FIELDS.iter().map(|(n, _)| format!("pagerduty.{n}")).collect();
                    names.push(format!("pagerduty.{PD_CUSTOM_FIELDS}NAME"));
                    self.err(
                        path,
                        line,
                        format!("unknown PagerDuty field `{text}`; expected one of: {}", names.join(", ")),
                    );
                    None
                }
            };
        }
        let (old, rest) = match text.strip_prefix("old.") {
            Some(rest) => (true, rest),
            None => (false, text.strip_prefix("new.").unwrap_or(text)),
        };
        if old && direction == Direction::PagerdutyToSalesforce {
            self.err(path, line, format!("field `{text}`: old values exist only in salesforce_to_pagerduty rules"));
            return None;
        }
        let segments: Vec<String> = rest.split('.').map(str::to_string).collect();
        if segments.iter().any(|s| s.is_empty() || !s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')) {
            self.err(
                path,
                line,
                format!(
                    "field `{text}` is not a Salesforce field path (API names joined by dots, e.g. `Account.Name`)"
                ),
            );
            return None;
        }
        Some(Field::Salesforce { path: segments, old })
    }

    fn action(
        &mut self,
        node: &Node,
        path: &str,
        direction: Direction,
        applies_to: AppliesTo,
        rule_object: Option<&str>,
    ) -> Option<ActionSpec> {
        // `- acknowledge` or `- resolve: {resolution: ...}`: a name, or a one-key mapping.
        let (name, params, name_line) = match &node.kind {
            Kind::Str(s) => (s.clone(), None, node.line),
            Kind::Map(entries) if entries.len() == 1 => {
                (entries[0].0.key_text(), Some(&entries[0].1), entries[0].0.line)
            }
            _ => {
                self.err(path, node.line, "an action is a name (`- acknowledge`) or a mapping with one key, the action name (`- resolve: {resolution: ...}`)");
                return None;
            }
        };
        let Some(kind) = ActionKind::from_name(&name) else {
            self.err(
                path,
                name_line,
                format!("unknown action `{name}`; expected one of: {}", ActionKind::known_names()),
            );
            return None;
        };
        let path = format!("{path} ({name})");
        let path = path.as_str();
        let empty = Node { line: name_line, kind: Kind::Map(Vec::new()) };
        let params = match params {
            None | Some(Node { kind: Kind::Null, .. }) => &empty,
            Some(p) => p,
        };
        let d = direction;
        let spec = match kind {
            ActionKind::CreateIncident => {
                let o =
                    self.obj(params, path, &["service", "escalation_policy", "urgency", "priority", "title", "body"])?;
                let service_id = self.req_string(&o, "service", path);
                let escalation_policy_id = self.opt_string(&o, "escalation_policy", path);
                let urgency = o.get("urgency").and_then(|n| self.urgency(n, path));
                let priority = self.opt_string(&o, "priority", path);
                let title = self.title(&o, path);
                let body = self.opt_template(&o, "body", path, d);
                ActionSpec::Pagerduty(PagerdutySpec::CreateIncident {
                    service_id: service_id?,
                    escalation_policy_id,
                    urgency,
                    priority,
                    title: title?,
                    body,
                })
            }
            ActionKind::Acknowledge => {
                self.obj(params, path, &[])?;
                ActionSpec::Pagerduty(PagerdutySpec::Acknowledge)
            }
            ActionKind::Resolve => {
                let o = self.obj(params, path, &["resolution"])?;
                ActionSpec::Pagerduty(PagerdutySpec::Resolve {
                    resolution: self.opt_template(&o, "resolution", path, d),
                })
            }
            ActionKind::SetPriority => {
                let o = self.obj(params, path, &["priority"])?;
                ActionSpec::Pagerduty(PagerdutySpec::SetPriority { priority: self.req_string(&o, "priority", path)? })
            }
            ActionKind::SetUrgency => {
                let o = self.obj(params, path, &["urgency"])?;
                let n = self.req(&o, "urgency", path)?;
                ActionSpec::Pagerduty(PagerdutySpec::SetUrgency { urgency: self.urgency(n, path)? })
            }
            ActionKind::RunIncidentWorkflow => {
                let o = self.obj(params, path, &["workflow"])?;
                ActionSpec::Pagerduty(PagerdutySpec::RunIncidentWorkflow {
                    workflow_id: self.req_string(&o, "workflow", path)?,
                })
            }
            ActionKind::RunAutomationAction => {
                let o = self.obj(params, path, &["action"])?;
                ActionSpec::Pagerduty(PagerdutySpec::RunAutomationAction {
                    action_id: self.req_string(&o, "action", path)?,
                })
            }
            ActionKind::Reassign => {
                let o = self.obj(params, path, &["users", "escalation_policy"])?;
                let user_ids = self.string_list(&o, "users", path);
                let escalation_policy_id = self.opt_string(&o, "escalation_policy", path);
                if user_ids.is_empty() == escalation_policy_id.is_none() {
                    self.err(
                        path,
                        o.line,
                        "`reassign` needs either `users` (a list of user ids) or `escalation_policy`, not both",
                    );
                    return None;
                }
                ActionSpec::Pagerduty(PagerdutySpec::Reassign { user_ids, escalation_policy_id })
            }
            ActionKind::AddResponders => {
                let o = self.obj(params, path, &["users", "escalation_policies", "message"])?;
                let user_ids = self.string_list(&o, "users", path);
                let escalation_policy_ids = self.string_list(&o, "escalation_policies", path);
                if user_ids.is_empty() && escalation_policy_ids.is_empty() {
                    self.err(path, o.line, "`add_responders` needs `users` and/or `escalation_policies`");
                    return None;
                }
                ActionSpec::Pagerduty(PagerdutySpec::AddResponders {
                    user_ids,
                    escalation_policy_ids,
                    message: self.opt_template(&o, "message", path, d),
                })
            }
            ActionKind::AddNote => {
                let o = self.obj(params, path, &["content"])?;
                let n = self.req(&o, "content", path)?;
                ActionSpec::Pagerduty(PagerdutySpec::AddNote { content: self.template(n, path, "content", d)? })
            }
            ActionKind::PublishStatusUpdate => {
                let o = self.obj(params, path, &["message", "subject", "html_message"])?;
                let n = self.req(&o, "message", path)?;
                let message = self.template(n, path, "message", d);
                let subject = self.opt_template(&o, "subject", path, d);
                let html_message = self.opt_template(&o, "html_message", path, d);
                if o.get("subject").is_some() != o.get("html_message").is_some() {
                    // PagerDuty needs both for its custom HTML email, and ignores one alone.
                    self.err(path, o.line, "`publish_status_update` takes `subject` and `html_message` together (a custom HTML email) or neither");
                    return None;
                }
                ActionSpec::Pagerduty(PagerdutySpec::PublishStatusUpdate { message: message?, subject, html_message })
            }
            ActionKind::SetCustomFields => {
                let fields = self.field_values(params, path, d)?;
                if fields.is_empty() {
                    self.err(path, params.line, "`set_custom_fields` needs at least one `FIELD_NAME: value`");
                }
                if let Kind::Map(entries) = &params.kind {
                    for (k, _) in entries {
                        let name = k.key_text();
                        if !is_custom_field_name(&name) {
                            self.err(path, k.line, format!("`{name}` is not a PagerDuty custom field name (lowercase letters, digits and underscores, at most {MAX_CUSTOM_FIELD_NAME} characters)"));
                        }
                    }
                }
                ActionSpec::Pagerduty(PagerdutySpec::SetCustomFields { fields })
            }
            ActionKind::SetFields => {
                let fields = self.field_values(params, path, d)?;
                if fields.is_empty() {
                    self.err(path, params.line, "`set_fields` needs at least one `FIELD: value`");
                }
                ActionSpec::Salesforce(SalesforceSpec::SetFields { fields })
            }
            ActionKind::CreateRecord => {
                let o = self.obj(params, path, &["object", "fields", "external_id_field", "link"])?;
                let object = self.req_string(&o, "object", path);
                let fields = match self.req(&o, "fields", path) {
                    Some(n) => self.field_values(n, path, d).unwrap_or_default(),
                    None => Vec::new(),
                };
                let external_id_field = self
                    .opt_string(&o, "external_id_field", path)
                    .unwrap_or_else(|| DEFAULT_EXTERNAL_ID_FIELD.to_string());
                let link = self.opt_bool(&o, "link", path, true);
                ActionSpec::Salesforce(SalesforceSpec::CreateRecord {
                    object: object?.into(),
                    fields,
                    external_id_field,
                    link,
                })
            }
            ActionKind::AddCaseComment => {
                let o = self.obj(params, path, &["body"])?;
                let n = self.req(&o, "body", path)?;
                ActionSpec::Salesforce(SalesforceSpec::AddCaseComment { body: self.template(n, path, "body", d)? })
            }
        };
        let side = kind.side();
        if side.planned_by() != direction {
            self.err(
                path,
                name_line,
                format!("`{name}` acts on {}; a {direction} rule can only act on the other side", side.label()),
            );
        } else if direction == Direction::SalesforceToPagerduty
            && applies_to == AppliesTo::NewOnly
            && spec.needs_link()
            && !rule_object.is_some_and(|o| LINKED_THROUGH_PARENT.iter().any(|c| same_object(c, o)))
        {
            self.err(path, name_line, format!("`{name}` acts on a linked incident, but a new_only salesforce_to_pagerduty rule runs on record inserts, which cannot have one yet; use applies_to: all_linked"));
        } else if matches!(spec, ActionSpec::Salesforce(SalesforceSpec::AddCaseComment { .. }))
            && rule_object.is_some_and(|o| o != "Case")
        {
            self.err(path, name_line, "`add_case_comment` acts on linked Cases; set the rule's `object: Case`");
        }
        Some(spec)
    }

    fn urgency(&mut self, node: &Node, path: &str) -> Option<Urgency> {
        match node.scalar_text().as_deref() {
            Some("high") => Some(Urgency::High),
            Some("low") => Some(Urgency::Low),
            _ => {
                self.err(
                    path,
                    node.line,
                    format!(
                        "`urgency` must be high or low, found {}",
                        node.scalar_text().unwrap_or_else(|| node.type_name().into())
                    ),
                );
                None
            }
        }
    }

    fn title(&mut self, o: &Obj<'_>, path: &str) -> Option<TitleTemplate> {
        let node = self.req(o, "title", path)?;
        let t = self.obj(node, path, &["prefix", "fields"])?;
        let prefix = match t.get("prefix") {
            None => String::new(),
            Some(n) => n.scalar_text().unwrap_or_default(),
        };
        let mut ok = true;
        let chars = prefix.chars().count();
        if chars > MAX_TITLE_CHARS {
            self.err(
                path,
                t.get("prefix").map_or(t.line, |n| n.line),
                format!("title prefix is {chars} characters; the limit is {MAX_TITLE_CHARS}"),
            );
            ok = false;
        }
        let fields = self.string_list(&t, "fields", path);
        if fields.len() > MAX_TITLE_FIELDS {
            self.err(
                path,
                t.get("fields").map_or(t.line, |n| n.line),
                format!("title uses {} fields; the limit is {MAX_TITLE_FIELDS}", fields.len()),
            );
            ok = false;
        }
        if prefix.is_empty() && fields.is_empty() {
            self.err(path, t.line, "title needs a `prefix` and/or `fields`");
            ok = false;
        }
        ok.then(|| TitleTemplate {
            prefix,
            fields: fields.iter().map(|f| f.split('.').map(str::to_string).collect()).collect(),
        })
    }

    fn field_values(&mut self, node: &Node, path: &str, d: Direction) -> Option<Vec<(String, FieldValue)>> {
        let Kind::Map(entries) = &node.kind else {
            self.err(path, node.line, format!("expected a mapping of FIELD: value, found {}", node.type_name()));
            return None;
        };
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        for (k, v) in entries {
            let key = k.key_text();
            if !seen.insert(key.clone()) {
                self.err(path, k.line, format!("field `{key}` is given twice"));
                continue;
            }
            let value = match &v.kind {
                Kind::Str(s) if s.contains("{{") => match self.template(v, path, &key, d) {
                    Some(t) => FieldValue::Template(t),
                    None => continue,
                },
                Kind::Seq(_) | Kind::Map(_) => {
                    self.err(
                        path,
                        v.line,
                        format!("value of `{key}` must be a string, number, boolean or null, found {}", v.type_name()),
                    );
                    continue;
                }
                _ => FieldValue::Literal(v.to_json()),
            };
            out.push((key, value));
        }
        Some(out)
    }
}
