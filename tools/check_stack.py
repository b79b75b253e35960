"""Deploys template.yaml to an AWS stand-in and checks what it made (run by `make stack`, part of
`make test`).

The SAM template is translated into plain CloudFormation with aws-sam-translator (what `sam deploy`
has CloudFormation's SAM transform do), each function's CodeUri replaced by a small zip uploaded
to moto's S3 (what `sam package` does with the build), and the stack is created in moto's
CloudFormation (moto's server on a free port, started here as tests/src/moto.rs starts it; the
binary from MOTO_SERVER, `.venv`, or PATH; MOTO_URL uses a running one). Then the test reads back
through the AWS APIs what moto created: the three functions (runtime, handler, timeout, memory,
role, code, every environment variable against shared/src/config/mod.rs VARIABLES), their roles and
inline policies (resources resolved to this stack's ARNs), the retry queue's redrive to the DLQ
(maxReceiveCount from RetryMaxReceiveCount, and a message received that often really moves), the
table's keys, the log groups and their retention, the event source mapping (ReportBatchItemFailures),
the operator policy, the permissions API Gateway invokes with, and the outputs.

What moto 5.2.5's CloudFormation does not create or drops is checked on the translated template
instead, and each such gap is listed in MOTO_GAPS with a probe that confirms moto still drops it
(a moto upgrade that closes one fails here, so the check can move to the moto side):
- AWS::SecretsManager::Secret is not implemented: no secret, and the Refs to them (the *_SECRET_ID
  variables and the secret ARN outputs) come back empty. The generated secrets
  (GenerateSecretString) are checked on the template only.
- AWS::ApiGatewayV2::Api/Stage are not implemented: the HTTP API, its routes and the URL outputs.
- AWS::CloudWatch::Alarm, AWS::SNS::Subscription and AWS::Scheduler::Schedule are not implemented:
  the alarms, the PagerDuty and email subscriptions per severity and the freshness alarms'
  active-hours schedules are checked on the translated template (each alarm's actions, the
  subscriptions' conditions, the schedules' cron, time zone, universal target and input); the
  topics, their KMS key and the schedules' role are created by moto and read back.
- The function's Architectures, LoggingConfig and TracingConfig, the role's ManagedPolicyArns,
  the table's TimeToLiveSpecification and the DLQ's RedriveAllowPolicy are ignored.
Beyond these, no stand-in here evaluates IAM policies (moto accepts any call; iam_scope in the
integration tests judges the calls against the statements), API Gateway's integration with the
functions (payload v2, throttling, access logs), alarms firing or notifications, DeletionPolicy and
stack updates/rollbacks, or runs the functions (the zip holds a stub `bootstrap`).

Usage: python tools/check_stack.py [--template PATH]   (exit 1 with the failures listed)
"""

import argparse
import ast
import base64
import hashlib
import io
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import boto3
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

ROOT = Path(__file__).resolve().parent.parent
REGION = "us-east-1"
STACK = "pd-sfdc-sync"
BUCKET = "pd-sfdc-sync-artifacts"
FUNCTIONS = {"PdToSfdcFunction": "pd-to-sfdc", "SfdcToPdFunction": "sfdc-to-pd", "RetryFunction": "retry"}
# Non-default values where the template passes a parameter on, so that a hard-coded value shows.
PARAMETERS = {
    "ReconcileRateMinutes": "15",
    "PagerDutyFromEmail": "bridge@acme.test",
    "SalesforceOrgId": "00D5g0000SIMORGEQ5",
    "SalesforceIntegrationUser": "integration@acme.test",
    "SalesforceIntegrationUserId": "0055g00000BRIDGEAAA",
    "PagerDutyUserId": "PUSR001",
    "ConsoleServiceIds": "PSVC001,PSVC002",
    "ConsoleEscalationServiceId": "PSVC003",
    "LogLevel": "debug",
    "LogRetentionDays": "14",
    "RetryMaxReceiveCount": "7",
    "TableDeletionProtection": "false",
    # Every condition true, so that every resource is created (or shows up as a moto gap), but
    # ChangeEventsOn: moto's CloudFormation reads a partner bus name's last '/' segment as the
    # bus ("Event bus 0YLRM... does not exist"), so SalesforceEventBusName stays empty here and
    # cfn-lint (make lint) checks those resources.
    "OutboundMessages": "Enabled",
    "AlarmEmail": "oncall@acme.test",
    "PagerDutySev1IntegrationUrl": "https://events.pagerduty.com/integration/0123456789abcdef0123456789abcdef/enqueue",
    "PagerDutySev3IntegrationUrl": "https://events.eu.pagerduty.com/integration/fedcba9876543210fedcba9876543210/enqueue",
    "RunbookBaseUrl": "https://wiki.acme.test/pd-sfdc-sync/runbooks",
    "RouteSilenceMinutes": "45",
    "RouteSilenceDays": "MON-SAT",
    "RouteSilenceStartHour": "7",
    "RouteSilenceEndHour": "19",
    "RouteSilenceTimezone": "Europe/Berlin",
}
# The environment variables that name a secret, and the secret (moto creates none: see MOTO_GAPS).
SECRET_VARIABLES = {
    "PAGERDUTY_TOKEN_SECRET_ID": "PagerDutyTokenSecret",
    "PAGERDUTY_WEBHOOK_SECRET_ID": "PagerDutyWebhookSecret",
    "SALESFORCE_JWT_SECRET_ID": "SalesforceJwtSecret",
    "SALESFORCE_INBOUND_SECRET_ID": "SalesforceInboundSecret",
    "SALESFORCE_OUTBOUND_MESSAGE_SECRET_ID": "SalesforceOutboundMessageSecret",
}
# Resource types moto's CloudFormation skips (it warns and creates nothing).
UNSUPPORTED_TYPES = {"AWS::ApiGatewayV2::Api", "AWS::ApiGatewayV2::Stage", "AWS::CloudWatch::Alarm", "AWS::SecretsManager::Secret",
                     "AWS::SNS::Subscription", "AWS::Scheduler::Schedule"}
SEVERITIES = {"SEV1": "Sev1Topic", "SEV2": "Sev2Topic", "SEV3": "Sev3Topic"}


class Failures(list):
    def expect(self, ok, what):
        if not ok:
            self.append(what)
        return ok

    def equal(self, got, want, what):
        if got == want:
            return True
        if isinstance(got, (dict, set)) and isinstance(want, type(got)):
            # Only what differs: the environments and name sets are long.
            extra, missing = sorted(set(got) - set(want)), sorted(set(want) - set(got))
            changed = {k: (got[k], want[k]) for k in set(got) & set(want) if got[k] != want[k]} if isinstance(got, dict) else {}
            return self.expect(False, f"{what}: unexpected {extra}, missing {missing}, got/want {changed}")
        return self.expect(False, f"{what}: got {got!r}, want {want!r}")


# ---------- moto ----------

def moto_binary():
    if os.environ.get("MOTO_SERVER"):
        return os.environ["MOTO_SERVER"]
    venv = ROOT / ".venv/bin/moto_server"
    if venv.exists():
        return str(venv)
    return "moto_server"


def supervised(argv, out=os.devnull):
    """Starts argv under the watchdog tests/src/moto.rs uses: a shell that kills it (SIGKILL
    after SIGTERM: moto's threads can outlive its main thread) once this process is gone, however
    this process ends. Its output goes to `out`."""
    script = (f'"$0" "$@" >"{out}" 2>&1 & child=$!; '
              f"while kill -0 {os.getpid()} 2>/dev/null && kill -0 $child 2>/dev/null; do sleep 1; done; "
              "kill $child 2>/dev/null; sleep 2; kill -9 $child 2>/dev/null")
    subprocess.Popen(["sh", "-c", script, *argv], stdin=subprocess.DEVNULL)


def start_moto():
    """moto's server on a free port (or MOTO_URL), until this process ends."""
    if os.environ.get("MOTO_URL"):
        return os.environ["MOTO_URL"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    supervised([moto_binary(), "-H", "127.0.0.1", "-p", str(port)])
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            urllib.request.urlopen(url + "/moto-api/", timeout=1)
            return url
        except OSError:
            time.sleep(0.1)
    sys.exit(f"moto_server did not answer on {url} within 30 s")


def aws(url):
    """A boto3 client factory for moto at url."""
    session = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION)
    return lambda service: session.client(service, endpoint_url=url)


def upload_artifact(clients):
    """The stub zip on moto's S3; returns (bytes, key)."""
    zip_bytes = artifact()
    key = f"functions/{hashlib.sha256(zip_bytes).hexdigest()}.zip"
    s3 = clients("s3")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key=key, Body=zip_bytes)
    return zip_bytes, key


# ---------- translate and deploy ----------

def artifact():
    """A Lambda zip with a stub bootstrap: moto stores code, it does not run it here."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        info = zipfile.ZipInfo("bootstrap")
        info.external_attr = 0o755 << 16
        z.writestr(info, "#!/bin/sh\nexit 1\n")
    return buf.getvalue()


class NoManagedPolicies:
    """The translator resolves managed policies named by name through IAM; the template names
    none (Tracing adds one by ARN), so it needs no AWS account."""

    def load(self):
        return {}


def translate(template_path, key):
    sam = yaml_parse(Path(template_path).read_text())
    for logical, resource in sam["Resources"].items():
        if resource["Type"] == "AWS::Serverless::Function":
            resource["Properties"]["CodeUri"] = {"Bucket": BUCKET, "Key": key}
    os.environ.setdefault("AWS_DEFAULT_REGION", REGION)  # the translator fills AWS::Region-based ARNs
    return transform(sam, {}, NoManagedPolicies())


def deploy(clients, cfn_template, parameters=PARAMETERS):
    cfn = clients("cloudformation")
    cfn.create_stack(
        StackName=STACK,
        TemplateBody=json.dumps(cfn_template),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
        Capabilities=["CAPABILITY_IAM"],
    )
    for _ in range(300):
        stack = cfn.describe_stacks(StackName=STACK)["Stacks"][0]
        if not stack["StackStatus"].endswith("_IN_PROGRESS"):
            return stack
        time.sleep(0.1)
    return stack


# ---------- checks ----------

def config_variables():
    """The variable names the functions read (shared/src/config/mod.rs VARIABLES)."""
    text = (ROOT / "shared/src/config/mod.rs").read_text()
    block = text[text.index("pub const VARIABLES"):]
    block = block[:block.index("];")]
    return set(re.findall(r'\(\s*"([A-Z0-9_]+)"', block))


def check(template_path):
    failures = Failures()
    clients = aws(start_moto())
    zip_bytes, key = upload_artifact(clients)

    sam = yaml_parse(Path(template_path).read_text())
    cfn_template = translate(template_path, key)
    resources = cfn_template["Resources"]
    failures.equal(sorted(k for k, r in resources.items() if r["Type"].startswith("AWS::Serverless::")), [],
                   "SAM resources left after the transform")

    stack = deploy(clients, cfn_template)
    if not failures.equal(stack["StackStatus"], "CREATE_COMPLETE", f"stack status ({stack.get('StackStatusReason')})"):
        return failures
    cfn = clients("cloudformation")
    summaries = cfn.list_stack_resources(StackName=STACK)["StackResourceSummaries"]
    physical = {r["LogicalResourceId"]: r.get("PhysicalResourceId") for r in summaries if r["LogicalResourceId"]}
    skipped = {resources[k]["Type"] for k in resources
               if k not in physical and resources[k].get("Condition") != "ChangeEventsOn"}
    failures.equal(skipped, UNSUPPORTED_TYPES,
                   "resource types moto's CloudFormation did not create (a new one: the template uses a type moto "
                   "lacks; one gone: moto learnt it, check it on the moto side)")

    # Functions
    lam, iam = clients("lambda"), clients("iam")
    variables = config_variables()
    table_name, retry_url, dlq_url = physical.get("Table"), physical.get("RetryQueue"), physical.get("DeadLetterQueue")
    sqs = clients("sqs")
    arn_of = lambda queue_url: sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]  # noqa: E731
    retry_arn, dlq_arn = arn_of(retry_url), arn_of(dlq_url)
    logs = {g["logGroupName"]: g for g in clients("logs").describe_log_groups()["logGroups"]}
    want_env = {
        "TABLE_NAME": table_name,
        # moto's CloudFormation gives a queue's Ref as the AWS-style URL; the queue itself answers on moto.
        "RETRY_QUEUE_URL": cfn_output(cfn, "RetryQueueUrl"),
        "DLQ_URL": cfn_output(cfn, "DeadLetterQueueUrl"),
        "PAGERDUTY_REGION": "us",
        "PAGERDUTY_API_BASE": "https://api.pagerduty.com",
        "PAGERDUTY_IDENTITY_BASE": "https://identity.pagerduty.com",
        "PAGERDUTY_FROM_EMAIL": PARAMETERS["PagerDutyFromEmail"],
        "PAGERDUTY_USER_ID": PARAMETERS["PagerDutyUserId"],
        "CONSOLE_SERVICE_IDS": PARAMETERS["ConsoleServiceIds"],
        "CONSOLE_ESCALATION_SERVICE_ID": PARAMETERS["ConsoleEscalationServiceId"],
        "SALESFORCE_LOGIN_URL": "https://login.salesforce.com",
        "SALESFORCE_JWT_AUDIENCE": "",
        "SALESFORCE_API_VERSION": "62.0",
        "SALESFORCE_ORG_ID": PARAMETERS["SalesforceOrgId"],
        "SALESFORCE_INTEGRATION_USER": PARAMETERS["SalesforceIntegrationUser"],
        "SALESFORCE_INTEGRATION_USER_ID": PARAMETERS["SalesforceIntegrationUserId"],
        "LOG_LEVEL": PARAMETERS["LogLevel"],
        "RULES_SOURCE": "table",
        "SECRETS_MAX_AGE_SECONDS": "300",
        "RULES_MAX_AGE_SECONDS": "60",
        "IDEMPOTENCY_TTL_HOURS": "72",
    }
    timeouts = {"PdToSfdcFunction": 10, "SfdcToPdFunction": 10, "RetryFunction": 60}
    log_groups = {"PdToSfdcFunction": "PdToSfdcLogGroup", "SfdcToPdFunction": "SfdcToPdLogGroup", "RetryFunction": "RetryLogGroup"}
    roles = {}
    for logical, binary in FUNCTIONS.items():
        name = physical.get(logical)
        if not failures.expect(name, f"{logical}: not created"):
            continue
        fn = lam.get_function(FunctionName=name)["Configuration"]
        what = f"{logical} ({binary})"
        failures.equal(fn["Runtime"], "provided.al2023", f"{what} runtime")
        failures.equal(fn["Handler"], "bootstrap", f"{what} handler")
        failures.equal(fn["Timeout"], timeouts[logical], f"{what} timeout")
        failures.equal(fn["MemorySize"], 128, f"{what} memory")
        failures.equal(fn["CodeSha256"], base64.b64encode(hashlib.sha256(zip_bytes).digest()).decode(), f"{what} code (the uploaded zip)")
        role_name = fn["Role"].rsplit("/", 1)[-1]
        failures.equal(role_name, physical.get(f"{logical}Role"), f"{what} role")
        roles[logical] = role_name
        env = fn.get("Environment", {}).get("Variables", {})
        # Template side: every variable Config reads, the secret ids as Refs to their secrets.
        tenv = resources[logical]["Properties"]["Environment"]["Variables"]
        want_names = variables - (set() if logical == "SfdcToPdFunction" else {"SALESFORCE_OUTBOUND_MESSAGE_SECRET_ID"})
        failures.equal(set(tenv), want_names, f"{what} environment variable names (template) vs shared/src/config/mod.rs VARIABLES")
        for var, secret in SECRET_VARIABLES.items():
            if var in tenv:
                ref = tenv[var]
                if isinstance(ref, dict) and "Fn::If" in ref:  # OutboundMessages Enabled
                    ref = ref["Fn::If"][1]
                failures.equal(ref, {"Ref": secret}, f"{what} {var} (template)")
        # moto side: the values, resolved (moto drops the Refs to secrets it did not create).
        failures.equal(env, want_env, f"{what} environment (moto)")
        # Where its logs go (template: moto ignores LoggingConfig) and that the group exists.
        lc = resources[logical]["Properties"].get("LoggingConfig", {})
        failures.equal(lc, {"LogFormat": "JSON", "LogGroup": {"Ref": log_groups[logical]}}, f"{what} LoggingConfig (template)")
        group = logs.get(physical.get(log_groups[logical]))
        if failures.expect(group, f"{what}: log group {log_groups[logical]} not created"):
            failures.equal(group.get("retentionInDays"), int(PARAMETERS["LogRetentionDays"]), f"{log_groups[logical]} retention")
        props = resources[logical]["Properties"]
        failures.equal(props.get("Architectures"), ["arm64"], f"{what} architectures (template)")
        failures.equal(props.get("TracingConfig"), {"Mode": "Active"}, f"{what} tracing (template)")
    access = logs.get(physical.get("ApiAccessLogGroup"))
    if failures.expect(access, "ApiAccessLogGroup not created"):
        failures.equal(access.get("retentionInDays"), int(PARAMETERS["LogRetentionDays"]), "ApiAccessLogGroup retention")

    # Roles: Lambda may assume them, and the inline statements name this stack's resources.
    table_arn = clients("dynamodb").describe_table(TableName=table_name)["Table"]["TableArn"]
    for logical, role_name in roles.items():
        role = iam.get_role(RoleName=role_name)["Role"]
        principals = [s.get("Principal", {}).get("Service") for s in role["AssumeRolePolicyDocument"]["Statement"]]
        failures.equal(principals, [["lambda.amazonaws.com"]], f"{logical} role trust")
        names = iam.list_role_policies(RoleName=role_name)["PolicyNames"]
        if not failures.equal(names, [f"{logical}RolePolicy0"], f"{logical} role inline policies"):
            continue
        doc = iam.get_role_policy(RoleName=role_name, PolicyName=names[0])["PolicyDocument"]
        statements = {s["Sid"]: s for s in policy_document(doc)["Statement"]}
        want_sids = [s["Sid"] for s in sam["Resources"][logical]["Properties"]["Policies"][0]["Statement"]]
        failures.equal(sorted(statements), sorted(want_sids), f"{logical} policy statements")
        for sid, s in statements.items():
            res = s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]]
            if s["Action"][0].startswith("dynamodb:") if isinstance(s["Action"], list) else s["Action"].startswith("dynamodb:"):
                failures.equal(res, [table_arn], f"{logical} {sid} resource")
        failures.equal(statements.get("Queues", {}).get("Resource"), [retry_arn, dlq_arn], f"{logical} Queues resource")
        if logical == "RetryFunction":
            failures.equal(statements.get("RetryQueuePoller", {}).get("Resource"), retry_arn, "RetryQueuePoller resource (the retry queue only)")
        managed = resources[f"{logical}Role"]["Properties"].get("ManagedPolicyArns")
        failures.equal(sorted(managed or []), ["arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess",
                                               "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"],
                       f"{logical} role managed policies (template)")

    # API Gateway may invoke the HTTP functions (the API itself is a moto gap).
    for logical in ("PdToSfdcFunction", "SfdcToPdFunction"):
        policy = json.loads(lam.get_policy(FunctionName=physical[logical])["Policy"])
        principals = {s.get("Principal", {}).get("Service") for s in policy["Statement"]}
        failures.equal(principals, {"apigateway.amazonaws.com"}, f"{logical} invoke permission principals")

    # Queues: the redrive policy, and that it works.
    rq = sqs.get_queue_attributes(QueueUrl=retry_url, AttributeNames=["All"])["Attributes"]
    redrive = json.loads(rq.get("RedrivePolicy", "{}"))
    failures.equal(redrive.get("deadLetterTargetArn"), dlq_arn, "RetryQueue redrive target")
    failures.equal(str(redrive.get("maxReceiveCount")), PARAMETERS["RetryMaxReceiveCount"], "RetryQueue maxReceiveCount (RetryMaxReceiveCount)")
    failures.expect(int(rq["VisibilityTimeout"]) >= 6 * timeouts["RetryFunction"],
                    f"RetryQueue VisibilityTimeout {rq['VisibilityTimeout']} < 6 x the retry function's timeout")
    for q, attrs in (("RetryQueue", rq), ("DeadLetterQueue", sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["All"])["Attributes"])):
        failures.equal(attrs.get("MessageRetentionPeriod"), "1209600", f"{q} retention")
        failures.equal(attrs.get("SqsManagedSseEnabled"), "true", f"{q} encryption")
    if redrive:
        disable_event_sources(lam, physical["RetryFunction"])
        failures.equal(redriven(sqs, retry_url, dlq_url, int(PARAMETERS["RetryMaxReceiveCount"])), True,
                       "a message received maxReceiveCount times moves to the DLQ")
    failures.equal(resources["DeadLetterQueue"]["Properties"].get("RedriveAllowPolicy"), {"redrivePermission": "allowAll"},
                   "DeadLetterQueue RedriveAllowPolicy (template; syncctl dlq replay)")

    # The ESM: the retry function polls the retry queue and reports partial batch failures.
    mappings = lam.list_event_source_mappings(FunctionName=physical["RetryFunction"])["EventSourceMappings"]
    if failures.equal(len(mappings), 1, "retry function event source mappings"):
        m = mappings[0]
        failures.equal(m["EventSourceArn"], retry_arn, "event source (the retry queue)")
        failures.equal(m.get("FunctionResponseTypes"), ["ReportBatchItemFailures"], "FunctionResponseTypes")
        failures.equal((m.get("BatchSize"), m.get("MaximumBatchingWindowInSeconds")), (10, 5), "batch size and window")
        failures.equal(m.get("ScalingConfig"), {"MaximumConcurrency": 5}, "ScalingConfig")
    failures.equal(lam.list_event_source_mappings()["EventSourceMappings"].__len__(), 1, "event source mappings in the stack")

    # The table: keys as the code uses them; TTL on the template (moto ignores it).
    t = clients("dynamodb").describe_table(TableName=table_name)["Table"]
    failures.equal(sorted((k["AttributeName"], k["KeyType"]) for k in t["KeySchema"]), [("pk", "HASH"), ("sk", "RANGE")], "table keys")
    failures.equal(sorted((a["AttributeName"], a["AttributeType"]) for a in t["AttributeDefinitions"]), [("pk", "S"), ("sk", "S")], "table key types")
    failures.equal(t.get("BillingModeSummary", {}).get("BillingMode"), "PAY_PER_REQUEST", "table billing")
    # moto keeps the parameter's string; AWS answers a boolean.
    failures.equal(str(t.get("DeletionProtectionEnabled")).lower(), PARAMETERS["TableDeletionProtection"], "table deletion protection (TableDeletionProtection)")
    ttl_attribute = re.search(r'TimeToLiveSpecification::builder\(\)\.attribute_name\("([^"]+)"\)',
                              (ROOT / "adapters/src/dynamodb/mod.rs").read_text())
    failures.equal(resources["Table"]["Properties"].get("TimeToLiveSpecification"),
                   {"AttributeName": ttl_attribute.group(1) if ttl_attribute else "?", "Enabled": True},
                   "table TTL (template) vs the attribute adapters/src/dynamodb writes")

    # Secrets: moto does not create them; the generated ones on the template.
    secrets = {k: r for k, r in resources.items() if r["Type"] == "AWS::SecretsManager::Secret"}
    failures.equal(sorted(secrets), sorted(SECRET_VARIABLES.values()), "secrets (template)")
    for logical in ("SalesforceInboundSecret", "SalesforceOutboundMessageSecret"):
        gen = secrets.get(logical, {}).get("Properties", {}).get("GenerateSecretString", {})
        failures.equal((json.loads(gen.get("SecretStringTemplate", "null")), gen.get("GenerateStringKey"), gen.get("ExcludePunctuation")),
                       ({"previous": None}, "current", True), f"{logical} generated by the stack (template)")
        failures.expect(gen.get("PasswordLength", 0) >= 32, f"{logical} PasswordLength {gen.get('PasswordLength')} < 32")
    for logical, r in secrets.items():
        failures.equal(r.get("DeletionPolicy"), "Retain", f"{logical} DeletionPolicy")

    # The operator policy names this stack's table and queues.
    policies = {p["PolicyName"]: p for p in iam.list_policies(Scope="Local")["Policies"]}
    op = next((p for n, p in policies.items() if "OperatorPolicy" in n), None)
    if failures.expect(op, "OperatorPolicy not created"):
        doc = iam.get_policy_version(PolicyArn=op["Arn"], VersionId=op["DefaultVersionId"])["PolicyVersion"]["Document"]
        st = {s["Sid"]: s for s in policy_document(doc)["Statement"]}
        failures.equal(st.get("DeadLetters", {}).get("Resource"), dlq_arn, "OperatorPolicy DeadLetters resource")
        failures.equal(st.get("Rules", {}).get("Resource"), table_arn, "OperatorPolicy Rules resource")

    # Outputs: those of created resources resolve to them.
    outputs = {o["OutputKey"]: o["OutputValue"] for o in cfn.describe_stacks(StackName=STACK)["Stacks"][0].get("Outputs", [])}
    failures.equal(outputs.get("TableName"), table_name, "TableName output")
    failures.equal(outputs.get("OperatorPolicyArn"), op and op["Arn"], "OperatorPolicyArn output")
    for sev, topic in SEVERITIES.items():
        failures.equal(outputs.get(f"{topic}Arn"), physical.get(topic), f"{topic}Arn output")
    for output, group in (("PdToSfdcLogGroupName", "PdToSfdcLogGroup"), ("SfdcToPdLogGroupName", "SfdcToPdLogGroup"),
                          ("RetryLogGroupName", "RetryLogGroup"), ("ApiAccessLogGroupName", "ApiAccessLogGroup")):
        failures.expect(outputs.get(output) and outputs.get(output) == physical.get(group) and outputs[output] in logs,
                        f"{output} output ({outputs.get(output)!r}) is the name of {group} ({physical.get(group)!r})")

    check_alarm_routing(failures, clients, resources, physical)
    check_silence_window(failures, clients, resources, physical)
    for q in ("RetryQueue", "DeadLetterQueue", "Table"):
        failures.equal((resources[q].get("DeletionPolicy"), resources[q].get("UpdateReplacePolicy")), ("Retain", "Retain"),
                       f"{q} DeletionPolicy/UpdateReplacePolicy (template; moto deletes it anyway)")

    # The gaps are still gaps (else move the check to the moto side and drop the entry).
    for gap, still in moto_gaps(clients, physical, table_name, dlq_url, roles, outputs).items():
        failures.expect(still, f"moto now does what MOTO_GAPS says it does not: {gap}")

    # moto stops once this process has ended (the watchdog), whichever way it ends.
    return failures


def check_alarm_routing(failures, clients, resources, physical):
    """The severity topics (moto creates them) share the KMS key that lets CloudWatch publish; the
    subscriptions go where the parameters and conditions say. Each alarm's severity, runbook and
    actions: tests/tests/telemetry.rs (every_alarm_has_a_severity_a_runbook_and_its_severity_topic)."""
    sns = clients("sns")
    key_id = physical.get("AlarmTopicKey")
    for topic in SEVERITIES.values():
        arn = physical.get(topic)
        if failures.expect(arn, f"{topic} not created"):
            attrs = sns.get_topic_attributes(TopicArn=arn)["Attributes"]
            failures.equal(resources[topic]["Properties"].get("KmsMasterKeyId"), {"Ref": "AlarmTopicKey"}, f"{topic} KmsMasterKeyId (template)")
            failures.expect(key_id and attrs.get("KmsMasterKeyId") == key_id, f"{topic} encrypted with AlarmTopicKey ({attrs.get('KmsMasterKeyId')!r})")
    if failures.expect(key_id, "AlarmTopicKey not created"):
        policy = policy_document(clients("kms").get_key_policy(KeyId=key_id, PolicyName="default")["Policy"])
        cw = [s for s in policy["Statement"] if s.get("Principal", {}).get("Service") == "cloudwatch.amazonaws.com"]
        failures.expect(cw and set(cw[0]["Action"]) >= {"kms:Decrypt", "kms:GenerateDataKey*"},
                        "AlarmTopicKey lets cloudwatch.amazonaws.com Decrypt and GenerateDataKey* (else alarms cannot publish)")
    # Subscriptions (moto gap): PagerDuty per severity when its URL is set; email for SEV3, and
    # for SEV1/SEV2 only where PagerDuty is not.
    subs = {k: r for k, r in resources.items() if r["Type"] == "AWS::SNS::Subscription"}
    want_subs = {f"Sev{n}PagerDutySubscription": (f"Sev{n}Topic", "https", f"PagerDutySev{n}IntegrationUrl", f"HasPagerDutySev{n}") for n in (1, 2, 3)}
    want_subs |= {"Sev1EmailSubscription": ("Sev1Topic", "email", "AlarmEmail", "EmailSev1"),
                  "Sev2EmailSubscription": ("Sev2Topic", "email", "AlarmEmail", "EmailSev2"),
                  "Sev3EmailSubscription": ("Sev3Topic", "email", "AlarmEmail", "HasAlarmEmail")}
    got_subs = {k: (r["Properties"]["TopicArn"].get("Ref"), r["Properties"]["Protocol"], r["Properties"]["Endpoint"].get("Ref"), r.get("Condition"))
                for k, r in subs.items()}
    failures.equal(got_subs, want_subs, "alarm subscriptions (template)")


def check_silence_window(failures, clients, resources, physical):
    """The freshness alarms' active hours: three schedules (moto gap: on the template) calling
    CloudWatch through universal targets with a role moto does create."""
    schedules = {k: r["Properties"] for k, r in resources.items()
                 if r["Type"] == "AWS::Scheduler::Schedule" and k.startswith("RouteSilence")}
    failures.equal(sorted(schedules), ["RouteSilenceActionsOff", "RouteSilenceActionsOn", "RouteSilenceWindowOpens"], "freshness schedules")
    for name, props in schedules.items():
        edge = "RouteSilenceEndHour" if name.endswith("Off") else "RouteSilenceStartHour"
        failures.equal(props.get("ScheduleExpression"), {"Fn::Sub": f"cron(0 ${{{edge}}} ? * ${{RouteSilenceDays}} *)"}, f"{name} cron")
        failures.equal(props.get("ScheduleExpressionTimezone"), {"Ref": "RouteSilenceTimezone"}, f"{name} time zone")
        action = {"RouteSilenceActionsOff": "disableAlarmActions", "RouteSilenceActionsOn": "enableAlarmActions",
                  "RouteSilenceWindowOpens": "putMetricData"}[name]
        failures.equal(props["Target"]["Arn"], {"Fn::Sub": f"arn:${{AWS::Partition}}:scheduler:::aws-sdk:cloudwatch:{action}"}, f"{name} target")
        failures.equal(props["Target"]["RoleArn"], {"Fn::GetAtt": ["RouteSilenceSchedulerRole", "Arn"]}, f"{name} role")
        # The input with every condition true (OutboundMessages Enabled): valid JSON for the API.
        body, variables = props["Target"]["Input"]["Fn::Sub"]
        body = body.replace("${Outbound}", variables["Outbound"]["Fn::If"][1] if isinstance(variables["Outbound"]["Fn::If"][1], str)
                            else variables["Outbound"]["Fn::If"][1]["Fn::Sub"])
        body = re.sub(r"\$\{([A-Za-z]+)\}", r"\1", body)
        try:
            doc = json.loads(body)
        except ValueError as e:
            failures.append(f"{name} input is not JSON ({e}): {body}")
            continue
        if action == "putMetricData":
            routes = sorted((d["MetricName"], tuple((x["Name"], x["Value"]) for x in d["Dimensions"])) for d in doc["MetricData"])
            want = sorted(("EventsAccepted", (("Function", r["Properties"]["Dimensions"][0]["Value"]), ("Route", r["Properties"]["Dimensions"][1]["Value"])))
                          for k, r in resources.items() if k.endswith("SilenceAlarm"))
            failures.equal(routes, want, f"{name}: one datapoint per silence alarm's metric")
        else:
            failures.equal(sorted(doc["AlarmNames"]), sorted(k for k in resources if k.endswith("SilenceAlarm")), f"{name} alarm names")
    role = physical.get("RouteSilenceSchedulerRole")
    if failures.expect(role, "RouteSilenceSchedulerRole not created"):
        trust = clients("iam").get_role(RoleName=role)["Role"]["AssumeRolePolicyDocument"]["Statement"]
        failures.equal([s["Principal"]["Service"] for s in trust], ["scheduler.amazonaws.com"], "RouteSilenceSchedulerRole trust")


def policy_document(doc):
    """A policy document as IAM returns it: JSON, or (moto, for a role's inline policy from
    CloudFormation) the Python repr of the dict it was given."""
    if not isinstance(doc, str):
        return doc  # (moto, for a KMS key policy from CloudFormation: the dict itself)
    try:
        return json.loads(doc)
    except ValueError:
        return ast.literal_eval(doc)


def cfn_output(cfn, key):
    return {o["OutputKey"]: o["OutputValue"] for o in cfn.describe_stacks(StackName=STACK)["Stacks"][0].get("Outputs", [])}.get(key)


def disable_event_sources(lam, function):
    """moto's event source mapping receives on every send and invokes the stub function (in
    Docker, where there is one): switched off, the queue's receives are only the caller's."""
    for m in lam.list_event_source_mappings(FunctionName=function)["EventSourceMappings"]:
        lam.update_event_source_mapping(UUID=m["UUID"], Enabled=False)


def redriven(sqs, retry_url, dlq_url, max_receive):
    """Receives a message until it is gone; True if that took max_receive receives and it is in
    the DLQ."""
    sqs.send_message(QueueUrl=retry_url, MessageBody="poison")
    counts = []
    for _ in range(max_receive + 2):
        got = sqs.receive_message(QueueUrl=retry_url, MaxNumberOfMessages=1, AttributeNames=["ApproximateReceiveCount"]).get("Messages", [])
        if not got:
            break
        counts.append(int(got[0]["Attributes"]["ApproximateReceiveCount"]))
        # Not deleted (the handler failed); visible again now rather than after the timeout.
        sqs.change_message_visibility(QueueUrl=retry_url, ReceiptHandle=got[0]["ReceiptHandle"], VisibilityTimeout=0)
    dead = sqs.receive_message(QueueUrl=dlq_url, MaxNumberOfMessages=1).get("Messages", [])
    return bool(counts) and counts[-1] == max_receive and [m["Body"] for m in dead] == ["poison"]


def moto_gaps(clients, physical, table_name, dlq_url, roles, outputs):
    """MOTO_GAPS: what moto 5.2.5 drops, each with a probe that is True while it still does."""
    lam, iam = clients("lambda"), clients("iam")
    fn = lam.get_function(FunctionName=physical["RetryFunction"])["Configuration"]
    return {
        "no secrets (AWS::SecretsManager::Secret)": clients("secretsmanager").list_secrets()["SecretList"] == [],
        "secret ARN outputs empty": "SalesforceInboundSecretArn" not in outputs,
        "no HTTP API (AWS::ApiGatewayV2::*)": "${HttpApi}" in outputs.get("ApiBaseUrl", "${HttpApi}"),
        "no alarms (AWS::CloudWatch::Alarm)": clients("cloudwatch").describe_alarms()["MetricAlarms"] == [],
        "no schedules (AWS::Scheduler::Schedule)": clients("scheduler").list_schedules()["Schedules"] == [],
        "no subscriptions (AWS::SNS::Subscription)": clients("sns").list_subscriptions()["Subscriptions"] == [],
        "Architectures ignored": fn.get("Architectures") != ["arm64"],
        "LoggingConfig ignored": "LogGroup" not in fn.get("LoggingConfig", {}),
        "TracingConfig ignored": fn.get("TracingConfig", {}).get("Mode") != "Active",
        "ManagedPolicyArns ignored": iam.list_attached_role_policies(RoleName=roles["RetryFunction"])["AttachedPolicies"] == [],
        "TimeToLiveSpecification ignored": clients("dynamodb").describe_time_to_live(TableName=table_name)["TimeToLiveDescription"]["TimeToLiveStatus"] != "ENABLED",
        "RedriveAllowPolicy ignored": "RedriveAllowPolicy" not in clients("sqs").get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["All"])["Attributes"],
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--template", default=str(ROOT / "template.yaml"))
    args = parser.parse_args()
    started = time.monotonic()
    failures = check(args.template)
    for f in failures:
        print(f"stack: {f}", file=sys.stderr)
    if failures:
        sys.exit(f"stack: {len(failures)} check(s) failed on {args.template}")
    print(f"stack: {args.template} translated and created in moto's CloudFormation; resources as the template says "
          f"({time.monotonic() - started:.1f} s)")
