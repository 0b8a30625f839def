"""The run roles against what a run really asks of S3. The runner image runs as the task definition (or
the validation) configures it, against a moto server whose request log is read back; each request
becomes the IAM action, resource and s3:prefix AWS would authorize, and the template's TaskRole (or
ValidateRole) must allow it, conditions included. SNS and CloudWatch requests carry their action in
the body, which the log does not show: the static test in test_runs.py covers them."""

from __future__ import annotations

import fnmatch
import re
import urllib.parse
from pathlib import Path
from typing import Any

import boto3
import pytest
from support import SAMPLE_DATE, SAMPLE_LAKE, docker_run, make_notebook, moto_server, write_rows_cell
from test_runs import RESOURCES, VALUES, resolve, statements

pytestmark = pytest.mark.docker

REQUEST = re.compile(r'"(GET|HEAD|PUT|POST|DELETE) (/[^ ]*) HTTP/1\.1" (\d{3})')


def s3_requests(log: Path, buckets: set[str]) -> list[tuple[str, str, str | None]]:
    """(action, resource ARN, s3:prefix or None) for each S3 request in moto's log to these buckets."""
    found = []
    for method, target, _status in REQUEST.findall(log.read_text()):
        url = urllib.parse.urlsplit(target)
        bucket, _, key = url.path.lstrip("/").partition("/")
        if bucket not in buckets:
            continue
        query = urllib.parse.parse_qs(url.query, keep_blank_values=True)
        key = urllib.parse.unquote(key)
        if not key:  # bucket-level: HeadBucket, ListObjects(V2), DeleteObjects
            if "delete" in query:
                continue  # DeleteObjects: the keys are in the body; each needs s3:DeleteObject (static test)
            action = "s3:GetBucketLocation" if "location" in query else "s3:ListBucket"
            prefix = query["prefix"][0] if "prefix" in query else None
            found.append((action, f"arn:aws:s3:::{bucket}", prefix))
        elif method in ("GET", "HEAD"):
            found.append(("s3:GetObject", f"arn:aws:s3:::{bucket}/{key}", None))
        elif method == "DELETE":
            action = "s3:AbortMultipartUpload" if "uploadId" in query else "s3:DeleteObject"
            found.append((action, f"arn:aws:s3:::{bucket}/{key}", None))
        else:  # PUT (an object, a part, a copy) and POST (multipart uploads)
            found.append(("s3:PutObject", f"arn:aws:s3:::{bucket}/{key}", None))
    return found


def condition_holds(condition: dict[str, Any], prefix: str | None) -> bool:
    for operator, tests in condition.items():
        for key, expected in tests.items():
            assert key == "s3:prefix", f"the test knows only s3:prefix conditions, not {key}"
            values = [resolve(v) for v in (expected if isinstance(expected, list) else [expected])]
            if operator == "StringLike":
                if prefix is None or not any(fnmatch.fnmatchcase(prefix, v) for v in values):
                    return False
            elif operator == "Null":
                if (prefix is None) != (values == ["true"]):
                    return False
            else:
                raise AssertionError(f"the test does not know the {operator} operator")
    return True


def allowed(role: str, action: str, resource: str, prefix: str | None) -> bool:
    for statement in statements(role).values():
        actions = [statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"]
        resources = (
            statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        )
        if action not in actions or statement.get("Effect") != "Allow":
            continue
        if not any(fnmatch.fnmatchcase(resource, str(resolve(r))) for r in resources):
            continue
        if condition_holds(statement.get("Condition", {}), prefix):
            return True
    return False


def role_env(role: str) -> dict[str, str]:
    """The runner's variables as the task definition, or the validation, sets them."""
    if role == "TaskRole":
        (container,) = RESOURCES["TaskDefinition"]["Properties"]["ContainerDefinitions"]
        return {e["Name"]: str(resolve(e["Value"])) for e in container["Environment"]}
    variables = RESOURCES["ValidateProject"]["Properties"]["Environment"]["EnvironmentVariables"]
    project = {
        v["Name"]: str(resolve(v["Value"])) for v in variables if v["Name"] in ("DATA_URI", "VALIDATION_URI")
    }
    # buildspec-validate.yml: OUTPUT_URI="${VALIDATION_URI}/${COMMIT_ID}"
    return {"DATA_URI": project["DATA_URI"], "OUTPUT_URI": f"{project['VALIDATION_URI']}/4c0ffee"}


def run_as(role: str, runner_image: str, endpoint: str, tmp_path: Path, **extra: str) -> int:
    env = role_env(role)
    env |= {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "t", "AWS_SECRET_ACCESS_KEY": "t",
            "RUN_DATE": SAMPLE_DATE, "SNS_TOPIC_ARN": "", **extra}  # fmt: skip
    make_notebook(tmp_path / "nb" / "dupes.ipynb", write_rows_cell("[(1, 100, 'spa', 7)] * 2"))
    run = docker_run(runner_image, env, {tmp_path / "nb": "/nb:ro"}, network_host=True)
    return run.code


@pytest.mark.parametrize("role", ["TaskRole", "ValidateRole"])
def test_every_s3_request_of_a_run_is_one_its_role_allows(
    runner_image: str, tmp_path: Path, role: str
) -> None:
    """A run that publishes, a rerun that replaces the day, and a run whose output fails its check."""
    log = tmp_path / "moto.log"
    lake, output = VALUES["DataLakeBucket"], VALUES["OutputBucket"]
    with moto_server(log) as endpoint:
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id="t", aws_secret_access_key="t")  # fmt: skip
        for bucket in (lake, output):
            s3.create_bucket(Bucket=bucket)
        for path in SAMPLE_LAKE.rglob("*.json"):
            s3.upload_file(str(path), lake, f"{VALUES['DataLakePrefix']}/{path.relative_to(SAMPLE_LAKE)}")
        log.write_text("")  # the set-up's own requests are not the run's
        codes = [
            run_as(role, runner_image, endpoint, tmp_path / "first"),
            run_as(role, runner_image, endpoint, tmp_path / "rerun"),
            run_as(role, runner_image, endpoint, tmp_path / "bad", NOTEBOOK="/nb/dupes.ipynb"),
        ]
    requests = s3_requests(log, {lake, output})

    assert codes == [0, 0, 20]
    assert {a for a, _, _ in requests} >= {"s3:ListBucket", "s3:GetObject", "s3:PutObject"}
    denied = sorted({r for r in requests if not allowed(role, *r)})
    assert denied == [], f"{role} would deny these requests of a run: {denied}"
