"""`make bench`: the runner image's size, build times and overhead, measured side by side on this machine.

- image size: the built image, its base, and what the runner and the notebook's requirements add;
- cold build: `docker build --no-cache` (downloads every wheel from PyPI);
- rebuild after a notebook-only change, with the previous build as cache (goal: at most 5 s);
- the runner's overhead on the full snapshot: the whole contract (papermill, check, publish, report) against
  the same notebook code run as a plain Python script, both in the same image (goal: at most 1.5 s more).

Prints a Markdown table and writes it to bench/results/latest.md.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests"), str(REPO / "tests" / "pipeline")]
from codebuild import run as run_buildspec  # noqa: E402 -- the tests' CodeBuild stand-in
from support import SAMPLE_LAKE, copy_repository, local_registry, moto_server  # noqa: E402

CODEBUILD_PER_MINUTE = 0.005  # USD, BUILD_GENERAL1_SMALL on Linux, us-east-1 (first 100 minutes a month free)
PROVISIONING = 60  # seconds CodeBuild takes to provision a build, before the buildspec starts

SNAPSHOT = REPO.parent / "shared" / "data" / "challenge"
TAG = "notebook-runner:bench"
REPEAT = 5


def sh(*cmd: str, **kw: object) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, **kw)  # type: ignore[call-overload]
    if done.returncode:
        sys.exit(f"bench: {' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return done


def timed(action: Callable[[], object], repeat: int = REPEAT) -> tuple[float, list[float]]:
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        action()
        runs.append(time.perf_counter() - start)
    return statistics.median(runs), runs


def image_size(image: str) -> int:
    return int(sh("docker", "image", "inspect", "--format", "{{.Size}}", image).stdout)


def build(context: Path, base: str, *extra: str) -> None:
    sh("docker", "build", "-q", *extra, "--build-arg", f"BASE_IMAGE={base}", "-t", TAG, str(context))


def touch_notebook(context: Path, n: int) -> None:
    """A notebook-only change, as a data scientist's commit would be."""
    notebook = context / "usp.ipynb"
    nb = json.loads(notebook.read_text())
    nb["metadata"]["bench_edit"] = n
    notebook.write_text(json.dumps(nb, indent=1))


def full_lake(dest: Path) -> Path:
    for table in ("accommodation", "unique_selling_points"):
        part = dest / table / "date=2019-08-01"
        part.mkdir(parents=True)
        shutil.copyfile(SNAPSHOT / f"{table}.json", part / f"{table}.json")
    for path in [dest, *dest.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return dest


def overhead(work: Path) -> tuple[float, float, list[float], list[float]]:
    lake = full_lake(work / "lake")
    out = work / "out"
    out.mkdir(mode=0o777)
    out.chmod(0o777)
    plain = work / "plain"
    plain.mkdir()
    plain.chmod(0o777)
    # The same notebook and parameters as a plain script: papermill only injects them, nbconvert converts.
    sh(
        "docker", "run", "--rm", "-v", f"{plain}:/plain", "--entrypoint", "sh", TAG, "-c",
        "papermill --prepare-only -p date 2019-08-01 -p data_uri /data/lake -p output_uri /tmp/out "
        "/app/usp.ipynb /plain/usp.ipynb && jupyter nbconvert --log-level ERROR --to python /plain/usp.ipynb",
    )  # fmt: skip
    mounts = ["-v", f"{lake}:/data/lake:ro"]

    def runner() -> None:
        sh("docker", "run", "--rm", *mounts, "-v", f"{out}:/output", "-e", "DATA_URI=/data/lake",
           "-e", "OUTPUT_URI=/output", "-e", "RUN_DATE=2019-08-01", TAG)  # fmt: skip

    def script() -> None:
        sh("docker", "run", "--rm", *mounts, "-v", f"{plain}:/plain:ro", "-w", "/app",
           "--entrypoint", "python", TAG, "/plain/usp.py")  # fmt: skip

    runner()  # warm the page cache for both
    with_runner, runner_runs = timed(runner)
    as_script, script_runs = timed(script)
    return with_runner, as_script, runner_runs, script_runs


def pipeline_stages(work: Path, base: str) -> list[tuple[str, str, str]]:
    """The buildspecs in the CodeBuild stand-in: a rebuild after a notebook-only change, with the previous
    image in the registry and the layer cache, and the validation of its image on the sample."""
    import boto3

    source = copy_repository(work / "pipeline" / "src")
    with local_registry(work) as registry, moto_server() as endpoint:
        aws = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_ENDPOINT_URL": endpoint}
        session = boto3.Session(
            aws_access_key_id="bench", aws_secret_access_key="bench", region_name="eu-west-1"
        )
        clients = {n: session.client(n, endpoint_url=endpoint) for n in ("s3", "ssm", "sns")}
        for bucket in ("lake", "output"):
            clients["s3"].create_bucket(
                Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
            )
        for path in SAMPLE_LAKE.rglob("*.json"):
            clients["s3"].upload_file(str(path), "lake", f"snapshots/{path.relative_to(SAMPLE_LAKE)}")
        clients["ssm"].put_parameter(Name="/bench/validated-image", Value="none", Type="String")
        topic = clients["sns"].create_topic(Name="bench")["TopicArn"]
        build_env = {"IMAGE_REPO_URI": f"{registry}/bench", "NOTEBOOK": "usp.ipynb", "BASE_IMAGE": base}
        validate_env = {
            "IMAGE_REPO_URI": f"{registry}/bench", "DATA_URI": "s3://lake/snapshots",
            "VALIDATION_URI": "s3://output/validation", "VALIDATION_DATE": "2019-08-01",
            "IMAGE_PARAMETER": "/bench/validated-image", "SNS_TOPIC_ARN": topic,
            "HARNESS_REGISTRY": registry, **aws,
        }  # fmt: skip
        timings = []
        for commit in ("a" * 40, "b" * 40):  # the first push is promoted, and is the second's cache
            touch_notebook(source, len(timings))
            start = time.perf_counter()
            built = run_buildspec(REPO / "buildspec.yml", source, {**build_env, "COMMIT_ID": commit})
            middle = time.perf_counter()
            digest = built.exported.get("IMAGE_DIGEST", "")
            checked = run_buildspec(
                REPO / "buildspec-validate.yml",
                source,
                {**validate_env, "COMMIT_ID": commit, "IMAGE_DIGEST": digest},
            )
            assert built.succeeded and checked.succeeded, (built.log + checked.log)[-3000:]
            timings.append((middle - start, time.perf_counter() - middle))
        rebuild, validate = timings[-1]
    minutes = [(PROVISIONING + seconds) / 60 for seconds in (rebuild, validate)]
    cost = sum(math.ceil(m) for m in minutes) * CODEBUILD_PER_MINUTE
    wall = sum(minutes)
    return [
        ("pipeline: build stage, notebook-only change", f"{rebuild:.1f} s", "goal < 10 s; build + push"),
        ("pipeline: validate stage", f"{validate:.1f} s", "pull by digest, run on the sample, promote"),
        ("pipeline: expected wall time per push in AWS", f"about {wall:.1f} min",
         f"+{PROVISIONING} s provisioning per CodeBuild stage"),
        ("pipeline: CodeBuild cost per push", f"about ${cost:.3f}",
         f"{sum(math.ceil(m) for m in minutes)} billed minutes at ${CODEBUILD_PER_MINUTE}/min"),
    ]  # fmt: skip


def main() -> int:
    base = os.environ.get("BASE_IMAGE") or sh(str(REPO / "scripts" / "base-image.sh")).stdout.strip()
    rows: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        context = copy_repository(Path(tmp) / "context")
        start = time.perf_counter()
        build(context, base, "--no-cache")
        cold = time.perf_counter() - start
        total, base_size = image_size(TAG), image_size(base)
        rows += [
            ("image size (uncompressed)", f"{total / 1e6:.0f} MB", f"on {base}"),
            ("  of which the base image", f"{base_size / 1e6:.0f} MB", "a stand-in when no registry answers"),
            ("  added by runner + notebook requirements", f"{(total - base_size) / 1e6:.0f} MB", ""),
            ("cold build (--no-cache)", f"{cold:.1f} s", "wheels downloaded from PyPI"),
        ]
        counter = iter(range(1000))
        rebuild, runs = timed(lambda: (touch_notebook(context, next(counter)), build(context, base)))
        rows.append(
            ("rebuild after a notebook-only change", f"{rebuild:.2f} s", f"goal <= 5 s; runs {runs_s(runs)}")
        )
        if SNAPSHOT.is_dir():
            with_runner, as_script, r_runs, s_runs = overhead(Path(tmp))
            rows += [
                ("full snapshot, runner (whole contract)", f"{with_runner:.2f} s", f"runs {runs_s(r_runs)}"),
                (
                    "full snapshot, same code as a plain script",
                    f"{as_script:.2f} s",
                    f"runs {runs_s(s_runs)}",
                ),
                ("runner overhead", f"{with_runner - as_script:+.2f} s", "goal <= +1.5 s"),
            ]
        else:
            rows.append(("runner overhead", "not measured", f"no snapshot at {SNAPSHOT}"))
        rows += pipeline_stages(Path(tmp), base)
    table = "\n".join(
        ["| measure | value | note |", "|---|---|---|", *(f"| {a} | {b} | {c} |" for a, b, c in rows)]
    )
    machine = f"{os.cpu_count()} cores, Docker legacy builder, {time.strftime('%Y-%m-%d')}"
    report = f"Measured by `make bench` on this machine ({machine}):\n\n{table}\n"
    print(report)
    results = REPO / "bench" / "results"
    results.mkdir(exist_ok=True)
    (results / "latest.md").write_text(report)
    return 0


def runs_s(runs: list[float]) -> str:
    return ", ".join(f"{r:.2f}" for r in runs)


if __name__ == "__main__":
    sys.exit(main())
