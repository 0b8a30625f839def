"""Proxies in front of moto that make it behave as AWS does where the table's tests depend on it.

- glue_version_shim: real Glue refuses an UpdateTable whose VersionId is not the table's current one
  (ConcurrentModificationException), which is how two writers' commits are told apart; moto ignores it.
  The shim checks it against moto's current VersionId and forwards only a current one, one at a time.
- injecting: errors injected by rule (method, path pattern, and for JSON APIs the X-Amz-Target), every
  matching request failing so that no client retry gets through; or a request applied and then answered
  with an error (a reply lost on the way back).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import boto3
from support import Reply, proxy

JSON = {"Content-Type": "application/x-amz-json-1.1"}


def glue_error(code: str, message: str) -> Reply:
    return 400, JSON, json.dumps({"__type": code, "Message": message}).encode()


@contextmanager
def glue_version_shim(upstream: str, region: str = "us-east-1") -> Iterator[str]:
    """Glue's UpdateTable as AWS runs it: a stale VersionId is refused, a current one applied, atomically."""
    glue = boto3.client("glue", region_name=region, endpoint_url=upstream,
                        aws_access_key_id="shim", aws_secret_access_key="shim")  # fmt: skip
    lock = threading.Lock()

    def handle(request: Any, body: bytes, forward: Any) -> Reply:
        if request.headers.get("X-Amz-Target", "") != "AWSGlue.UpdateTable":
            return forward(body)
        asked = json.loads(body or b"{}")
        with lock:  # the check and the update as one step, as Glue makes them
            wanted = asked.get("VersionId")
            if wanted is not None:
                table = glue.get_table(DatabaseName=asked["DatabaseName"], Name=asked["TableInput"]["Name"])
                current = table["Table"].get("VersionId")
                if wanted != current:
                    return glue_error(
                        "ConcurrentModificationException",
                        f"Update table failed due to concurrent modifications: version {wanted} is not the "
                        f"current {current}",
                    )
            return forward(body)

    with proxy(upstream, handle) as endpoint:
        yield endpoint


@dataclass
class Rule:
    method: str
    pattern: str  # searched in the request's path (bucket and key)
    status: int = 500
    code: str = "InternalError"
    after_forwarding: bool = False  # apply the request, then answer with the error
    target: str = ""  # a JSON API's action (X-Amz-Target), e.g. AWSGlue.UpdateTable


@dataclass
class Faults:
    rules: list[Rule] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # "METHOD path" of each request answered with an error

    def fail(self, method: str, pattern: str, **how: Any) -> None:
        self.rules.append(Rule(method, pattern, **how))

    def clear(self) -> None:
        self.rules.clear()

    def rule_for(self, method: str, path: str, target: str) -> Rule | None:
        return next(
            (
                r
                for r in self.rules
                if r.method == method and re.search(r.pattern, path) and r.target in ("", target)
            ),
            None,
        )


def error(rule: Rule) -> Reply:
    if rule.target:
        return (
            rule.status,
            JSON,
            json.dumps({"__type": rule.code, "Message": "injected by the test"}).encode(),
        )
    body = (
        f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{rule.code}</Code>'
        "<Message>injected by the test</Message></Error>"
    )
    return rule.status, {"Content-Type": "application/xml"}, body.encode()


@contextmanager
def injecting(upstream: str) -> Iterator[tuple[str, Faults]]:
    """A proxy in front of upstream that fails the requests a rule matches; yields its endpoint and rules."""
    faults = Faults()

    def handle(request: Any, body: bytes, forward: Any) -> Reply:
        target = request.headers.get("X-Amz-Target", "")
        rule = faults.rule_for(request.command, request.path.split("?", 1)[0], target)
        if rule is None:
            return forward(body)
        if rule.after_forwarding:
            forward(body)
        faults.refused.append(f"{request.command} {request.path} {target}".strip())
        return error(rule)

    with proxy(upstream, handle) as endpoint:
        yield endpoint, faults
