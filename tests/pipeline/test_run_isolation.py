"""The runner out of the notebook's reach in a daily run (issue 16): the image run as the task definition
configures it, read-only root as on Fargate, with the task's credentials served as ECS serves them, against
moto behind the IAM proxy. A notebook that plants AWS configuration where the runner used to look never
gets the runner to sign with its keys; a writer that changes the staged objects between the runner's steps
never gets a row published that the check did not read."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from support import FARGATE_CAPS, SAMPLE_DATE, docker_run, make_notebook, write_rows_cell
from test_run_identity import STACK_VALUES, VALUES, Stack, stack, task_environment  # noqa: F401

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runner"))
from test_runner_isolation import (
    assert_published_only_what_the_check_read,
    check_read,
    run_watching,
    swap_model,
    swapping,
)

pytestmark = pytest.mark.docker

PLANTED_KEY = "AKIAPLANTEDBYNOTEBOOK"
# An AWS configuration whose credential_process hands out a key of the notebook's choosing, planted in every
# home the runner could have: the folder around the notebook's own (the old runner's HOME, its work folder,
# on a read-only root), the image's home of the runner, /tmp.
PLANT_AWS = f"""
import glob, json, os, stat
here = os.environ["HOME"]
# (not its own home: its own pyarrow would read that one, which is the notebook's own business)
homes = {{os.path.dirname(here), "/home/runner", "/tmp"}} | set(glob.glob("/tmp/notebook-run.*"))
creds = json.dumps({{"Version": 1, "AccessKeyId": "{PLANTED_KEY}", "SecretAccessKey": "planted"}})
planted = {{}}
for home in sorted(homes):
    try:
        os.makedirs(f"{{home}}/.aws", exist_ok=True)
        with open(f"{{home}}/.aws/planted.sh", "w") as f:
            f.write(f"#!/bin/sh\\necho '{{creds}}'\\n")
        os.chmod(f"{{home}}/.aws/planted.sh", 0o755)
        with open(f"{{home}}/.aws/config", "w") as f:
            f.write(f"[default]\\ncredential_process = {{home}}/.aws/planted.sh\\n")
        planted[home] = "ALLOWED"
    except OSError as exc:
        planted[home] = type(exc).__name__
print("PLANTED " + json.dumps(planted))
"""


def test_an_aws_configuration_the_notebook_plants_never_signs_a_request_of_the_runner(
    stack: Stack,  # noqa: F811 -- the module-scoped fixture, imported
    runner_image: str,
    tmp_path: Path,
) -> None:
    nb_dir = tmp_path / "nb"
    make_notebook(nb_dir / "plant.ipynb", write_rows_cell(), PLANT_AWS)  # its own writes done, it plants
    nb_dir.chmod(0o755)

    env = task_environment(stack, STACK_VALUES) | {"NOTEBOOK": "/nb/plant.ipynb", "RUN_ID": "plant"}
    run = docker_run(runner_image, env, {nb_dir: "/nb:ro"}, network_host=True, extra=("--read-only",))

    assert run.code == 0, run.stderr[-3000:]
    planted = [d for d in stack.iam.decisions if d.key == PLANTED_KEY]
    assert planted == []
    assert "PLANTED {" in run.stderr
    runner = [d for d in stack.iam.by_role("TaskRole") if d.allowed]
    assert any(
        c.action == "glue:UpdateTable" or c.action == "glue:CreateTable" for d in runner for c in d.checks
    )


def test_what_is_published_on_s3_is_exactly_what_the_check_read_whatever_the_staged_objects_become(
    stack: Stack,  # noqa: F811
    runner_image: str,
    tmp_path: Path,
) -> None:
    """A writer with the staging bucket (the notebook's credentials stay valid for their session) swaps the
    staged object at each step of the run (SWAPS: after the notebook, after the copy, as the check starts,
    during the check, after it)."""
    nb_dir = swap_model(tmp_path / "nb", (
        "import pyarrow.fs as pafs\n"
        "fs, root = pafs.FileSystem.from_uri(output_uri)\n"
        "with fs.open_output_stream(f'{root}/date={date}/part-0.parquet') as f:\n"
        "    f.write(open('/nb/bad.parquet', 'rb').read())\n"
    ))  # fmt: skip
    run_id = "swap-s3"
    key = f"daily/date={SAMPLE_DATE}/{run_id}/date={SAMPLE_DATE}/part-0.parquet"
    s3 = stack.client("s3")
    env = task_environment(stack, STACK_VALUES) | {
        "NOTEBOOK": "/nb/writes.ipynb", "CHECK_SCRIPT": "/nb/reading_check.py", "RUN_ID": run_id,
    }  # fmt: skip
    args = ["docker", "run", "--rm", *FARGATE_CAPS, "--read-only", "--network", "host",
            "-v", f"{nb_dir}:/nb:ro", *[f"-e{k}={v}" for k, v in env.items()], runner_image]  # fmt: skip

    run = run_watching(
        args, swapping(lambda data: s3.put_object(Bucket=VALUES["StagingBucket"], Key=key, Body=data))
    )

    from pyiceberg.exceptions import NoSuchTableError

    try:  # the plant test's rows (all 'spa'), or no table yet: never this run's
        usps = stack.table_day(env["OUTPUT_TABLE"], SAMPLE_DATE).column("usp").to_pylist()
    except NoSuchTableError:
        usps = []
    ours = [u for u in usps if u != "spa"]
    assert_published_only_what_the_check_read(run, check_read(run), ours or None)
