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
sys.path.insert(0, str(REPO / "tests"))
from support import copy_repository  # noqa: E402 -- the tests' helper: a clone's files

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
    notebook = context / "usp.ipynb"
    nb = json.loads(notebook.read_text())
    nb["metadata"]["bench_edit"] = n  # a notebook-only change, as a data scientist's commit would be
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
