#!/usr/bin/env python3
"""The pd-to-sfdc work of the Rust handler bench, written the way most teams would write it in
Python: hmac + json + PyYAML, an in-memory idempotency dict and a plain loop over the rules.

Same input as `shared/benches/handler.rs` ("pd-to-sfdc overhead per event"): the bench's rules
(`shared/benches/support/handler_rules.yaml`: 100 mixed rules plus an acknowledge rule) and its
webhook bodies (`pd_to_sfdc_event.json`, the Rust test `bench_fixtures` keeps both equal to what
the bench uses). Per event: verify the `v1=` signature over the raw body, parse the delivery,
claim and complete the idempotency key, evaluate every rule, render the actions and build the
Salesforce Composite request body. Before timing, the plan and the body are checked equal to
the Rust engine's, so the baseline cannot do less work than the bench.

    .venv/bin/python tools/baseline/pd_to_sfdc.py --out target/bench/baseline.json
"""
import argparse
import hashlib
import hmac
import json
import platform
import re
import statistics
import sys
import time
import timeit
from datetime import datetime, timezone
from pathlib import Path

import yaml

SUPPORT = Path(__file__).resolve().parents[2] / "shared" / "benches" / "support"
API_VERSION = "62.0"
COMMENT_PREFIX = "[PagerDuty] "
NOTE_MARKER = "[Salesforce]"
MAX_COMMENT_BYTES = 4000
IDEMPOTENCY_TTL_S = 3600
RECORD_ID = re.compile(r"[A-Za-z0-9]{15}([A-Za-z0-9]{3})?")
API_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,79}")
TEMPLATE_VAR = re.compile(r"\{\{\s*(.*?)\s*\}\}")

EVENT_CATEGORIES = {
    "incident.triggered": "trigger",
    "incident.acknowledged": "acknowledge",
    "incident.resolved": "resolve",
    "incident.reassigned": "assign",
    "incident.escalated": "escalate",
    "incident.delegated": "delegate",
}


class BadRequest(Exception):
    pass


# --- rules, compiled once at load -------------------------------------------------------------


def number(text):
    try:
        value = float(str(text).strip())
    except ValueError:
        return None
    return value if value == value and abs(value) != float("inf") else None


def instant(text):
    text = str(text).strip()
    if len(text) > 5 and text[-5] in "+-" and text[-4:].isdigit():  # Salesforce's +0000
        text = text[:-2] + ":" + text[-2:]
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def as_text(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


class Condition:
    def __init__(self, spec):
        self.field = spec["field"]
        self.operator = spec["operator"]
        self.case_sensitive = bool(spec.get("case_sensitive", False))
        self.pagerduty = self.field.startswith("pagerduty.")
        name = self.field.removeprefix("pagerduty.") if self.pagerduty else self.field.removeprefix("new.")
        self.name = name
        self.path = name.split(".")
        value = spec.get("value")
        if self.operator == "matches":
            self.regex = re.compile(str(value), 0 if self.case_sensitive else re.IGNORECASE)
        elif self.operator in ("in", "not_in"):
            self.expected = [self.fold(as_text(v)) for v in value]
        elif value is not None:
            self.expected = self.fold(as_text(value))
            self.number = number(value)
            self.instant = instant(value)

    def fold(self, text):
        return text if self.case_sensitive else text.lower()

    def seen(self, facts, record):
        if self.pagerduty:
            return facts.get(self.name)
        if record is None:
            return None
        value = record
        for segment in self.path:
            if not isinstance(value, dict):
                return None
            if segment in value:
                value = value[segment]
            else:  # Salesforce API names are case-insensitive
                value = next((v for k, v in value.items() if k.lower() == segment.lower()), None)
        return value

    def equal(self, text, expected):
        if self.name == "event_type" and self.pagerduty and not expected.startswith("incident."):
            text = EVENT_CATEGORIES.get(text, "custom" if text.startswith("incident.") else "other")
        return self.fold(text) == expected

    def holds(self, facts, record):
        op = self.operator
        value = self.seen(facts, record)
        if op in ("is_empty", "is_not_empty"):
            empty = value is None or value == [] or (isinstance(value, str) and not value.strip())
            return empty == (op == "is_empty")
        if value is None:
            return op in ("not_equals", "not_contains", "not_in")
        text = as_text(value)
        if op == "equals":
            return self.equal(text, self.expected)
        if op == "not_equals":
            return not self.equal(text, self.expected)
        if op == "contains":
            return self.expected in self.fold(text)
        if op == "not_contains":
            return self.expected not in self.fold(text)
        if op == "starts_with":
            return self.fold(text).startswith(self.expected)
        if op == "ends_with":
            return self.fold(text).endswith(self.expected)
        if op == "matches":
            return self.regex.search(text) is not None
        if op == "in":
            return any(self.equal(text, e) for e in self.expected)
        if op == "not_in":
            return not any(self.equal(text, e) for e in self.expected)
        if op in ("greater_than", "less_than"):
            got, want = number(text), self.number
            if got is None or want is None:
                got, want = instant(text), self.instant
                if got is None or want is None:
                    return False
            return got > want if op == "greater_than" else got < want
        return False  # changed/changed_to/changed_from: no old values on an incident event


class Template:
    def __init__(self, text):
        self.parts = TEMPLATE_VAR.split(str(text))  # literal, variable, literal, ...

    def render(self, variables):
        return "".join(part if i % 2 == 0 else variables.get(part, "") for i, part in enumerate(self.parts))


class Rule:
    def __init__(self, spec, ruleset):
        self.name = spec["name"]
        self.ruleset = ruleset
        self.direction = spec["direction"]
        self.object = spec["object"]
        self.match_any = spec.get("match", "all") == "any"
        self.new_only = spec.get("applies_to", "all_linked") == "new_only"
        self.conditions = [Condition(c) for c in spec.get("conditions", [])]
        self.per_record = any(not c.pagerduty for c in self.conditions)
        self.actions = []
        for action in spec.get("actions", []):
            name, args = (action, {}) if isinstance(action, str) else next(iter(action.items()))
            if self.direction != "pagerduty_to_salesforce":
                self.actions.append((name, args))  # PagerDuty actions: not this handler's business
            elif name == "set_fields":
                self.actions.append((name, {k: Template(v) if isinstance(v, str) else v for k, v in args.items()}))
            elif name == "add_case_comment":
                self.actions.append((name, Template(args["body"])))
            else:
                raise ValueError(f"rule {self.name}: the baseline does not implement `{name}`")

    def holds(self, facts, record=None):
        checks = (c.holds(facts, record) for c in self.conditions)
        return any(checks) if self.match_any else all(checks)


def load_rules(text):
    return [
        Rule(rule, ruleset["name"])
        for ruleset in yaml.safe_load(text)["rulesets"]
        if ruleset.get("enabled", True)
        for rule in ruleset["rules"]
    ]


# --- the handler --------------------------------------------------------------------------------


def verify_signature(body, header, secrets):
    signatures = [p.strip()[3:] for p in (header or "").split(",") if p.strip().startswith("v1=")]
    if not signatures or not body:
        raise BadRequest("missing or malformed X-PagerDuty-Signature")
    expected = [hmac.new(secret, body, hashlib.sha256).hexdigest() for secret in secrets]
    if not any(hmac.compare_digest(e, s) for e in expected for s in signatures):
        raise BadRequest("signature mismatch")


def comment_bodies(text):
    text = text.removeprefix(COMMENT_PREFIX).encode()
    room = MAX_COMMENT_BYTES - len(COMMENT_PREFIX)
    parts = []
    while True:
        cut = min(room, len(text))
        while cut < len(text) and (text[cut] & 0xC0) == 0x80:  # not inside a UTF-8 character
            cut -= 1
        parts.append(COMMENT_PREFIX + text[:cut].decode())
        text = text[cut:]
        if not text:
            return parts


def add_to_plan(plan, rule, actions):
    """An action an earlier rule planned is dropped; set_fields on one record merge."""
    earlier = len(plan)
    for action in actions:
        for i, existing in enumerate(plan):
            same_record = action["type"] == existing["action"]["type"] == "set_fields" and (
                action["record"] == existing["action"]["record"]
            )
            if same_record:
                existing["action"]["fields"].update(action["fields"])
                if rule.name not in existing["rule"].split(", "):
                    existing["rule"] += ", " + rule.name
                break
            if i < earlier and existing["action"] == action:
                break
        else:
            plan.append({"rule": rule.name, "ruleset": rule.ruleset, "action": action})


def evaluate(rules, event_type, incident, note, linked, is_new):
    facts = {
        "event_type": event_type,
        "title": incident.get("title") or "",
        "status": incident.get("status") or "",
        "service": incident["service"]["id"],
        "service_name": incident["service"].get("summary") or "",
        "escalation_policy": "",
        "escalation_policy_name": "",
        "priority": (incident.get("priority") or {}).get("summary"),
        "urgency": incident.get("urgency") or "",
        "note": note,
    }
    variables = {
        "incident.id": incident["id"],
        "incident.number": str(incident.get("number") or 0),
        "incident.title": facts["title"],
        "incident.status": facts["status"],
        "incident.urgency": facts["urgency"],
        "incident.priority": facts["priority"] or "",
        "incident.html_url": incident.get("html_url") or "",
        "incident.service_id": facts["service"],
        "incident.service_name": facts["service_name"],
        "incident.escalation_policy_name": "",
        "event.type": event_type,
        "note.content": note or "",
    }
    plan = []
    if note and note.startswith(NOTE_MARKER):
        return plan  # written by the bridge: forwarding it would loop
    for rule in rules:
        if rule.direction != "pagerduty_to_salesforce" or (rule.new_only and not is_new):
            continue
        targets = [r for r in linked if r["object"].lower() == rule.object.lower()]
        if targets and rule.per_record:
            matched = [r for r in targets if rule.holds(facts, r["fields"])]
            if not matched:
                continue
        elif rule.holds(facts):
            matched = targets
        else:
            continue
        actions = []
        for name, args in rule.actions:
            if name == "set_fields":
                fields = {k: v.render(variables) if isinstance(v, Template) else v for k, v in args.items()}
                actions += [
                    {"type": "set_fields", "record": {"object": r["object"], "id": r["id"]}, "fields": dict(fields)}
                    for r in matched
                ]
            elif name == "add_case_comment":
                text = args.render(variables)
                if text.strip():
                    actions += [
                        {"type": "add_case_comment", "case_id": r["id"], "body": part}
                        for r in matched
                        for part in comment_bodies(text)
                    ]
        add_to_plan(plan, rule, actions)
    return plan


def composite_request(plan):
    # As in the Rust bench: one PATCH per updated record.
    subrequests = []
    for n, planned in enumerate(plan):
        action = planned["action"]
        if action["type"] != "set_fields":
            continue
        record = action["record"]
        if not API_NAME.fullmatch(record["object"]) or not RECORD_ID.fullmatch(record["id"]):
            raise BadRequest(f"bad record {record}")
        subrequests.append(
            {
                "method": "PATCH",
                "url": f"/services/data/v{API_VERSION}/sobjects/{record['object']}/{record['id']}",
                "referenceId": f"a{n}",
                "body": action["fields"],
            }
        )
    if not 0 < len(subrequests) <= 25:
        raise BadRequest(f"a composite request holds 1 to 25 subrequests, not {len(subrequests)}")
    request = {"allOrNone": False, "compositeRequest": subrequests}
    return json.dumps(request, separators=(",", ":"), ensure_ascii=False).encode()


class Idempotency:
    def __init__(self, ttl_s):
        self.ttl_s = ttl_s
        self.entries = {}

    def begin(self, key):
        now = time.time()
        entry = self.entries.get(key)
        if entry is not None and entry[1] > now:
            return False
        self.entries[key] = ("in_progress", now + self.ttl_s)
        return True

    def finish(self, key, outcome):
        self.entries[key] = (outcome, time.time() + self.ttl_s)


def linked_records():
    # What the handler would have looked up: the one Case linked to the incident.
    return [{"object": "Case", "id": "5005g00000DEMO1AAA", "fields": {"Status": "New"}}]


def handle(rules, gate, secrets, header, body, n):
    """One delivery, up to the Composite request body: returns (plan, body)."""
    verify_signature(body, header, secrets)
    event = json.loads(body)["event"]
    for name in ("id", "event_type", "occurred_at"):
        if not isinstance(event.get(name), str) or not event[name]:
            raise BadRequest(f"event.{name} is missing")
    datetime.fromisoformat(event["occurred_at"])
    incident = event["data"]
    if incident.get("type") != "incident":
        raise BadRequest("not an incident event")
    key = f"pd:{event['id']}:{n}"
    if not gate.begin(key):
        raise BadRequest(f"duplicate {key}")
    event_type = event["event_type"]
    plan = evaluate(rules, event_type, incident, None, linked_records(), event_type == "incident.triggered")
    request = composite_request(plan)
    gate.finish(key, "applied")
    return plan, request


# --- measurement --------------------------------------------------------------------------------


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000, help="events timed (after a warm-up)")
    parser.add_argument("--out", type=Path, help="write the rows here (bench JSON contract)")
    args = parser.parse_args()

    fixture = json.loads((SUPPORT / "pd_to_sfdc_event.json").read_text())
    rules = load_rules((SUPPORT / "handler_rules.yaml").read_text())
    secret = fixture["secret"].encode()
    template = fixture["body"]
    bodies = []
    for i in range(10_000):  # as the Rust bench: 10,000 deliveries, differing in the event id
        body = template.replace(fixture["event_id_0"], f"01BENCH{i:020}").encode()
        bodies.append(("v1=" + hmac.new(secret, body, hashlib.sha256).hexdigest(), body))

    gate = Idempotency(IDEMPOTENCY_TTL_S)
    plan, request = handle(rules, gate, [secret], *bodies[0], -1)
    if plan != fixture["plan"] or request.decode() != fixture["composite_body"]:
        sys.exit(
            "the baseline's plan or Composite body differs from the Rust engine's "
            f"(shared/benches/support/pd_to_sfdc_event.json):\n{json.dumps(plan, indent=1)}\n{request.decode()}"
        )

    clock = timeit.default_timer
    samples = []
    warm_up = max(1000, args.events // 10)
    for n in range(warm_up + args.events):
        header, body = bodies[n % len(bodies)]
        start = clock()
        handle(rules, gate, [secret], header, body, n)
        samples.append(clock() - start)
    samples = [s * 1e6 for s in samples[warm_up:]]
    mean, p50 = statistics.fmean(samples), statistics.median(samples)
    version = f"{platform.python_implementation()} {platform.python_version()}"
    note = f"{version}, {args.events} events after {warm_up} warm-up, gc on; plan and body equal to Rust's"
    print(f"pd-to-sfdc per event, Python baseline ({version}): mean {mean:.1f} us, p50 {p50:.1f} us")
    rows = [
        {"section": "Python baseline", "name": f"pd-to-sfdc per event, Python handler: {stat}",
         "value": round(value, 2), "unit": "us", "target": None, "better": "lower", "note": note}
        for stat, value in (("mean", mean), ("p50", p50))
    ]
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"source": "baseline", "rows": rows}, indent=2) + "\n")
        print(f"written to {args.out}")


if __name__ == "__main__":
    main()
