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
# The runner's own Python environment (the image's); elsewhere, the Python on PATH.
if [[ -x "${HERE}/venv/bin/python" ]]; then RUNNER_PYTHON="${HERE}/venv/bin/python"; else RUNNER_PYTHON=python3; fi
readonly RUNNER_PYTHON

die() {
	printf 'run_notebook.sh: %s\n' "$*" >&2
	exit 1
}

main() {
	command -v "$RUNNER_PYTHON" >/dev/null 2>&1 || die "${RUNNER_PYTHON} is not on PATH: run the image, or install Python 3.11"
	[[ -f "${HERE}/runner/run.py" ]] || die "the runner package is missing beside this script (${HERE}/runner): rebuild the image"
	# -I: no PYTHON* variable, user site or working directory (the notebook project's /app) decides what
	# the runner imports; it imports from its own folder alone.
	exec "$RUNNER_PYTHON" -I -c 'import sys; sys.path.insert(0, sys.argv.pop(1)); from runner.run import main; sys.exit(main())' \
		"$HERE" "$@"
}

main "$@"
