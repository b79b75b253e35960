//! The table of actions: every action a rule can ask for, with its name in rules files (also the
//! `type` tag of a serialised plan), the system it acts on and the kind of effect it has. The
//! loader's known names, [`crate::rules::Action::name`], [`crate::rules::ActionSpec::name`] and the
//! action lists in the docs all derive from (or are checked against) this one table.

use crate::model::Direction;

/// The system an action changes: which executor runs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    Pagerduty,
    Salesforce,
}

impl Side {
    /// How the docs and error messages name the system.
    pub fn label(self) -> &'static str {
        match self {
            Side::Pagerduty => "PagerDuty",
            Side::Salesforce => "Salesforce",
        }
    }

    /// The direction whose rules may plan actions on this side: a rule acts on the other system
    /// than the one its event came from.
    pub fn planned_by(self) -> Direction {
        match self {
            Side::Pagerduty => Direction::SalesforceToPagerduty,
            Side::Salesforce => Direction::PagerdutyToSalesforce,
        }
    }
}

/// The two kinds of effect an action has (see [`crate::rules::Action::effect`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Sets a value: only the newest event's value may stand.
    State,
    /// Adds something: happens exactly once, even when its event arrives late.
    Additive,
}

/// Declares [`ActionKind`] from one row per action, so that the enum, [`ActionKind::ALL`] and the
/// lookups cannot disagree about which actions exist.
macro_rules! action_table {
    ($($(#[$doc:meta])* $kind:ident = $name:literal, $side:ident, $effect:ident;)+) => {
        /// One action, without its parameters.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ActionKind {
            $($(#[$doc])* $kind,)+
        }

        impl ActionKind {
            /// Every action, in the order the docs and the loader's error message list them.
            pub const ALL: &'static [ActionKind] = &[$(ActionKind::$kind,)+];

            /// The name used in rules files and as the `type` tag of a serialised action.
            pub const fn name(self) -> &'static str {
                match self {
                    $(ActionKind::$kind => $name,)+
                }
            }

            pub const fn side(self) -> Side {
                match self {
                    $(ActionKind::$kind => Side::$side,)+
                }
            }

            pub const fn effect(self) -> Effect {
                match self {
                    $(ActionKind::$kind => Effect::$effect,)+
                }
            }
        }
    };
}

action_table! {
    /// Create an incident for a record and link them.
    CreateIncident = "create_incident", Pagerduty, Additive;
    Acknowledge = "acknowledge", Pagerduty, State;
    Resolve = "resolve", Pagerduty, State;
    SetPriority = "set_priority", Pagerduty, State;
    SetUrgency = "set_urgency", Pagerduty, State;
    RunIncidentWorkflow = "run_incident_workflow", Pagerduty, Additive;
    RunAutomationAction = "run_automation_action", Pagerduty, Additive;
    Reassign = "reassign", Pagerduty, State;
    AddResponders = "add_responders", Pagerduty, Additive;
    AddNote = "add_note", Pagerduty, Additive;
    /// Publish a status update on the linked incident (to its stakeholders).
    PublishStatusUpdate = "publish_status_update", Pagerduty, Additive;
    /// Set incident custom field values by field name.
    SetCustomFields = "set_custom_fields", Pagerduty, State;
    /// Update fields of a linked record.
    SetFields = "set_fields", Salesforce, State;
    /// Create (upsert) a record and link it.
    CreateRecord = "create_record", Salesforce, Additive;
    AddCaseComment = "add_case_comment", Salesforce, Additive;
}

impl ActionKind {
    pub fn from_name(name: &str) -> Option<ActionKind> {
        ActionKind::ALL.iter().copied().find(|kind| kind.name() == name)
    }

    /// Every name, comma-separated, for messages that list the known actions.
    pub fn known_names() -> String {
        ActionKind::ALL.iter().map(|kind| kind.name()).collect::<Vec<_>>().join(", ")
    }
}

impl std::fmt::Display for ActionKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::rules::{Action, ActionSpec, Rules};

    #[test]
    fn names_are_distinct_and_found_again() {
        let names: HashSet<&str> = ActionKind::ALL.iter().map(|k| k.name()).collect();
        assert_eq!(names.len(), ActionKind::ALL.len(), "two actions share a name");
        for kind in ActionKind::ALL {
            assert_eq!(ActionKind::from_name(kind.name()), Some(*kind), "{kind}");
        }
        assert_eq!(ActionKind::from_name("page_everyone"), None);
    }

    /// A document naming every action, in the table's order, each with the parameters it needs.
    const EVERY_ACTION: &str = r#"
rulesets:
  - name: every action
    rules:
      - name: on pagerduty
        direction: salesforce_to_pagerduty
        object: Case
        actions:
          - create_incident: {service: PSVC1, title: {prefix: "Case "}}
          - acknowledge
          - resolve
          - set_priority: {priority: P1}
          - set_urgency: {urgency: high}
          - run_incident_workflow: {workflow: PWF1}
          - run_automation_action: {action: PAA1}
          - reassign: {users: [PU1]}
          - add_responders: {users: [PU1]}
          - add_note: {content: hi}
          - publish_status_update: {message: hi}
          - set_custom_fields: {impact: high}
      - name: on salesforce
        direction: pagerduty_to_salesforce
        object: Case
        actions:
          - set_fields: {Status: Working}
          - create_record: {object: Escalation__c, fields: {Name: x}}
          - add_case_comment: {body: hi}
"#;

    /// The enums name their variants twice over: serde's `type` tag (the variant's name in
    /// snake case) and the rules file's action name. Both must be the table's name of the kind
    /// the variant maps to, and no two variants may map to one kind.
    #[test]
    fn table_agrees_with_the_enums() {
        let mut planned = HashSet::new();
        for json in crate::rules::plan::tests::OLD_FORM {
            let action: Action = serde_json::from_str(json).unwrap();
            let tag = serde_json::from_str::<serde_json::Value>(json).unwrap()["type"].as_str().unwrap().to_string();
            assert_eq!(action.kind().name(), tag, "the table's name for the variant serde tags `{tag}`");
            assert_eq!(action.effect(), action.kind().effect());
            planned.insert(action.kind());
        }
        let all: HashSet<ActionKind> = ActionKind::ALL.iter().copied().collect();
        assert_eq!(planned, all, "every action variant has a sample and maps to a kind of its own");

        let rules = Rules::from_yaml(EVERY_ACTION).unwrap_or_else(|e| panic!("{e}"));
        let specs: Vec<&ActionSpec> = rules.rulesets[0].rules.iter().flat_map(|r| &r.actions).collect();
        let kinds: Vec<ActionKind> = specs.iter().map(|spec| spec.kind()).collect();
        assert_eq!(kinds, ActionKind::ALL, "each name written compiles to the variant of that kind");
        for rule in &rules.rulesets[0].rules {
            assert!(rule.actions.iter().all(|spec| spec.kind().side().planned_by() == rule.direction), "{}", rule.name);
        }
    }

    /// The docs list the actions by side (PagerDuty first, then Salesforce after a `;` in the
    /// README, in two bullets in the rules module's doc): each list must name exactly its side's.
    #[test]
    fn docs_list_every_action_on_its_side() {
        let named = |text: &str| -> Vec<ActionKind> {
            ActionKind::ALL.iter().copied().filter(|k| text.contains(&format!("`{}", k.name()))).collect()
        };
        let side =
            |side: Side| -> Vec<ActionKind> { ActionKind::ALL.iter().copied().filter(|k| k.side() == side).collect() };

        let readme = include_str!("../../../README.md");
        let list = readme.split_once("Actions: ").expect("README lists the actions").1;
        let list = list.split_once("\n\n").map_or(list, |(list, _)| list);
        let (pagerduty, salesforce) = list.split_once(';').expect("README separates the sides with ;");
        assert_eq!(named(pagerduty), side(Side::Pagerduty), "README, PagerDuty actions");
        assert_eq!(named(salesforce), side(Side::Salesforce), "README, Salesforce actions");

        let module = include_str!("mod.rs");
        let section = module.split_once("//! ## Actions").expect("rules doc has an Actions section").1;
        let section = section.split_once("//! ## ").map_or(section, |(s, _)| s);
        let pagerduty = section.split_once("//! - PagerDuty").expect("a PagerDuty bullet").1;
        let (pagerduty, salesforce) = pagerduty.split_once("//! - Salesforce").expect("a Salesforce bullet");
        assert_eq!(named(pagerduty), side(Side::Pagerduty), "rules doc, PagerDuty actions");
        assert_eq!(named(salesforce), side(Side::Salesforce), "rules doc, Salesforce actions");
    }
}
