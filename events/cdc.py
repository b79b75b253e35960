#!/usr/bin/env python3
"""Writes the Change Data Capture samples (events/sfdc-to-pd/cdc-*.json): EventBridge events as
Salesforce Event Relay puts them on the partner event bus, for the demo org of generate.py. Only
these files are written (generate.py's own samples are left as they are):

    python3 events/cdc.py

A change event carries the changed fields only and never old values; the bridge judges
`changed_to` rules against what it saw last of the record (the create before the update here).
"""
import json

import generate as g

CHANNEL_ID = "0YLRM0000004CbH4AU"
CASE_A = "5005g00000CDCA1AAP"
CASE_B = "5005g00000CDCB1AAP"
CASE_C = "5005g00000CDCC1AAP"
USER_ID = "0055g00000AGENTAAA"  # a person in the org, not the integration user


def change_event(change_type, ids, commit_s, tx, seq, fields, changed=(), nulled=(), origin=None):
    header = {
        "entityName": "Case",
        "recordIds": list(ids),
        "changeType": change_type,
        "changeOrigin": origin or "com/salesforce/api/soap/62.0;client=SfdcInternalAPI/",
        "transactionKey": tx,
        "sequenceNumber": seq,
        "commitTimestamp": commit_s * 1000 + 123,
        "commitNumber": 10_979_368_000_000 + commit_s % 100_000,
        "commitUser": USER_ID,
        "nulledFields": list(nulled),
        "diffFields": [],
        "changedFields": list(changed),
    }
    payload = dict(fields)
    payload["ChangeEventHeader"] = header
    return {
        "version": "0",
        "id": f"{tx[:8]}-cdc0-4000-8000-{seq:012d}",
        "detail-type": "CaseChangeEvent",
        "source": f"aws.partner/salesforce.com/{g.ORG_ID}/{CHANNEL_ID}",
        "account": "123456789012",
        "time": g.iso(commit_s).replace(".000Z", "Z"),
        "region": "eu-west-1",
        "resources": [],
        "detail": {"payload": payload, "schemaId": "I8b-dYxvxs5wOtCBr4qsew", "id": f"9a1f{seq:04d}-{tx[9:]}"},
    }


def new_case(number, subject):
    return {
        "Subject": subject, "Priority": "Sev1", "Status": "New", "Origin": "Web", "CaseNumber": number,
        "Description": "Customers report failed payments since 11:00.",
        "AccountId": "0015g00000ACMEAAA", "OwnerId": USER_ID, "CreatedById": USER_ID, "LastModifiedById": USER_ID,
        "CreatedDate": g.iso(g.T0 + 3600), "LastModifiedDate": g.iso(g.T0 + 3600),
    }


def cdc_events():
    t = g.T0 + 3600
    return {
        "cdc-create": change_event("CREATE", [CASE_A], t, "0005e192-9e62-2554-3880-3c3718bd6301", 1,
                                   new_case("00001101", "Payments fail for card customers")),
        "cdc-update": change_event("UPDATE", [CASE_A], t + 600, "0005e192-9e62-2554-3880-3c3718bd6302", 1,
                                   {"Status": "Closed", "LastModifiedDate": g.iso(t + 600)},
                                   changed=["Status", "LastModifiedDate"]),
        "cdc-multi-record": change_event("CREATE", [CASE_B, CASE_C], t + 60, "0005e192-9e62-2554-3880-3c3718bd6303", 1,
                                         new_case("00001102", "Payments fail: bulk-created Case")),
        "cdc-delete": change_event("DELETE", [CASE_B], t + 900, "0005e192-9e62-2554-3880-3c3718bd6304", 1, {}),
        "cdc-gap": change_event("GAP_UPDATE", [CASE_C], t + 1200, "0005e192-9e62-2554-3880-3c3718bd6305", 1, {}),
    }


def main():
    out = g.HERE / "sfdc-to-pd"
    events = cdc_events()
    for name, event in events.items():
        (out / f"{name}.json").write_text(json.dumps(event, indent=2) + "\n")
    print("wrote", len(events), "change events")


if __name__ == "__main__":
    main()
