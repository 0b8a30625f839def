"""`make bench`'s comparison: the runner image's size and its overhead over the plain script on the full
snapshot, for the commit BEFORE (git archive of it) and for this working tree (AFTER), side by side, in one
run, on the same base; and the timeline of one run of each (timeline.py).

Each version is built by its own scripts/build.sh (the runner, then the usp model with the runner's own
recipe, from the version's own files). The runs alternate between the two versions, REPEAT times after a
round that warms the page cache; each version's plain script runs in its own image.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import timeline
from support import FARGATE_CAPS, build_model, build_runner, copy_repository

REPO = Path(__file__).resolve().parents[1]
BEFORE = os.environ.get("BENCH_BEFORE", "8ebfa47")  # the commit before issue 20's smaller and quicker image
SNAPSHOT = REPO.parent / "shared" / "data" / "challenge"
RUNNER_UID = 10001  # the image's runner user, which owns the output folders the bench mounts
REPEAT = 5
TRACED_RUNS = 3  # the timeline is the run of median total among these
OVERHEAD_GOAL_S, SIZE_GOAL_MB = 1.5, 450
RUN_ENV = ("-e", "DATA_URI=/data/lake", "-e", "OUTPUT_URI=/output", "-e", "RUN_DATE=2019-08-01")


@dataclass
class Version:
    name: str  # before or after
    source: Path
    runner: str  # image tags
    model: str
    runs: list[float]
    scripts: list[float]

    @property
    def runner_s(self) -> float:
        return statistics.median(self.runs)

    @property
    def script_s(self) -> float:
        return statistics.median(self.scripts)


def sh(*cmd: str) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"bench: {' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return done.stdout


def size_mb(image: str) -> float:
    return int(sh("docker", "image", "inspect", "--format", "{{.Size}}", image)) / 1e6


def source_of(work: Path, name: str) -> Path:
    """BEFORE's files (git archive: the repository is only read), or this working tree's."""
    dest = work / name
    dest.mkdir()
    if name == "after":
        return copy_repository(dest)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", BEFORE], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return dest


def build(work: Path, name: str, base: str) -> Version:
    source = source_of(work, name)
    runner = build_runner(f"notebook-runner:bench-{name}", base, root=source)
    model = build_model(source, f"notebook-model:bench-{name}", runner)
    return Version(name, source, runner, model, [], [])


def full_lake(dest: Path) -> Path:
    """The full snapshot as the runs read it: one day of each table, readable by the notebook's user."""
    for table in ("accommodation", "unique_selling_points"):
        part = dest / table / "date=2019-08-01"
        part.mkdir(parents=True)
        shutil.copyfile(SNAPSHOT / f"{table}.json", part / f"{table}.json")
    for path in [dest, *dest.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return dest


def runner_folder(path: Path) -> Path:
    """An output folder the image's runner user owns, as make run gives it."""
    path.mkdir(parents=True)
    os.chown(path, RUNNER_UID, RUNNER_UID)
    return path


def plain_script(work: Path, image: str) -> Path:
    """The notebook with the run's parameters, as a plain script: papermill only injects them, nbconvert
    converts (the runner's own, in its environment)."""
    plain = work / "plain"
    plain.mkdir()
    plain.chmod(0o777)
    sh(
        "docker", "run", "--rm", "-v", f"{plain}:/plain", "--entrypoint", "/bin/sh", image, "-c",
        "R=/opt/notebook-runner/venv/bin; $R/papermill --prepare-only -p date 2019-08-01 "
        "-p data_uri /data/lake -p output_uri /tmp/out /app/usp.ipynb /plain/usp.ipynb "
        "&& $R/jupyter nbconvert --log-level ERROR --to python /plain/usp.ipynb",
    )  # fmt: skip
    return plain


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    sh(*command)
    return time.perf_counter() - start


def overhead(work: Path, versions: list[Version]) -> None:
    """Each version's runner and plain script, alternating, REPEAT times after a warming round; each
    version's output folder is its own (its first run creates the table, the others replace the day)."""
    data = full_lake(work / "lake")
    plain = plain_script(work, versions[-1].model)
    mounts = ["-v", f"{data}:/data/lake:ro"]
    outs = {v.name: runner_folder(work / f"out-{v.name}") for v in versions}
    for n in range(REPEAT + 1):
        for v in versions:
            run = timed(["docker", "run", "--rm", *FARGATE_CAPS, *mounts, "-v", f"{outs[v.name]}:/output",
                         *RUN_ENV, v.model])  # fmt: skip
            script = timed(["docker", "run", "--rm", *mounts, "-v", f"{plain}:/plain:ro", "-w", "/app",
                            "--entrypoint", "/opt/venv/bin/python", v.model, "/plain/usp.py"])  # fmt: skip
            if n:
                v.runs.append(run)
                v.scripts.append(script)


def traced(work: Path, v: Version) -> timeline.Timeline:
    """The timeline of v's run of median total among TRACED_RUNS, each with a new output folder (so its
    commit creates the table, as a model's first run does)."""
    image = timeline.traced_image(v.model, f"notebook-model:bench-{v.name}-traced")
    mounts = ["-v", f"{work / 'lake'}:/data/lake:ro"]
    runs = []
    for n in range(TRACED_RUNS):
        out = runner_folder(work / f"traced-{v.name}-{n}")
        command = ["docker", "run", "--rm", *FARGATE_CAPS, *mounts, "-v", f"{out}:/output", *RUN_ENV, image]
        runs.append(timeline.run_traced(command))
    return timeline.median_run(runs)


def runs_s(runs: list[float]) -> str:
    return ", ".join(f"{r:.2f}" for r in runs)


def compare(work: Path, base: str) -> list[str]:
    """The comparison as Markdown: sizes and overheads, then the timeline and the slow imports."""
    versions = [build(work, "before", base), build(work, "after", base)]
    overhead(work, versions)
    before, after = versions
    size = {v.name: (size_mb(v.runner), size_mb(v.model)) for v in versions}
    extra = {v.name: v.runner_s - v.script_s for v in versions}
    fastest = {v.name: min(v.runs) - min(v.scripts) for v in versions}
    measures = [
        ("runner image", f"{size['before'][0]:.0f} MB", f"{size['after'][0]:.0f} MB",
         f"<= {SIZE_GOAL_MB} MB"),
        ("usp model image", f"{size['before'][1]:.0f} MB", f"{size['after'][1]:.0f} MB", ""),
        (f"full snapshot, runner (whole contract), median of {REPEAT}", f"{before.runner_s:.2f} s",
         f"{after.runner_s:.2f} s", ""),
        ("full snapshot, same code as a plain script", f"{before.script_s:.2f} s",
         f"{after.script_s:.2f} s", ""),
        ("runner overhead", f"{extra['before']:+.2f} s", f"{extra['after']:+.2f} s",
         f"<= +{OVERHEAD_GOAL_S} s"),
        ("runner overhead, fastest runs (less of what else the machine does)", f"{fastest['before']:+.2f} s",
         f"{fastest['after']:+.2f} s", ""),
    ]  # fmt: skip
    lines = [f"Before ({BEFORE}) and after (this working tree), on {base} ({size_mb(base):.0f} MB):", ""]
    lines += ["| measure | before | after | goal |", "|---|---|---|---|"]
    lines += ["| " + " | ".join(row) + " |" for row in measures]
    lines += ["", "Runs (s), alternating before and after:", ""]
    for v in versions:
        lines.append(f"- {v.name}: runner {runs_s(v.runs)}; script {runs_s(v.scripts)}")
    lines += ["", f"The timeline of one run (the median total of {TRACED_RUNS}, a new table each):", ""]
    lines += timeline.rows(traced(work, before), traced(work, after))
    costs = [timeline.import_costs(v.model) for v in versions]
    lines += ["", *timeline.import_rows(*costs)]
    return lines
