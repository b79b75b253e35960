#!/usr/bin/env python3
"""Writes the samples of the Case changes that publish a status update and set an incident
custom field (events/sfdc-to-pd/case-update-customer-notified.json and
case-update-customer-impact.json), for the demo Case of generate.py between its priority change
and its close. Only these files are written (generate.py's own samples are left as they are):

    python3 events/case_actions.py
"""
import json

import generate as g

SUBJECT = "Checkout fails for all EU customers"


def demo_case(status, modified, **extra):
    return g.case(g.CASE_1, "00001026", SUBJECT, "Sev2", status, modified, **extra)


def case_action_events():
    # The Case as case-update-priority left it (Sev2, Working, at T0 + 300).
    working = demo_case("Working", g.T0 + 300)
    notified = demo_case("Customer notified", g.T0 + 600)
    impact = demo_case("Customer notified", g.T0 + 700, Customer_Impact__c="EU checkout down; card payments fail")
    return {
        "case-update-customer-notified": g.sf_request(g.post("Case", "update", [notified], [working])),
        "case-update-customer-impact": g.sf_request(g.post("Case", "update", [impact], [notified])),
    }


def main():
    out = g.HERE / "sfdc-to-pd"
    events = case_action_events()
    for name, event in events.items():
        (out / f"{name}.json").write_text(json.dumps(event, indent=2) + "\n")
    print("wrote", len(events), "Case change samples")


if __name__ == "__main__":
    main()
