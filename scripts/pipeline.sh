#!/usr/bin/env bash
# pipeline.sh -- deploy, inspect and delete the CI/CD pipeline stack (template/pipeline.yaml).
#
#   scripts/pipeline.sh deploy|plan|status|delete     (the Makefile's deploy, deploy-plan, status, delete)
#
# Configuration comes from the model's settings file and the environment: deploy and plan first read
# SETTINGS_FILE (default: MODEL_DIR/settings.yml with MODEL_DIR, else settings.yml at the repository root; none
# there is fine) with scripts/settings.py, run by SETTINGS_PYTHON (make passes .venv's, which has PyYAML;
# default python3). It checks the file against the template and sets the variables below that the environment
# does not set: a variable given to make on the command line (`make deploy GITHUB_REPO=owner/name
# TASK_MEMORY=4096`) wins over the file's value. Then it holds every value deployed to the platform's bounds,
# PLATFORM_FILE (default: platform.yml at the repository root), and reads the platform's stack there.
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
# Every value is checked before any AWS call, against the same constraints as the template's parameter
# (tests/pipeline/test_make_deploy.py holds each check to the template); a bad one stops with a one-line message.
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
# The template's ValidatedImage pattern, less its '^$|' (an empty value means: keep the stack's).
VALIDATED_IMAGE='^[0-9]{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com(\.cn)?/[a-z0-9._/-]+@sha256:[0-9a-f]{64}$'
readonly VALIDATED_IMAGE
# shellcheck source=scripts/stack.sh
source "$(dirname "${BASH_SOURCE[0]}")/stack.sh"
declare -A OUT # the stack's outputs (load_outputs)

# absolute PATH: PATH as the current folder reads it (pipeline.sh then works in the repository's folder).
absolute() {
	if [[ "$1" == /* ]]; then printf '%s\n' "$1"; else printf '%s/%s\n' "$PWD" "$1"; fi
}

# The model's settings file: the variables it sets that the environment does not, each checked against the
# template and the platform's bounds by scripts/settings.py (a bad file stops here, before any AWS call, with
# settings.py's message). Nothing of MODEL_DIR runs: settings.py reads its settings.yml as YAML data, in the
# platform's folder (-I: no current folder, PYTHONPATH or user site on its path, whatever the environment).
load_settings() {
	local file=${SETTINGS_FILE:-} platform=${PLATFORM_FILE:-${ROOT}/platform.yml} python=${SETTINGS_PYTHON:-python3}
	local assignments
	if [[ -n "${MODEL_DIR:-}" ]]; then
		[[ -d "$MODEL_DIR" ]] ||
			die "MODEL_DIR=${MODEL_DIR} is not a folder: give the checkout of the model's repository, e.g. MODEL_DIR=../hotel-usp"
		[[ -n "$file" || -f "${MODEL_DIR%/}/settings.yml" ]] ||
			die "MODEL_DIR=${MODEL_DIR} has no settings.yml: a model repository keeps its settings in settings.yml at its root (this repository's settings.yml shows every key), or name the file with SETTINGS_FILE=path"
		[[ -n "$file" || ! -L "${MODEL_DIR%/}/settings.yml" ]] ||
			die "MODEL_DIR=${MODEL_DIR} has a link as settings.yml: the model's settings are a file of its own, read as it is; replace the link by the file, or name a file with SETTINGS_FILE=path"
		file=${file:-${MODEL_DIR%/}/settings.yml}
	elif [[ -z "$file" ]]; then
		file=${ROOT}/settings.yml
		[[ -e "$file" ]] || file=/dev/null # no settings file: every setting comes from the variables, checked all the same
	fi
	file=$(absolute "$file")
	platform=$(absolute "$platform")
	[[ "$python" != */* ]] || python=$(absolute "$python")
	cd "$ROOT" # never the model's folder: nothing after this reads or runs anything relative to it
	command -v "$python" >/dev/null ||
		die "cannot run ${python} to read ${file}: set SETTINGS_PYTHON, or use make deploy"
	assignments=$("$python" -I "${ROOT}/scripts/settings.py" "$file" "$platform") || exit 2
	eval "$assignments"
	[[ -z "${PLATFORM_STACK:-}" || "$PLATFORM_STACK" == "$PLATFORM_STACK_NAME" ]] ||
		die "PLATFORM_STACK=${PLATFORM_STACK} is not the stack of the platform file ${platform} (${PLATFORM_STACK_NAME}): a model deploys under the platform whose bounds it is held to; leave PLATFORM_STACK out, or give PLATFORM_FILE= a platform file whose stack is ${PLATFORM_STACK}"
}

load_config() {
	load_settings
	load_repository
	load_stack_name
	GITHUB_BRANCH=${GITHUB_BRANCH:-main}
	CONNECTION_ARN=${CONNECTION_ARN:-}
	NOTEBOOK=${NOTEBOOK:-usp.ipynb}
	RUNNER_PIN=${RUNNER_PIN:-} # always passed (settings.py checked it): one left out follows the major again
	NOTIFICATION_EMAILS=${NOTIFICATION_EMAILS:-}
	# The data sources (settings.py checked them): always passed, so that one left out is off.
	ATHENA_WORKGROUP=${ATHENA_WORKGROUP:-}
	ATHENA_RESULTS_BUCKET=${ATHENA_RESULTS_BUCKET:-}
	ATHENA_RESULTS_PREFIX=${ATHENA_RESULTS_PREFIX:-}
	GLUE_DATABASES=${GLUE_DATABASES:-}
	OPENSEARCH_DOMAIN_ARNS=${OPENSEARCH_DOMAIN_ARNS:-}
	SECRET_NAMES=${SECRET_NAMES:-}
	SECRET_ARNS=${SECRET_ARNS:-}
	SECRET_KMS_KEY_ARNS=${SECRET_KMS_KEY_ARNS:-}
	# Where the releases come from and go to (settings.py checked them): always passed, so that one left out is off.
	RELEASES_FROM_REPOSITORY=${RELEASES_FROM_REPOSITORY:-}
	RELEASES_FROM_VERSIONS_BUCKET=${RELEASES_FROM_VERSIONS_BUCKET:-}
	RELEASE_ACCOUNTS=${RELEASE_ACCOUNTS:-}
	[[ -z "$NOTIFICATION_EMAILS" ]] ||
		check NOTIFICATION_EMAILS "$NOTIFICATION_EMAILS" \
			'^[^@[:space:],]+@[^@[:space:],]+\.[^@[:space:],]+(,[^@[:space:],]+@[^@[:space:],]+\.[^@[:space:],]+){0,2}$' \
			"1 to 3 email addresses separated by commas, without spaces"
	check GITHUB_BRANCH "$GITHUB_BRANCH" '^[A-Za-z0-9][A-Za-z0-9._/-]{0,254}$' "a branch name such as main"
	check NOTEBOOK "$NOTEBOOK" '^([A-Za-z0-9_-][A-Za-z0-9._-]*/)*[A-Za-z0-9_-][A-Za-z0-9._-]*\.ipynb$' "a relative path ending in .ipynb"
	[[ -z "$CONNECTION_ARN" ]] ||
		check CONNECTION_ARN "$CONNECTION_ARN" \
			'^arn:aws[a-z-]*:(codestar-connections|codeconnections):[a-z0-9-]+:[0-9]{12}:connection/[0-9a-f-]{36}$' \
			"an arn:aws:codeconnections:REGION:ACCOUNT:connection/UUID, or leave it empty to create one"
	[[ -n "${DATA_LAKE_BUCKET:-}" ]] ||
		die "DATA_LAKE_BUCKET is not set: the bucket the notebook reads (settings.yml data_lake.bucket, or DATA_LAKE_BUCKET=)"
	[[ -n "${OUTPUT_BUCKET:-}" ]] ||
		die "OUTPUT_BUCKET is not set: the bucket the notebook publishes to (settings.yml output.bucket, or OUTPUT_BUCKET=)"
	check DATA_LAKE_BUCKET "$DATA_LAKE_BUCKET" '^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$' "an S3 bucket name"
	check OUTPUT_BUCKET "$OUTPUT_BUCKET" '^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$' "an S3 bucket name"
	load_run_config
	load_region
}

# pass_if_set VARIABLE PARAMETER REGEX HINT: when VARIABLE is set, check it and pass it as PARAMETER.
pass_if_set() {
	local value=${!1:-}
	[[ -n "$value" ]] || return 0
	check "$1" "$value" "$3" "$4"
	RUN_OVERRIDES+=("$2=${value}")
}

# pass_if_given VARIABLE PARAMETER REGEX HINT: when VARIABLE is set, even empty (a value the template reads as
# none), check it and pass it as PARAMETER.
pass_if_given() {
	[[ -n "${!1+set}" ]] || return 0
	check "$1" "${!1}" "$3" "$4"
	RUN_OVERRIDES+=("$2=${!1}")
}

# pass_number_if_set VARIABLE PARAMETER MIN MAX HINT: when VARIABLE is set, check it is a whole number from MIN
# to MAX and pass it as PARAMETER.
pass_number_if_set() {
	local value=${!1:-}
	[[ -n "$value" ]] || return 0
	check_number "$1" "$value" "$3" "$4" "$5"
	RUN_OVERRIDES+=("$2=${value}")
}

# The daily run's, the validation's and the promotion's variables: each one set is checked here and passed; an
# unset one is not passed (the stack keeps its value).
load_run_config() {
	RUN_OVERRIDES=()
	pass_if_set DATA_LAKE_PREFIX DataLakePrefix '^[A-Za-z0-9!_.()-]+(/[A-Za-z0-9!_.()-]+)*$' \
		"a key prefix of letters, digits and !_.()- (no '*', an IAM wildcard), without leading or trailing '/', e.g. snapshots"
	pass_if_set VALIDATION_DATE ValidationDate '^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$' \
		"a date, YYYY-MM-DD, e.g. 2019-08-01"
	pass_if_set VALIDATION_PREFIX ValidationPrefix '^[A-Za-z0-9!_.()-]+(/[A-Za-z0-9!_.()-]+){0,5}$' \
		"a key prefix of 1 to 6 folders of letters, digits and !_.()- (no '*', an IAM wildcard), without leading or trailing '/', e.g. validation"
	pass_if_given COMPARE_KEYS CompareKeyColumns '^$|^[A-Za-z_][A-Za-z0-9_]{0,63}(,[A-Za-z_][A-Za-z0-9_]{0,63}){0,9}$' \
		"up to 10 column names (letters, digits and '_'), comma-separated, e.g. accommodation_id; empty compares whole rows"
	pass_if_given MAX_CHANGED_SHARE MaxChangedShare '^$|^(0(\.[0-9]{1,4})?|1(\.0{1,4})?)$' \
		"a number from 0 to 1 with at most 4 decimals, e.g. 0.1 for 10%; empty for no limit"
	pass_if_set RELEASE_APPROVAL ReleaseApproval '^(none|required)$' \
		"none, or required (each validated release waits for make approve or make reject)"
	if [[ -n "${SCHEDULE+set}" ]]; then
		[[ -z "$SCHEDULE" ]] ||
			check SCHEDULE "$SCHEDULE" '^(cron\([^ ()]+( [^ ()]+){5}\)|rate\([1-9][0-9]* (minute|minutes|hour|hours|day|days)\))$' \
				"cron(minutes hours day-of-month month day-of-week year), e.g. 'cron(0 6 * * ? *)', or rate(1 day); empty for no schedule"
		RUN_OVERRIDES+=("ScheduleExpression=${SCHEDULE}")
	fi
	if [[ -n "${SCHEDULE_TIMEZONE:-}" ]]; then
		[[ "$SCHEDULE_TIMEZONE" =~ ^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+){0,2}$ && -f "/usr/share/zoneinfo/${SCHEDULE_TIMEZONE}" ]] ||
			die "SCHEDULE_TIMEZONE=${SCHEDULE_TIMEZONE} is not a time zone: use an IANA name such as Europe/Amsterdam or UTC"
		RUN_OVERRIDES+=("ScheduleTimezone=${SCHEDULE_TIMEZONE}")
	fi
	pass_if_set OUTPUT_PREFIX OutputPrefix '^[A-Za-z0-9!_.()-]+(/[A-Za-z0-9!_.()-]+){0,5}$' \
		"a key prefix of 1 to 6 folders of letters, digits and !_.()- (no '*', an IAM wildcard), without leading or trailing '/', e.g. usp/daily"
	pass_if_set TABLE_DATABASE OutputDatabase '^[a-z_][a-z0-9_]{0,254}$' \
		"a Glue database name, lower-case letters, digits and '_', e.g. notebook_pipeline_usp"
	pass_if_set TABLE_NAME OutputTable '^[a-z_][a-z0-9_]{0,254}$' \
		"a Glue table name, lower-case letters, digits and '_', e.g. usp"
	pass_number_if_set KEEP_SNAPSHOT_DAYS SnapshotRetentionDays 1 3650 "days of the table's history kept, e.g. 30"
	pass_number_if_set CONSUMER_SCAN_LIMIT_BYTES ConsumerScanLimitBytes 10485760 1125899906842624 \
		"bytes one consumer query may scan, e.g. 10737418240 (10 GiB)"
	pass_if_set TASK_CPU TaskCpu '^(256|512|1024|2048|4096|8192|16384)$' \
		"256, 512, 1024, 2048, 4096, 8192 or 16384 (1024 = 1 vCPU)"
	pass_number_if_set TASK_MEMORY TaskMemory 512 122880 "MiB that Fargate offers with TASK_CPU, e.g. 2048"
	[[ -z "${RUNNER_MAJOR:-}" ]] || RUN_OVERRIDES+=("RunnerMajorVersion=${RUNNER_MAJOR}") # settings.py checked it
	if [[ -n "${ASSIGN_PUBLIC_IP:-}" ]]; then
		check ASSIGN_PUBLIC_IP "$ASSIGN_PUBLIC_IP" '^(ENABLED|DISABLED)$' "ENABLED or DISABLED"
	fi
	if [[ -n "${SUBNETS:-}${SECURITY_GROUPS:-}" ]]; then
		[[ -n "${SUBNETS:-}" && -n "${SECURITY_GROUPS:-}" ]] ||
			die "set SUBNETS and SECURITY_GROUPS together (or neither, for the default VPC on creation)"
		check SUBNETS "$SUBNETS" '^subnet-[0-9a-f]{8,17}(,subnet-[0-9a-f]{8,17})*$' "subnet ids separated by commas, e.g. subnet-0a1b2c3d,subnet-4e5f6a7b"
		check SECURITY_GROUPS "$SECURITY_GROUPS" '^sg-[0-9a-f]{8,17}(,sg-[0-9a-f]{8,17})*$' "security group ids separated by commas, e.g. sg-0a1b2c3d"
	fi
}

stack_exists() {
	"$AWS" cloudformation describe-stacks "${REGION_ARGS[@]}" --stack-name "$STACK_NAME" --query 'Stacks[0].StackName' \
		--output text >/dev/null 2>&1
}

# The image the runs start, on an existing stack: the digest the last validation promoted, so that the
# update's task definition revision runs it. None promoted yet, or unreadable: the stack keeps its own.
validated_image_override() {
	local name="/${STACK_NAME}/validated-image" image reason
	if ! image=$("$AWS" ssm get-parameter "${REGION_ARGS[@]}" --name "$name" --query Parameter.Value \
		--output text 2>/dev/null); then
		reason="cannot be read (missing, or no ssm:GetParameter)"
	elif [[ "$image" =~ $VALIDATED_IMAGE ]]; then
		RUN_OVERRIDES+=("ValidatedImage=${image}")
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

# The runs' network: SUBNETS and SECURITY_GROUPS when given; on an existing stack (EXISTS=yes), what it has;
# on a new one, the region's default VPC (its default subnets are public: the runs get a public IP).
network_overrides() {
	local vpc
	if [[ -z "${SUBNETS:-}" && "$EXISTS" == yes ]]; then
		[[ -z "${ASSIGN_PUBLIC_IP:-}" ]] || RUN_OVERRIDES+=("AssignPublicIp=${ASSIGN_PUBLIC_IP}")
		return 0
	fi
	if [[ -z "${SUBNETS:-}" ]]; then
		vpc=$("$AWS" ec2 describe-vpcs "${REGION_ARGS[@]}" --filters Name=is-default,Values=true \
			--query 'Vpcs[0].VpcId' --output text)
		[[ "$vpc" == vpc-* ]] ||
			die "no SUBNETS given and the region has no default VPC: set SUBNETS=subnet-...,subnet-... SECURITY_GROUPS=sg-... (README: Network)"
		SUBNETS=$("$AWS" ec2 describe-subnets "${REGION_ARGS[@]}" \
			--filters "Name=vpc-id,Values=${vpc}" Name=default-for-az,Values=true \
			--query 'Subnets[].SubnetId' --output text)
		SUBNETS=$(tr -s '[:space:]' ',' <<<"$SUBNETS")
		SUBNETS=${SUBNETS%,}
		SECURITY_GROUPS=$("$AWS" ec2 describe-security-groups "${REGION_ARGS[@]}" \
			--filters "Name=vpc-id,Values=${vpc}" Name=group-name,Values=default \
			--query 'SecurityGroups[0].GroupId' --output text)
		[[ "$SUBNETS" == subnet-* && "$SECURITY_GROUPS" == sg-* ]] ||
			die "the default VPC ${vpc} has no default subnets or security group: set SUBNETS and SECURITY_GROUPS"
		ASSIGN_PUBLIC_IP=${ASSIGN_PUBLIC_IP:-ENABLED}
		printf 'pipeline: runs start in the default VPC %s (subnets %s, security group %s, public IP %s)\n' \
			"$vpc" "$SUBNETS" "$SECURITY_GROUPS" "$ASSIGN_PUBLIC_IP" >&2
	fi
	RUN_OVERRIDES+=("Subnets=${SUBNETS}" "SecurityGroups=${SECURITY_GROUPS}")
	[[ -z "${ASSIGN_PUBLIC_IP:-}" ]] || RUN_OVERRIDES+=("AssignPublicIp=${ASSIGN_PUBLIC_IP}")
}

deploy() {
	local mode=$1
	load_config
	EXISTS=no
	if stack_exists; then
		EXISTS=yes
		validated_image_override
	fi
	network_overrides
	if [[ "$EXISTS" == no && -z "${TABLE_DATABASE:-}" ]]; then # the stack's name, as Glue and IAM spell it
		RUN_OVERRIDES+=("OutputDatabase=$(tr 'A-Z-' 'a-z_' <<<"$STACK_NAME")")
	fi
	local tags=("notebook-pipeline:platform=${PLATFORM_STACK_NAME}" "notebook-pipeline:model=${GITHUB_REPO#*/}")
	[[ -z "${ENV:-}" ]] || tags+=("notebook-pipeline:environment=${ENV}")
	local args=(
		cloudformation deploy "${REGION_ARGS[@]}" --stack-name "$STACK_NAME" --template-file "$TEMPLATE"
		--capabilities CAPABILITY_IAM --no-fail-on-empty-changeset --tags "${tags[@]}"
		--parameter-overrides "GitHubRepository=${GITHUB_REPO}" "GitHubBranch=${GITHUB_BRANCH}"
		"ConnectionArn=${CONNECTION_ARN}" "EnvironmentName=${ENV:-}"
		"ReleasesFromRepository=${RELEASES_FROM_REPOSITORY}" "ReleasesFromVersionsBucket=${RELEASES_FROM_VERSIONS_BUCKET}"
		"ReleaseAccountIds=${RELEASE_ACCOUNTS}" "NotebookPath=${NOTEBOOK}"
		"PlatformStackName=${PLATFORM_STACK_NAME}" "RunnerImage=${RUNNER_PIN}"
		"DataLakeBucket=${DATA_LAKE_BUCKET}" "OutputBucket=${OUTPUT_BUCKET}" "NotificationEmails=${NOTIFICATION_EMAILS}"
		"AthenaWorkGroup=${ATHENA_WORKGROUP}" "AthenaResultsBucket=${ATHENA_RESULTS_BUCKET}"
		"AthenaResultsPrefix=${ATHENA_RESULTS_PREFIX}" "GlueDatabases=${GLUE_DATABASES}"
		"OpenSearchDomainArns=${OPENSEARCH_DOMAIN_ARNS}" "SecretNames=${SECRET_NAMES}" "SecretArns=${SECRET_ARNS}"
		"SecretKmsKeyArns=${SECRET_KMS_KEY_ARNS}"
		"${RUN_OVERRIDES[@]}"
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
