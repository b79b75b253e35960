#!/usr/bin/env python3
"""Writes the bad-input corpus: malformed or hostile requests for each route, each with the statuses
it may get. Requests marked "sign" are signed by the test at run time (signatures over a timestamp
go stale), with the demo secrets. Run: python3 tests/corpus/generate.py
"""
import base64
import json
import pathlib
import shutil

HERE = pathlib.Path(__file__).resolve().parent

VALID_PD = {"event": {"id": "01CORPUS000000000000000001", "event_type": "incident.triggered", "resource_type": "incident",
                      "occurred_at": "2026-11-22T10:00:00.000Z", "agent": None, "client": None,
                      "data": {"id": "QCORPUS1", "type": "incident", "number": 1, "status": "triggered", "title": "t",
                               "urgency": "high", "service": {"id": "PSVC001", "type": "service_reference", "summary": "Customer"}}}}
VALID_SF = {"schema": 1, "org_id": "00D5g0000SIMORGEQ5", "object": "Case", "operation": "insert",
            "user": {"id": "0055g00000AGENTAAA", "username": "agent@example.com"}, "sent_at": "2026-11-22T10:00:00.000Z",
            "old": None, "new": {"5005g00000CORP1AAA": {"attributes": {"type": "Case", "url": "/x/5005g00000CORP1AAA"},
                                                        "Id": "5005g00000CORP1AAA", "Subject": "s", "Priority": "Low"}}}
OM_HEAD = ('<?xml version="1.0" encoding="UTF-8"?>\n<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
           'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body><notifications xmlns="http://soap.sforce.com/2005/09/outbound">'
           '<OrganizationId>{org}</OrganizationId><ActionId>04k000000000001AAA</ActionId><SessionId xsi:nil="true"/>'
           '<EnterpriseUrl>https://x.my.salesforce.com/services/Soap/c/62.0</EnterpriseUrl><PartnerUrl>https://x.my.salesforce.com/services/Soap/u/62.0</PartnerUrl>')
OM_NOTE = ('<Notification><Id>04l00000000{n:04d}AAA</Id><sObject xsi:type="sf:Case" xmlns:sf="urn:sobject.enterprise.soap.sforce.com">'
           '<sf:Id>5005g00000OM{n:04d}AA</sf:Id><sf:Subject>s</sf:Subject></sObject></Notification>')
OM_TAIL = '</notifications></soapenv:Body></soapenv:Envelope>'
ORG = "00D5g0000SIMORGEQ5"


def om(notes=1, org=ORG, extra=""):
    return OM_HEAD.format(org=org) + extra + "".join(OM_NOTE.format(n=i) for i in range(notes)) + OM_TAIL


def compact(v):
    return json.dumps(v, separators=(",", ":"))


def entry(name, body, expect, sign=None, headers=None, binary=False, pad=None, method=None, path=None, query=None,
          keeps=False, accepted=False):
    """`pad`: (char, count): the test replaces the first "@PAD@" in the body by count chars (keeps the corpus small).
    `method`, `path`, `query`: the request line (default: POST to the route, Outbound Messages with the right token;
    "@TOKEN@" in `query` is the right token). `keeps`: the payload is kept for review (one audit entry, nothing
    else). `accepted`: a valid request the bridge acts on (only its status is checked); every other request must
    change nothing at all: no store write, no PagerDuty or Salesforce call, nothing queued."""
    e = {"name": name, "expect": expect, "sign": sign, "headers": headers or {"content-type": "application/json"}}
    for k, v in [("method", method), ("path", path), ("query", query)]:
        if v is not None:
            e[k] = v
    if keeps:
        e["keeps"] = True
    if accepted:
        e["accepted"] = True
    if pad:
        e["pad"] = {"char": pad[0], "count": pad[1]}
    if binary:
        e["body_base64"] = base64.b64encode(body).decode()
    else:
        e["body"] = body
    return e


def pagerduty():
    valid = compact(VALID_PD)
    out = []
    # Authentication: refused, nothing else happens.
    out.append(entry("unsigned", valid, [401]))
    for i, header in enumerate(["", "v1=", "v1=zz", "v2=" + "a" * 64, "sha256=" + "a" * 64, "v1=" + "0" * 64,
                                "v1=" + "a" * 63, "v1=" + "a" * 65, "v1=" + "g" * 64, ",,,", "v1=" + "a" * 10000,
                                "V1=" + "a" * 64, "v1 = " + "a" * 64, "\u00e9\u00e9"]):
        out.append(entry(f"bad-signature-header-{i:02d}", valid, [401], headers={"content-type": "application/json", "x-pagerduty-signature": header}))
    out.append(entry("signature-for-another-body", valid, [401], sign="pagerduty-other-body"))
    out.append(entry("signature-with-unknown-secret", valid, [401], sign="pagerduty-unknown-secret"))
    out.append(entry("empty-body-signed", "", [401], sign="pagerduty"))
    # Signed but malformed: acknowledged (2xx) and kept for review.
    for cut in [1, 5, 17, 40, 80, 120, 200, len(valid) - 1]:
        out.append(entry(f"truncated-json-at-{cut}", valid[:cut], [202], sign="pagerduty"))
    wrong_types = {
        "event-is-a-string": {"event": "x"},
        "event-is-null": {"event": None},
        "no-event": {"evnt": {}},
        "id-is-a-number": {"event": dict(VALID_PD["event"], id=42)},
        "event-type-is-a-list": {"event": dict(VALID_PD["event"], event_type=["incident.triggered"])},
        "occurred-at-is-not-a-time": {"event": dict(VALID_PD["event"], occurred_at="yesterday")},
        "occurred-at-missing": {"event": {k: v for k, v in VALID_PD["event"].items() if k != "occurred_at"}},
        "top-level-array": [VALID_PD],
        "top-level-number": 7,
        "top-level-string": "event",
    }
    for name, value in wrong_types.items():
        out.append(entry(f"wrong-type-{name}", compact(value), [202], sign="pagerduty"))
    out.append(entry("deep-nesting", "[" * 20000 + "]" * 20000, [202], sign="pagerduty"))
    out.append(entry("deep-nesting-in-data", compact({"event": dict(VALID_PD["event"], data=json.loads("[" * 500 + "]" * 500))}), [202], sign="pagerduty"))
    out.append(entry("invalid-utf8", b'{"event": {"id": "\xff\xfe", "event_type": "x"}}', [202], sign="pagerduty", binary=True))
    out.append(entry("nul-bytes", '{"event":\u0000{}}', [202], sign="pagerduty"))
    out.append(entry("one-megabyte-title", compact({"event": dict(VALID_PD["event"], id="01CORPUSBIG", data=dict(VALID_PD["event"]["data"], title="@PAD@"))}), [200], sign="pagerduty", pad=("x", 1_000_000), accepted=True))
    out.append(entry("one-megabyte-garbage", "@PAD@", [202], sign="pagerduty", pad=("z", 1_048_576)))
    out.append(entry("signed-whitespace-only", "   \n\t ", [202], sign="pagerduty"))
    out.append(entry("replayed-delivery", valid, [200], sign="pagerduty", accepted=True))
    # Authentic but not ours to act on: 2xx, never 4xx.
    for i, event_type in enumerate(["incident.workflow.started", "incident.custom_field_values.updated", "service.created",
                                    "service.deleted", "incident.conference_bridge.updated", "incident.responder.replied",
                                    "something.new.tomorrow", "", "pagey.ping", "incident.status_update_published"]):
        e = dict(VALID_PD["event"], id=f"01CORPUSTYPE{i:02d}", event_type=event_type, resource_type=event_type.split(".")[0] or "x",
                 data={"id": f"PX{i}", "type": "thing"})
        # Audited as skipped (an empty type cannot be read: kept for review).
        out.append(entry(f"authentic-unhandled-{i:02d}", compact({"event": e}), [202] if not event_type else [200],
                         sign="pagerduty", accepted=bool(event_type)))
    out.append(entry("wrong-content-type-signed", valid, [200], sign="pagerduty", headers={"content-type": "text/plain"}, accepted=True))
    out.append(entry("form-encoded-signed", "event=1&id=2", [202], sign="pagerduty", headers={"content-type": "application/x-www-form-urlencoded"}, keeps=True))
    out.append(entry("xml-signed", "<event><id>1</id></event>", [202], sign="pagerduty", headers={"content-type": "application/xml"}, keeps=True))
    out.append(entry("bom-prefixed-signed", "\ufeff" + valid, [202], sign="pagerduty", keeps=True))
    out.append(entry("duplicate-keys-signed", '{"event":{"id":"a","id":"b","event_type":"incident.triggered"}}', [202], sign="pagerduty", keeps=True))
    out.append(entry("huge-number-signed", '{"event":{"id":"n","number":1e999999}}', [202], sign="pagerduty", keeps=True))
    out.append(entry("note-without-incident", compact({"event": dict(VALID_PD["event"], id="01CORPUSNOTE", event_type="incident.annotated",
                                                                      data={"type": "incident_note", "content": "x"})}), [200], sign="pagerduty", accepted=True))
    # Identifiers that cannot be keys (DynamoDB refuses keys over 2,048 bytes): kept for review, never "deliver again".
    long_id = compact({"event": dict(VALID_PD["event"], id="E" * 3000)})
    out.append(entry("event-id-3000-characters", long_id, [202], sign="pagerduty", keeps=True))
    long_incident = compact({"event": dict(VALID_PD["event"], data=dict(VALID_PD["event"]["data"], id="Q" * 3000))})
    out.append(entry("incident-id-3000-characters", long_incident, [202], sign="pagerduty", keeps=True))
    out.append(entry("incident-id-with-a-path", compact({"event": dict(VALID_PD["event"], data=dict(VALID_PD["event"]["data"], id="Q1/../../admin"))}), [202], sign="pagerduty", keeps=True))
    out.append(entry("webhook-id-header-100k-unparseable-body", "{", [202], sign="pagerduty", keeps=True,
                     headers={"content-type": "application/json", "x-webhook-id": "w" * 100_000}))
    out.append(entry("empty-body-signed", "", [401], sign="pagerduty"))
    # Methods and paths the function does not serve: refused before anything is read.
    for method in ["GET", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]:
        out.append(entry(f"method-{method.lower()}", valid, [405], sign="pagerduty", method=method))
    for i, path in enumerate(["/admin", "/", "/pagerduty/webhook/", "/pagerduty/webhook/x", "/pagerduty", "/salesforce/records", "/PAGERDUTY/WEBHOOK"]):
        out.append(entry(f"path-{i:02d}", valid, [404], sign="pagerduty", path=path))
    return out


def salesforce_records():
    valid = compact(VALID_SF)
    out = []
    out.append(entry("no-auth", valid, [401]))
    out.append(entry("signature-without-timestamp", valid, [401], headers={"content-type": "application/json", "x-pdsync-signature": "v1=" + "a" * 64}))
    for i, ts in enumerate(["", "abc", "1e10", "-1", "99999999999999999999", "0x10", " ", "1.5"]):
        out.append(entry(f"bad-timestamp-{i:02d}", valid, [401], sign=f"salesforce-timestamp:{ts}"))
    out.append(entry("stale-timestamp", valid, [401], sign="salesforce-stale"))
    out.append(entry("future-timestamp", valid, [401], sign="salesforce-future"))
    out.append(entry("signature-for-another-body", valid, [401], sign="salesforce-other-body"))
    out.append(entry("signature-with-unknown-secret", valid, [401], sign="salesforce-unknown-secret"))
    for i, header in enumerate(["", "v1=", "v1=zz", "v2=" + "a" * 64, "v1=" + "a" * 5000, "\u00e9"]):
        out.append(entry(f"bad-signature-header-{i:02d}", valid, [401], sign=f"salesforce-header:{header}"))
    for i, bearer in enumerate(["Bearer", "Bearer ", "Bearer wrong", "Basic ZGVtbzpkZW1v", "bearer", "Token token=x"]):
        out.append(entry(f"bad-bearer-{i:02d}", valid, [401], headers={"content-type": "application/json", "authorization": bearer}))
    for cut in [1, 9, 30, 60, 100, 150, len(valid) - 1]:
        out.append(entry(f"truncated-json-at-{cut}", valid[:cut], [400], sign="salesforce"))
    wrong = {
        "schema-2": dict(VALID_SF, schema=2),
        "schema-missing": {k: v for k, v in VALID_SF.items() if k != "schema"},
        "object-is-a-number": dict(VALID_SF, object=7),
        "operation-delete": dict(VALID_SF, operation="delete"),
        "new-is-a-list": dict(VALID_SF, new=[VALID_SF["new"]["5005g00000CORP1AAA"]]),
        "new-is-a-single-record": dict(VALID_SF, new=VALID_SF["new"]["5005g00000CORP1AAA"]),
        "new-is-null": dict(VALID_SF, new=None),
        "update-without-old": dict(VALID_SF, operation="update", old=None),
        "update-with-old-missing-the-record": dict(VALID_SF, operation="update", old={}),
        "id-mismatch": dict(VALID_SF, new={"5005g00000OTHERAAA": VALID_SF["new"]["5005g00000CORP1AAA"]}),
        "type-mismatch": dict(VALID_SF, object="Account"),
        "record-without-attributes": dict(VALID_SF, new={"5005g00000CORP1AAA": {"Id": "5005g00000CORP1AAA"}}),
        "malformed-record-id": dict(VALID_SF, new={"not-an-id": dict(VALID_SF["new"]["5005g00000CORP1AAA"], Id="not-an-id")}),
        "top-level-array": [VALID_SF],
        "top-level-null": None,
        "user-is-a-string": dict(VALID_SF, user="agent"),
        "sent-at-garbage": dict(VALID_SF, sent_at="soon"),
    }
    for name, value in wrong.items():
        out.append(entry(f"wrong-{name}", compact(value), [400], sign="salesforce"))
    many = {f"5005g0000{i:05d}AAA"[:18]: dict(VALID_SF["new"]["5005g00000CORP1AAA"], Id=f"5005g0000{i:05d}AAA"[:18]) for i in range(201)}
    out.append(entry("201-records", compact(dict(VALID_SF, new=many)), [400], sign="salesforce"))
    out.append(entry("deep-nesting", "[" * 20000 + "]" * 20000, [400], sign="salesforce"))
    out.append(entry("invalid-utf8", b'{"schema": 1, "object": "\xff"}', [400], sign="salesforce", binary=True))
    out.append(entry("one-megabyte-garbage", "@PAD@", [400], sign="salesforce", pad=("y", 1_048_576)))
    out.append(entry("one-megabyte-field", compact(dict(VALID_SF, new={"5005g00000CORP1AAA": dict(VALID_SF["new"]["5005g00000CORP1AAA"], Description="@PAD@")})), [200], sign="salesforce", pad=("d", 1_000_000), accepted=True))
    out.append(entry("signed-whitespace-only", "  ", [400], sign="salesforce"))
    out.append(entry("replayed-post", valid, [200], sign="salesforce", accepted=True))
    # Org ids compare exactly (15 characters, the 18-character suffix a checksum), never by prefix.
    for i, org in enumerate(["00D5g0000SIMORGNNN", "00D5g0000SIMORGEQ5X", "00D5g0000SIMORGEQ5-anything", "00d5g0000SIMORG",
                             "00D5g0000SIMORGEQ6", "00D5g0000SIMORGE", "00D5g0000SIMOR\u00e9"]):
        out.append(entry(f"org-look-alike-{i:02d}", compact(dict(VALID_SF, org_id=org)), [403], sign="salesforce"))
    for method in ["GET", "PUT", "DELETE", "PATCH"]:
        out.append(entry(f"method-{method.lower()}", valid, [405], sign="salesforce", method=method))
    for i, path in enumerate(["/admin", "/salesforce", "/salesforce/records/", "/salesforce/records/../admin", "/pagerduty/webhook"]):
        out.append(entry(f"path-{i:02d}", valid, [404], sign="salesforce", path=path))
    out.append(entry("wrong-content-type", valid, [415], sign="salesforce", headers={"content-type": "text/plain"}))
    out.append(entry("xml-content-type", valid, [415], sign="salesforce", headers={"content-type": "application/xml"}))
    out.append(entry("other-org", compact(dict(VALID_SF, org_id="00D000000000009AAA")), [403], sign="salesforce"))
    out.append(entry("empty-body-signed", "", [400], sign="salesforce"))
    return out


def outbound():
    xml = {"content-type": "text/xml; charset=utf-8"}
    out = []
    # The endpoint URL's token is the credential (the OrganizationId is no secret).
    for i, query in enumerate(["", "token=", "token=wrong", "token=@TOKEN@x", "Token=@TOKEN@", "tok=@TOKEN@",
                               "token=" + "a" * 5000, "token=%00"]):
        out.append(entry(f"token-{i:02d}", om(), [401], headers=xml, query=query))
    for method in ["GET", "PUT", "DELETE"]:
        out.append(entry(f"method-{method.lower()}", om(), [405], headers=xml, method=method))
    for i, path in enumerate(["/salesforce/outbound-message/", "/salesforce/outbound-message/@TOKEN@", "/admin"]):
        out.append(entry(f"path-{i:02d}", om(), [404], headers=xml, path=path))
    for i, org in enumerate(["00D5g0000SIMORGNNN", "00D5g0000SIMORGEQ5X", "00d5g0000SIMORG", "00D5g0000SIMORGEQ6"]):
        out.append(entry(f"org-look-alike-{i:02d}", om(org=org), [403], headers=xml))
    out.append(entry("other-org", om(org="00D000000000009AAA"), [403], headers=xml))
    out.append(entry("org-id-too-short", om(org="00D"), [403], headers=xml))
    out.append(entry("org-id-multibyte", om(org="00D\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9"), [403], headers=xml))
    xxe = '<?xml version="1.0"?><!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>' + om().split("?>", 1)[1].replace("<sf:Subject>s</sf:Subject>", "<sf:Subject>&xxe;</sf:Subject>")
    out.append(entry("xxe-external-entity", xxe, [400], headers=xml))
    laughs = '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>' + om().split("?>", 1)[1]
    out.append(entry("billion-laughs", laughs, [400], headers=xml))
    out.append(entry("doctype-only", '<?xml version="1.0"?><!DOCTYPE x>' + om().split("?>", 1)[1], [400], headers=xml))
    out.append(entry("parameter-entity", '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY % p SYSTEM "http://127.0.0.1/x"> %p;]>' + om().split("?>", 1)[1], [400], headers=xml))
    full = om()
    for cut in [1, 10, 50, 100, 200, 300, 400, 500, 600, len(full) - 20, len(full) - 1]:
        out.append(entry(f"truncated-at-{cut}", full[:cut], [400], headers=xml))
    out.append(entry("not-xml", "hello", [400], headers=xml))
    out.append(entry("json-body", compact(VALID_SF), [400], headers={"content-type": "application/json"}))
    out.append(entry("empty-body", "", [400], headers=xml))
    out.append(entry("no-body-element", '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"></soapenv:Envelope>', [400], headers=xml))
    out.append(entry("no-notifications-element", '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body/></soapenv:Envelope>', [400], headers=xml))
    out.append(entry("missing-organization-id", om().replace(f"<OrganizationId>{ORG}</OrganizationId>", ""), [400], headers=xml))
    out.append(entry("empty-organization-id", om(org=""), [400], headers=xml))
    out.append(entry("101-notifications", om(notes=101), [400], headers=xml))
    out.append(entry("deep-nesting", OM_HEAD.format(org=ORG) + "<a>" * 10000 + "</a>" * 10000 + OM_TAIL, [400], headers=xml))
    out.append(entry("invalid-utf8", (om()[:300]).encode() + b"\xff\xfe" + om()[300:].encode(), [400], headers=xml, binary=True))
    out.append(entry("one-megabyte-field", om().replace("<sf:Subject>s</sf:Subject>", "<sf:Subject>@PAD@</sf:Subject>"), [200], headers=xml, pad=("s", 1_000_000), accepted=True))
    out.append(entry("five-megabytes", om().replace("<sf:Subject>s</sf:Subject>", "<sf:Subject>@PAD@</sf:Subject>"), [400], headers=xml, pad=("s", 5_000_000)))
    out.append(entry("mismatched-tags", om().replace("</sObject>", "</sobject>"), [400], headers=xml))
    out.append(entry("unclosed-cdata", om().replace("<sf:Subject>s</sf:Subject>", "<sf:Subject><![CDATA[s</sf:Subject>"), [400], headers=xml))
    out.append(entry("processing-instruction", om().replace("<soapenv:Body>", "<?evil data?><soapenv:Body>"), [200], headers=xml, accepted=True))
    out.append(entry("notification-without-id", om().replace("<Id>04l000000000000AAA</Id>", ""), [400], headers=xml))
    out.append(entry("notification-without-sobject", OM_HEAD.format(org=ORG) + "<Notification><Id>04l000000000777AAA</Id></Notification>" + OM_TAIL, [400], headers=xml))
    out.append(entry("sobject-without-type", om().replace(' xsi:type="sf:Case"', ""), [400], headers=xml))
    out.append(entry("entity-reference-amp", om().replace("<sf:Subject>s</sf:Subject>", "<sf:Subject>a &amp; b</sf:Subject>"), [200], headers=xml, accepted=True))
    out.append(entry("unknown-entity", om().replace("<sf:Subject>s</sf:Subject>", "<sf:Subject>&nbsp;</sf:Subject>"), [400], headers=xml))
    out.append(entry("numeric-character-reference", om().replace("<sf:Subject>s</sf:Subject>", "<sf:Subject>&#65;&#x42;</sf:Subject>"), [200], headers=xml, accepted=True))
    out.append(entry("huge-character-reference", om().replace("<sf:Subject>s</sf:Subject>", "<sf:Subject>&#99999999999;</sf:Subject>"), [400], headers=xml))
    out.append(entry("wrong-envelope-namespace", om().replace("http://schemas.xmlsoap.org/soap/envelope/", "http://example.com/x"), [200], headers=xml, accepted=True))
    out.append(entry("soap-fault-posted-to-us", '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body><soapenv:Fault><faultcode>x</faultcode></soapenv:Fault></soapenv:Body></soapenv:Envelope>', [400], headers=xml))
    out.append(entry("utf16-declared", om().replace('encoding="UTF-8"', 'encoding="UTF-16"'), [200], headers=xml, accepted=True))
    out.append(entry("latin1-bytes", om().replace("<sf:Subject>s</sf:Subject>", "<sf:Subject>caf\u00e9</sf:Subject>").encode("latin-1"), [400], headers=xml, binary=True))
    out.append(entry("bom-prefixed", "\ufeff" + om(), [200], headers=xml, accepted=True))
    out.append(entry("comment-inside", om().replace("<sf:Subject>s</sf:Subject>", "<sf:Subject>s<!-- c --></sf:Subject>"), [200], headers=xml, accepted=True))
    out.append(entry("attribute-bomb", om().replace("<Notification>", "<Notification " + " ".join(f'a{i}="x"' for i in range(5000)) + ">", 1), [200], headers=xml, accepted=True))
    out.append(entry("many-fields", om().replace("<sf:Subject>s</sf:Subject>", "".join(f"<sf:F{i}__c>v</sf:F{i}__c>" for i in range(3000))), [200], headers=xml, accepted=True))
    for i, ctype in enumerate(["application/json", "text/plain", "", "multipart/form-data; boundary=x", "application/soap+xml"]):
        out.append(entry(f"content-type-{i}", "garbage " * 10, [400], headers={"content-type": ctype} if ctype else {}))
    for i in range(8):
        body = om().replace("<sf:Subject>s</sf:Subject>", "<sf:Subject>" + "<" * (i + 1) + "</sf:Subject>")
        out.append(entry(f"stray-angle-brackets-{i}", body, [400], headers=xml))
    return out


def pagerduty_kept(entries):
    """A signed delivery that cannot be used is answered 202 and kept for review (a 4xx would make
    PagerDuty drop it and, repeated, disable the subscription)."""
    for e in entries:
        if e["expect"] == [202]:
            e["keeps"] = True
    return entries


def outbound_kept(entries):
    """An authentic Outbound Message (right token, right org) that cannot be used is acknowledged and kept
    for review: a fault would only make Salesforce send the same bytes again for 24 hours."""
    for e in entries:
        if e["expect"] == [400]:
            e["expect"], e["keeps"] = [200], True
    return entries


def main():
    total = 0
    for route, entries in [("pagerduty-webhook", pagerduty_kept(pagerduty())), ("salesforce-records", salesforce_records()),
                           ("salesforce-outbound-message", outbound_kept(outbound()))]:
        folder = HERE / route
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
        for i, e in enumerate(entries):
            (folder / f"{i:03d}-{e['name']}.json").write_text(json.dumps(e) + "\n")
        print(f"{route}: {len(entries)} requests")
        total += len(entries)
    print(total, "in all")


if __name__ == "__main__":
    main()
