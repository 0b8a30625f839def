"""IAM in front of moto, which enforces none: an HTTP proxy that authorizes each request as AWS would for
the role whose key signed it, from the template's own policy statements, and forwards only what that role
may do (AccessDenied otherwise). Every request is kept as a Decision, so a test can hold a whole run (or a
validation) to its roles: which key signed each request, which role that key is, what was allowed.

Keys become roles in two ways: the test names the keys it hands out (the task's, the validate project's),
and a key that STS hands back for an allowed AssumeRole of a known role is that role, with the session
tags the request set (policy variables such as ${aws:PrincipalTag/run-id} read them). A request with no
signature is refused and kept as such: pyarrow's S3 client sends unsigned requests when it finds no
credentials, which moto would otherwise accept.
"""

from __future__ import annotations

import fnmatch
import json
import re
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from xml.etree import ElementTree

from support import http_server, proxy

ACCOUNT = "123456789012"  # moto's default account
MOTO_ACCOUNT = "x-moto-account-id"  # the header that names the account a request to moto is in
ADMIN = "*admin*"  # the test's own set-up: allowed everything
CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/\d{8}/([^/]+)/([^/]+)/aws4_request")
SERVICES = {"monitoring": "cloudwatch"}  # signing name -> IAM prefix, where they differ


@dataclass(frozen=True)
class Check:
    """One authorization a request needs: action on resource, with the request's condition keys."""

    action: str
    resource: str
    context: dict[str, str] = field(default_factory=dict, hash=False, compare=False)


@dataclass
class Principal:
    role: str  # a role's logical name in the template, or ADMIN
    tags: dict[str, str] = field(default_factory=dict)


@dataclass
class Decision:
    method: str
    path: str
    key: str | None  # None: the request was not signed
    role: str | None
    checks: list[Check]
    allowed: bool
    status: int = 0  # what the client got back

    @property
    def actions(self) -> list[str]:
        return [c.action for c in self.checks]


# --- policy evaluation ---------------------------------------------------------------------------------


def _substitute(value: str, tags: dict[str, str]) -> str:
    """Policy variables: ${aws:PrincipalTag/K} is the session's tag (a missing tag matches nothing)."""

    def one(m: re.Match[str]) -> str:
        name = m.group(1)
        if name.startswith("aws:PrincipalTag/"):
            return tags.get(name.split("/", 1)[1], "\x00no-such-tag\x00")
        raise AssertionError(f"the proxy does not know the policy variable {name}")

    return re.sub(r"\$\{([^}]+)\}", one, value)


def _like(pattern: str, value: str) -> bool:
    """IAM's wildcards: * any run of characters, ? one; nothing else is special."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, re.DOTALL) is not None


def _condition_holds(condition: dict[str, Any], context: dict[str, str], tags: dict[str, str]) -> bool:
    for operator, tests in condition.items():
        for key, expected in tests.items():
            values = [
                _substitute(str(v), tags) for v in (expected if isinstance(expected, list) else [expected])
            ]
            actual = context.get(key)
            if operator == "Null":
                holds = (actual is None) == (values == ["true"])
            elif operator in ("StringLike", "ArnLike"):
                holds = actual is not None and any(_like(v, actual) for v in values)
            elif operator in ("StringEquals", "ArnEquals", "Bool"):  # Bool: a key no request sets: no match
                holds = actual in values
            else:
                raise AssertionError(f"the proxy does not know the {operator} condition operator")
            if not holds:
                return False
    return True


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def allows(statements: list[dict[str, Any]], check: Check, tags: dict[str, str]) -> bool:
    """Whether these statements allow the check: an Allow matches, and no Deny does."""

    def matches(statement: dict[str, Any]) -> bool:
        named = any(
            fnmatch.fnmatch(check.action.lower(), a.lower())
            for a in _listed(statement.get("Action", statement.get("NotAction")))
        )
        if named == ("NotAction" in statement):  # Action: one of those; NotAction: any but those
            return False
        if not any(_like(_substitute(str(r), tags), check.resource) for r in _listed(statement["Resource"])):
            return False
        return _condition_holds(statement.get("Condition", {}), check.context, tags)

    if any(matches(s) for s in statements if s["Effect"] == "Deny"):
        return False
    return any(matches(s) for s in statements if s["Effect"] == "Allow")


# --- what a request asks for -----------------------------------------------------------------------------


def _s3_checks(method: str, path: str, query: dict[str, list[str]], headers: Any, body: bytes) -> list[Check]:
    bucket, _, key = urllib.parse.unquote(path.lstrip("/")).partition("/")
    if not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", bucket):
        return []  # no bucket at all (pyarrow probes the endpoint with one): S3 refuses it before IAM asks
    bucket_arn = f"arn:aws:s3:::{bucket}"
    if not key:  # bucket-level: HeadBucket, ListObjects(V2), GetBucketLocation, DeleteObjects, CreateBucket
        if "delete" in query:
            # the test's own clients' request bodies, parsed to name the keys
            keys = [e.text or "" for e in ElementTree.fromstring(body).iter() if e.tag.endswith("Key")]  # noqa: S314
            return [Check("s3:DeleteObject", f"{bucket_arn}/{k}") for k in keys]
        if "location" in query:
            return [Check("s3:GetBucketLocation", bucket_arn)]
        if method == "PUT":
            return [Check("s3:CreateBucket", bucket_arn)]
        context = {"s3:prefix": query["prefix"][0]} if "prefix" in query else {}
        return [Check("s3:ListBucket", bucket_arn, context)]
    object_arn = f"{bucket_arn}/{key}"
    if method in ("GET", "HEAD"):
        return [Check("s3:GetObjectVersion" if "versionId" in query else "s3:GetObject", object_arn)]
    if method == "DELETE":
        return [Check("s3:AbortMultipartUpload" if "uploadId" in query else "s3:DeleteObject", object_arn)]
    checks = [Check("s3:PutObject", object_arn)]  # PUT (an object, a part, a copy), POST (multipart uploads)
    source = headers.get("x-amz-copy-source")
    if source:
        source_path = urllib.parse.unquote(source.split("?", 1)[0]).lstrip("/")
        action = "s3:GetObjectVersion" if "versionId=" in source else "s3:GetObject"
        checks.insert(0, Check(action, f"arn:aws:s3:::{source_path}"))
    return checks


def _cbor_text_after(body: bytes, name: str) -> str | None:
    """In a CBOR body (CloudWatch's rpc-v2-cbor), the text value that follows the key `name`."""
    key = bytes([0x60 + len(name)]) + name.encode()
    at = body.find(key)
    if at < 0:
        return None
    at += len(key)
    head = body[at]
    if 0x60 <= head <= 0x77:
        length, at = head - 0x60, at + 1
    elif head == 0x78:
        length, at = body[at + 1], at + 2
    else:
        return None
    return body[at : at + length].decode()


def _cbor_map(fields: dict[str, str]) -> bytes:
    """A small CBOR map of short text strings (an error body for an rpc-v2-cbor client)."""

    def text(s: str) -> bytes:
        data = s.encode()[:255]
        return (bytes([0x60 + len(data)]) if len(data) < 24 else bytes([0x78, len(data)])) + data

    return bytes([0xA0 + len(fields)]) + b"".join(text(k) + text(v) for k, v in fields.items())


def _pass_role(arn: str | None) -> list[Check]:
    context = {"iam:PassedToService": "ecs-tasks.amazonaws.com"}
    return [Check("iam:PassRole", arn, context)] if arn else []


def _ecs_arn(region: str, kind: str, name: str, account: str) -> str:
    return name if name.startswith("arn:") else f"arn:aws:ecs:{region}:{account}:{kind}/{name}"


def _json_checks(service: str, action: str, region: str, body: dict[str, Any], account: str) -> list[Check]:
    """What IAM checks for one JSON API call of `account`'s (a resource another account owns is named by
    the request: an ECR registryId)."""
    name = f"{service}:{action}"
    if service == "ssm" and "Name" in body:
        parameter = body["Name"] if body["Name"].startswith("/") else "/" + body["Name"]
        return [Check(name, f"arn:aws:ssm:{region}:{account}:parameter{parameter}")]
    if service == "ecr" and "repositoryName" in body:
        owner = body.get("registryId") or account
        return [Check(name, f"arn:aws:ecr:{region}:{owner}:repository/{body['repositoryName']}")]
    if name == "cloudwatch:PutMetricData":
        return [Check(name, "*", {"cloudwatch:namespace": body.get("Namespace", "")})]
    if name == "ecs:RegisterTaskDefinition":
        return [
            Check(name, "*"),
            *_pass_role(body.get("taskRoleArn")),
            *_pass_role(body.get("executionRoleArn")),
        ]
    if name == "ecs:RunTask":
        definition = body["taskDefinition"].rsplit("task-definition/", 1)[-1]
        definition = definition if ":" in definition else f"{definition}:latest"
        cluster = _ecs_arn(region, "cluster", body.get("cluster", "default"), account)
        overrides = body.get("overrides", {})
        return [
            Check(name, _ecs_arn(region, "task-definition", definition, account), {"ecs:cluster": cluster}),
            *_pass_role(overrides.get("taskRoleArn")),
            *_pass_role(overrides.get("executionRoleArn")),
        ]
    if service == "athena":
        return _athena_checks(name, region, body, account)
    if name in GLUE_READS or name in GLUE_TABLE_WRITES:
        return _glue_checks(name, region, body, account)
    if name == "events:PutEvents":
        return [_put_event_check(region, entry, account) for entry in body.get("Entries", [])]
    if name in ("ecs:DescribeTasks", "ecs:StopTask"):
        cluster = body.get("cluster", "default").rsplit("/", 1)[-1]
        tasks = body.get("tasks") or [body.get("task", "")]
        names = [f"{cluster}/{t.rsplit('/', 1)[-1]}" for t in tasks]
        return [Check(name, _ecs_arn(region, "task", task, account)) for task in names]
    return [Check(name, "*")]


QUERY = "athena-query:"  # a query's resource until Iam.decide names its workgroup


def _athena_checks(name: str, region: str, body: dict[str, Any], account: str) -> list[Check]:
    """Athena authorizes on the workgroup: named by the request, or the one its query ran in (Iam learns it
    from StartQueryExecution's reply)."""
    if "QueryExecutionId" in body:
        return [Check(name, QUERY + body["QueryExecutionId"])]
    workgroup = body.get("WorkGroup") or body.get("Name") or "primary"
    return [Check(name, f"arn:aws:athena:{region}:{account}:workgroup/{workgroup}")]


# The Glue Data Catalog's reads and the resources each authorizes on (the AWS Glue Developer Guide,
# "Specifying AWS Glue resource ARNs": the catalog, the database, and the table or all its tables).
GLUE_READS = (
    "glue:GetDatabase", "glue:GetTable", "glue:GetTables", "glue:GetPartition", "glue:GetPartitions",
)  # fmt: skip


GLUE_TABLE_WRITES = ("glue:CreateTable", "glue:UpdateTable")  # named by TableInput.Name


def _glue_checks(name: str, region: str, body: dict[str, Any], account: str) -> list[Check]:
    prefix = f"arn:aws:glue:{region}:{account}"
    database = body.get("Name", "") if name == "glue:GetDatabase" else body.get("DatabaseName", "")
    table = {
        "glue:GetTable": body.get("Name"),
        "glue:GetTables": "*",
        "glue:CreateTable": body.get("TableInput", {}).get("Name"),
        "glue:UpdateTable": body.get("TableInput", {}).get("Name"),
    }.get(name, body.get("TableName"))
    resources = [f"{prefix}:catalog", f"{prefix}:database/{database}"]
    if table:
        resources.append(f"{prefix}:table/{database}/{table}")
    return [Check(name, resource) for resource in resources]


def _put_event_check(region: str, entry: dict[str, Any], account: str) -> Check:
    """PutEvents authorizes each entry on its bus, with its source and detail type as condition keys
    (EventBridge's "Using IAM policy conditions": events:source, events:detail-type)."""
    bus = entry.get("EventBusName") or "default"
    arn = bus if bus.startswith("arn:") else f"arn:aws:events:{region}:{account}:event-bus/{bus}"
    context = {"events:source": entry.get("Source", ""), "events:detail-type": entry.get("DetailType", "")}
    return Check("events:PutEvents", arn, context)


def _query_checks(service: str, form: dict[str, list[str]]) -> list[Check]:
    action = form.get("Action", ["?"])[0]
    name = f"{service}:{action}"
    if name == "sts:GetCallerIdentity":
        return []  # needs no permission
    if name == "sts:AssumeRole":
        role = form["RoleArn"][0]
        tagged = any(k.startswith("Tags.member.") for k in form)
        return [Check(name, role), *([Check("sts:TagSession", role)] if tagged else [])]
    if service == "sns":
        return [Check(name, form.get("TopicArn", ["*"])[0])]
    if name == "cloudwatch:PutMetricData":
        return [Check(name, "*", {"cloudwatch:namespace": form.get("Namespace", [""])[0]})]
    return [Check(name, "*")]


def requested(
    method: str, target: str, headers: Any, body: bytes, account: str = ACCOUNT
) -> tuple[str | None, str, list[Check]]:
    """The signing key (None if unsigned), the region, and what IAM would check for this request of a
    principal of `account`."""
    url = urllib.parse.urlsplit(target)
    query = urllib.parse.parse_qs(url.query, keep_blank_values=True)
    signed = CREDENTIAL.search(headers.get("Authorization", "") or urllib.parse.unquote(url.query))
    key, region, service = signed.groups() if signed else (None, "us-east-1", "")
    service = SERVICES.get(service, service)
    amz_target = headers.get("X-Amz-Target", "")
    if url.path.startswith("/moto-api/"):
        return key, region, []
    if service == "s3" or (not service and not amz_target):
        return key, region, _s3_checks(method, url.path, query, headers, body)
    if amz_target:
        return (
            key,
            region,
            _json_checks(service, amz_target.rsplit(".", 1)[-1], region, json.loads(body or b"{}"), account),
        )
    if "/operation/" in url.path:  # rpc-v2-cbor
        action = url.path.rsplit("/", 1)[-1]
        context = {"cloudwatch:namespace": _cbor_text_after(body, "Namespace") or ""}
        return key, region, [Check(f"{service}:{action}", "*", context if service == "cloudwatch" else {})]
    return key, region, _query_checks(service, urllib.parse.parse_qs(body.decode(), keep_blank_values=True))


# --- across accounts --------------------------------------------------------------------------------------


@dataclass
class Accounts:
    """What IAM knows of the other accounts, shared by each account's proxy: who owns each bucket (an S3 ARN
    names no account), and the resource policies (a bucket's, a repository's) that may let a principal of
    another account in. A request across accounts needs both its role's grant and the owner's policy
    (IAM's "Cross-account policy evaluation logic"); one within an account, its role's grant alone."""

    buckets: dict[str, str] = field(default_factory=dict)  # bucket name -> its account
    policies: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # bucket name or repository ARN

    def owner(self, resource: str, default: str) -> str:
        if resource.startswith("arn:aws:s3:::"):
            return self.buckets.get(resource.removeprefix("arn:aws:s3:::").split("/", 1)[0], default)
        parts = resource.split(":")
        return parts[4] if len(parts) > 5 and parts[4] else default

    def admits(self, check: Check, account: str, role_arn: str, tags: dict[str, str]) -> bool:
        """Whether the resource's policy allows the check to the role `role_arn` of `account`."""
        if check.resource.startswith("arn:aws:s3:::"):
            statements = self.policies.get(check.resource.removeprefix("arn:aws:s3:::").split("/", 1)[0], [])
        else:
            statements = self.policies.get(check.resource, [])
        names = {account, f"arn:aws:iam::{account}:root", role_arn}

        def for_principal(statement: dict[str, Any]) -> bool:
            principal = statement.get("Principal")
            if principal == "*":
                return True
            named = _listed(principal.get("AWS", [])) if isinstance(principal, dict) else []
            return bool(names & {str(p) for p in named})

        # a repository policy names no Resource: its repository is the resource
        applying = [{"Resource": check.resource, **s} for s in statements if for_principal(s)]
        return allows(applying, check, tags)


# --- the proxy ----------------------------------------------------------------------------------------------


class Iam:
    """The roles (by logical name, their statements resolved) of one account, the keys known to be theirs,
    and every decision taken."""

    def __init__(
        self,
        roles: dict[str, list[dict[str, Any]]],
        role_arns: dict[str, str],
        account: str = ACCOUNT,
        accounts: Accounts | None = None,
    ) -> None:
        self.roles = roles
        self.role_arns = role_arns  # role ARN -> logical name, for AssumeRole
        self.account = account
        self.accounts = accounts or Accounts()
        self.keys: dict[str, Principal] = {}
        self.decisions: list[Decision] = []
        self.queries: dict[str, str] = {}  # Athena query id -> its workgroup's ARN
        self.lock = threading.Lock()

    def give(self, key: str, role: str) -> str:
        self.keys[key] = Principal(role)
        return key

    def principal(self, key: str | None) -> Principal | None:
        return self.keys.get(key) if key else None

    def decide(self, method: str, target: str, headers: Any, body: bytes) -> Decision:
        key, _, checks = requested(method, target, headers, body, self.account)
        checks = [  # S3 names the account that owns the bucket (the condition key s3:ResourceAccount)
            Check(
                c.action,
                c.resource,
                {**c.context, "s3:ResourceAccount": self.accounts.owner(c.resource, self.account)},
            )
            if c.action.startswith("s3:")
            else c
            for c in checks
        ]
        checks = [
            Check(c.action, self.queries.get(c.resource[len(QUERY) :], "an unknown query"), c.context)
            if c.resource.startswith(QUERY)
            else c
            for c in checks
        ]
        who = self.principal(key)
        if who is None:
            allowed = False
        elif who.role == ADMIN:
            allowed = True
        else:
            statements = self.roles[who.role]
            allowed = all(allows(statements, c, who.tags) and self._admitted(c, who) for c in checks)
        decision = Decision(method, target, key, who.role if who else None, checks, allowed)
        with self.lock:
            self.decisions.append(decision)
        return decision

    def _admitted(self, check: Check, who: Principal) -> bool:
        """A resource of another account: whether its policy lets this principal in."""
        if self.accounts.owner(check.resource, self.account) == self.account:
            return True
        arn = next((a for a, role in self.role_arns.items() if role == who.role), "")
        return self.accounts.admits(check, self.account, arn, who.tags)

    def learn(self, decision: Decision, body: bytes, form: dict[str, list[str]]) -> None:
        """An allowed AssumeRole of a known role: the key STS returned is that role's, with the session's
        tags."""
        role = self.role_arns.get(form.get("RoleArn", [""])[0])
        found = re.search(rb"<AccessKeyId>([^<]+)</AccessKeyId>", body)
        if role and found:
            count = sum(1 for k in form if k.startswith("Tags.member.") and k.endswith(".Key"))
            tags = {
                form[f"Tags.member.{n}.Key"][0]: form[f"Tags.member.{n}.Value"][0]
                for n in range(1, count + 1)
            }
            self.keys[found.group(1).decode()] = Principal(role, tags)

    def learn_query(self, decision: Decision, reply: bytes) -> None:
        """An allowed StartQueryExecution: later calls on its query are authorized on its workgroup."""
        (check,) = decision.checks
        self.queries[json.loads(reply)["QueryExecutionId"]] = check.resource

    def by_role(self, role: str | None) -> list[Decision]:
        return [d for d in self.decisions if d.role == role]


def _denied(decision: Decision, headers: Any) -> tuple[int, dict[str, str], bytes]:
    message = (
        f"{decision.role or 'an unsigned request'} is not authorized to perform {', '.join(decision.actions)}"
    )
    if headers.get("X-Amz-Target"):
        body = json.dumps({"__type": "AccessDeniedException", "message": message}).encode()
        return 400, {"Content-Type": "application/x-amz-json-1.1"}, body
    if "/operation/" in decision.path:
        body = _cbor_map({"__type": "AccessDeniedException", "message": message})
        return 403, {"Content-Type": "application/cbor", "smithy-protocol": "rpc-v2-cbor"}, body
    if CREDENTIAL.search(headers.get("Authorization", "")) and "/s3/" not in headers.get("Authorization", ""):
        body = (
            "<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code>"
            f"<Message>{message}</Message></Error><RequestId>iam-proxy</RequestId></ErrorResponse>"
        ).encode()
        return 403, {"Content-Type": "text/xml"}, body
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f"<Error><Code>AccessDenied</Code><Message>{message}</Message></Error>"
    )
    return 403, {"Content-Type": "application/xml"}, body.encode()


@contextmanager
def enforcing(iam: Iam, upstream: str) -> Iterator[str]:
    """The proxy on 127.0.0.1 in front of upstream (moto's endpoint); yields its own endpoint."""

    def handle(request: Any, body: bytes, forward: Any) -> tuple[int, dict[str, str], bytes]:
        decision = iam.decide(request.command, request.path, request.headers, body)
        if decision.allowed:  # in moto's backends of this proxy's account, whatever the client claims
            status, headers, reply = forward(body, {MOTO_ACCOUNT: iam.account})
            if status == 200 and any(c.action == "sts:AssumeRole" for c in decision.checks):
                iam.learn(decision, reply, urllib.parse.parse_qs(body.decode(), keep_blank_values=True))
            if status == 200 and decision.actions == ["athena:StartQueryExecution"]:
                iam.learn_query(decision, reply)
        else:
            status, headers, reply = _denied(decision, request.headers)
        decision.status = status
        return status, headers, reply

    with proxy(upstream, handle) as endpoint:
        yield endpoint


@contextmanager
def container_credentials(key: str) -> Iterator[tuple[str, str]]:
    """A stand-in for ECS's task credential endpoint on 127.0.0.1 (what a task's SDKs find through
    AWS_CONTAINER_CREDENTIALS_*): serves `key`'s credentials behind a token; yields (full URI, token)."""
    token = f"task-token-{key}"

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            ok = self.headers.get("Authorization") == token
            served = {
                "AccessKeyId": key, "SecretAccessKey": "task-secret", "Token": "task-session",
                "Expiration": "2099-01-01T00:00:00Z",
            }  # fmt: skip
            body = json.dumps(served if ok else {"message": "bad token"}).encode()
            self.send_response(200 if ok else 403)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    with http_server(Handler) as port:
        yield f"http://127.0.0.1:{port}/v2/credentials/task", token
