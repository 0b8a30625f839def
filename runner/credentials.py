"""What the notebook's code (its kernel, every package it imports, the check) may hold: never the task's
credentials, nor their URI, nor any setting of the runner's.

- NOTEBOOK_ROLE_ARN set: the runner assumes that role (tagged with the run's id and date, which the role's
  policy uses to scope its writes to this run's staging location) and serves its credentials, refreshed
  before they expire, over the container-credentials protocol on 127.0.0.1, behind a random token:
  AWS_CONTAINER_CREDENTIALS_FULL_URI + AWS_CONTAINER_AUTHORIZATION_TOKEN, which botocore, the AWS CLI and
  the AWS C++ SDK under pyarrow all honour (the C++ SDK only on 127.0.0.x).
- No role, and the runner holds container credentials (an ECS task): the notebook gets no credentials.
- No role, no container credentials (a laptop's `docker run -e AWS_...`): the user's own keys or profile
  reach the notebook; there is no boundary to keep there.
"""

from __future__ import annotations

import datetime as dt
import hmac
import json
import logging
import re
import secrets
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from runner.config import SETTING_NAMES
from runner.locations import aws_client, aws_problem
from runner.sandbox import Workspace, notebook_environment

log = logging.getLogger("runner")

# AWS variables that configure where and how to call AWS, never who calls: these reach the notebook.
AWS_SETTINGS = re.compile(
    r"^AWS_(REGION|DEFAULT_REGION|ENDPOINT_URL(_[A-Z0-9_]+)?|CA_BUNDLE|RETRY_MODE|MAX_ATTEMPTS|"
    r"STS_REGIONAL_ENDPOINTS|USE_FIPS_ENDPOINT|USE_DUALSTACK_ENDPOINT)$"
)
# Who calls: the variables the SDKs take credentials from. A laptop's own reach its notebook.
USER_CREDENTIALS = (
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE",
)  # fmt: skip
TASK_CREDENTIALS = ("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI")
SESSION_SECONDS = 3600  # role chaining (a task role assuming another role) allows at most one hour
REFRESH_BEFORE = dt.timedelta(minutes=20)  # botocore refreshes from 15 minutes before expiry


def runs_in_task(environ: Mapping[str, str]) -> bool:
    """Whether the runner holds container credentials (an ECS task, or a build that passed them on)."""
    return any(environ.get(name) for name in TASK_CREDENTIALS)


def session_name(run_id: str) -> str:
    return re.sub(r"[^\w+=,.@-]", "-", f"notebook-{run_id}")[:64]


class RoleCredentials:
    """NOTEBOOK_ROLE_ARN's credentials for this run, assumed with the runner's own and renewed as they age."""

    def __init__(self, role_arn: str, run_id: str, run_date: str) -> None:
        self.role_arn, self.run_id, self.run_date = role_arn, run_id, run_date
        self._lock = threading.Lock()
        self._current: dict[str, Any] | None = None

    def get(self) -> dict[str, Any]:
        with self._lock:
            now = dt.datetime.now(dt.UTC)
            if self._current is None or self._current["Expiration"] - now < REFRESH_BEFORE:
                self._current = self._assume()
            return self._current

    def _assume(self) -> dict[str, Any]:
        reply = aws_client("sts").assume_role(
            RoleArn=self.role_arn,
            RoleSessionName=session_name(self.run_id),
            DurationSeconds=SESSION_SECONDS,
            # NotebookRole's policy reads these: its writes are limited to this run's staging location.
            Tags=[{"Key": "run-id", "Value": self.run_id}, {"Key": "run-date", "Value": self.run_date}],
        )
        log.info("assumed %s for the notebook (session %s)", self.role_arn, session_name(self.run_id))
        return reply["Credentials"]

    def boto3_session(self) -> Any:
        import boto3

        c = self.get()
        return boto3.Session(
            aws_access_key_id=c["AccessKeyId"], aws_secret_access_key=c["SecretAccessKey"],
            aws_session_token=c["SessionToken"],
        )  # fmt: skip


class CredentialServer:
    """The container-credentials endpoint the notebook's SDKs call: 127.0.0.1 only, one token per run."""

    def __init__(self, credentials: RoleCredentials) -> None:
        self.credentials = credentials
        self.token = secrets.token_urlsafe(32)
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                given = self.headers.get("Authorization", "")
                if self.path != "/credentials" or not hmac.compare_digest(given, server.token):
                    self._reply(403, {"code": "AccessDenied", "message": "wrong path or token"})
                    return
                try:
                    c = server.credentials.get()
                except Exception as exc:  # noqa: BLE001 -- the SDK gets the reason, the log says it once
                    log.warning("could not assume %s for the notebook (%s)", server.credentials.role_arn,
                                aws_problem(exc))  # fmt: skip
                    self._reply(500, {"code": "AssumeRoleFailed", "message": aws_problem(exc)})
                    return
                self._reply(200, {
                    "AccessKeyId": c["AccessKeyId"], "SecretAccessKey": c["SecretAccessKey"],
                    "Token": c["SessionToken"], "RoleArn": server.credentials.role_arn,
                    "Expiration": c["Expiration"].strftime("%Y-%m-%dT%H:%M:%SZ"),
                })  # fmt: skip

            def _reply(self, status: int, body: dict[str, str]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/credentials"
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="credentials", daemon=True)

    def __enter__(self) -> CredentialServer:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


class NotebookIdentity:
    """How the notebook's code reaches AWS in this run, and the environment its processes get."""

    def __init__(self, environ: Mapping[str, str], role: RoleCredentials | None, work: Workspace) -> None:
        self.environ = environ
        self.role = role
        self.work = work
        self.server: CredentialServer | None = None
        self.in_task = runs_in_task(environ)

    @property
    def mode(self) -> str:
        if self.role:
            return "role"
        return "none" if self.in_task else "user"

    def describe(self) -> str:
        return {
            "role": f"the notebook runs as {self.role.role_arn if self.role else ''}",
            "none": "the notebook runs without AWS credentials (NOTEBOOK_ROLE_ARN is not set; the task's "
            "own are never handed to it)",
            "user": "the notebook gets the AWS credentials given to the container, if any",
        }[self.mode]

    def __enter__(self) -> NotebookIdentity:
        if self.role:
            self.server = CredentialServer(self.role).__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.server:
            self.server.__exit__(*exc)

    def env(self) -> dict[str, str]:
        """The notebook's environment: this one without any credential, credential URI or runner setting,
        with a home and a temporary folder of its own."""
        env = {}
        for name, value in self.environ.items():
            if name in SETTING_NAMES or name.startswith(("ECS_", "RUNNER_")):
                continue  # the runner's settings (OUTPUT_URI above all) and the task's metadata endpoint
            if name.startswith("AWS_") and not AWS_SETTINGS.match(name):
                continue
            env[name] = value
        if self.mode == "user":
            env |= {n: self.environ[n] for n in USER_CREDENTIALS if n in self.environ}
        else:  # no instance metadata either: the SDKs stop looking instead of timing out there
            env["AWS_EC2_METADATA_DISABLED"] = "true"
        if self.server:
            env["AWS_CONTAINER_CREDENTIALS_FULL_URI"] = self.server.url
            env["AWS_CONTAINER_AUTHORIZATION_TOKEN"] = self.server.token
        return notebook_environment(env, self.work)

    def session(self) -> Any:
        """A boto3 session signing as the notebook does (for the preflight of its data location)."""
        import boto3

        if self.role:
            return self.role.boto3_session()
        if self.mode == "user":
            return boto3.Session()
        return None
