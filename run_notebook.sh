#!/usr/bin/env bash
# run_notebook.sh -- the runner image's entrypoint.
#
# Runs a parameterised Jupyter notebook with papermill into a staging location of the run, runs the
# project's check script on what it wrote, and only when the check passes publishes the date partition
# to OUTPUT_URI. Every run leaves its executed notebook, an HTML report and manifest.json under
# REPORT_URI/date=<RUN_DATE>/<RUN_ID>/. Configuration comes from the environment (see usage below).
#
# Exit codes: 0 success, 2 bad configuration or input, 10 the notebook failed, 11 a cell timed out,
# 20 the check failed, 30 publishing failed, 143 stopped by SIGTERM, 1 the runner itself failed.
set -Eeuo pipefail

readonly EXIT_CONFIG=2 EXIT_CHECK=20 EXIT_STOPPED=143
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly HERE NBRUN="${HERE}/runner/nbrun.py"
PYTHON=${PYTHON:-python3}

usage() {
	cat >&2 <<-'EOF'
		Usage: docker run [-e VAR=value ...] IMAGE     (or: run_notebook.sh, with the same variables)
		  DATA_URI          where the notebook reads: s3://bucket/prefix or a folder (required)
		  OUTPUT_URI        where the checked output is published: s3://bucket/prefix or a folder (required)
		  RUN_DATE          YYYY-MM-DD partition to produce (default: yesterday, UTC, or the day before
		                    SCHEDULED_TIME's date in SCHEDULE_TIMEZONE when a schedule starts the run)
		  NOTEBOOK          notebook to run, relative to PROJECT_DIR or absolute (default: usp.ipynb)
		  NOTEBOOK_PARAMS   extra notebook parameters, a JSON or YAML mapping
		  CELL_TIMEOUT      seconds one cell may run (default: 3600)
		  CHECK_SCRIPT      check to run on the output, relative to PROJECT_DIR or absolute (default: check.py)
		  REPORT_URI        where run reports go (default: OUTPUT_URI/_runs)
		  SNS_TOPIC_ARN     topic told of failures (optional); NOTIFY_ON_SUCCESS=true tells successes too
		  METRICS_NAMESPACE CloudWatch namespace a successful run puts SuccessfulRuns in, with METRICS_JOB
	EOF
}

log() { printf '[runner] %s\n' "$*" >&2; }

# --- state of this run, filled in as it goes ----------------------------------------------------
STARTED=$(date +%s.%N)
RUN_ID=${RUN_ID:-$(date -u +%Y%m%dT%H%M%SZ)-$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')}
WORK=''
CHILD=''
STOP_SIGNAL=''
SIGNALS=0
COMMITTED=''
REPORT_JOB=''
STAGE='starting'
REPORT_URI_RUN=''
NB_NAME=''
FINISHED=''

# shellcheck disable=SC2329 # invoked by a trap
cleanup() {
	if [[ -n "$WORK" ]]; then rm -rf -- "$WORK"; fi
}

# SIGTERM/SIGINT: forward to the running step, which shuts the kernel down; nothing is published.
# Once publishing has begun the run is committed: it completes (publishing is short), so a partition
# is never left half-written and a published run never reports "nothing was published".
# shellcheck disable=SC2329 # invoked by a trap
on_signal() {
	SIGNALS=$((SIGNALS + 1))
	[[ -z "$FINISHED" ]] || return 0
	STOP_SIGNAL=$1
	log "received SIG${STOP_SIGNAL}: stopping the run"
	if [[ -n "$COMMITTED" ]]; then
		log "the output is being published: completing the run first"
	elif [[ -n "$CHILD" ]]; then
		kill "-${STOP_SIGNAL}" "$CHILD" 2>/dev/null || true
	else
		stopped
	fi
}

# shellcheck disable=SC2329 # invoked by a trap
on_error() {
	local line=$1 code=$2
	[[ -n "$FINISHED" ]] && exit "$code"
	finish failed 1 runner "the runner itself failed at run_notebook.sh line ${line} (exit ${code}): this is a bug, please report it with the log above"
}

# run_child CMD...: run a step in the background so that signals reach this shell while it waits.
# CMD must be a program, not a function: the signal is forwarded to $!, which must be the step itself.
run_child() {
	local rc pid signals
	"$@" &
	pid=$!
	CHILD=$pid
	while :; do
		signals=$SIGNALS
		rc=0
		wait "$pid" || rc=$?
		# A trapped signal makes wait return early: the step got it too and is winding down.
		[[ "$signals" != "$SIGNALS" ]] || break
	done
	CHILD=''
	return "$rc"
}

step_message() { cat "${WORK}/message" 2>/dev/null || true; }

# finish STATUS EXIT_CODE STEP MESSAGE: write the manifest and report, notify, print the last line, exit.
finish() {
	local status=$1 code=$2 step=$3 message=$4 report='none (the run stopped before it started)' sentence
	FINISHED=1
	trap - ERR
	wait_report
	if [[ -n "$REPORT_URI_RUN" ]]; then
		if [[ -f "${WORK}/report/${NB_NAME}.html" ]]; then
			report="${REPORT_URI_RUN}/${NB_NAME}.html"
		else
			report="${REPORT_URI_RUN}/manifest.json"
		fi
	fi
	if [[ -n "$WORK" ]]; then
		"${NBRUN_CMD[@]}" finish --run-id "$RUN_ID" --date "${RUN_DATE:-}" \
			--notebook "${NB_NAME:-${NOTEBOOK:-}}" --status "$status" --exit-code "$code" --failed-step "$step" \
			--message "$message" --started "$STARTED" --report-dir "${WORK}/report" --rows-file "${WORK}/rows" \
			--output-uri "${OUTPUT_URI:+${OUTPUT_URI}/date=${RUN_DATE}/}" --report-uri "$REPORT_URI_RUN" \
			--report "$report" || {
			local rc=$?
			# 3: the report could not be stored (the warning above says why); anything else is a runner bug.
			if [[ $rc -eq 3 ]]; then report=$(step_message); else log "warning: could not write the manifest (exit ${rc})"; fi
		}
	fi
	if [[ "$status" == succeeded ]]; then
		sentence="notebook-runner: run ${RUN_ID} of ${NB_NAME} for ${RUN_DATE} succeeded: ${message}; report: ${report}"
	else
		sentence="notebook-runner: run ${RUN_ID} of ${NB_NAME:-${NOTEBOOK:-the notebook}} for ${RUN_DATE:-?} ${status^^} (exit ${code}, ${step}): ${message}; nothing was published; report: ${report}"
	fi
	printf '%s\n' "$sentence" >&2
	exit "$code"
}

fail_config() { finish failed "$EXIT_CONFIG" config "$1"; }

stopped() {
	local where=${1:-}
	finish stopped "$EXIT_STOPPED" stopped "${where:-stopped by SIG${STOP_SIGNAL} while ${STAGE}}"
}

# --- configuration ------------------------------------------------------------------------------

# resolve_uri NAME: validate the variable NAME in place; s3:// URIs stay as they are (without a trailing
# slash), folders become absolute paths.
resolve_uri() {
	local -n uri=$1
	uri=${uri#file://}
	if [[ "$uri" == s3://* ]]; then
		[[ "$uri" =~ ^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[^[:cntrl:]]*)?$ ]] ||
			fail_config "$1=${uri} is not a valid S3 URI: use s3://bucket-name/optional/prefix"
		uri=${uri%/}
	elif [[ "$uri" == *://* ]]; then
		fail_config "$1=${uri} uses an unsupported scheme: use s3://bucket/prefix or a local folder"
	else
		uri=$(realpath -m -- "$uri")
	fi
}

# Sets RUN_DATE when it is not given: the day before the schedule's own date (SCHEDULED_TIME, e.g.
# 2026-11-22T05:00:00Z, read in SCHEDULE_TIMEZONE), so that a late or retried start keeps its day; without
# a schedule, yesterday in UTC. Called directly, not in $(...): its fail_config must end the run.
default_run_date() {
	local zone=${SCHEDULE_TIMEZONE:-UTC} day
	[[ -n "${SCHEDULED_TIME:-}" ]] || {
		RUN_DATE=$(date -u -d yesterday +%F)
		return
	}
	[[ -f "/usr/share/zoneinfo/${zone}" && "$zone" =~ ^[A-Za-z0-9_+/-]+$ ]] ||
		fail_config "SCHEDULE_TIMEZONE=${zone} is not a time zone: use an IANA name such as Europe/Amsterdam or UTC"
	if [[ ! "$SCHEDULED_TIME" =~ ^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$ ]] ||
		! day=$(TZ=$zone date -d "$SCHEDULED_TIME" +%F 2>/dev/null); then
		fail_config "SCHEDULED_TIME=${SCHEDULED_TIME} is not a UTC time: use YYYY-MM-DDTHH:MM:SSZ, or set RUN_DATE"
	fi
	RUN_DATE=$(TZ=$zone date -d "${day} 12:00 1 day ago" +%F)
}

load_config() {
	local today
	[[ $# -eq 0 ]] || {
		usage
		fail_config "run_notebook.sh takes no arguments (got: $*): configure it with environment variables"
	}
	PROJECT_DIR=$(realpath -m -- "${PROJECT_DIR:-$PWD}")
	NOTEBOOK=${NOTEBOOK:-usp.ipynb}
	CHECK_SCRIPT=${CHECK_SCRIPT:-check.py}
	CELL_TIMEOUT=${CELL_TIMEOUT:-3600}
	NOTIFY_ON_SUCCESS=${NOTIFY_ON_SUCCESS:-false}
	[[ -n "${RUN_DATE:-}" ]] || default_run_date
	[[ "$NOTEBOOK" == /* ]] || NOTEBOOK="${PROJECT_DIR}/${NOTEBOOK}"
	[[ "$CHECK_SCRIPT" == /* ]] || CHECK_SCRIPT="${PROJECT_DIR}/${CHECK_SCRIPT}"
	NB_NAME=$(basename -- "$NOTEBOOK" .ipynb)

	if [[ ! "$RUN_DATE" =~ ^[0-9]{4}-[0-9]{2}-[0-9]{2}$ ]] || ! today=$(date -u -d "$RUN_DATE" +%F 2>/dev/null) ||
		[[ "$today" != "$RUN_DATE" ]]; then
		fail_config "RUN_DATE=${RUN_DATE} is not a calendar date: use YYYY-MM-DD, e.g. RUN_DATE=2019-08-01"
	fi
	[[ "$CELL_TIMEOUT" =~ ^[1-9][0-9]*$ ]] ||
		fail_config "CELL_TIMEOUT=${CELL_TIMEOUT} is not a whole number of seconds: use e.g. CELL_TIMEOUT=600"
	[[ "$NOTIFY_ON_SUCCESS" =~ ^(true|false)$ ]] ||
		fail_config "NOTIFY_ON_SUCCESS=${NOTIFY_ON_SUCCESS} must be true or false"
	[[ -f "$NOTEBOOK" && "$NOTEBOOK" == *.ipynb ]] ||
		fail_config "NOTEBOOK=${NOTEBOOK} is not a notebook file: give a .ipynb path relative to ${PROJECT_DIR} or absolute"
	[[ -f "$CHECK_SCRIPT" ]] ||
		fail_config "CHECK_SCRIPT=${CHECK_SCRIPT} does not exist: every notebook ships a check (see README), or set CHECK_SCRIPT"
	if [[ -n "${SNS_TOPIC_ARN:-}" && ! "$SNS_TOPIC_ARN" =~ ^arn:aws[a-z-]*:sns:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9_.-]{1,256}$ ]]; then
		fail_config "SNS_TOPIC_ARN=${SNS_TOPIC_ARN} is not an SNS topic ARN: use arn:aws:sns:REGION:ACCOUNT:NAME or leave it empty"
	fi
	[[ -n "${DATA_URI:-}" ]] || fail_config "DATA_URI is not set: pass -e DATA_URI=s3://bucket/snapshots or a mounted folder"
	[[ -n "${OUTPUT_URI:-}" ]] || fail_config "OUTPUT_URI is not set: pass -e OUTPUT_URI=s3://bucket/prefix or a mounted folder"
	REPORT_URI=${REPORT_URI:-${OUTPUT_URI%/}/_runs}
	resolve_uri DATA_URI
	resolve_uri OUTPUT_URI
	resolve_uri REPORT_URI
	REPORT_URI_RUN="${REPORT_URI}/date=${RUN_DATE}/${RUN_ID}"
	STAGING_URI="${REPORT_URI_RUN}/staging"
}

# --- the steps ----------------------------------------------------------------------------------

# The local folders the run writes must be creatable by the container's user.
prepare_locations() {
	if [[ "$OUTPUT_URI" != s3://* ]] && ! mkdir -p -- "$OUTPUT_URI" 2>/dev/null; then
		REPORT_URI_RUN=''
		fail_config "OUTPUT_URI folder ${OUTPUT_URI} cannot be created: mount a folder the container user ($(id -u)) may write"
	fi
	if [[ "$REPORT_URI" != s3://* ]] && ! mkdir -p -- "$REPORT_URI_RUN" 2>/dev/null; then
		REPORT_URI_RUN=''
		fail_config "REPORT_URI folder ${REPORT_URI} is not writable by the container user ($(id -u)): mount a writable folder"
	fi
}

# nbrun execute checks the notebook, NOTEBOOK_PARAMS and the data and output locations (exit 2) while
# the kernel boots, before any cell runs; then it runs the notebook into the staging location.
execute() {
	local rc=0
	STAGE='running the notebook'
	log "running ${NOTEBOOK} (cell timeout ${CELL_TIMEOUT} s) into ${STAGING_URI}"
	start_report
	run_child "${NBRUN_CMD[@]}" execute --notebook "$NOTEBOOK" --date "$RUN_DATE" --data-uri "$DATA_URI" \
		--output-uri "$OUTPUT_URI" --staging-uri "$STAGING_URI" --timeout "$CELL_TIMEOUT" \
		--output-nb "${WORK}/report/${NB_NAME}.ipynb" || rc=$?
	report_ready
	if [[ -n "$STOP_SIGNAL" ]]; then
		[[ $rc -eq $EXIT_STOPPED ]] || : >"${WORK}/message" # its own reason is the signal's doing
		stopped "$(step_message)"
	fi
	case $rc in
	0) ;;
	"$EXIT_CONFIG") fail_config "$(step_message)" ;;
	10 | 11) finish failed "$rc" notebook "$(step_message)" ;;
	*) finish failed 10 notebook "the notebook step ended with exit code ${rc}: $(step_message)" ;;
	esac
}

# The report job (HTML of the executed notebook, rows of the staged partition) starts beside the
# notebook, imports its libraries while the notebook runs, and renders once report_ready is called:
# while the check runs, at a lower priority than the notebook and the check. finish waits for it.
start_report() {
	nice -n 10 "${NBRUN_CMD[@]}" report --executed "${WORK}/report/${NB_NAME}.ipynb" --html "${WORK}/report/${NB_NAME}.html" \
		--ready-file "${WORK}/executed" --staged-partition "${STAGING_URI}/date=${RUN_DATE}" \
		--rows-file "${WORK}/rows" &
	REPORT_JOB=$!
}

report_ready() { [[ -z "$WORK" ]] || : >"${WORK}/executed"; }

wait_report() {
	[[ -n "$REPORT_JOB" ]] || return 0
	report_ready
	wait "$REPORT_JOB" || log "warning: the HTML report could not be rendered; the executed notebook is kept"
	REPORT_JOB=''
}

check() {
	local check_name rc=0 verdict
	check_name=$(basename -- "$CHECK_SCRIPT")
	STAGE='checking the output'
	log "checking the output with ${check_name}"
	run_child env -C "$PROJECT_DIR" "$PYTHON" "$CHECK_SCRIPT" --date "$RUN_DATE" --output "$STAGING_URI" \
		>"${WORK}/report/check.txt" 2>&1 || rc=$?
	cat "${WORK}/report/check.txt" >&2
	[[ -z "$STOP_SIGNAL" ]] || stopped
	if [[ $rc -ne 0 ]]; then
		verdict=$(grep -v '^[[:space:]]*$' "${WORK}/report/check.txt" | tail -n 1 || true)
		finish failed "$EXIT_CHECK" check "${check_name} rejected the output (exit ${rc}): ${verdict:-no output}; the rejected data is kept in ${STAGING_URI}"
	fi
}

publish() {
	COMMITTED=1
	run_child "${NBRUN_CMD[@]}" publish --date "$RUN_DATE" --staging "$STAGING_URI" --output "$OUTPUT_URI" \
		--run-id "$RUN_ID" ||
		finish failed 30 publish "$(step_message)"
}

main() {
	trap cleanup EXIT
	trap 'on_signal TERM' TERM
	trap 'on_signal INT' INT
	trap 'on_error "$LINENO" "$?"' ERR
	if [[ "${1:-}" == -h || "${1:-}" == --help ]]; then
		usage
		exit 0
	fi
	WORK=$(mktemp -d "${TMPDIR:-/tmp}/notebook-run.XXXXXX")
	mkdir -p "${WORK}/report"
	NBRUN_CMD=("$PYTHON" "$NBRUN" --message-file "${WORK}/message")
	export HOME=${HOME:-$WORK}
	[[ -w "$HOME" ]] || export HOME="$WORK" # an arbitrary --user has no home of its own
	load_config "$@"
	log "run ${RUN_ID}: ${NOTEBOOK} for ${RUN_DATE}; data ${DATA_URI}; output ${OUTPUT_URI}; report ${REPORT_URI_RUN}"
	prepare_locations
	execute
	check
	publish
	local rows
	wait_report
	rows=$(cat "${WORK}/rows" 2>/dev/null || true)
	finish succeeded 0 '' "published ${rows:-an unknown number of} rows to ${OUTPUT_URI}/date=${RUN_DATE}/"
}

main "$@"
