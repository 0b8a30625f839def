#!/usr/bin/env bash
# pipeline.sh -- deploy, inspect and delete the CI/CD pipeline stack (template/pipeline.yaml).
#
#   scripts/pipeline.sh deploy|plan|status|delete     (the Makefile's deploy, deploy-plan, status, delete)
#
# Configuration comes from the model's settings file and the environment: deploy and plan hand both to
# scripts/settings.py, run by SETTINGS_PYTHON (make passes .venv's, which has PyYAML; default python3). It reads
# SETTINGS_FILE (default: MODEL_DIR/settings.yml with MODEL_DIR, else settings.yml at the repository root; none
# there is fine), merges the variables below (a variable given to make on the command line, `make deploy
# GITHUB_REPO=owner/name TASK_MEMORY=4096`, wins over the file's value), checks every value against the
# template's constraints and rules and the platform's bounds, PLATFORM_FILE (default: platform.yml at the
# repository root), and writes the parameters CloudFormation gets. This script keeps the AWS look-ups (the
# stack, the image last promoted, the default VPC) and the aws cloudformation calls.
#   MODEL_DIR          a model repository's checkout, whose settings.yml is read as data: nothing in it is run
#                      or imported (settings.py runs isolated, -I, in this repository's folder, as does the rest)
#   PLATFORM_FILE      the platform's settings: its stack (passed as PlatformStackName, and the stack's tag
#                      notebook-pipeline:platform; the tag notebook-pipeline:model is the repository's name)
#                      and the bounds of what any model may ask. PLATFORM_STACK (make deploy-platform's) is refused
#                      unless it is that stack: a model deploys under the platform its PLATFORM_FILE describes
#   GITHUB_REPO        owner/name, or a bare name with GITHUB_OWNER set (not in the file; required for deploy/plan)
#   DATA_LAKE_BUCKET   the bucket the notebook reads                              (required for deploy/plan)
#   DATA_LAKE_PREFIX   the data lake's root in DATA_LAKE_BUCKET                   (default: snapshots)
#   OUTPUT_BUCKET      the bucket the notebook publishes to                       (required for deploy/plan)
#   VALIDATION_DATE    the day the validation runs the notebook for, YYYY-MM-DD   (default: 2019-08-01)
#   VALIDATION_PREFIX  where validation runs publish in OUTPUT_BUCKET, apart from OUTPUT_PREFIX (default: validation)
#   GITHUB_BRANCH      the branch that triggers the pipeline                      (default: main)
#   CONNECTION_ARN     an existing GitHub connection (default: the stack creates one)
#   NOTEBOOK           the notebook baked into the image                          (default: usp.ipynb)
#   RUNNER_MAJOR       the runner major version the model follows (unset: the stack's; on creation, the template's)
#   RUNNER_PIN         a runner image digest the model is pinned to (always passed: empty follows RUNNER_MAJOR)
#   NOTIFICATION_EMAILS up to 3 addresses, comma-separated, told of every outcome (each confirms from its first mail)
#   STACK_NAME         the stack's name (default: notebook-pipeline-<repository name>, -<ENV> with ENV)
# A model's environments (settings.yml environments:, each environment its own stack with its own table,
# schedule, alerts and data locations):
#   ENV                the environment: its settings (environments.<ENV>) override the file's, its stack is
#                      notebook-pipeline-<repository name>-<ENV> (tagged notebook-pipeline:environment), and the
#                      stack's mails name it (EnvironmentName). Required when the file has environments; every
#                      make target in AWS takes it (make promote ENV=production TO=3)
#   RELEASES_FROM_REPOSITORY, RELEASES_FROM_VERSIONS_BUCKET  set: a production stack, which never builds: it
#                      promotes the images the staging stack (its outputs ImageRepositoryArn, VersionsBucketName)
#                      validated, with make promote ENV=... TO=<version>
#   RELEASE_ACCOUNTS   on staging: the production stacks' AWS account ids, comma-separated, allowed to pull its
#                      images and read its version records
#                      (the three always passed: one left out of the file is turned off)
# The notebook's data sources (each off unless set; always passed, so one left out of the file is turned off):
#   ATHENA_WORKGROUP, ATHENA_RESULTS_BUCKET, ATHENA_RESULTS_PREFIX   Athena and its query result location
#   GLUE_DATABASES     Glue databases, comma-separated      OPENSEARCH_DOMAIN_ARNS  domain ARNs, comma-separated
#   SECRET_NAMES, SECRET_ARNS  the secrets' variables and their ARNs, comma-separated, in the same order
#   SECRET_KMS_KEY_ARNS  customer managed keys of the secrets, comma-separated
#   AWS_REGION         the region (default: the AWS CLI's)
# The promotion (each unset one keeps the stack's value, or the template's default on creation; COMPARE_KEYS
# and MAX_CHANGED_SHARE set empty are passed empty, which the template reads as none):
#   COMPARE_KEYS       the output's key columns, comma-separated, the validation compares production's rows by
#                      (default: empty, whole rows)
#   MAX_CHANGED_SHARE  the share of production's rows of VALIDATION_DATE, 0 to 1, a candidate may add, remove
#                      or change and still be promoted without make promote ... ACCEPT= (default: empty, no limit)
#   RELEASE_APPROVAL   none, or required: each validated release waits for make approve / make reject (default: none)
# The daily run (each unset one keeps the stack's value, or the template's default on creation; so do the
# DATA_LAKE_PREFIX and VALIDATION_ variables):
#   SCHEDULE           cron(...) or rate(...) in SCHEDULE_TIMEZONE; empty for no schedule (default: cron(0 6 * * ? *))
#   SCHEDULE_TIMEZONE  an IANA time zone (default: UTC)
#   OUTPUT_PREFIX      where runs publish in OUTPUT_BUCKET: the table's location (default: daily)
#   TABLE_DATABASE     the Glue database the stack creates for the table (default on creation: STACK_NAME in
#                      lower case, '-' as '_'; never changed by an update that does not set it)
#   TABLE_NAME         the table's name in it (default: usp)
#   KEEP_SNAPSHOT_DAYS days of the table's history kept (default: 30)
#   CONSUMER_SCAN_LIMIT_BYTES  bytes one query in the consumers' Athena workgroup may scan (default: 10 GiB)
#   TASK_CPU, TASK_MEMORY  Fargate CPU units and MiB (default: 1024, 2048)
#   SUBNETS, SECURITY_GROUPS  comma-separated ids (default on creation: the region's default VPC)
#   ASSIGN_PUBLIC_IP   ENABLED or DISABLED (default: DISABLED; ENABLED with the default VPC)
#   PARAMETER_FILE     keeps the parameters passed to CloudFormation in this file, a JSON list of Name=Value
#                      texts (default: a temporary file, removed when done)
# Every value is checked before any AWS call (scripts/settings.py check); a bad one stops with a one-line
# message naming it and the fix, exit 2.
#
# The image the daily runs start is not a variable: on an existing stack, deploy and plan pass the digest the
# last promotion pinned (a push, make rollback or make promote; SSM parameter /<STACK_NAME>/validated-image) as
# ValidatedImage, so an update registers a task definition revision that runs that image. While the parameter
# holds none (nothing has been promoted yet), or cannot be read, no ValidatedImage is passed and the stack
# keeps the one it has.
#
#   scripts/pipeline.sh pause|resume   set the schedule's state, every other parameter unchanged
set -Eeuo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly ROOT
TEMPLATE="${ROOT}/template/pipeline.yaml"
readonly TEMPLATE
AWS=${AWS_CLI:-aws}
PROGRAM=pipeline
REPO_HINT="make deploy GITHUB_REPO=owner/name (the other settings come from settings.yml)"
# shellcheck source=scripts/stack.sh
source "$(dirname "${BASH_SOURCE[0]}")/stack.sh"
declare -A OUT # the stack's outputs (load_outputs)
FOUND=()       # the look-ups' parameters, Name=Value, which settings.py write checks and adds

# absolute PATH: PATH as the current folder reads it (pipeline.sh then works in the repository's folder).
absolute() {
	if [[ "$1" == /* ]]; then printf '%s\n' "$1"; else printf '%s/%s\n' "$PWD" "$1"; fi
}

# settings check|write [PARAMETER_FILE LOOK-UP...]: scripts/settings.py, isolated (-I: no current folder,
# PYTHONPATH or user site on its path, whatever the environment), from the repository's folder; it reads
# relative paths from CALLER, the folder make ran in. Nothing of MODEL_DIR runs: its settings.yml is data.
settings() {
	local command=$1
	shift
	"$PYTHON" -I "${ROOT}/scripts/settings.py" "$command" "$CALLER" "$@"
}

# The stack's and the deploy's configuration, every value checked before any AWS call (a refusal stops with
# settings.py's message, exit 2): what the look-ups and messages read (settings check), the stack's name and
# the region.
load_config() {
	CALLER=$PWD
	PYTHON=${SETTINGS_PYTHON:-python3}
	[[ "$PYTHON" != */* ]] || PYTHON=$(absolute "$PYTHON")
	PARAMETERS=${PARAMETER_FILE:+$(absolute "$PARAMETER_FILE")}
	cd "$ROOT" # never the model's folder: nothing after this reads or runs anything relative to it
	load_repository
	export GITHUB_REPO # owner/name, with GITHUB_OWNER's owner
	command -v "$PYTHON" >/dev/null || die "cannot run ${PYTHON} to read the settings: set SETTINGS_PYTHON, or use make deploy"
	local assignments
	assignments=$(settings check) || exit 2
	eval "$assignments"
	load_stack
}

stack_exists() {
	"$AWS" cloudformation describe-stacks "${REGION_ARGS[@]}" --stack-name "$STACK_NAME" --query 'Stacks[0].StackName' \
		--output text >/dev/null 2>&1
}

# The image the runs start, on an existing stack: the digest the last validation promoted, so that the
# update's task definition revision runs it. None promoted yet, or unreadable: the stack keeps its own.
promoted_image() {
	local name="/${STACK_NAME}/validated-image" image reason
	if ! image=$("$AWS" ssm get-parameter "${REGION_ARGS[@]}" --name "$name" --query Parameter.Value \
		--output text 2>/dev/null); then
		reason="cannot be read (missing, or no ssm:GetParameter)"
	elif [[ "$image" =~ $VALIDATED_IMAGE_PATTERN ]]; then # the template's ValidatedImage, from settings.py
		FOUND+=("ValidatedImage=${image}")
		printf 'pipeline: the runs start %s, the version last promoted (make versions lists them)\n' "$image" >&2
		return 0
	elif [[ "$image" == none ]]; then
		reason="holds none: no validation has promoted an image yet"
	else
		reason="holds '${image}', not an ECR image digest"
	fi
	printf "pipeline: %s %s; the runs keep the stack's image until the first validation promotes one\n" \
		"$name" "$reason" >&2
}

# default_network: a new stack given no SUBNETS runs in the region's default VPC (its default subnets are
# public: the runs get a public IP). An existing stack keeps its network unless given one.
default_network() {
	local vpc subnets groups
	vpc=$("$AWS" ec2 describe-vpcs "${REGION_ARGS[@]}" --filters Name=is-default,Values=true \
		--query 'Vpcs[0].VpcId' --output text)
	[[ "$vpc" == vpc-* ]] ||
		die "no SUBNETS given and the region has no default VPC: set SUBNETS=subnet-...,subnet-... SECURITY_GROUPS=sg-... (README: Network)"
	subnets=$("$AWS" ec2 describe-subnets "${REGION_ARGS[@]}" \
		--filters "Name=vpc-id,Values=${vpc}" Name=default-for-az,Values=true \
		--query 'Subnets[].SubnetId' --output text)
	subnets=$(tr -s '[:space:]' ',' <<<"$subnets")
	subnets=${subnets%,}
	groups=$("$AWS" ec2 describe-security-groups "${REGION_ARGS[@]}" \
		--filters "Name=vpc-id,Values=${vpc}" Name=group-name,Values=default \
		--query 'SecurityGroups[0].GroupId' --output text)
	[[ "$subnets" == subnet-* && "$groups" == sg-* ]] ||
		die "the default VPC ${vpc} has no default subnets or security group: set SUBNETS and SECURITY_GROUPS"
	FOUND+=("Subnets=${subnets}" "SecurityGroups=${groups}" "AssignPublicIp=${ASSIGN_PUBLIC_IP:-ENABLED}")
	printf 'pipeline: runs start in the default VPC %s (subnets %s, security group %s, public IP %s)\n' \
		"$vpc" "$subnets" "$groups" "${ASSIGN_PUBLIC_IP:-ENABLED}" >&2
}

# write_parameters: the parameter file, PARAMETER_FILE or a temporary one (removed on exit), with the
# look-ups' values (settings write).
write_parameters() {
	if [[ -z "$PARAMETERS" ]]; then
		PARAMETERS=$(mktemp "${TMPDIR:-/tmp}/pipeline-parameters.XXXXXX")
		trap 'rm -f "$PARAMETERS"' EXIT
	fi
	settings write "$PARAMETERS" "${FOUND[@]}" || exit 2
}

deploy() {
	local mode=$1 exists=no
	load_config
	if stack_exists; then
		exists=yes
		promoted_image
	elif [[ -z "$SUBNETS" ]]; then
		default_network
	fi
	if [[ "$exists" == no && -z "$TABLE_DATABASE" ]]; then # the stack's name, as Glue and IAM spell it
		FOUND+=("OutputDatabase=$(tr 'A-Z-' 'a-z_' <<<"$STACK_NAME")")
	fi
	write_parameters
	local tags=("notebook-pipeline:platform=${PLATFORM_STACK_NAME}" "notebook-pipeline:model=${GITHUB_REPO#*/}")
	[[ -z "${ENV:-}" ]] || tags+=("notebook-pipeline:environment=${ENV}")
	local args=(
		cloudformation deploy "${REGION_ARGS[@]}" --stack-name "$STACK_NAME" --template-file "$TEMPLATE"
		--capabilities CAPABILITY_IAM --no-fail-on-empty-changeset --tags "${tags[@]}"
		--parameter-overrides "file://${PARAMETERS}"
	)
	if [[ -n "$RELEASES_FROM_REPOSITORY" ]]; then
		printf 'pipeline: %s stack %s for %s (releases what %s validated)\n' "$mode" "$STACK_NAME" "$GITHUB_REPO" \
			"$RELEASES_FROM_REPOSITORY" >&2
	else
		printf 'pipeline: %s stack %s for %s (branch %s)\n' "$mode" "$STACK_NAME" "$GITHUB_REPO" "$GITHUB_BRANCH" >&2
	fi
	if [[ "$mode" == plan ]]; then
		show_plan "${args[@]}" --no-execute-changeset
		return 0
	fi
	"$AWS" "${args[@]}"
	"$AWS" cloudformation describe-stacks "${REGION_ARGS[@]}" --stack-name "$STACK_NAME" \
		--query 'Stacks[0].Outputs[].[OutputKey,OutputValue]' --output table
	dashboard
	next_step
}

# dashboard: the stack's dashboard, from its output DashboardUrl (none from an older template).
dashboard() {
	read_outputs
	[[ -z "${OUT[DashboardUrl]:-}" ]] ||
		printf 'pipeline: its dashboard (runs and failures by exit code, rows, durations, validations, alarms): %s\n' \
			"${OUT[DashboardUrl]}" >&2
}

# show_plan DEPLOY-ARGS...: create the change set without executing it, then list what it would change.
show_plan() {
	local out change_set
	out=$("$AWS" "$@")
	printf '%s\n' "$out"
	change_set=$(grep -oE 'arn:aws[a-z-]*:cloudformation:[^ ]+:changeSet/[^ ]+' <<<"$out" | head -n 1 || true)
	if [[ -z "$change_set" ]]; then
		printf 'pipeline: no change set to show (no changes, or see the output above)\n' >&2
		return 0
	fi
	"$AWS" cloudformation describe-change-set "${REGION_ARGS[@]}" --change-set-name "$change_set" \
		--query 'Changes[].ResourceChange.[Action,LogicalResourceId,ResourceType,Replacement]' --output table
	printf 'pipeline: not executed; make deploy with the same variables applies it\n' >&2
}

next_step() {
	if [[ -n "$RELEASES_FROM_REPOSITORY" ]]; then # production: no pipeline, nothing to push
		cat >&2 <<-EOF
			Next step: ${STACK_NAME} has no pipeline (it never builds): it runs what staging validated, once promoted here.
			  Staging's validated versions: make versions $(stack_args)
			  Release one of them:          make promote $(stack_args) TO=<version>
		EOF
		return 0
	fi
	[[ -z "${ENV:-}" ]] || production_settings
	if connection_pending "$STACK_NAME" notebook-pipeline; then
		printf 'Then push to %s (or press Release change on the pipeline) to start the first run.\n' "$GITHUB_BRANCH" >&2
	else
		printf 'Next step: push to %s; the pipeline starts on every push.\n' "$GITHUB_BRANCH" >&2
	fi
}

# production_settings: on an environment's stack that builds (staging), what the production environment's
# settings take from its outputs; nothing on a stack without them (an older template).
production_settings() {
	read_outputs
	[[ -n "${OUT[ImageRepositoryArn]:-}" && -n "${OUT[VersionsBucketName]:-}" ]] || return 0
	printf "pipeline: production releases what this environment validates: settings.yml environments.production.releases: {from_repository: '%s', from_versions_bucket: %s} (from another AWS account: this environment's releases.to_accounts: [that account's id])\n" \
		"${OUT[ImageRepositoryArn]}" "${OUT[VersionsBucketName]}" >&2
}

status() {
	load_stack
	"$AWS" cloudformation describe-stacks "${REGION_ARGS[@]}" --stack-name "$STACK_NAME" \
		--query 'Stacks[0].[StackName,StackStatus,LastUpdatedTime]' --output table
	read_outputs
	if releases_from_staging; then
		printf 'pipeline: %s has no pipeline: it runs what staging validated, once promoted (make versions %s; make promote %s TO=<version>)\n' \
			"$STACK_NAME" "$(stack_args)" "$(stack_args)" >&2
		return 0
	fi
	"$AWS" codepipeline list-pipeline-executions "${REGION_ARGS[@]}" --pipeline-name "$STACK_NAME" --max-items 1 \
		--query 'pipelineExecutionSummaries[0].[pipelineExecutionId,status,startTime,sourceRevisions[0].revisionId]' \
		--output table
}

delete() {
	load_stack
	printf 'pipeline: deleting stack %s (the artifact bucket is kept: empty and delete it by hand)\n' "$STACK_NAME" >&2
	"$AWS" cloudformation delete-stack "${REGION_ARGS[@]}" --stack-name "$STACK_NAME"
	"$AWS" cloudformation wait stack-delete-complete "${REGION_ARGS[@]}" --stack-name "$STACK_NAME"
}

# set_schedule ENABLED|DISABLED: update the stack's ScheduleState, keeping the template and every other value.
set_schedule() {
	local state=$1 keys key params=()
	load_stack
	keys=$("$AWS" cloudformation describe-stacks "${REGION_ARGS[@]}" --stack-name "$STACK_NAME" \
		--query 'Stacks[0].Parameters[].ParameterKey' --output text)
	for key in $keys; do
		[[ "$key" == ScheduleState ]] || params+=("ParameterKey=${key},UsePreviousValue=true")
	done
	params+=("ParameterKey=ScheduleState,ParameterValue=${state}")
	"$AWS" cloudformation update-stack "${REGION_ARGS[@]}" --stack-name "$STACK_NAME" --use-previous-template \
		--capabilities CAPABILITY_IAM --parameters "${params[@]}" >/dev/null
	"$AWS" cloudformation wait stack-update-complete "${REGION_ARGS[@]}" --stack-name "$STACK_NAME"
	printf 'pipeline: the daily schedule of %s is %s\n' "$STACK_NAME" "$state" >&2
}

main() {
	case "${1:-}" in
	pause) set_schedule DISABLED ;;
	resume) set_schedule ENABLED ;;
	deploy) deploy deploy ;;
	plan) deploy plan ;;
	status) status ;;
	delete) delete ;;
	*) die "usage: pipeline.sh deploy|plan|status|delete|pause|resume (configured by environment variables, see the header)" ;;
	esac
}

main "$@"
