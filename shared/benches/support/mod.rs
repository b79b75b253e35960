//! What the benches share: the 100-rule document of mixed conditions.

use std::fmt::Write;

/// 100 rules: half per direction, with text, regex, list, numeric/date and change conditions.
pub fn hundred_rules() -> String {
    let mut doc = String::from("rulesets:\n");
    for set in 0..4 {
        writeln!(doc, "  - name: set-{set}\n    rules:").unwrap();
        for i in 0..25 {
            let n = set * 25 + i;
            let rule = match n % 4 {
                0 => format!(
                    "      - {{name: r{n}, direction: salesforce_to_pagerduty, object: Case, match: all, conditions: [{{field: Priority, operator: in, value: [Sev1, Critical]}}, {{field: Subject, operator: matches, value: 'down|fail{n}'}}, {{field: Account.Name, operator: starts_with, value: Acme}}], actions: [{{create_incident: {{service: PSVC{n}, urgency: high, title: {{prefix: '[Sev1] ', fields: [CaseNumber, Subject]}}}}}}]}}"
                ),
                1 => format!(
                    "      - {{name: r{n}, direction: salesforce_to_pagerduty, object: Case, match: any, conditions: [{{field: Status, operator: changed_to, value: Closed}}, {{field: CreatedDate, operator: greater_than, value: '2026-01-01T00:00:00Z'}}, {{field: Amount, operator: less_than, value: {n}}}], actions: [resolve, {{add_note: {{content: 'Case {{{{record.CaseNumber}}}} changed'}}}}]}}"
                ),
                2 => format!(
                    "      - {{name: r{n}, direction: pagerduty_to_salesforce, object: Case, conditions: [{{field: pagerduty.event_type, operator: equals, value: acknowledge}}, {{field: pagerduty.service_name, operator: contains, value: support}}], actions: [{{set_fields: {{Status: Working, Url{n}__c: '{{{{incident.html_url}}}}'}}}}]}}"
                ),
                _ => format!(
                    "      - {{name: r{n}, direction: pagerduty_to_salesforce, object: Case, match: any, conditions: [{{field: pagerduty.urgency, operator: equals, value: high}}, {{field: Status, operator: not_in, value: [Closed, Solved]}}], actions: [{{add_case_comment: {{body: '{{{{incident.title}}}}'}}}}]}}"
                ),
            };
            writeln!(doc, "{rule}").unwrap();
        }
    }
    doc
}
