#!/bin/bash
# run_notebook.sh -- the runner image's entrypoint.
#
# Runs a parameterised Jupyter notebook with papermill into a staging location of the run, runs the
# project's check script on a copy of what it wrote, and only when the check passes publishes exactly that
# copy to OUTPUT_URI. Every run leaves its executed notebook, an HTML report and manifest.json under
# REPORT_URI/date=<RUN_DATE>/<RUN_ID>/. Configuration comes from the environment: `run_notebook.sh --help`.
#
# The container starts as root only to drop it: this script hands the run over, with exec, to the runner's
# Python (runner/, one module per step; exit codes in runner/exits.py) under the runner's own user, with no
# capability but SETUID, SETGID and KILL (to start and stop the notebook under the notebook's user) and
# no_new_privs. A shell left as the runner's parent would keep the task's credential variables in its
# /proc/<pid>/environ; exec leaves none.
set -Eeuo pipefail

# This script runs as root: every command it runs comes from the image's own system folders, whatever PATH
# the container was given (never the notebook's environment, /opt/venv/bin, which holds what its
# requirements installed). The runner gets the container's PATH, for the notebook's processes alone.
readonly CONTAINER_PATH=${PATH:-}
PATH=/usr/sbin:/usr/bin:/sbin:/bin

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly HERE
# The users of untrusted code and of what reads its output back (runner/processes.py): never the runner's.
readonly NOTEBOOK_USER=notebook READER_USER=reader RUNNER_ACCOUNT=runner
# CAP_KILL (5), CAP_SETGID (6), CAP_SETUID (7): what the runner keeps. CAP_SETPCAP (8): to drop the rest
# from the bounding set too (a task that dropped it already has nothing more to drop).
readonly KEPT_CAPS=0xe0 SETPCAP=0x100 CONFIG_EXIT=2

die() {
	printf 'run_notebook.sh: %s\n' "$*" >&2
	exit "$CONFIG_EXIT"
}

effective_caps() { awk '/^CapEff:/ {print "0x" $2}' /proc/self/status; }

# runner_ids: the runner's uid:gid, RUNNER_USER=uid:gid (so that a local run writes its files as you) or
# the image's runner user; never root's, never the notebook's or the reader's.
runner_ids() {
	local ids=${RUNNER_USER:-$(id -u "$RUNNER_ACCOUNT"):$(id -g "$RUNNER_ACCOUNT")} account
	# No leading zero: the checks below compare text, and setpriv reads 010003 as 10003.
	[[ "$ids" =~ ^(0|[1-9][0-9]{0,9}):(0|[1-9][0-9]{0,9})$ ]] || die "RUNNER_USER=${ids} is not uid:gid: give numbers without leading zeros, e.g. RUNNER_USER=\$(id -u):\$(id -g)"
	[[ "${ids%%:*}" != 0 && "${ids##*:}" != 0 ]] || die "RUNNER_USER=${ids} is root's: the runner never runs as root; give your own uid:gid or leave it unset"
	for account in "$NOTEBOOK_USER" "$READER_USER"; do
		[[ "${ids%%:*}" != "$(id -u "$account")" && "${ids##*:}" != "$(id -g "$account")" ]] ||
			die "RUNNER_USER=${ids} is the ${account}'s user or group: give another uid:gid, e.g. your own"
	done
	printf '%s\n' "$ids"
}

main() {
	local python=${HERE}/venv/bin/python site caps ids bounding=()
	[[ -x "$python" && -f "${HERE}/runner/run.py" ]] || die "the runner is missing beside this script (${HERE}): rebuild the image"
	site=$(printf '%s\n' "${HERE}"/venv/lib/python3*/site-packages)
	[[ -d "$site" ]] || die "the runner's environment (${HERE}/venv) has no site-packages: rebuild the image"
	if [[ $(id -u) != 0 ]]; then
		die "the image must start as root, which it drops at once (the notebook runs as a user of its own): run it without --user; to own what a local run writes, pass -e RUNNER_USER=\$(id -u):\$(id -g)"
	fi
	caps=$(effective_caps)
	(((caps & KEPT_CAPS) == KEPT_CAPS)) || die "the container lacks SETUID, SETGID or KILL, which the runner needs to run the notebook as its own user: keep them (docker run --cap-drop ALL --cap-add SETUID --cap-add SETGID --cap-add KILL)"
	if ((caps & SETPCAP)); then bounding=("--bounding-set=-all,+setuid,+setgid,+kill"); fi
	ids=$(runner_ids)
	# -I: no PYTHON* variable, user site or working directory decides what the runner imports. -S: no site
	# module, so no .pth file or sitecustomize runs; the runner's own folder and site-packages are its path.
	# Once the run has ended (its record stored, its last line printed, its folders removed), the runner
	# leaves at once (os._exit): the interpreter's teardown of PyIceberg's, SQLAlchemy's and Jupyter's
	# objects would take half a second and change nothing. An exception leaves the usual way.
	exec /usr/bin/env PATH="$CONTAINER_PATH" /usr/bin/setpriv --reuid="${ids%%:*}" --regid="${ids##*:}" --groups="$(id -g "$NOTEBOOK_USER")" \
		--inh-caps=-all,+setuid,+setgid,+kill --ambient-caps=-all,+setuid,+setgid,+kill "${bounding[@]}" \
		--no-new-privs -- "$python" -I -S -c \
		'import os, sys; here, venv, site = sys.argv[1:4]; del sys.argv[1:4]; sys.prefix = sys.exec_prefix = venv; sys.path[:0] = [here, site]; from runner.run import main; code = main(); sys.stdout.flush(); sys.stderr.flush(); os._exit(code)' \
		"$HERE" "${HERE}/venv" "$site" "$@"
}

main "$@"
