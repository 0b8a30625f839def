"""A small stand-in for CodeBuild: run a buildspec's phases as CodeBuild runs them.

One bash for the whole build (buildspec version 0.2: variables set by one command are seen by the
next), the phases in CodeBuild's order, each command's exit status checked as CodeBuild checks it, the
first failing command failing its phase and the build, and the buildspec's exported-variables read at
the end. The environment is what the CodeBuild project (template/pipeline.yaml) and the pipeline's
action set, plus the variables CodeBuild itself sets.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

PHASES = ("install", "pre_build", "build", "post_build")
HARNESS_BIN = Path(__file__).resolve().parent / "harness"
# Where harness/aws hands its calls to the server that has boto3 and its models loaded (harness/aws_server.py,
# started by conftest.py's harness_aws_server): in this process's environment while one serves, passed on to
# each build. harness/aws reads it as its SOCKET (test_harness_server's build test fails if the two differ).
AWS_SOCKET = "HARNESS_AWS_SOCKET"


@dataclass
class Build:
    succeeded: bool
    failed_phase: str | None
    log: str
    exported: dict[str, str] = field(default_factory=dict)


def script(buildspec: dict) -> str:
    # A command may also end the shell itself (`exit 1`): the EXIT trap reports the phase it was in.
    on_exit = (
        'trap \'__rc=$?; if [ "$__rc" -ne 0 ]; then echo "[harness] phase $__phase FAILED (exit $__rc)"; '
        'echo "__FAILED__ $__phase" >>"$HARNESS_REPORT"; fi\' EXIT'
    )
    lines = ["__phase=none", on_exit]
    for phase in PHASES:
        for command in buildspec["phases"].get(phase, {}).get("commands", []):
            lines += [f"__phase={phase}", command, '__rc=$?; if [ "$__rc" -ne 0 ]; then exit "$__rc"; fi']
    for name in buildspec.get("env", {}).get("exported-variables", []):
        lines.append(f'printf "%s=%s\\n" {name} "${{{name}:-}}" >>"$HARNESS_REPORT"')
    return "\n".join(lines) + "\n"


def run(buildspec_source: Path | str, source: Path, env: dict[str, str], timeout: int = 900) -> Build:
    """Run the buildspec (a file of the repository, or a template's inline text) in `source` (the source
    artifact) with `env` on top of CodeBuild's own."""
    text = buildspec_source.read_text() if isinstance(buildspec_source, Path) else buildspec_source
    buildspec = yaml.safe_load(text)
    stem = buildspec_source.stem if isinstance(buildspec_source, Path) else "inline-buildspec"
    assert buildspec["version"] == 0.2
    shell = buildspec.get("env", {}).get("shell", "bash")
    report_file = source.parent / f"{stem}.report"
    report_file.unlink(missing_ok=True)
    full_env = {
        "PATH": f"{HARNESS_BIN}:{Path(sys.executable).parent}:{os.environ['PATH']}",
        "HOME": os.environ.get("HOME", "/root"),
        "CODEBUILD_SRC_DIR": str(source),
        "CODEBUILD_BUILD_NUMBER": "7",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "AWS_REGION": "eu-west-1",
        "DOCKER_CONFIG": str(source.parent / "docker-config"),  # docker login writes here, not to ~/.docker
        "HARNESS_REPORT": str(report_file),  # where the harness's own lines (failures, exports) go
        **{name: os.environ[name] for name in (AWS_SOCKET,) if name in os.environ},
        **env,
    }
    proc = subprocess.run(
        [shell, "-c", script(buildspec)],
        cwd=source,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    report = report_file.read_text().splitlines() if report_file.exists() else []
    failed = next((line.split()[1] for line in report if line.startswith("__FAILED__")), None)
    exported = dict(line.split("=", 1) for line in report if re.match(r"^[A-Z_][A-Z0-9_]*=", line))
    return Build(proc.returncode == 0 and failed is None, failed, proc.stdout + proc.stderr, exported)
