#!/usr/bin/env bash
# releases.sh -- a model's versions, and the commands that move its daily runs between them (the Makefile's
# versions, rollback, promote, approve and reject).
#
#   scripts/releases.sh versions           every validated version, newest first; * marks the one the runs use
#   scripts/releases.sh rollback|promote   TO=<version, commit or digest> [ACCEPT=figure,...]: starts the
#                                          stack's promote project (the same trusted path as a validated
#                                          push) and waits for it; its verdict is printed, and mailed
#   scripts/releases.sh approve|reject     RELEASE=<version> [COMMENT=...]: answers the release waiting in the
#                                          Approve stage, if it is that version
#
# The stack is STACK_NAME, or notebook-pipeline-<name> from GITHUB_REPO=owner/name (as make deploy names it),
# notebook-pipeline-<name>-<ENV> for an environment of the model (ENV=staging|production); AWS_REGION as for
# make deploy. A production stack (output ReleasesFromStaging yes) has no pipeline: make versions lists the
# versions its staging validated (the records in its output VersionRecordsBucketName), make promote releases
# one of them, and nothing waits for approval in it. The promote project decides: it promotes only a version
# the validation recorded, built on the runner major the stack follows; a rollback only to a version promoted
# before; a promote of a version whose comparison crossed MaxChangedShare only with ACCEPT naming the crossed
# figures.
# POLL_SECONDS (default 5) paces the waiting.
set -Eeuo pipefail

AWS=${AWS_CLI:-aws}
PROGRAM=releases
REPO_HINT="name the model with GITHUB_REPO=owner/name (as for make deploy) or STACK_NAME=..."
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/stack.sh
source "${HERE}/stack.sh"

log() { printf 'releases: %s\n' "$*" >&2; }

declare -A OUT

# The image the daily runs start: the container image of the run family's latest revision.
running_image() {
	"$AWS" ecs describe-task-definition "${REGION_ARGS[@]}" --task-definition "${OUT[RunTaskFamily]}" \
		--query 'taskDefinition.containerDefinitions[0].image' --output text
}

# The versions (validated images) from the records this stack may promote, VersionRecordsBucketName's (in
# production, staging's; a stack of an older template: its own VersionsBucketName), and its own promotions.
versions() {
	local kind bucket
	load_stack
	load_outputs VersionsBucketName RunTaskFamily
	RECORDS=$(mktemp -d)
	trap 'rm -rf "$RECORDS"' EXIT
	for kind in versions promotions; do
		bucket=${OUT[VersionsBucketName]}
		[[ "$kind" == promotions ]] || bucket=${OUT[VersionRecordsBucketName]:-$bucket}
		"$AWS" s3 cp "${REGION_ARGS[@]}" "s3://${bucket}/${kind}/" "${RECORDS}/${kind}/" --recursive --only-show-errors
	done
	python3 -I "${HERE}/versions.py" "$RECORDS" "$(running_image)" "${GITHUB_REPO:-$STACK_NAME}" "${ENV:-}"
}

# promote BY: start the promote project with TO, BY and ACCEPT; wait; print its verdict; exit 0 if it promoted.
promote() {
	local by=$1 build status group stream overrides
	[[ -n "${TO:-}" ]] || die "TO is not set: make ${by} GITHUB_REPO=...${ENV:+ ENV=${ENV}} TO=<version number, commit or image digest> (make versions lists them)"
	check TO "$TO" '^[A-Za-z0-9._:/@-]{1,300}$' "a version number (3 or v3), a commit (7 to 40 hex digits) or an image digest (sha256:...)"
	[[ -z "${ACCEPT:-}" ]] || check ACCEPT "$ACCEPT" '^[a-z_]+(,[a-z_]+)*$' \
		"the crossed figures the refusal named, comma-separated, e.g. ACCEPT=changed_share"
	[[ "${POLL_SECONDS:-5}" =~ ^[0-9]+$ ]] || die "POLL_SECONDS=${POLL_SECONDS} is not a whole number of seconds"
	load_stack
	load_outputs PromoteProjectName
	# JSON, not the CLI's shorthand: ACCEPT holds commas.
	overrides=$(python3 -I -c 'import json, sys
print(json.dumps([{"name": n, "value": v, "type": "PLAINTEXT"} for n, v in zip(("TO", "BY", "ACCEPT"), sys.argv[1:])]))' \
		"$TO" "$by" "${ACCEPT:-}")
	build=$("$AWS" codebuild start-build "${REGION_ARGS[@]}" --project-name "${OUT[PromoteProjectName]}" \
		--environment-variables-override "$overrides" --query build.id --output text)
	log "${by} to ${TO}: ${build} started; waiting for it"
	while :; do
		IFS=$'\t' read -r status group stream < <("$AWS" codebuild batch-get-builds "${REGION_ARGS[@]}" --ids "$build" \
			--query 'builds[0].[buildStatus,logs.groupName,logs.streamName]' --output text)
		[[ "$status" == IN_PROGRESS ]] || break
		sleep "${POLL_SECONDS:-5}"
	done
	"$AWS" logs get-log-events "${REGION_ARGS[@]}" --log-group-name "$group" --log-stream-name "$stream" \
		--query 'events[].message' --output text 2>/dev/null | tr '\t' '\n' | grep '^promote: ' >&2 ||
		log "its log is in ${group:-the log group of the promote project}, stream ${stream:-?}"
	if [[ "$status" != SUCCEEDED ]]; then
		log "${by} to ${TO} ${status}: nothing changed (the reason is above); the daily runs keep their version"
		exit 1
	fi
	log "${by} to ${TO} done: the next daily run starts it (make versions shows it marked *)"
}

# answer Approved|Rejected TARGET: the release waiting in the Approve stage, if it is version RELEASE, answered. The
# version is checked: with a queue of pushes, the newest approval mail may not name the one that waits.
answer() {
	local result=$1 target=$2 status token execution waiting
	[[ -n "${RELEASE:-}" ]] ||
		die "RELEASE is not set: make ${target} GITHUB_REPO=...${ENV:+ ENV=${ENV}} RELEASE=<the version number the approval mail names>"
	check RELEASE "$RELEASE" '^[1-9][0-9]{0,5}$' "the version number the approval mail names, e.g. RELEASE=5"
	[[ -z "${COMMENT:-}" ]] || check COMMENT "$COMMENT" '^[^[:cntrl:]]{1,500}$' "one line of up to 500 characters"
	load_stack
	read_outputs
	! releases_from_staging ||
		die "${STACK_NAME} releases what staging validated: it has no pipeline, so no release waits for approval in it (a release held for approval waits in staging's: make ${target} ... ENV=staging). Its release is make promote $(stack_args) TO=<version> (make versions $(stack_args) lists staging's validated versions)"
	need_outputs PipelineName
	IFS=$'\t' read -r status token execution < <("$AWS" codepipeline get-pipeline-state "${REGION_ARGS[@]}" \
		--name "${OUT[PipelineName]}" --output text --query "stageStates[?stageName=='Approve'] | [0].[actionStates[0].latestExecution.status, actionStates[0].latestExecution.token, latestExecution.pipelineExecutionId]")
	[[ "$status" == InProgress && -n "$token" && -n "$execution" ]] ||
		die "no release of ${STACK_NAME} waits for approval (its Approve stage: ${status:-none}; settings.yml promotion.approval must be required)"
	waiting=$("$AWS" codepipeline list-action-executions "${REGION_ARGS[@]}" --pipeline-name "${OUT[PipelineName]}" \
		--filter "pipelineExecutionId=${execution}" --output text \
		--query "actionExecutionDetails[?actionName=='ValidateImage'] | [0].output.outputVariables.VERSION")
	[[ "$waiting" == "$RELEASE" ]] ||
		die "the release waiting for approval is version ${waiting}, not ${RELEASE}: answer it first (make ${target} $(stack_args) RELEASE=${waiting}), or read its approval mail"
	"$AWS" codepipeline put-approval-result "${REGION_ARGS[@]}" --pipeline-name "${OUT[PipelineName]}" \
		--stage-name Approve --action-name Release --token "$token" \
		--result "$(python3 -I -c 'import json, sys; print(json.dumps({"summary": sys.argv[1], "status": sys.argv[2]}))' \
			"${COMMENT:-${result,,} with make}" "$result")" >/dev/null
	if [[ "$result" == Approved ]]; then
		log "approved version ${RELEASE} of ${STACK_NAME}: its Promote stage promotes it now, and mails the outcome"
	else
		log "rejected version ${RELEASE} of ${STACK_NAME}: nothing is promoted; the daily runs keep their version"
	fi
}

case "${1:-}" in
versions) versions ;;
rollback | promote) promote "$1" ;;
approve) answer Approved approve ;;
reject) answer Rejected reject ;;
*) die "usage: releases.sh versions|rollback|promote|approve|reject (configured by environment variables, see the header)" ;;
esac
