#!/usr/bin/env bash
# platform.sh -- the platform: its stack (template/platform.yaml), the runner versions it publishes, and the
# model stacks that build on them.
#
#   scripts/platform.sh deploy    (make deploy-platform) deploy or update the platform stack
#   scripts/platform.sh publish   (make publish-runner; CodeBuild's buildspec.yml) publish the runner
#                                 version in VERSION: build it, smoke-run a model built on it, push it under
#                                 that version (refused if it is already published: versions never move), and
#                                 name it in the SSM parameter /<PLATFORM_STACK>/runner/v<major>
#   scripts/platform.sh models    (make models) list the platform's model stacks, one line each
#
# Configuration comes from the environment:
#   PLATFORM_STACK      the platform stack (default: `stack:` in PLATFORM_FILE, platform.yml at the repository
#                       root, as make deploy reads it; else notebook-platform)
#   AWS_REGION          the region (default: the AWS CLI's)
# deploy:
#   GITHUB_REPO         the platform repository, owner/name, or a bare name with GITHUB_OWNER (required)
#   GITHUB_BRANCH       the branch whose VERSION changes publish (default: main)
#   CONNECTION_ARN      an existing GitHub connection (unset: the stack's, or a new one on creation)
#   NOTIFICATION_EMAILS up to 3 addresses, comma-separated, told of every publish (unset: the stack's; empty: none)
#   RUNNER_REPOSITORY   the runner's ECR repository name (unset: the stack's, notebook-runner on creation)
# publish:
#   RUNNER_REPOSITORY_URI  the runner's repository (default: the platform stack's output RunnerRepositoryUri)
#   BASE_IMAGE          the runner's base (default: scripts/base-image.sh's); it must come from a registry
#   ALLOW_DIRTY=yes     publish from a working tree with uncommitted changes (a version no commit can rebuild)
# Every value is checked before any AWS call; AWS_CLI names another AWS CLI (the tests' against moto).
set -Eeuo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly ROOT
readonly TEMPLATE="${ROOT}/template/platform.yaml"
AWS=${AWS_CLI:-aws}
PROGRAM=platform
REPO_HINT="make deploy-platform GITHUB_REPO=owner/name (the platform repository, this one)"
# The smoke run: the sample data lake's day the usp model is run for, as Fargate runs a task.
readonly SMOKE_DATE=2019-08-01
readonly FARGATE=(--read-only --cap-drop ALL --cap-add SETUID --cap-add SETGID --cap-add KILL)
# shellcheck source=scripts/stack.sh
source "$(dirname "${BASH_SOURCE[0]}")/stack.sh"

log() { printf 'platform: %s\n' "$*" >&2; }

# PLATFORM_STACK: the variable, else platform.yml's `stack:`, else notebook-platform.
load_platform_stack() {
	local file=${PLATFORM_FILE:-${ROOT}/platform.yml}
	if [[ -z "${PLATFORM_STACK:-}" && -f "$file" ]]; then
		PLATFORM_STACK=$(setting stack "$file")
	fi
	PLATFORM_STACK=${PLATFORM_STACK:-notebook-platform}
	# template/pipeline.yaml's PlatformStackName pattern: what a model stack can name.
	check PLATFORM_STACK "$PLATFORM_STACK" '^[A-Za-z][A-Za-z0-9-]{0,127}$' \
		"a CloudFormation stack name, a letter then letters, digits and '-' (PLATFORM_STACK= or stack: in platform.yml)"
	load_region
}

# --- deploy ------------------------------------------------------------------------------------------

# pass_if_given VARIABLE PARAMETER REGEX HINT: when VARIABLE is set (empty too, which clears the stack's
# value), check a non-empty value and pass it as PARAMETER; unset, the stack keeps its value.
pass_if_given() {
	[[ -n "${!1+set}" ]] || return 0
	[[ -z "${!1}" ]] || check "$1" "${!1}" "$3" "$4"
	OVERRIDES+=("$2=${!1}")
}

deploy() {
	load_repository
	load_platform_stack
	GITHUB_BRANCH=${GITHUB_BRANCH:-main}
	check GITHUB_BRANCH "$GITHUB_BRANCH" '^[A-Za-z0-9][A-Za-z0-9._/-]{0,254}$' "a branch name such as main"
	OVERRIDES=("GitHubRepository=${GITHUB_REPO}" "GitHubBranch=${GITHUB_BRANCH}")
	pass_if_given CONNECTION_ARN ConnectionArn \
		'^arn:aws[a-z-]*:(codestar-connections|codeconnections):[a-z0-9-]+:[0-9]{12}:connection/[0-9a-f-]{36}$' \
		"an arn:aws:codeconnections:REGION:ACCOUNT:connection/UUID, or leave it unset to create one"
	pass_if_given NOTIFICATION_EMAILS NotificationEmails \
		'^[^@[:space:],]+@[^@[:space:],]+\.[^@[:space:],]+(,[^@[:space:],]+@[^@[:space:],]+\.[^@[:space:],]+){0,2}$' \
		"1 to 3 email addresses separated by commas, without spaces"
	if [[ -n "${RUNNER_REPOSITORY:-}" ]]; then
		pass_if_given RUNNER_REPOSITORY RunnerRepositoryName '^[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*$' \
			"an ECR repository name, lowercase words of letters and digits joined by '.', '_', '-' or '/', e.g. notebook-runner"
	fi
	log "deploying stack ${PLATFORM_STACK} for ${GITHUB_REPO} (branch ${GITHUB_BRANCH})"
	"$AWS" cloudformation deploy "${REGION_ARGS[@]}" --stack-name "$PLATFORM_STACK" --template-file "$TEMPLATE" \
		--capabilities CAPABILITY_IAM --no-fail-on-empty-changeset --parameter-overrides "${OVERRIDES[@]}"
	"$AWS" cloudformation describe-stacks "${REGION_ARGS[@]}" --stack-name "$PLATFORM_STACK" \
		--query 'Stacks[0].Outputs[].[OutputKey,OutputValue]' --output table
	next_step
}

next_step() {
	connection_pending "$PLATFORM_STACK" notebook-platform || true
	printf 'Next step: push a change of VERSION to %s (the pipeline publishes that version), or run make publish-runner.\n' \
		"$GITHUB_BRANCH" >&2
}

# --- publish -----------------------------------------------------------------------------------------

# VERSION (the file), MAJOR, and PARAMETER, the SSM parameter that names the major's last version.
load_version() {
	[[ -f "${ROOT}/VERSION" ]] || die "${ROOT}/VERSION is missing: write the runner's version in it, e.g. 1.0.0"
	VERSION=$(tr -d '[:space:]' <"${ROOT}/VERSION")
	# A major of 1 to 999: template/pipeline.yaml's RunnerMajorVersion, what a model can follow.
	check VERSION "$VERSION" '^[1-9][0-9]{0,2}\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)$' \
		"the file VERSION holds MAJOR.MINOR.PATCH, a major from 1 to 999, e.g. 1.0.0"
	MAJOR=${VERSION%%.*}
	PARAMETER="/${PLATFORM_STACK}/runner/v${MAJOR}"
}

# A published version must be a commit's: refuse uncommitted changes (CodeBuild's checkout has no .git).
check_committed() {
	[[ "${ALLOW_DIRTY:-}" != yes ]] || return 0
	git -C "$ROOT" rev-parse --git-dir >/dev/null 2>&1 || return 0
	[[ -z $(git -C "$ROOT" status --porcelain) ]] ||
		die "the working tree has uncommitted changes, which no commit could rebuild: commit them first (or ALLOW_DIRTY=yes for a throwaway version)"
}

# REPOSITORY_URI and REPOSITORY: RUNNER_REPOSITORY_URI (CodeBuild sets it), else the platform stack's output.
load_repository_uri() {
	local uri=${RUNNER_REPOSITORY_URI:-}
	if [[ -z "$uri" ]]; then
		uri=$("$AWS" cloudformation describe-stacks "${REGION_ARGS[@]}" --stack-name "$PLATFORM_STACK" \
			--query "Stacks[0].Outputs[?OutputKey=='RunnerRepositoryUri'].OutputValue" --output text) ||
			die "cannot read the platform stack ${PLATFORM_STACK} (see above): deploy it first (make deploy-platform GITHUB_REPO=owner/name), or set PLATFORM_STACK"
	fi
	check RUNNER_REPOSITORY_URI "$uri" '^[0-9]{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com(\.cn)?/[a-z0-9._/-]+$' \
		"the platform stack's output RunnerRepositoryUri, ACCOUNT.dkr.ecr.REGION.amazonaws.com/NAME (deploy the current template/platform.yaml)"
	REPOSITORY_URI=$uri
	REPOSITORY=${uri#*/}
}

# image_digest TAG: the digest of the repository's image TAG; fails (ImageNotFoundException) when none.
image_digest() {
	"$AWS" ecr describe-images "${REGION_ARGS[@]}" --repository-name "$REPOSITORY" --image-ids "imageTag=$1" \
		--query 'imageDetails[0].imageDigest' --output text
}

refuse_published_version() {
	local out
	if out=$(image_digest "$VERSION" 2>&1); then
		die "version ${VERSION} is already published (${REPOSITORY_URI}:${VERSION} is ${out}) and versions never move: bump VERSION (e.g. to ${VERSION%.*}.$((${VERSION##*.} + 1))) and publish that"
	elif [[ "$out" != *ImageNotFoundException* ]]; then
		die "cannot tell whether ${VERSION} is published in ${REPOSITORY}: ${out}"
	fi
}

# Never move a major backwards: the version the parameter names now must be older than VERSION.
refuse_older_than_published() {
	local current tags tag newest=''
	current=$("$AWS" ssm get-parameter "${REGION_ARGS[@]}" --name "$PARAMETER" --query Parameter.Value \
		--output text 2>/dev/null) || return 0 # none yet: the major's first version
	tags=$("$AWS" ecr describe-images "${REGION_ARGS[@]}" --repository-name "$REPOSITORY" \
		--image-ids "imageDigest=${current##*@}" --query 'imageDetails[0].imageTags' --output text 2>/dev/null) || tags=''
	for tag in $tags; do
		[[ "$tag" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] && newest=$tag
	done
	if [[ -z "$newest" ]]; then
		log "${PARAMETER} names ${current}, whose version cannot be read; publishing ${VERSION} over it"
	elif [[ $(printf '%s\n%s\n' "$newest" "$VERSION" | sort -V | tail -n 1) != "$VERSION" ]]; then
		die "VERSION ${VERSION} is older than ${newest}, which ${PARAMETER} names: models of v${MAJOR} would go back; bump VERSION above ${newest}"
	fi
}

# The runner's base: BASE_IMAGE, else scripts/base-image.sh's. Only a base pulled from a registry (it has a
# repository digest), never the stand-in base-image.sh builds from Debian packages without registry access.
runner_base() {
	local base=${BASE_IMAGE:-}
	[[ -n "$base" ]] || base=$(bash "${ROOT}/scripts/base-image.sh")
	docker image inspect "$base" >/dev/null 2>&1 || docker pull -q "$base" >/dev/null ||
		die "cannot pull the base ${base}: check the registry access, or set BASE_IMAGE to an image you can pull"
	[[ -n $(docker image inspect --format '{{join .RepoDigests " "}}' "$base") ]] ||
		die "the base ${base} comes from no registry (a local stand-in): a published runner is built on a pulled base; get registry access, or set BASE_IMAGE"
	printf '%s\n' "$base"
}

# The smoke run's output and image (the runner keeps its version tag).
cleanup() {
	if [[ -d "${SMOKE_OUT:-}" ]]; then
		# What the notebook staged belongs to its user (10002): the smoke image removes it, as make clean does.
		rm -rf -- "$SMOKE_OUT" 2>/dev/null ||
			docker run --rm -v "${SMOKE_OUT}:/smoke" --entrypoint /bin/rm "$SMOKE_IMAGE" -rf /smoke/_runs >/dev/null 2>&1 || true
		rm -rf -- "$SMOKE_OUT" 2>/dev/null || log "could not remove ${SMOKE_OUT}: remove it by hand"
	fi
	docker image rm "$SMOKE_IMAGE" >/dev/null 2>&1 || true
}

# smoke_run RUNNER: build this repository's example model (usp) on RUNNER with the recipe inside it (as every
# model's build does: scripts/build.sh), and run it on the sample data lake as Fargate runs a task; it must
# publish its day.
smoke_run() {
	local user=()
	SMOKE_IMAGE="notebook-runner-smoke:${VERSION}"
	log "smoke run: the usp model built on ${1}, for ${SMOKE_DATE} on sample/lake"
	bash "${ROOT}/scripts/build.sh" model "$1" "$ROOT" "$SMOKE_IMAGE" ||
		die "the runner ${VERSION}'s recipe did not build the usp model (see above): fix it before publishing"
	SMOKE_OUT=$(mktemp -d)
	trap cleanup EXIT
	# The runner's user writes the output: root hands it the folder (uid 10001), anyone else runs it as
	# themselves. The notebook's user (10002) passes through it to its staging folder: 0755, not mktemp's 0700.
	chmod 0755 "$SMOKE_OUT"
	if [[ $(id -u) == 0 ]]; then chown 10001 "$SMOKE_OUT"; else user=(-e "RUNNER_USER=$(id -u):$(id -g)"); fi
	docker run --rm "${FARGATE[@]}" "${user[@]}" -v "${ROOT}/sample/lake:/data/lake:ro" -v "${SMOKE_OUT}:${SMOKE_OUT}" \
		-e DATA_URI=/data/lake -e OUTPUT_URI="$SMOKE_OUT" -e RUN_DATE="$SMOKE_DATE" "$SMOKE_IMAGE" >&2 ||
		die "the smoke run failed on the runner ${VERSION} (exit $?, see above): nothing was published; fix the runner and publish again"
}

publish() {
	local base image digest
	load_platform_stack
	load_version
	check_committed
	load_repository_uri
	refuse_published_version
	refuse_older_than_published
	image="${REPOSITORY_URI}:${VERSION}"
	docker info >/dev/null 2>&1 || die "no Docker engine answers: start one (make docker installs and starts it on Debian)"
	base=$(runner_base)
	log "building the runner ${VERSION} on ${base}"
	BASE_IMAGE=$base bash "${ROOT}/scripts/build.sh" runner "$image" ||
		die "the runner ${VERSION} did not build (see above): nothing was published"
	smoke_run "$image"
	"$AWS" ecr get-login-password "${REGION_ARGS[@]}" |
		docker login --username AWS --password-stdin "${REPOSITORY_URI%%/*}" >&2
	docker push "$image" >&2
	digest=$(image_digest "$VERSION")
	[[ "$digest" =~ ^sha256:[0-9a-f]{64}$ ]] ||
		die "ECR reports '${digest}' for ${image} after the push: look at it in the console; ${PARAMETER} is unchanged"
	"$AWS" ssm put-parameter "${REGION_ARGS[@]}" --name "$PARAMETER" --value "${REPOSITORY_URI}@${digest}" \
		--type String --overwrite >/dev/null
	log "published the runner ${VERSION} as ${REPOSITORY_URI}@${digest}; ${PARAMETER} names it"
	printf '%s %s@%s\n' "$VERSION" "$REPOSITORY_URI" "$digest"
}

# --- models ------------------------------------------------------------------------------------------

# utc TIME: an AWS CLI timestamp (seconds since 1970, or ISO 8601) as YYYY-MM-DDTHH:MMZ.
utc() {
	if [[ "$1" =~ ^[0-9]+(\.[0-9]+)?$ ]]; then date -u -d "@$1" +%Y-%m-%dT%H:%MZ; else date -u -d "$1" +%Y-%m-%dT%H:%MZ; fi
}

# promoted STACK: the commit the stack's last validation promoted and when, "commit<TAB>time" ("-" for none).
promoted() {
	local out value when
	if out=$("$AWS" ssm get-parameter "${REGION_ARGS[@]}" --name "/$1/promoted-commit" \
		--query 'Parameter.[Value,LastModifiedDate]' --output text 2>&1); then
		IFS=$'\t' read -r value when <<<"$out"
		if [[ -z "$value" || "$value" == none ]]; then printf -- '-\t-\n'; else printf '%s\t%s\n' "${value:0:12}" "$(utc "$when")"; fi
	elif [[ "$out" == *ParameterNotFound* ]]; then
		printf -- '-\t-\n'
	else
		log "cannot read /$1/promoted-commit: ${out}"
		printf '?\t?\n'
	fi
}

# The platform's model stacks: those tagged notebook-pipeline:platform=PLATFORM_STACK. The AWS CLI pages
# through every stack; each field is '-' when the stack has none (text output would drop an empty one).
# promoted_runner_version STACK: the runner version (its tag in the platform's repository) under the image
# STACK last promoted, from /STACK/promoted-runner; nothing when none is recorded or it has no version tag.
promoted_runner_version() {
	local runner tags tag
	runner=$("$AWS" ssm get-parameter "${REGION_ARGS[@]}" --name "/$1/promoted-runner" --query Parameter.Value \
		--output text 2>/dev/null) || return 0
	[[ "$runner" =~ ^[^@/]+/([a-z0-9._/-]+)@(sha256:[0-9a-f]{64})$ ]] || return 0
	tags=$("$AWS" ecr describe-images "${REGION_ARGS[@]}" --repository-name "${BASH_REMATCH[1]}" \
		--image-ids "imageDigest=${BASH_REMATCH[2]}" --query 'imageDetails[0].imageTags' --output text 2>/dev/null) || return 0
	for tag in $tags; do
		if [[ "$tag" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]]; then
			printf '%s\n' "$tag"
			return 0
		fi
	done
}

# last_run S3_URI: the day, status and rows of the run whose manifest under S3_URI/_runs/ (every run's
# report, daily, backfilled or started by hand: date=<day>/<run id>/manifest.json) was written last; '-'s
# when it has none.
last_run() {
	local uri=$1 bucket prefix key manifest
	[[ "$uri" == s3://* ]] || { printf -- '-\t-\t-\n'; return 0; }
	bucket=${uri#s3://} && bucket=${bucket%%/*}
	prefix=${uri#"s3://${bucket}"} && prefix=${prefix#/}
	key=$("$AWS" s3api list-objects-v2 "${REGION_ARGS[@]}" --bucket "$bucket" --prefix "${prefix:+${prefix}/}_runs/date=" \
		--query "sort_by((Contents || \`[]\`)[?ends_with(Key, '/manifest.json')], &LastModified)[-1].Key" --output text 2>/dev/null) ||
		{ printf '?\t?\t?\n'; return 0; }
	if [[ -z "$key" || "$key" == None ]]; then
		printf -- '-\t-\t-\n'
		return 0
	fi
	manifest=$("$AWS" s3 cp "${REGION_ARGS[@]}" "s3://${bucket}/${key}" - 2>/dev/null) || { printf '?\t?\t?\n'; return 0; }
	# The manifest's fields, read as JSON (never evaluated): its day, status and rows.
	python3 -I -c 'import json, sys
m = json.load(sys.stdin)
rows = m.get("rows")
print("\t".join(str(v).replace("\t", " ") for v in (m.get("date") or "-", m.get("status") or "-", "-" if rows is None else rows)))' \
		<<<"$manifest" 2>/dev/null || printf '?\t?\t?\n'
}

models() {
	local query listing stack model repository pinned major output runner version rows=()
	load_platform_stack
	query="Stacks[?Tags[?Key=='notebook-pipeline:platform' && Value=='${PLATFORM_STACK}']].[StackName,"
	query+=" Tags[?Key=='notebook-pipeline:model'].Value | [0] || '-',"
	query+=" Parameters[?ParameterKey=='GitHubRepository'].ParameterValue | [0] || '-',"
	query+=" Parameters[?ParameterKey=='RunnerImage'].ParameterValue | [0] || '-',"
	query+=" Parameters[?ParameterKey=='RunnerMajorVersion'].ParameterValue | [0] || '-',"
	query+=" Outputs[?OutputKey=='RunOutputUri'].OutputValue | [0] || '-']"
	listing=$("$AWS" cloudformation describe-stacks "${REGION_ARGS[@]}" --query "$query" --output text) ||
		die "cannot list the stacks (see above): check your AWS credentials and AWS_REGION"
	while IFS=$'\t' read -r stack model repository pinned major output; do
		[[ -n "$stack" ]] || continue
		if [[ "$pinned" == *@sha256:* ]]; then
			runner="pinned ${pinned##*@}"
			runner=${runner:0:26} # pinned sha256:<12 hex digits>
		elif [[ "$major" != - ]]; then
			runner="v${major}"
		else
			runner=-
		fi
		version=$(promoted_runner_version "$stack")
		[[ -z "$version" ]] || runner="${version} (${runner%% sha256:*})"
		rows+=("$(printf '%s\t%s\t%s\t%s\t%s\t%s' "$model" "$stack" "$repository" "$runner" "$(promoted "$stack")" \
			"$(last_run "$output")")")
	done <<<"$listing"
	if ((${#rows[@]} == 0)); then
		printf 'no model stacks of the platform %s%s: a model stack is tagged notebook-pipeline:platform=%s (make deploy)\n' \
			"$PLATFORM_STACK" "${AWS_REGION:+ in ${AWS_REGION}}" "$PLATFORM_STACK"
		return 0
	fi
	{
		printf 'MODEL\tSTACK\tGITHUB REPOSITORY\tRUNNER\tPROMOTED COMMIT\tPROMOTED AT\tLAST RUN\tSTATUS\tROWS\n'
		printf '%s\n' "${rows[@]}" | sort
	} | align
}

# align: tab-separated lines as columns two spaces apart.
align() {
	awk -F '\t' '{ for (i = 1; i <= NF; i++) { cell[NR, i] = $i; if (length($i) > width[i]) width[i] = length($i) }
		if (NF > columns) columns = NF }
		END { for (r = 1; r <= NR; r++) { line = ""; for (i = 1; i <= columns; i++)
			line = line (i < columns ? sprintf("%-" width[i] "s  ", cell[r, i]) : cell[r, i]); print line } }'
}

main() {
	case "${1:-}" in
	deploy) deploy ;;
	publish) publish ;;
	models) models ;;
	*) die "usage: platform.sh deploy|publish|models (configured by environment variables, see the header)" ;;
	esac
}

main "$@"
