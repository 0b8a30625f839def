#!/usr/bin/env bash
# run_notebook.sh -- the runner image's entrypoint.
#
# Runs a parameterised Jupyter notebook with papermill into a staging location of the run, runs the
# project's check script on what it wrote, and only when the check passes publishes exactly the files it
# checked to OUTPUT_URI. Every run leaves its executed notebook, an HTML report and manifest.json under
# REPORT_URI/date=<RUN_DATE>/<RUN_ID>/. Configuration comes from the environment: `run_notebook.sh --help`.
#
# The run itself is Python's (runner/, one module per step; exit codes in runner/exits.py). This script
# only hands over to it with exec: a shell left as the runner's parent would keep the task's credential
# variables readable in its /proc/<pid>/environ, which the notebook's code could read.
set -Eeuo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly HERE
PYTHON=${PYTHON:-python3}

die() {
	printf 'run_notebook.sh: %s\n' "$*" >&2
	exit 1
}

main() {
	command -v "$PYTHON" >/dev/null 2>&1 || die "${PYTHON} is not on PATH: run the image, or set PYTHON to the runner's Python"
	[[ -f "${HERE}/runner/run.py" ]] || die "the runner package is missing beside this script (${HERE}/runner): rebuild the image"
	export PYTHONPATH="${HERE}${PYTHONPATH:+:${PYTHONPATH}}"
	# -P: never import from the working directory (the notebook project's /app) instead of the runner.
	exec "$PYTHON" -P -m runner "$@"
}

main "$@"
