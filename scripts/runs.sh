#!/usr/bin/env bash
# runs.sh -- start daily runs on the stack's Fargate cluster by hand (the Makefile's run-remote, backfill).
#
#   scripts/runs.sh run-remote     DATE=YYYY-MM-DD: one run for that day, now (a rerun or a catch-up)
#   scripts/runs.sh backfill       FROM=YYYY-MM-DD TO=YYYY-MM-DD [PARALLEL=1]: one run per day, at most
#                                  PARALLEL at a time, waiting for each; a failed day is reported, and the
#                                  others carry on; exits 1 if any day failed
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
# shellcheck source=scripts/stack.sh
source "$(dirname "${BASH_SOURCE[0]}")/stack.sh"

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
	log "  output: ${OUT[RunOutputUri]}/date=${day}/ (published only if the check passes)"
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

case "${1:-}" in
run-remote) run_remote ;;
backfill) backfill ;;
*) die "usage: runs.sh run-remote|backfill (configured by environment variables, see the header)" ;;
esac
