"""The buildspec harness's aws served (harness/aws_server.py, started by conftest.py's harness_aws_server): a
call handed to the server does what the same call does in its own process, signed with its own caller's key.

A served call is made here with `python -S`, which cannot import boto3: only the server can have answered it.
"""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import boto3
import pytest
import yaml
from codebuild import AWS_SOCKET, HARNESS_BIN, run

AWS = HARNESS_BIN / "aws"
BUCKET = "harness-served"


def environment(key: str, endpoint: str, region: str = "eu-west-1", **more: str) -> dict[str, str]:
    return {
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "HOME": os.environ["HOME"],
        "AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": f"{key}-secret", "AWS_DEFAULT_REGION": region,
        "AWS_ENDPOINT_URL": endpoint, **more,
    }  # fmt: skip


def outcome(args: list[str], env: dict[str, str], cwd: Path, python: list[str]) -> tuple[object, ...]:
    """A call's exit status, stdout, stderr and the files it left in its (empty) working directory."""
    cwd.mkdir()
    done = subprocess.run(
        [*python, str(AWS), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=60
    )
    files = {path.name: path.read_text() for path in cwd.iterdir()}
    return done.returncode, done.stdout, done.stderr, files


@pytest.mark.parametrize(
    ("command", "status", "stdout", "files"),
    [
        ("ssm put-parameter --name /served/p --value v --type String --overwrite", 0, "", {}),
        ("ssm get-parameter --name /served/p --query Parameter.Value --output text", 0, "v\n", {}),
        (f"s3 cp s3://{BUCKET}/in/data.txt copied.txt", 0, "", {"copied.txt": "payload"}),
        (f"s3 cp s3://{BUCKET}/in/missing.txt missing.txt", 1, "", {}),  # the CLI's message and status
        (f"s3 rm s3://{BUCKET}/in/data.txt", 1, "", {}),  # not something the buildspecs call
    ],
    ids=["put-parameter", "get-parameter", "s3-cp", "s3-cp-missing", "unknown-command"],
)
def test_a_served_call_answers_as_the_call_run_in_its_own_process_does(
    moto_endpoint: str, harness_aws_server: Path, tmp_path: Path,
    command: str, status: int, stdout: str, files: dict[str, str],
) -> None:  # fmt: skip
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1",
                      aws_access_key_id="test", aws_secret_access_key="test")  # fmt: skip
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key="in/data.txt", Body=b"payload")
    env, args = environment("caller", moto_endpoint), command.split()

    own = outcome(args, env, tmp_path / "own", [sys.executable])
    served = outcome(
        args, {**env, AWS_SOCKET: str(harness_aws_server)}, tmp_path / "served", [sys.executable, "-S"]
    )
    unserved = outcome(
        args, {**env, AWS_SOCKET: str(tmp_path / "none.sock")}, tmp_path / "unserved", [sys.executable]
    )

    assert served == own
    assert unserved == own  # no server there: the call runs in its own process, saying nothing of it
    assert (own[0], own[1], own[3]) == (status, stdout, files), own[2]


@contextmanager
def signing_recorder(callers: int) -> Iterator[str]:
    """An SSM endpoint on 127.0.0.1 whose GetParameter answers the key that signed the request and the region
    it was signed for ("key/region"), once `callers` requests are in at once; yields its URL."""
    together = threading.Barrier(callers, timeout=30)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            credential = self.headers["Authorization"].split("Credential=", 1)[1].split(",", 1)[0]
            key, _, region = credential.split("/")[:3]
            together.wait()  # broken (an error to the caller) unless the calls are answered at once
            body = json.dumps(
                {"Parameter": {"Name": "/x", "Type": "String", "Value": f"{key}/{region}"}}
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-amz-json-1.1")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def served(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    """A call started with a Python that cannot import boto3 (-S)."""
    return subprocess.Popen(
        [sys.executable, "-S", str(AWS), *args],
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def test_calls_served_at_once_are_each_signed_with_their_own_callers_key_for_its_region(
    harness_aws_server: Path,
) -> None:
    args = ["ssm", "get-parameter", "--name", "/x", "--query", "Parameter.Value"]
    callers = {"caller-a": "eu-west-1", "caller-b": "us-east-2"}
    with signing_recorder(len(callers)) as endpoint:
        calls = {
            key: served(args, environment(key, endpoint, region, **{AWS_SOCKET: str(harness_aws_server)}))
            for key, region in callers.items()
        }
        answered = {key: call.communicate(timeout=60) for key, call in calls.items()}

    assert {key: out for key, (out, _) in answered.items()} == {
        key: f"{key}/{region}\n" for key, region in callers.items()
    }, answered


def test_a_build_hands_its_aws_calls_to_the_server(harness_aws_server: Path, tmp_path: Path) -> None:
    command = 'python3 -S "$(command -v aws)" ssm get-parameter --name /x --query Parameter.Value'
    buildspec = yaml.safe_dump({"version": 0.2, "phases": {"build": {"commands": [command]}}})
    source = tmp_path / "source"
    source.mkdir()
    with signing_recorder(1) as endpoint:
        build = run(buildspec, source, {"AWS_ACCESS_KEY_ID": "builder", "AWS_SECRET_ACCESS_KEY": "secret",
                                        "AWS_ENDPOINT_URL": endpoint})  # fmt: skip

    assert build.succeeded, build.log
    assert build.log == "builder/eu-west-1\n"
