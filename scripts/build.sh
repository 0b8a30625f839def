#!/usr/bin/env bash
# build.sh -- build the runner image, or a model's image with the runner's recipe.
#
#   scripts/build.sh runner TAG [DOCKER_BUILD_OPTION...]
#       The runner image (the Dockerfile's `runner` target) from the runner's own files alone, sent as the
#       build context (RUNNER_FILES below): nothing of a model, of the tests or of a local output reaches it.
#       BASE_IMAGE (default: scripts/base-image.sh's pick).
#   scripts/build.sh model RUNNER MODEL_DIR TAG [DOCKER_BUILD_OPTION...]
#       A model's image: the recipe inside the RUNNER image (/opt/notebook-runner/model.Dockerfile, never a
#       file of the model's) run on MODEL_DIR as the context. NOTEBOOK (default usp.ipynb), GIT_COMMIT
#       (default dev), IMAGE_NAME (default: TAG's repository) label it.
#   scripts/build.sh notebook MODEL_DIR
#       The notebook MODEL_DIR's settings.yml names (its `notebook:`), checked against the template's
#       NotebookPath pattern; nothing when it names none. A model's files are untrusted: make reads this value
#       only through here.
#   scripts/build.sh local-folders MODEL_DIR FOLDER...
#       Refuses a FOLDER inside MODEL_DIR (its sample lake, its output) that leads outside it through a
#       symbolic link: a local run would mount or write there.
#
# The pipeline's build (template/pipeline.yaml, BuildProject) runs the same recipe the same way.
set -Eeuo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly ROOT
PROGRAM=build
# shellcheck source=scripts/stack.sh
source "${ROOT}/scripts/stack.sh"
# The runner's files: what `runner` sends as the build context. tests/test_model_local.py holds it to the
# Dockerfile's COPY lines.
# Patterns, expanded in the repository's root.
readonly RUNNER_FILES='Dockerfile VERSION run_notebook.sh runner/requirements.txt runner/model.Dockerfile runner/*.py runner/templates'
readonly RECIPE=/opt/notebook-runner/model.Dockerfile
# The template's NotebookPath AllowedPattern (tests/test_model_local.py holds them equal).
readonly NOTEBOOK_PATTERN='^([A-Za-z0-9_-][A-Za-z0-9._-]*/)*[A-Za-z0-9_-][A-Za-z0-9._-]*\.ipynb$'
readonly USAGE="usage: scripts/build.sh runner TAG [DOCKER_BUILD_OPTION...] | model RUNNER MODEL_DIR TAG [DOCKER_BUILD_OPTION...] | notebook MODEL_DIR | local-folders MODEL_DIR FOLDER..."

build_runner() {
	local tag=$1 base version
	shift
	base=${BASE_IMAGE:-$("${ROOT}/scripts/base-image.sh")}
	version=$(<"${ROOT}/VERSION")
	[[ "$version" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "VERSION holds '${version}', not a semantic version MAJOR.MINOR.PATCH: fix the file"
	# shellcheck disable=SC2086 # RUNNER_FILES is a list of patterns, split and expanded on purpose
	(cd "$ROOT" && tar --create --owner=0 --group=0 $RUNNER_FILES) |
		docker build --quiet --target runner --build-arg BASE_IMAGE="$base" --build-arg RUNNER_VERSION="$version" \
			"$@" --tag "$tag" - >/dev/null
}

# check_model DIR NOTEBOOK: what a model needs before its build starts, each missing piece named with its fix.
check_model() {
	local dir=$1 notebook=$2 ignored
	[[ -d "$dir" ]] || die "MODEL_DIR=${dir} is not a folder: give the model repository's checkout (make new-model DIR=... writes one)"
	[[ -f "${dir}/${notebook}" ]] || die "${dir} has no notebook ${notebook}: set NOTEBOOK= to the notebook's path in the model (settings.yml notebook)"
	[[ -f "${dir}/requirements.txt" ]] || die "${dir} has no requirements.txt: add one listing the notebook's and check.py's packages (it may be empty)"
	[[ "$(cd "$dir" && pwd)" != "$ROOT" ]] || return 0 # the platform's own example model: its files are the platform's
	for ignored in Dockerfile buildspec.yml run_notebook.sh runner; do
		if [[ -e "${dir}/${ignored}" ]]; then
			printf 'build: %s/%s is ignored: a model image is built by the runner'\''s recipe, never the model'\''s\n' "$dir" "$ignored" >&2
		fi
	done
}

build_model() {
	local runner=$1 dir=$2 tag=$3 notebook=${NOTEBOOK:-usp.ipynb}
	shift 3
	check_model "$dir" "$notebook"
	docker image inspect "$runner" >/dev/null 2>&1 || docker pull --quiet "$runner" >/dev/null ||
		die "the runner ${runner} is neither here nor in its registry: build it (make runner) or check its name"
	docker run --rm --network none --entrypoint /bin/cat "$runner" "$RECIPE" |
		docker build --quiet --file - --build-arg RUNNER="$runner" --build-arg NOTEBOOK="$notebook" \
			--build-arg IMAGE_NAME="${IMAGE_NAME:-${tag%:*}}" --build-arg GIT_COMMIT="${GIT_COMMIT:-dev}" \
			"$@" --tag "$tag" "$dir" >/dev/null
}

model_notebook() {
	local file="$1/settings.yml" value
	[[ -f "$file" && ! -L "$file" ]] || return 0 # none, or a link, which make deploy refuses: NOTEBOOK= decides
	value=$(setting notebook "$file")
	[[ -n "$value" ]] || return 0
	[[ "$value" =~ $NOTEBOOK_PATTERN ]] ||
		die "${file}: notebook: ${value} is not a notebook's path in the model (letters, digits, '.', '_', '-' and '/', ending in .ipynb): fix the setting"
	printf '%s\n' "$value"
}

local_folders() {
	local model folder inside
	model=$(realpath -m -- "$1")
	shift
	for folder in "$@"; do
		inside=$(realpath -m -s -- "$folder")
		[[ "$inside" == "$model"/* ]] || continue # a folder given elsewhere: the engineer's own choice
		[[ "$(realpath -m -- "$folder")" == "$model"/* ]] ||
			die "${folder} leads outside the model's folder ${model} (a symbolic link to $(realpath -m -- "$folder")): a local run would read or write there; remove the link, or give DATA_DIR= / OUTPUT_DIR= yourself"
	done
}

main() {
	case "${1:-}" in
	runner) (($# >= 2)) || die "$USAGE"; shift; build_runner "$@" ;;
	model) (($# >= 4)) || die "$USAGE"; shift; build_model "$@" ;;
	notebook) (($# == 2)) || die "$USAGE"; model_notebook "$2" ;;
	local-folders) (($# >= 2)) || die "$USAGE"; shift; local_folders "$@" ;;
	*) die "$USAGE" ;;
	esac
}

main "$@"
