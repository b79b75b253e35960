#!/usr/bin/env python3
"""Writes the sample events in events/: API Gateway HTTP API (v2) requests for every route and
payload, and SQS events for the retry function. Run it again after changing a payload:

    python3 events/generate.py

The requests are signed with the demo secrets below, which `make run` configures. Salesforce posts
carry a timestamp (replay protection refuses one more than 5 minutes old); the demo re-signs them
with the current time before replaying, and so does `make invoke-watch` (this script's --resign,
which prints one sample signed now). For sam local invoke, run this script again (it signs them
with the current time).
"""
import base64
import copy
import hashlib
import hmac
import json
import pathlib
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent

# Demo configuration (also in tests/src/demo.rs). Not secrets of any real system.
WEBHOOK_SECRET = "demo-webhook-secret-current"
WEBHOOK_SECRET_PREVIOUS = "demo-webhook-secret-previous"
INBOUND_SECRET = "demo-inbound-secret"
OUTBOUND_MESSAGE_TOKEN = "demo-outbound-message-token-0123456789abcdef"  # the endpoint URL's ?token=
ORG_ID = "00D5g0000SIMORGEQ5"  # the demo org (the Outbound Message sample's made-up id is replaced by it)
SAMPLE_ORG_ID = "0123456789ABCDE"  # the 15 characters of the sample's made-up org id
SUBSCRIPTION_ID = "PSUB0DEMO"
SERVICE = {"id": "PSVC001", "summary": "Customer Support", "type": "service_reference"}
EP = {"id": "PEP0001", "summary": "Support On-Call", "type": "escalation_policy_reference"}
AGENT = {"id": "PUSR002", "summary": "Demo Responder", "type": "user_reference"}  # not the bridge (PUSR001)
T0 = 1795341600  # 2026-11-22T10:00:00Z


def iso(ts, ms=0):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + ".%03dZ" % ms


def sf_time(ts):
    return time.strftime("%Y-%m-%dT%H:%M:%S.000+0000", time.gmtime(ts))


def apigw(route, body, headers, query=""):
    """An API Gateway HTTP API payload v2.0 request, as the Lambda receives it."""
    method, path = route.split(" ", 1)
    all_headers = {
        "content-length": str(len(body.encode())),
        "host": "abc123.execute-api.us-east-1.amazonaws.com",
        "x-amzn-trace-id": "Root=1-6740b2e0-0123456789abcdef01234567",
        "x-forwarded-for": "203.0.113.10",
        "x-forwarded-port": "443",
        "x-forwarded-proto": "https",
    }
    all_headers.update(headers)
    return {
        "version": "2.0",
        "routeKey": route,
        "rawPath": path,
        "rawQueryString": query,
        "headers": all_headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abc123",
            "domainName": "abc123.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "abc123",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "203.0.113.10",
                "userAgent": headers.get("user-agent", "demo"),
            },
            "requestId": "demo-" + hashlib.sha1(body.encode()).hexdigest()[:12],
            "routeKey": route,
            "stage": "$default",
            "time": "22/Nov/2026:10:00:00 +0000",
            "timeEpoch": T0 * 1000,
        },
        "body": body,
        "isBase64Encoded": False,
    }


# ---------- PagerDuty → Salesforce ----------

def pd_signature(body, *secrets):
    return ",".join(
        "v1=" + hmac.new(s.encode(), body.encode(), hashlib.sha256).hexdigest() for s in secrets
    )


def incident(incident_id, number, status, title, urgency="high", priority=None):
    return {
        "id": incident_id,
        "type": "incident",
        "self": f"https://api.pagerduty.com/incidents/{incident_id}",
        "html_url": f"https://demo.pagerduty.com/incidents/{incident_id}",
        "number": number,
        "status": status,
        "incident_key": f"demo-{incident_id.lower()}",
        "created_at": iso(T0),
        "title": title,
        "service": dict(SERVICE, self=f"https://api.pagerduty.com/services/{SERVICE['id']}",
                        html_url=f"https://demo.pagerduty.com/services/{SERVICE['id']}"),
        "assignees": [] if status == "resolved" else [dict(AGENT)],
        "escalation_policy": dict(EP),
        "teams": [],
        "priority": priority,
        "urgency": urgency,
        "conference_bridge": None,
        "resolve_reason": None,
    }


def delivery(event_id, event_type, occurred, data, resource_type="incident"):
    return {
        "event": {
            "id": event_id,
            "event_type": event_type,
            "resource_type": resource_type,
            "occurred_at": occurred,
            "agent": dict(AGENT, self=f"https://api.pagerduty.com/users/{AGENT['id']}"),
            "client": None,
            "data": data,
        }
    }


def pd_request(payload, webhook_id, secrets=(WEBHOOK_SECRET,), body=None, signature=None):
    body = body if body is not None else json.dumps(payload, separators=(",", ":"))
    headers = {
        "content-type": "application/json",
        "user-agent": "PagerDuty-Webhook/V3.0",
        "x-webhook-id": webhook_id,
        "x-webhook-subscription": SUBSCRIPTION_ID,
    }
    sig = signature if signature is not None else pd_signature(body, *secrets)
    if sig:
        headers["x-pagerduty-signature"] = sig
    return apigw("POST /pagerduty/webhook", body, headers)


def pd_events():
    inc = "Q1DEMOINC00001"
    title = "Checkout API latency above 2s"
    triggered = delivery("01DEMOEVT0000000000000001", "incident.triggered", iso(T0),
                         incident(inc, 101, "triggered", title))
    acknowledged = delivery("01DEMOEVT0000000000000002", "incident.acknowledged", iso(T0 + 60),
                            incident(inc, 101, "acknowledged", title))
    note = delivery("01DEMOEVT0000000000000003", "incident.annotated", iso(T0 + 120), {
        "incident": {"id": inc, "type": "incident_reference",
                     "self": f"https://api.pagerduty.com/incidents/{inc}",
                     "html_url": f"https://demo.pagerduty.com/incidents/{inc}", "summary": title},
        "id": "PNOTE01", "content": "Rolled back the 10:02 deploy of checkout-api; latency recovering.",
        "trimmed": False, "type": "incident_note"})
    status_update = delivery("01DEMOEVT0000000000000006", "incident.status_update_published", iso(T0 + 150), {
        "incident": {"id": inc, "type": "incident_reference",
                     "self": f"https://api.pagerduty.com/incidents/{inc}",
                     "html_url": f"https://demo.pagerduty.com/incidents/{inc}", "summary": title},
        "id": "PSTU001", "message": "Checkout latency is back under 500 ms after the rollback; we are watching error rates. Next update at 10:30 UTC.",
        "trimmed": False, "type": "incident_status_update"})
    priority = delivery("01DEMOEVT0000000000000004", "incident.priority_updated", iso(T0 + 180),
                        incident(inc, 101, "acknowledged", title,
                                 priority={"id": "PPRI001", "type": "priority_reference", "summary": "P1"}))
    resolved = delivery("01DEMOEVT0000000000000005", "incident.resolved", iso(T0 + 600),
                        incident(inc, 101, "resolved", title))
    inc2 = "Q1DEMOINC00002"
    title2 = "Payment webhooks failing"
    ooo_trigger = delivery("01DEMOEVT0000000000000011", "incident.triggered", iso(T0 + 1000),
                           incident(inc2, 102, "triggered", title2))
    ooo_resolved = delivery("01DEMOEVT0000000000000013", "incident.resolved", iso(T0 + 1300),
                            incident(inc2, 102, "resolved", title2))
    ooo_ack = delivery("01DEMOEVT0000000000000012", "incident.acknowledged", iso(T0 + 1060),
                       incident(inc2, 102, "acknowledged", title2))
    # A type PagerDuty may add later (not one of its documented types): acknowledged and audited.
    unknown = delivery("01DEMOEVT0000000000000021", "incident.postmortem.published", iso(T0 + 700), {
        "id": "PPMR001", "type": "incident_postmortem",
        "incident": {"id": inc, "type": "incident_reference"}})
    ping = json.loads((HERE.parent.parent / "shared/samples/pagerduty-webhooks-v3/aldaviva-pagey.ping.json")
                      .read_text(encoding="utf-8-sig")) if (HERE.parent.parent / "shared/samples").exists() else \
        {"event": {"id": "01DEMOPING00000000000000001", "event_type": "pagey.ping", "resource_type": "pagey",
                   "occurred_at": iso(T0), "agent": None, "client": None, "data": {"message": "Hello from your friend Pagey!", "type": "ping"}}}
    other_body = json.dumps(resolved, separators=(",", ":"))
    return {
        "incident-triggered": pd_request(triggered, "wh-demo-0001"),
        "incident-acknowledged": pd_request(acknowledged, "wh-demo-0002"),
        "incident-annotated": pd_request(note, "wh-demo-0003"),
        "incident-status-update-published": pd_request(status_update, "wh-demo-0006"),
        "incident-priority-updated": pd_request(priority, "wh-demo-0004"),
        "incident-resolved": pd_request(resolved, "wh-demo-0005"),
        "duplicate-incident-acknowledged": pd_request(acknowledged, "wh-demo-0002"),
        "out-of-order-1-triggered": pd_request(ooo_trigger, "wh-demo-0011"),
        "out-of-order-2-resolved": pd_request(ooo_resolved, "wh-demo-0013"),
        "out-of-order-3-acknowledged-late": pd_request(ooo_ack, "wh-demo-0012"),
        "unknown-event-type": pd_request(unknown, "wh-demo-0021"),
        "ping": pd_request(ping, "wh-demo-ping"),
        "rotated-secret": pd_request(acknowledged, "wh-demo-0002r", secrets=(WEBHOOK_SECRET_PREVIOUS,)),
        "two-signatures-during-rotation": pd_request(acknowledged, "wh-demo-0002s",
                                                     secrets=("an-unknown-new-secret", WEBHOOK_SECRET)),
        "bad-signature": pd_request(triggered, "wh-demo-bad",
                                    signature=pd_signature(other_body, WEBHOOK_SECRET)),
        "missing-signature": pd_request(triggered, "wh-demo-unsigned", signature=""),
        "malformed-but-signed": pd_request(None, "wh-demo-malformed", body='{"event": {"id": 42, "event_type": '),
    }


def pd_activity_events():
    """One sample of each v3 event type the samples above do not show, shaped as PagerDuty's
    "Event Data Types" documents them (developer-docs/docs/webhooks/01-Overview.md)."""
    inc = "Q1DEMOINC00001"
    title = "Checkout API latency above 2s"
    ref = {"id": inc, "type": "incident_reference", "summary": title,
           "self": f"https://api.pagerduty.com/incidents/{inc}",
           "html_url": f"https://demo.pagerduty.com/incidents/{inc}"}
    user = {"id": "PUSR003", "type": "user_reference", "summary": "Maeve Chen"}
    acked = incident(inc, 101, "acknowledged", title)
    bridge = dict(acked, conference_bridge={"conference_number": "+1-555-0100,,4242#",
                                            "conference_url": "https://meet.example.com/checkout"})
    typed = dict(acked, incident_type={"name": "major"})
    service = {"id": "PSVC001", "type": "service", "summary": "Customer Support", "teams": [],
               "alert_creation": "create_alerts_and_incidents"}
    field = lambda name, value: {"data_type": "string", "field_type": "single_value", "id": "PICF" + name[:3].upper(),
                                 "name": name, "namespace": "incidents", "type": "field_value", "value": value}
    task = lambda status: {"id": "PTSK001", "type": "incident_task", "name": "Tell the top 10 customers",
                           "summary": "Tell the top 10 customers", "description": "Call each account owner",
                           "status": status, "assignees": [user], "incident": ref}
    workflow = {"id": "PWFI001", "type": "incident_workflow_instance", "summary": "Major incident kickoff",
                "incident_workflow": {"id": "PWF0001", "type": "incident_workflow_reference",
                                      "summary": "Major incident kickoff"},
                "workflow_trigger": {"id": "4ad696eb-bb48-422a-8bd0-6efad6befa29",
                                     "type": "workflow_trigger_reference", "summary": "On P1"},
                "incident": ref, "service": dict(SERVICE)}
    invocation = lambda state: {"id": "01CELD6T9C2JS745I7CAK0LRRF", "type": "incident_action_invocation",
                                "incident": ref, "state": state,
                                "action": {"id": "01CDYN0IRV4VG991K5FR73YNTW", "type": "action_reference",
                                           "summary": "Restart checkout-api"}}
    events = [
        ("incident.unacknowledged", incident(inc, 101, "triggered", title)),
        ("incident.reopened", incident(inc, 101, "triggered", title)),
        ("incident.escalated", acked),
        ("incident.reassigned", acked),
        ("incident.delegated", acked),
        ("incident.service_updated", acked),
        ("incident.incident_type.changed", typed),
        ("incident.responder.added", {"type": "incident_responder", "incident": ref, "user": user,
                                      "escalation_policy": dict(EP), "state": "pending",
                                      "message": "Payments side of checkout looks involved, can you join?"}),
        ("incident.responder.replied", {"type": "incident_responder", "incident": ref, "user": user,
                                        "escalation_policy": dict(EP), "state": "joined",
                                        "message": "Payments side of checkout looks involved, can you join?"}),
        ("incident.conference_bridge.updated", {"type": "incident_conference_bridge", "incident": ref,
                                                "conference_url": "https://meet.example.com/checkout",
                                                "conference_numbers": [{"label": "US", "number": "+1-555-0100,,4242#"}]}),
        ("incident.custom_field_values.updated", {"type": "incident_field_values", "incident": ref,
                                                  "custom_fields": [field("customer_impact", "Checkout unavailable for EU"),
                                                                    field("region", "EU")],
                                                  "changed_custom_fields": [field("customer_impact", "Slow checkout")]}),
        ("incident.role.assigned", {"type": "incident_role_assignment", "incident_role_assignments": [
            {"id": "af64b84c-137e-40c6-875c-5dd30a2afaaa", "type": "role_assignment_reference", "status": "active",
             "incident": ref, "assignee": user, "old_assignee": None,
             "role": {"id": "P8PQO4R", "type": "role_reference", "summary": "Incident Commander"}}]}),
        ("incident.task.created", task("todo")),
        ("incident.task.updated", task("todo")),
        ("incident.task.completed", task("done")),
        ("incident.workflow.started", workflow),
        ("incident.workflow.completed", workflow),
        ("incident.action_invocation.created", invocation("created")),
        ("incident.action_invocation.updated", invocation("running")),
        ("incident.action_invocation.terminated", invocation("completed")),
        ("service.created", service),
        ("service.updated", service),
        ("service.deleted", service),
        ("service.custom_field_values.updated", {"type": "service_field_values",
                                                 "service": {"id": "PSVC001", "type": "service_reference", "summary": None},
                                                 "custom_fields": [field("tier", "1")],
                                                 "changed_custom_fields": [field("tier", "2")]}),
    ]
    out = {}
    for n, (event_type, data) in enumerate(events):
        event = delivery(f"01DEMOEVT00000000000001{n:02d}", event_type, iso(T0 + 300 + n), data,
                         resource_type=event_type.split(".")[0])
        out[event_type.replace(".", "-").replace("_", "-")] = pd_request(event, f"wh-demo-01{n:02d}")
    return out


# ---------- Salesforce → PagerDuty ----------

CASE_1 = "5005g00000DEMO1AAA"
USER = {"id": "0055g00000AGENTAAA", "username": "agent@demo-company.example"}


def attributes(obj, rid):
    return {"type": obj, "url": f"/services/data/v62.0/sobjects/{obj}/{rid}"}


def case(rid, number, subject, priority, status, modified, **extra):
    record = {
        "attributes": attributes("Case", rid),
        "Id": rid,
        "CaseNumber": number,
        "Subject": subject,
        "Priority": priority,
        "Status": status,
        "Origin": "Web",
        "Description": "Customers report checkout timeouts since 10:00.",
        "AccountId": "0015g00000ACMEAAA",
        "Account": {"attributes": attributes("Account", "0015g00000ACMEAAA"), "Id": "0015g00000ACMEAAA",
                    "Name": "Acme Corp"},
        "CreatedDate": sf_time(T0),
        "LastModifiedDate": sf_time(modified),
        "SystemModstamp": sf_time(modified),
    }
    record.update(extra)
    return record


def change_id(request_id, record_id, old_record):
    """PdSyncTriggerHandler.changeId: the name the Apex gives each change (the bridge's key)."""
    old = json.dumps(old_record, separators=(",", ":")) if old_record is not None else "null"
    return hashlib.sha256(f"{request_id}|{record_id}|{old}".encode()).hexdigest()[:40]


def post(obj, operation, new, old=None, user=USER, request_id=None):
    olds = {r["Id"]: r for r in old} if old is not None else None
    request_id = request_id or f"demo-{obj}-{operation}-{new[0]['Id']}-{new[0].get('SystemModstamp', '')}"
    return {
        "schema": 1,
        "org_id": ORG_ID,
        "object": obj,
        "operation": operation,
        "user": user,
        "sent_at": iso(T0),
        "old": olds,
        "new": {r["Id"]: r for r in new},
        "change_ids": {r["Id"]: change_id(request_id, r["Id"], (olds or {}).get(r["Id"])) for r in new},
    }


def sf_signature(secret, ts, body):
    """The Apex trigger's X-PdSync-Signature over `<timestamp>.<body>`."""
    return "v1=" + hmac.new(secret.encode(), f"{ts}.{body}".encode(), hashlib.sha256).hexdigest()


def sf_request(payload, secret=INBOUND_SECRET, ts=None, body=None, signature=None, route="POST /salesforce/records"):
    body = body if body is not None else json.dumps(payload, separators=(",", ":"))
    ts = str(int(time.time()) if ts is None else ts)
    sig = signature if signature is not None else sf_signature(secret, ts, body)
    headers = {"content-type": "application/json", "user-agent": "SFDC-Callout/62.0",
               "x-pdsync-timestamp": ts, "x-pdsync-signature": sig}
    return apigw(route, body, headers)


def console_events():
    """The agent console's posts (docs/console-api.md), signed as PdSyncConsoleController signs."""
    common = {"schema": 1, "org_id": ORG_ID, "user": USER, "sent_at": iso(T0 + 360)}
    ask = lambda route, extra: sf_request({**common, **extra}, route=route)  # noqa: E731
    return {
        "console-incidents": ask("POST /salesforce/console/incidents", {"object": "Case", "record_id": CASE_1}),
        "console-escalate": ask("POST /salesforce/console/escalate", {
            "object": "Case", "record_id": CASE_1, "request_id": "3f1c2d4e-5a6b-4c7d-8e9f-0a1b2c3d4e5f",
            "urgency": "high"}),
        "console-status": ask("POST /salesforce/console/status", {}),
    }


def sf_events():
    new_case = case(CASE_1, "00001026", "Checkout fails for all EU customers", "Sev1", "New", T0)
    priority_old = case(CASE_1, "00001026", "Checkout fails for all EU customers", "Sev1", "New", T0)
    priority_new = case(CASE_1, "00001026", "Checkout fails for all EU customers", "Sev2", "Working", T0 + 300)
    closed_old = priority_new
    closed_new = case(CASE_1, "00001026", "Checkout fails for all EU customers", "Sev2", "Closed", T0 + 900)
    comment = {"attributes": attributes("CaseComment", "00a5g00000DEMO1AAA"), "Id": "00a5g00000DEMO1AAA",
               "ParentId": CASE_1, "CommentBody": "Customer confirms EU checkout works again after 10:20.",
               "IsPublished": False, "CreatedDate": sf_time(T0 + 400), "LastModifiedDate": sf_time(T0 + 400),
               "SystemModstamp": sf_time(T0 + 400)}
    escalation = {"attributes": attributes("Escalation__c", "a0X5g00000DEMO1AAA"), "Id": "a0X5g00000DEMO1AAA",
                  "Name": "ESC-0042", "Severity__c": "Critical", "Summary__c": "Data export stuck for Acme",
                  "Status__c": "Open", "LastModifiedDate": sf_time(T0), "SystemModstamp": sf_time(T0)}
    bulk_old, bulk_new = [], []
    for i in range(200):
        rid = "5005g00000B%04dAAA" % i
        bulk_old.append(case(rid, "%08d" % (20000 + i), f"Bulk import issue #{i}", "Sev3", "New", T0))
        bulk_new.append(case(rid, "%08d" % (20000 + i), f"Bulk import issue #{i}", "Sev1", "Escalated", T0 + 30))
    insert = post("Case", "insert", [new_case])
    events = {
        "case-insert-sev1": sf_request(insert),
        "case-update-priority": sf_request(post("Case", "update", [priority_new], [priority_old])),
        "case-update-closed": sf_request(post("Case", "update", [closed_new], [closed_old])),
        "case-bulk-update-200": sf_request(post("Case", "update", bulk_new, bulk_old)),
        "casecomment-insert": sf_request(post("CaseComment", "insert", [comment])),
        "custom-object-insert": sf_request(post("Escalation__c", "insert", [escalation])),
        "bearer-named-credential": apigw("POST /salesforce/records", json.dumps(insert, separators=(",", ":")), {
            "content-type": "application/json", "authorization": f"Bearer {INBOUND_SECRET}"}),
        "bad-signature": sf_request(insert, secret="not-the-shared-secret"),
        "stale-timestamp": sf_request(insert, ts=T0 - 3600),
        **console_events(),
    }
    samples = HERE.parent.parent / "shared/samples/salesforce-outbound-message"
    soap_path = samples / "aspnet-webhooks-request-lead-3notifications.xml"
    soap = soap_path.read_text(encoding="utf-8-sig") if soap_path.exists() else None
    if soap is not None:
        # An org id is checked exactly (its 18-character suffix too): speak as the demo org.
        soap = soap.replace(SAMPLE_ORG_ID + "NNN", ORG_ID).replace(SAMPLE_ORG_ID, ORG_ID[:15])
    if soap is None:
        soap = (HERE / "sfdc-to-pd" / "outbound-message.xml").read_text()
    else:
        (HERE / "sfdc-to-pd").mkdir(exist_ok=True)
        (HERE / "sfdc-to-pd" / "outbound-message.xml").write_text(soap)
    events["outbound-message"] = apigw("POST /salesforce/outbound-message", soap, {
        "content-type": "text/xml; charset=utf-8", "soapaction": '""', "user-agent": "Salesforce Outbound Notification"},
        query=f"token={OUTBOUND_MESSAGE_TOKEN}")
    return events


# ---------- retry ----------

def sqs_event(bodies):
    return {"Records": [{
        "messageId": f"demo-msg-{i}",
        "receiptHandle": f"demo-receipt-{i}",
        "body": body,
        "md5OfBody": hashlib.md5(body.encode()).hexdigest(),
        "attributes": {"ApproximateReceiveCount": "2", "SentTimestamp": str(T0 * 1000),
                       "SenderId": "AROADEMO:pd-to-sfdc", "ApproximateFirstReceiveTimestamp": str(T0 * 1000)},
        "messageAttributes": {},
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:pd-sfdc-sync-retry",
        "eventSource": "aws:sqs",
        "awsRegion": "us-east-1",
    } for i, body in enumerate(bodies)]}


def retry_events(pd, sf):
    pd_body = pd["incident-acknowledged"]["body"]
    pd_env = {"version": 1, "id": "env-demo-pd-1", "direction": "pagerduty_to_salesforce",
              "event_id": "01DEMOEVT0000000000000002", "correlation_id": "demo-corr-1",
              "accepted_at": iso(T0 + 61), "occurred_at": iso(T0 + 60),
              "event": {"kind": "pagerduty_webhook", "body": pd_body, "webhook_id": "wh-demo-0002",
                        "subscription_id": SUBSCRIPTION_ID},
              "attempts": 1, "history": [{"at": iso(T0 + 61), "kind": "transient",
                                          "reason": "Salesforce UNABLE_TO_LOCK_ROW", "rule": "pd-ack-sets-case-working"}]}
    sf_post = json.loads(sf["case-insert-sev1"]["body"])
    sf_case = sf_post["new"][CASE_1]
    sf_env = {"version": 1, "id": "env-demo-sf-1", "direction": "salesforce_to_pagerduty",
              "event_id": f"sf:Case:{CASE_1}:{sf_post['change_ids'][CASE_1]}", "correlation_id": "demo-corr-2",
              "accepted_at": iso(T0 + 1), "occurred_at": iso(T0),
              "event": {"kind": "salesforce_record", "object": "Case", "record_id": CASE_1,
                        "operation": "insert", "new": sf_case, "changed_by": USER["username"]},
              "attempts": 1, "history": [{"at": iso(T0 + 1), "kind": "transient",
                                          "reason": "PagerDuty 503", "rule": "sev1-case-pages-support"}]}
    return {
        "sqs-batch": sqs_event([json.dumps(pd_env), json.dumps(sf_env)]),
        "sqs-poison-message": sqs_event(["this is not an envelope"]),
        # What EventBridge Scheduler posts every ReconcileRateMinutes (template.yaml's ReconcileSchedule).
        "reconcile-scheduled": sqs_event([json.dumps({"kind": "reconcile", "max_api_calls": 200})]),
    }


def resign(event, name, now=None):
    """A sample as sent now: a Salesforce post the demo secret signed gets the current timestamp
    and its signature (the bridge refuses one more than 5 minutes old). Anything else is left as it
    is: a forged signature stays forged and stale-timestamp(.json) stays stale, as the demo's
    re-signing does (tests/src/bin/demo.rs)."""
    headers = event.get("headers") or {}
    ts, sig = headers.get("x-pdsync-timestamp"), headers.get("x-pdsync-signature")
    if ts is None or sig != sf_signature(INBOUND_SECRET, ts, event.get("body") or "") or name.endswith("stale-timestamp"):
        return event
    now = str(int(time.time()) if now is None else now)
    event = copy.deepcopy(event)
    event["headers"]["x-pdsync-timestamp"] = now
    event["headers"]["x-pdsync-signature"] = sf_signature(INBOUND_SECRET, now, event["body"])
    return event


def main():
    if sys.argv[1:2] == ["--resign"]:
        # events/generate.py --resign FILE: the sample on stdout, signed now (make invoke-watch).
        path = pathlib.Path(sys.argv[2])
        print(json.dumps(resign(json.loads(path.read_text()), path.stem)))
        return
    pd = dict(pd_events(), **pd_activity_events())
    sf = sf_events()
    groups = {"pd-to-sfdc": pd, "sfdc-to-pd": sf, "retry": retry_events(pd, sf)}
    for folder, events in groups.items():
        out = HERE / folder
        out.mkdir(exist_ok=True)
        for name, event in events.items():
            (out / f"{name}.json").write_text(json.dumps(event, indent=2) + "\n")
    print("wrote", sum(len(v) for v in groups.values()), "events")


if __name__ == "__main__":
    main()
