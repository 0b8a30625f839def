"""`make bench`: the runner image's size and overhead, before and after, side by side on this machine.

`make bench` (bench/before_after.py): the runner and usp model images of the commit before issue 20
(BENCH_BEFORE, default 8ebfa47) and of this working tree, built on the same base; their sizes; the runner's
overhead on the full snapshot (the whole contract: papermill, check, publish, report) against the same
notebook code run as a plain Python script in the same image (goal: at most 1.5 s more), the two versions
alternating; the timeline of one run of each (bench/timeline.py: when each step starts, and the runner's
slow imports).

`make bench ALL=1` (bench.py --all) adds:
- cold build: the runner and the model image with `--no-cache` (downloads every wheel from PyPI);
- rebuild of the model image after a notebook-only change, on the cached runner (goal: under 10 s);
- a daily run on Fargate: the full snapshot's wall time and peak memory in the container, the image's
  compressed size (what a task pulls) and the time to unpack it here, and from them the start latency and
  the cost per run and per month;
- the Athena example (examples/athena-usp): its image, awswrangler in its own requirements, against the
  platform's (which must not grow for it), and its daily run on moto behind the IAM proxy, two queries;
- publishing to the output table (runner/table.py, one Iceberg commit on the SQLite catalog) against the
  file copy it replaced (runner/publish.py as of BEFORE_TABLE), on the full snapshot's output and on ten
  times its rows: the first commit (creates the table), a replace of the day, in rows per second;
- the image's growth for the table (PyIceberg and what it needs), against the image as of BEFORE_TABLE
  built on the same base (goal: under 25 MB);
- the pipeline's stages as the tests run them (tests/pipeline/validation_stack.py): a rebuild after a
  notebook-only change in the CodeBuild stand-in, and the validation of its image by the template's inline
  buildspec, the candidate run in the Fargate stand-in behind the IAM proxy; from them and the Fargate start
  latency, the time from a push to a promoted image in AWS (goal: at most 6 minutes) and its CodeBuild cost.

Prints Markdown and writes it to bench/results/latest.md.
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
# The repository first: its runner package, not the tests' runner/ folder, is `runner` (as in conftest.py).
sys.path[:0] = [str(REPO), *(str(REPO / "tests" / d) for d in ("", "pipeline", "examples"))]
import before_after  # noqa: E402 -- make bench's comparison, before and after
import test_athena_example as athena  # noqa: E402 -- the Athena example's stack and run, as its tests make them
import validation_stack  # noqa: E402 -- the tests' stack, build and validation stages
from cfn import docker_capability_options  # noqa: E402 -- the template's capabilities of the daily run
from support import build_model, build_runner, copy_repository, local_registry, model_repository, moto_server  # noqa: E402

CODEBUILD_PER_MINUTE = 0.005  # USD, BUILD_GENERAL1_SMALL on Linux, us-east-1 (first 100 minutes a month free)
PROVISIONING = 60  # seconds CodeBuild takes to provision a build, before the buildspec starts
PROMOTION_GOAL_S = 6 * 60  # from a push to a promoted image, in AWS

# Fargate, Linux/x86, us-east-1: per vCPU-hour and per GB-hour, billed per second from the start of the image
# pull to the task's end, with a one-minute minimum.
FARGATE_VCPU_HOUR, FARGATE_GB_HOUR, FARGATE_MINIMUM_S = 0.04048, 0.004445, 60
# Fargate's start before the image pull (ENI attachment, placement): not published by AWS; a planning value.
FARGATE_PROVISIONING_S = 15
# The rate a Fargate task pulls an image from ECR in the same region, in MB/s: a planning value, not measured.
ECR_PULL_MB_S = 100
# The task sizes Fargate offers that the bench compares: (vCPU, GB), smallest first.
FARGATE_SIZES = [(0.25, 0.5), (0.25, 1), (0.25, 2), (0.5, 1), (0.5, 2), (1, 2), (1, 4), (2, 4)]
DEFAULT_SIZE = (1, 2)  # template/pipeline.yaml's TaskCpu and TaskMemory defaults

SNAPSHOT = REPO.parent / "shared" / "data" / "challenge"
BEFORE_TABLE = "d4af4e6"  # the last commit that published by copying files, before the Iceberg table
BEFORE_TWO_USERS = "34b4b46"  # the last commit whose notebook ran as the runner's own user (issue 16)
RUNNER_UID = 10001  # the image's runner user, which owns the output folders the bench mounts
# As the Fargate task runs: the daily run's task definition's capabilities, read from the template.
FARGATE = tuple(docker_capability_options("TaskDefinition"))
TABLE_GROWTH_GOAL_MB = 25
TAG = "notebook-runner:bench"
RUNNER_TAG = "notebook-runner:bench-runner"
VERSION = (REPO / "VERSION").read_text().strip()
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
    """The runner (this checkout's), then the model in `context` on it with the runner's recipe."""
    build_runner(RUNNER_TAG, base, *extra)
    build_model(context, TAG, RUNNER_TAG, options=extra)


def touch_notebook(context: Path, n: int) -> None:
    """A notebook-only change, as a data scientist's commit would be."""
    notebook = context / "usp.ipynb"
    nb = json.loads(notebook.read_text())
    nb["metadata"]["bench_edit"] = n
    notebook.write_text(json.dumps(nb, indent=1))


def publish_speed(work: Path, output: Path) -> list[tuple[str, str, str]]:
    """The full snapshot's published day (read back from the table the comparison's runs wrote), staged as
    the notebook writes it, then published the old way (copy, BEFORE_TABLE) and the new (one commit)."""
    import importlib.util

    import pyarrow as pa
    from support import day_rows

    old_source = work / "publish_before_table.py"
    old_source.write_text(sh("git", "-C", str(REPO), "show", f"{BEFORE_TABLE}:runner/publish.py").stdout)
    spec = importlib.util.spec_from_file_location("publish_before_table", old_source)
    assert spec and spec.loader
    old = sys.modules[spec.name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(old)
    day = day_rows(output, "2019-08-01", "/output")
    return [
        row
        for scale in (1, 10)
        for row in publish_once(work / f"x{scale}", pa.concat_tables([day] * scale), old)
    ]


def publish_once(work: Path, data: object, old: object) -> list[tuple[str, str, str]]:
    import pyarrow.parquet as pq

    from runner import staged as staging_area
    from runner import table
    from runner.locations import Location

    staging = work / "staging"
    staged = staging / "date=2019-08-01"
    staged.mkdir(parents=True)
    pq.write_table(data, staged / "part-0.parquet")
    config = table.TableConfig("sqlite", "notebooks.usp", Location(str(work / "table")), 30)
    runs = iter(range(1000))

    def copy() -> None:
        pinned = old.pin(Location(str(staged)), Location(str(staging)))  # type: ignore[attr-defined]
        target = Location(str(work / "copied" / "date=2019-08-01"))
        old.publish(pinned, target, f"r{next(runs)}")  # type: ignore[attr-defined]

    def commit() -> (
        None
    ):  # the checked copy made, read (in process here; the runner reads it apart), committed
        folder = Path(tempfile.mkdtemp(dir=work)) / "date=2019-08-01"
        inventory = staging_area.copy_staged(Location(str(staged)), Location(str(staging)), folder)
        checked = pq.read_table(inventory.paths(), partitioning=None)  # the runner reads no folder name
        run = f"r{next(runs)}"
        table.commit(config, table.with_date(checked, "2019-08-01"), table.Lineage(run, "2019-08-01"))
        folder.chmod(0o755)
        shutil.rmtree(folder.parent)

    copied, copy_runs = timed(copy)
    start = time.perf_counter()
    commit()  # the first: creates the table
    first = time.perf_counter() - start
    replaced, commit_runs = timed(commit)
    n = data.num_rows  # type: ignore[attr-defined]
    return [
        (f"publish {n:,} rows, the file copy before the table", f"{copied:.2f} s",
         f"{n / copied:,.0f} rows/s; runs {runs_s(copy_runs)}"),
        (f"publish {n:,} rows, one Iceberg commit replacing the day", f"{replaced:.2f} s",
         f"{n / replaced:,.0f} rows/s (the first, creating the table: {first:.2f} s); runs "
         + runs_s(commit_runs)),
    ]  # fmt: skip


def build_commit(work: Path, commit: str, tag: str, base: str) -> str:
    """The image of an earlier commit of this repository, built on base and tagged tag."""
    source = work / f"at-{commit}"
    source.mkdir()
    archive = subprocess.run(["git", "-C", str(REPO), "archive", commit], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(source)], input=archive.stdout, check=True)
    sh("docker", "build", "-q", "--build-arg", f"BASE_IMAGE={base}", "-t", tag, str(source))
    return tag


def table_growth(work: Path, base: str, total: int) -> list[tuple[str, str, str]]:
    """The image as of BEFORE_TABLE on the same base, against this one."""
    growth = (total - image_size(build_commit(work, BEFORE_TABLE, f"{TAG}-before-table", base))) / 1e6
    return [
        ("image growth for the output table", f"{growth:+.1f} MB",
         f"goal under {TABLE_GROWTH_GOAL_MB} MB: PyIceberg, SQLAlchemy (the local catalog), pydantic, "
         "the rest, trimmed; pyarrow shared with the notebook's environment; against " + BEFORE_TABLE),
    ]  # fmt: skip


def runner_folder(path: Path) -> Path:
    """An output folder the image's runner user owns, as make run gives it (one the notebook's user could
    write is refused)."""
    path.mkdir(parents=True)
    os.chown(path, RUNNER_UID, RUNNER_UID)
    return path


def two_users(work: Path, base: str, total: int) -> list[tuple[str, str, str]]:
    """The image and the runner's overhead with the notebook's user of its own, against BEFORE_TWO_USERS
    (one user) built on the same base: each image runs the full snapshot in turn, REPEAT times."""
    old = build_commit(work, BEFORE_TWO_USERS, f"{TAG}-one-user", base)
    rows = [
        ("image size, one user (" + BEFORE_TWO_USERS + ") / two users (this)",
         f"{image_size(old) / 1e6:.0f} MB / {total / 1e6:.0f} MB",
         f"{(total - image_size(old)) / 1e6:+.1f} MB; goal: no growth"),
    ]  # fmt: skip
    if not SNAPSHOT.is_dir():
        return rows
    lake = before_after.full_lake(work / "users-lake")
    times: dict[str, list[float]] = {old: [], TAG: []}
    for n in range(REPEAT + 1):
        for image in (old, TAG):
            out = runner_folder(work / f"users-out-{n}-{'one' if image == old else 'two'}")
            start = time.perf_counter()
            env = ("-e", "DATA_URI=/data/lake", "-e", "OUTPUT_URI=/output", "-e", "RUN_DATE=2019-08-01")
            sh("docker", "run", "--rm", *FARGATE, "-v", f"{lake}:/data/lake:ro", "-v", f"{out}:/output", *env,
               image)  # fmt: skip
            if n:  # the first round warms the page cache for both
                times[image].append(time.perf_counter() - start)
    before_s, after_s = statistics.median(times[old]), statistics.median(times[TAG])
    rows.append(
        ("full snapshot run, one user / two users", f"{before_s:.2f} s / {after_s:.2f} s",
         (f"{after_s - before_s:+.2f} s (medians of {REPEAT}, alternating); one user {runs_s(times[old])}; "
          f"two users {runs_s(times[TAG])}; goal: no growth")),
    )  # fmt: skip
    return rows


def footprint(work: Path) -> tuple[float, int]:
    """One run on the full snapshot, detached: its wall time and the container's peak memory (cgroup v1's
    high-water mark, read until the container exits)."""
    lake, out = before_after.full_lake(work / "footprint-lake"), runner_folder(work / "footprint-out")
    start = time.perf_counter()
    container = sh("docker", "run", "-d", *FARGATE, "-v", f"{lake}:/data/lake:ro", "-v", f"{out}:/output",
                   "-e", "DATA_URI=/data/lake", "-e", "OUTPUT_URI=/output", "-e", "RUN_DATE=2019-08-01",
                   TAG).stdout.strip()  # fmt: skip
    peak_files = [Path(f"/sys/fs/cgroup/memory/docker/{container}/memory.max_usage_in_bytes"),
                  Path(f"/sys/fs/cgroup/system.slice/docker-{container}.scope/memory.peak")]  # fmt: skip
    peak = 0
    while sh("docker", "inspect", "-f", "{{.State.Running}}", container).stdout.strip() == "true":
        for path in peak_files:
            try:
                peak = max(peak, int(path.read_text()))
            except (OSError, ValueError):
                continue
        time.sleep(0.05)
    wall = time.perf_counter() - start
    code = sh("docker", "inspect", "-f", "{{.State.ExitCode}}", container).stdout.strip()
    sh("docker", "rm", container)
    assert code == "0", f"the full-snapshot run exited {code}"
    return wall, peak


def pull_size(work: Path) -> tuple[int, float]:
    """The image as a registry holds it (gzip-compressed layers: what a task pulls), and the seconds this
    machine takes to decompress and unpack it."""
    archive = work / "image.tar.gz"
    sh("sh", "-c", f"docker save {TAG} | gzip -6 > {archive}")
    unpacked = work / "unpacked"
    unpacked.mkdir()
    start = time.perf_counter()
    sh("sh", "-c", f"gzip -dc {archive} | tar -x -C {unpacked} && for l in {unpacked}/*/layer.tar "
       f"{unpacked}/blobs/sha256/*; do tar -x -f \"$l\" -C {unpacked} 2>/dev/null || true; done")  # fmt: skip
    return archive.stat().st_size, time.perf_counter() - start


def fargate_cost(vcpu: float, gb: float, seconds: float) -> float:
    billed = max(FARGATE_MINIMUM_S, math.ceil(seconds))
    return (vcpu * FARGATE_VCPU_HOUR + gb * FARGATE_GB_HOUR) * billed / 3600


def image_pull_s(compressed: int, unpack: float) -> float:
    """A Fargate task's pull of the image from ECR (at the planning rate) and its unpacking (as measured)."""
    return compressed / 1e6 / ECR_PULL_MB_S + unpack


def fargate_start_s(compressed: int, unpack: float) -> float:
    """Fargate's start latency, estimated: placement, then the pull of the image (`compressed` bytes, which
    this machine unpacks in `unpack` seconds)."""
    return FARGATE_PROVISIONING_S + image_pull_s(compressed, unpack)


def daily_run(work: Path, compressed: int, unpack: float) -> list[tuple[str, str, str]]:
    wall, peak = footprint(work)
    pull = image_pull_s(compressed, unpack)
    start = fargate_start_s(compressed, unpack)
    billed = pull + wall  # billing starts with the pull
    needed_gb = peak / 2**30 * 1.5  # room over the peak
    smallest = next((size for size in FARGATE_SIZES if size[1] >= needed_gb), FARGATE_SIZES[-1])
    per_100_mb = 100 / ECR_PULL_MB_S + unpack * 100e6 / compressed
    latency_note = (
        f"{FARGATE_PROVISIONING_S} s placement + {compressed / 1e6:.0f} MB at {ECR_PULL_MB_S} MB/s "
        f"+ unpacking; each 100 MB compressed adds about {per_100_mb:.1f} s"
    )
    rows = [
        ("daily run: full snapshot, wall time in the container", f"{wall:.1f} s", "2 cores here"),
        ("daily run: peak memory", f"{peak / 2**20:.0f} MiB" if peak else "not measured",
         "the container's cgroup high-water mark"),
        ("image compressed (what a task pulls)", f"{compressed / 1e6:.0f} MB", "gzip -6 of the layers"),
        ("unpacking it here", f"{unpack:.1f} s", "gunzip + untar, 2 cores"),
        ("Fargate start latency, estimated", f"about {start:.0f} s", latency_note),
    ]  # fmt: skip
    for label, (vcpu, gb) in (("default size", DEFAULT_SIZE), ("smallest that fits", smallest)):
        per_run = fargate_cost(vcpu, gb, billed)
        billed_note = (
            f"{max(FARGATE_MINIMUM_S, math.ceil(billed))} s billed (1-minute minimum); "
            f"${per_run * 30:.3f} a month at one run a day"
        )
        rows.append(
            (f"Fargate cost per run, {label} ({vcpu:g} vCPU, {gb:g} GB)", f"${per_run:.5f}", billed_note)
        )
    return rows


def pipeline_stages(work: Path, base: str, compressed: int, unpack: float) -> list[tuple[str, str, str]]:
    """The build, validate and promote stages as the tests run them (tests/pipeline/validation_stack.py), on
    a stack of their own in moto behind the IAM proxy and a local registry for ECR: two pushes of a
    notebook-only change, the first validated and promoted, so that it is the second's layer cache; the
    second's stages are timed. In AWS each stage also waits for CodeBuild to provision it, and the validation
    for Fargate to start its task (the daily run's start latency: the candidate is the same image)."""
    root = work / "pipeline"
    root.mkdir()
    source = copy_repository(root / "src")
    with (
        local_registry(root) as registry,
        moto_server() as endpoint,
        validation_stack.deployed(endpoint, registry) as stack,
    ):
        stack.runner = stack.publish_runner(RUNNER_TAG, "1.0.0")
        timings = []
        try:
            for push in range(2):
                touch_notebook(source, push)
                commit = validation_stack.commit_id()
                start = time.perf_counter()
                built = validation_stack.build(source, stack, commit)
                middle = time.perf_counter()
                assert built.succeeded, built.log[-3000:]
                assert push == 0 or "no validated image yet" not in built.log, "no promoted image as cache"
                digest = built.exported["IMAGE_DIGEST"]
                validated = validation_stack.validate(
                    source, registry, stack, commit, digest, stack.runner, promote=False
                )
                assert validated.succeeded, validated.log[-3000:]
                end = time.perf_counter()
                promoted = validation_stack.promote_version(stack, digest, validated.exported["PROMOTED_BY"])
                assert promoted.succeeded, promoted.log[-3000:]
                assert stack.validated_image() == digest, "the promote stage did not promote the candidate"
                timings.append((middle - start, end - middle, time.perf_counter() - end))
        finally:  # the stages' tags name a registry that is gone once the bench ends
            tags = sh("docker", "image", "ls", "--format", "{{.Repository}}:{{.Tag}}",
                      f"{registry}/{validation_stack.REPOSITORY}").stdout.split()  # fmt: skip
            if tags:
                subprocess.run(["docker", "image", "rm", *tags], capture_output=True, check=False)
    rebuild, validate, promote = timings[-1]
    fargate = fargate_start_s(compressed, unpack)
    # each CodeBuild build, in AWS
    stages = [PROVISIONING + rebuild, PROVISIONING + fargate + validate, PROVISIONING + promote]
    wall = sum(stages)
    billed = sum(math.ceil(seconds / 60) for seconds in stages)
    verdict = "meets it" if wall <= PROMOTION_GOAL_S else "MISSES it"
    validate_note = (
        "the template's inline buildspec: register the candidate's revision, run it on the sample in the "
        "Fargate stand-in (included; the image already local), poll its status each second, record a version"
    )
    wall_note = (
        f"goal: push to promoted image <= {PROMOTION_GOAL_S // 60} min in AWS; the estimate {verdict}. "
        f"{PROVISIONING} s CodeBuild provisioning x 3 + build {rebuild:.0f} s + validation {validate:.0f} s "
        f"+ promotion {promote:.0f} s "
        f"+ Fargate start about {fargate:.0f} s ({FARGATE_PROVISIONING_S} s placement + "
        f"{compressed / 1e6:.0f} MB pulled at {ECR_PULL_MB_S} MB/s + unpacking); not counted: the "
        "buildspec's 15 s status polling in AWS, CodePipeline's transitions"
    )
    cost_note = (
        f"{billed} billed minutes at ${CODEBUILD_PER_MINUTE}/min, the validation's wait for Fargate included"
    )
    return [
        ("pipeline: build stage, notebook-only change", f"{rebuild:.1f} s",
         "goal < 10 s; build + push, the promoted image pulled as the layer cache"),
        ("pipeline: validate stage", f"{validate:.1f} s", validate_note),
        ("pipeline: promote stage", f"{promote:.1f} s",
         "the template's inline buildspec: read the version records, pin the run family, record, mail"),
        ("pipeline: push to promoted image in AWS, estimated", f"about {wall / 60:.1f} min", wall_note),
        ("pipeline: CodeBuild cost per push", f"about ${billed * CODEBUILD_PER_MINUTE:.3f}", cost_note),
    ]  # fmt: skip


def athena_example(work: Path, base: str, platform_size: int) -> list[tuple[str, str, str]]:
    """The Athena example's image (its requirements hold awswrangler; the platform's do not) and its daily
    run on moto behind the IAM proxy, as tests/examples/test_athena_example.py makes them."""
    context = model_repository(athena.EXAMPLE, work / "athena-repo")
    notebook = athena.PARAMETERS["NotebookPath"]
    build_model(context, athena.IMAGE, RUNNER_TAG, f"NOTEBOOK={notebook}")
    size = image_size(athena.IMAGE)
    runs = []
    for _ in range(REPEAT):
        with athena.deployed(athena.VALUES) as stack:
            stack.queue_results(
                athena.athena_result(athena.USP_COLUMNS, athena.USPS),
                athena.athena_result(athena.DESTINATION_COLUMNS, athena.DESTINATIONS),
            )
            start = time.perf_counter()
            run = stack.run(athena.IMAGE)
            runs.append(time.perf_counter() - start)
            assert run.code == 0, run.stderr[-3000:]
    rows = len(athena.USPS)
    return [
        ("Athena example image (awswrangler in its requirements)", f"{size / 1e6:.0f} MB",
         f"{(size - platform_size) / 1e6:+.0f} MB over the usp image, whose requirements are unchanged"),
        ("Athena example daily run on moto", f"{statistics.median(runs):.2f} s",
         f"2 queries, {rows:,} rows, behind the IAM proxy, container start included; runs {runs_s(runs)}"),
    ]  # fmt: skip


def everything(tmp: Path, base: str, output: Path) -> list[tuple[str, str, str]]:
    """bench.py --all's measures beyond the comparison (output: the table the comparison's runs wrote)."""
    rows: list[tuple[str, str, str]] = []
    context = copy_repository(tmp / "context")
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
        ("rebuild after a notebook-only change", f"{rebuild:.2f} s",
         f"the model image on the cached runner; goal < 10 s; runs {runs_s(runs)}")
    )  # fmt: skip
    runner_size = image_size(RUNNER_TAG)
    rows += [
        ("runner image (the platform's, no model)", f"{runner_size / 1e6:.0f} MB", f"version {VERSION}"),
        ("model image over the runner", f"{(total - runner_size) / 1e6:.2f} MB",
         "usp's own requirements (pyarrow is the platform's: nothing more) and files; goal: those only"),
    ]  # fmt: skip
    compressed, unpack = pull_size(tmp)  # the image as a Fargate task pulls it
    rows += publish_speed(tmp, output)
    rows += daily_run(tmp, compressed, unpack)
    rows += two_users(tmp, base, total)
    rows += table_growth(tmp, base, total)
    rows += athena_example(tmp, base, total)
    rows += pipeline_stages(tmp, base, compressed, unpack)
    return rows


def main() -> int:
    base = os.environ.get("BASE_IMAGE") or sh(str(REPO / "scripts" / "base-image.sh")).stdout.strip()
    if not SNAPSHOT.is_dir():
        sys.exit(f"bench: no full snapshot at {SNAPSHOT}: the overhead is measured on it")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "compare"
        work.mkdir()
        lines = before_after.compare(work, base)
        if "--all" in sys.argv[1:]:
            rows = everything(Path(tmp), base, work / "out-after")
            lines += ["", "| measure | value | note |", "|---|---|---|"]
            lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    machine = f"{os.cpu_count()} cores, Docker legacy builder, {time.strftime('%Y-%m-%d')}"
    report = f"Measured by `make bench` on this machine ({machine}):\n\n" + "\n".join(lines) + "\n"
    print(report)
    results = REPO / "bench" / "results"
    results.mkdir(exist_ok=True)
    (results / "latest.md").write_text(report)
    return 0


def runs_s(runs: list[float]) -> str:
    return ", ".join(f"{r:.2f}" for r in runs)


if __name__ == "__main__":
    sys.exit(main())
