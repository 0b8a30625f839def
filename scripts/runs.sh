#!/usr/bin/env bash
# runs.sh -- start daily runs on the stack's Fargate cluster by hand, and list them (the Makefile's run-remote,
# backfill, runs).
#
#   scripts/runs.sh run-remote     DATE=YYYY-MM-DD: one run for that day, now (a rerun or a catch-up)
#   scripts/runs.sh backfill       FROM=YYYY-MM-DD TO=YYYY-MM-DD [PARALLEL=1]: one run per day, at most
#                                  PARALLEL at a time, waiting for each; a failed day is reported, and the
#                                  others carry on; exits 1 if any day failed
#   scripts/runs.sh list           [DAYS=30]: one line a run whose manifest was stored in the last DAYS days
#                                  (S3's LastModified, a folder's file modification time), newest first by
#                                  run date then start time, read from the manifests by scripts/history.py;
#                                  the stack's reports (RunOutputUri/_runs), or OUTPUT_URI=folder|s3://...'s
#                                  (OUTPUT_URI/_runs, or REPORT_URI= where the runs wrote their reports);
#                                  exits 1 when there is none
#
# The stack is STACK_NAME, or notebook-pipeline-<name> from GITHUB_REPO=owner/name (as make deploy names
# it), notebook-pipeline-<name>-<ENV> for an environment of the model (ENV=staging|production); AWS_REGION as
# for make deploy. A run takes the task family's latest revision: the last validated image. Every value is
# checked before any AWS call. POLL_SECONDS (default 30) paces backfill's waiting.
set -Eeuo pipefail

AWS=${AWS_CLI:-aws}
MAX_DAYS=366
PROGRAM=runs
REPO_HINT="name the stack with GITHUB_REPO=owner/name (as for make deploy) or STACK_NAME=..."
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/stack.sh
source "${HERE}/stack.sh"

log() { printf 'runs: %s\n' "$*" >&2; }

# check_date NAME VALUE: a real calendar day, YYYY-MM-DD.
check_date() {
	local normal
	[[ "$2" =~ ^[0-9]{4}-[0-9]{2}-[0-9]{2}$ ]] && normal=$(date -u -d "$2" +%F 2>/dev/null) && [[ "$normal" == "$2" ]] ||
		die "$1=$2 is not a calendar date: use YYYY-MM-DD, e.g. $1=2019-08-01"
}

# The stack's outputs that say where and how a run starts, in OUT[...].
declare -A OUT
RUN_OUTPUTS=(RunCluster RunTaskFamily RunSubnets RunSecurityGroups RunAssignPublicIp RunOutputUri RunLogGroupName)

# start DAY KIND: start one run for DAY; prints its task ARN on stdout and where it writes on stderr.
start() {
	local day=$1 kind=$2 run_id task overrides network
	run_id="${kind}-${day}-$(date -u +%Y%m%dT%H%M%SZ)-${RANDOM}"
	overrides=$(printf '{"containerOverrides":[{"name":"runner","environment":[{"name":"RUN_DATE","value":"%s"},{"name":"RUN_ID","value":"%s"}]}]}' "$day" "$run_id")
	network="awsvpcConfiguration={subnets=[${OUT[RunSubnets]}],securityGroups=[${OUT[RunSecurityGroups]}],assignPublicIp=${OUT[RunAssignPublicIp]}}"
	task=$("$AWS" ecs run-task "${REGION_ARGS[@]}" --cluster "${OUT[RunCluster]}" --task-definition "${OUT[RunTaskFamily]}" \
		--launch-type FARGATE --started-by "make-${kind}" --network-configuration "$network" --overrides "$overrides" \
		--query 'tasks[0].taskArn' --output text) || task=''
	if [[ "$task" != arn:* ]]; then
		log "${day}: ECS did not start the run (${task:-no task}): see the error above; check the subnets, the quota and the roles"
		return 1
	fi
	log "${day}: started ${task##*/} (task ${task})"
	log "  table:  ${OUT[OutputTable]:-the table} at ${OUT[RunOutputUri]}/ (its day ${day} changes only if the check passes)"
	log "  report: ${OUT[RunOutputUri]}/_runs/date=${day}/${run_id}/"
	log "  logs:   log group ${OUT[RunLogGroupName]}, stream run/runner/${task##*/}"
	printf '%s\n' "$task"
}

run_remote() {
	[[ -n "${DATE:-}" ]] || die "DATE is not set: make run-remote DATE=YYYY-MM-DD (the day to produce)"
	check_date DATE "$DATE"
	load_stack
	load_outputs "${RUN_OUTPUTS[@]}"
	start "$DATE" run-remote >/dev/null || exit 1
	log "the run goes on in AWS; a failure is mailed. Follow it: make status, or the logs above"
}

# wait_for TASK...: poll until each task has stopped; prints "ARN EXIT" lines ("none" when it never ran).
wait_for() {
	local reply arn code
	while :; do
		reply=$("$AWS" ecs describe-tasks "${REGION_ARGS[@]}" --cluster "${OUT[RunCluster]}" --tasks "$@" \
			--query 'tasks[].[taskArn,lastStatus,containers[0].exitCode]' --output text)
		[[ $(grep -c . <<<"$reply") -eq $# ]] || die "ECS described $(grep -c . <<<"$reply") of the $# runs started: look them up with aws ecs describe-tasks"
		if ! grep -qv $'\tSTOPPED\t' <<<"$reply"; then
			while IFS=$'\t' read -r arn _ code; do
				[[ -n "$arn" ]] && printf '%s %s\n' "$arn" "${code/None/none}"
			done <<<"$reply"
			return 0
		fi
		sleep "${POLL_SECONDS:-30}"
	done
}

backfill() {
	local day last parallel failed=() succeeded=0 batch=() days=() task code arn line
	[[ -n "${FROM:-}" && -n "${TO:-}" ]] || die "FROM and TO are required: make backfill FROM=YYYY-MM-DD TO=YYYY-MM-DD [PARALLEL=2]"
	check_date FROM "$FROM"
	check_date TO "$TO"
	parallel=${PARALLEL:-1}
	[[ "$parallel" =~ ^[1-9][0-9]?$ && "$parallel" -le 10 ]] || die "PARALLEL=${parallel} is not valid: 1 to 10 runs at a time"
	[[ ! "$FROM" > "$TO" ]] || die "FROM=${FROM} is after TO=${TO}: give the earlier day first"
	[[ "${POLL_SECONDS:-30}" =~ ^[0-9]+$ ]] || die "POLL_SECONDS=${POLL_SECONDS} is not a whole number of seconds"
	day=$FROM
	while [[ ! "$day" > "$TO" ]]; do
		days+=("$day")
		[[ ${#days[@]} -le $MAX_DAYS ]] || die "FROM=${FROM} TO=${TO} spans more than ${MAX_DAYS} days: backfill a year at a time"
		day=$(date -u -d "${day} + 1 day" +%F)
	done
	load_stack
	load_outputs "${RUN_OUTPUTS[@]}"
	log "backfill of ${#days[@]} day(s), ${FROM} to ${TO}, ${parallel} at a time"
	local i=0
	while ((i < ${#days[@]})); do
		batch=()
		declare -A day_of=()
		while ((i < ${#days[@]} && ${#batch[@]} < parallel)); do
			day=${days[i]}
			i=$((i + 1))
			if task=$(start "$day" backfill); then
				batch+=("$task")
				day_of[$task]=$day
			else
				failed+=("${day} (not started)")
			fi
		done
		((${#batch[@]})) || continue
		while read -r arn code; do
			line="${day_of[$arn]}"
			if [[ "$code" == 0 ]]; then
				succeeded=$((succeeded + 1))
				log "${line}: succeeded"
			else
				failed+=("${line} (exit ${code})")
				log "${line}: FAILED with exit code ${code}: its report and the failure mail say why; carrying on"
			fi
		done < <(wait_for "${batch[@]}")
		unset day_of
	done
	last="backfill ${FROM} to ${TO}: ${succeeded} succeeded, ${#failed[@]} failed"
	if ((${#failed[@]})); then
		log "${last}: ${failed[*]}; rerun a day with make run-remote DATE=..."
		exit 1
	fi
	log "${last}"
}

# report_location: where the runs' reports are, REPORT_URI/OUTPUT_URI's or the stack's, in REPORTS.
report_location() {
	local listing key value
	if [[ -n "${OUTPUT_URI:-}${REPORT_URI:-}" ]]; then
		[[ -z "${GITHUB_REPO:-}${STACK_NAME:-}${ENV:-}" ]] ||
			die "give the runs' stack (GITHUB_REPO= [ENV=] or STACK_NAME=) or their location (OUTPUT_URI= or REPORT_URI=), not both"
		load_region
		REPORTS=${REPORT_URI:-${OUTPUT_URI%/}/_runs}
		return 0
	fi
	REPO_HINT="name the stack with GITHUB_REPO=owner/name [ENV=staging|production] or STACK_NAME=..., or the runs' location with OUTPUT_URI= (make run's: OUTPUT_URI=output)"
	load_stack
	listing=$("$AWS" cloudformation describe-stacks "${REGION_ARGS[@]}" --stack-name "$STACK_NAME" \
		--query 'Stacks[0].Outputs[].[OutputKey,OutputValue]' --output text) ||
		die "cannot read the stack ${STACK_NAME} (the AWS CLI says why above): check $(stack_args) and AWS_REGION, and your AWS credentials; or deploy it (make deploy $(stack_args))"
	while IFS=$'\t' read -r key value; do
		[[ -n "$key" ]] && OUT["$key"]=$value
	done <<<"$listing"
	need_outputs RunOutputUri
	REPORTS="${OUT[RunOutputUri]%/}/_runs"
}

# list_s3 URI WINDOW: the manifests under URI stored in the last WINDOW days (their LastModified, in the listing's
# query: older ones are never downloaded) downloaded into a folder of their own, then printed by history.py.
list_s3() {
	local uri=$1 window=$2 bucket prefix since keys key includes=() rc=0
	local run_manifest='^date=[0-9]{4}-[0-9]{2}-[0-9]{2}/[A-Za-z0-9._-]{1,128}/manifest\.json$'
	bucket=${uri#s3://} && bucket=${bucket%%/*}
	prefix=${uri#"s3://${bucket}"} && prefix=${prefix#/} && prefix=${prefix%/} && prefix=${prefix:+${prefix}/}
	since=$(date -u -d "-${window} days" +%Y-%m-%dT%H:%M:%S)
	keys=$("$AWS" s3api list-objects-v2 "${REGION_ARGS[@]}" --bucket "$bucket" --prefix "${prefix}date=" \
		--query "(Contents || \`[]\`)[?ends_with(Key, '/manifest.json') && LastModified >= '${since}'].[Key]" --output text) || {
		log "cannot list ${uri} (the AWS CLI says why above): check the location, AWS_REGION and your AWS credentials"
		exit 1
	}
	# Only a run's own manifest, date=D/<run id>/manifest.json: its staging folder, deeper, is the notebook's.
	while read -r key; do
		if [[ "${key#"$prefix"}" =~ $run_manifest ]]; then
			includes+=(--include "${key#"$prefix"}")
		fi
	done <<<"$keys"
	MANIFESTS=$(mktemp -d)
	trap 'rm -rf "$MANIFESTS"' EXIT
	if ((${#includes[@]})); then
		"$AWS" s3 cp "${REGION_ARGS[@]}" "s3://${bucket}/${prefix}" "${MANIFESTS}/" --recursive --only-show-errors \
			--exclude '*' "${includes[@]}" || {
			log "cannot download the manifests from ${uri} (the AWS CLI says why above): check your AWS credentials"
			exit 1
		}
	fi
	python3 -I "${HERE}/history.py" "$MANIFESTS" "$window" "$uri" || rc=$?
	exit "$rc"
}

list_runs() {
	local window=${DAYS:-30} uri
	check_number DAYS "$window" 1 "$MAX_DAYS" "how many days back to list, by when each run stored its manifest, e.g. DAYS=7"
	report_location
	uri=${REPORTS#file://}
	case "$uri" in
	s3://*)
		[[ "$uri" =~ ^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[^[:cntrl:]]*)?$ ]] ||
			die "${uri} is not a valid S3 location of the runs' reports: use s3://bucket/prefix or a local folder"
		list_s3 "$uri" "$window"
		;;
	*://*) die "${uri} uses an unsupported scheme: the runs' reports are in s3://bucket/prefix or a local folder" ;;
	*) exec python3 -I "${HERE}/history.py" "$uri" "$window" ;;
	esac
}

case "${1:-}" in
run-remote) run_remote ;;
backfill) backfill ;;
list) list_runs ;;
*) die "usage: runs.sh run-remote|backfill|list (configured by environment variables, see the header)" ;;
esac
