# shellcheck shell=bash
# stack.sh -- sourced by pipeline.sh, runs.sh, releases.sh, platform.sh and build.sh: their messages and checks, and
# which stack and region they act on. The sourcing script sets PROGRAM (its messages' prefix) and REPO_HINT (what to pass when
# GITHUB_REPO is missing).

die() {
	printf '%s: %s\n' "$PROGRAM" "$*" >&2
	exit 2
}

# check NAME VALUE REGEX HINT: VALUE must match REGEX, else stop with HINT.
check() {
	[[ "$2" =~ $3 ]] || die "$1=$2 is not valid: $4"
}

# check_number NAME VALUE MIN MAX HINT: VALUE must be a whole number from MIN to MAX, else stop with HINT.
# At most 18 digits: bash's arithmetic is 64-bit.
check_number() {
	if [[ ! "$2" =~ ^(0|[1-9][0-9]{0,17})$ ]] || (($2 < $3 || $2 > $4)); then
		die "$1=$2 is not valid: a whole number from $3 to $4 ($5)"
	fi
}

# setting KEY FILE: the value of a top-level `KEY: value` line of a YAML settings file (settings.yml,
# platform.yml), unquoted and without its comment; nothing when the file has no such line. A reader for
# scripts that run without PyYAML: its caller checks the value against the pattern it needs.
setting() {
	sed -nE "s/^$1:[[:space:]]*['\"]?([^'\"#[:space:]]*)['\"]?[[:space:]]*(#.*)?$/\\1/p" "$2" | head -n 1
}

load_repository() {
	[[ -n "${GITHUB_REPO:-}" ]] || die "GITHUB_REPO is not set: ${REPO_HINT}"
	if [[ "$GITHUB_REPO" != */* ]]; then
		[[ -n "${GITHUB_OWNER:-}" ]] || die "GITHUB_REPO=${GITHUB_REPO} has no owner: use GITHUB_REPO=owner/${GITHUB_REPO} or set GITHUB_OWNER"
		GITHUB_REPO="${GITHUB_OWNER}/${GITHUB_REPO}"
	fi
	check GITHUB_REPO "$GITHUB_REPO" '^[A-Za-z0-9][A-Za-z0-9-]{0,38}/[A-Za-z0-9._-]{1,100}$' \
		"use owner/name, e.g. hotel-profiling/usp-model"
}

# An environment's name, ENV (the template's EnvironmentName pattern, less its '^$|').
ENVIRONMENT_NAME='^[a-z][a-z0-9]{0,15}$'

# The stack's name: STACK_NAME, or notebook-pipeline-<repository name>, and -<ENV> for an environment of the
# model (make deploy ENV=staging deploys settings.yml's environments.staging as its own stack).
load_stack_name() {
	[[ -z "${ENV:-}" ]] ||
		check ENV "$ENV" "$ENVIRONMENT_NAME" \
			"1 to 16 lower-case letters and digits, starting with a letter: an environment settings.yml names under environments:, e.g. ENV=staging"
	if [[ -z "${STACK_NAME:-}" ]]; then
		load_repository
		STACK_NAME="notebook-pipeline-${GITHUB_REPO#*/}${ENV:+-${ENV}}"
		STACK_NAME=${STACK_NAME//[._]/-}
	fi
	# 64 at most: the alert mails' subjects carry it, and SNS takes 100 characters of subject.
	check STACK_NAME "$STACK_NAME" '^[A-Za-z][A-Za-z0-9-]{0,63}$' \
		"at most 64 letters, digits and '-', starting with a letter (set a shorter STACK_NAME)"
}

# REGION_ARGS: the --region option for every aws call, when AWS_REGION is set.
# shellcheck disable=SC2034 # read by the scripts that source this file
load_region() {
	REGION_ARGS=()
	if [[ -n "${AWS_REGION:-}" ]]; then
		check AWS_REGION "$AWS_REGION" '^[a-z]{2}(-[a-z]+)+-[0-9]$' "a region such as eu-west-1"
		REGION_ARGS=(--region "$AWS_REGION")
	fi
}

load_stack() {
	load_stack_name
	load_region
}

# load_outputs KEY...: the stack's outputs in OUT[...]; stops when one of the KEYs is missing (a stack of an
# older template). The sourcing script declares OUT (declare -A OUT) and calls load_stack first.
load_outputs() {
	read_outputs
	need_outputs "$@"
}

# read_outputs: the stack's outputs in OUT[...], whichever it has.
read_outputs() {
	local key value
	while IFS=$'\t' read -r key value; do
		[[ -n "$key" ]] && OUT["$key"]=$value
	done < <("$AWS" cloudformation describe-stacks "${REGION_ARGS[@]}" --stack-name "$STACK_NAME" \
		--query 'Stacks[0].Outputs[].[OutputKey,OutputValue]' --output text)
}

# need_outputs KEY...: stops when one of the KEYs is missing from OUT (read by load_outputs).
need_outputs() {
	local key
	for key in "$@"; do
		[[ -n "${OUT[$key]:-}" ]] ||
			die "stack ${STACK_NAME} has no output ${key}: deploy the current template first (make deploy${ENV:+ ENV=${ENV}})"
	done
}

# stack_args: the variables that name this stack again, for the commands the scripts print: GITHUB_REPO (else
# STACK_NAME), and ENV for an environment of the model.
stack_args() {
	if [[ -n "${GITHUB_REPO:-}" ]]; then printf 'GITHUB_REPO=%s' "$GITHUB_REPO"; else printf 'STACK_NAME=%s' "$STACK_NAME"; fi
	printf '%s' "${ENV:+ ENV=${ENV}}"
}

# releases_from_staging: whether the stack (its outputs in OUT) is a production environment's, which has no
# pipeline and releases what its staging validated (make promote ENV=... TO=<version>).
releases_from_staging() {
	[[ "${OUT[ReleasesFromStaging]:-}" == yes ]]
}

# connection_pending STACK CONNECTION_NAME: whether STACK's GitHub connection waits to be authorized; if so,
# says how (once, in the console), on stderr.
connection_pending() {
	local status
	status=$("$AWS" cloudformation describe-stacks "${REGION_ARGS[@]}" --stack-name "$1" \
		--query "Stacks[0].Outputs[?OutputKey=='ConnectionStatus'].OutputValue" --output text)
	[[ "$status" == PENDING ]] || return 1
	cat >&2 <<-EOF
		Next step: authorize the GitHub connection once (it is PENDING until then):
		  AWS console > Developer Tools > Settings > Connections > the connection named $2-...
		  > Update pending connection > install or choose the GitHub App for ${GITHUB_REPO%%/*} > Connect.
	EOF
}
