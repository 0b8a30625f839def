#!/usr/bin/env bash
# new-model.sh -- write a model repository, ready to run: scripts/new-model.sh DIR (make new-model DIR=...).
#
# The model is named after DIR's last folder (hotel-usp: notebook hotel_usp.ipynb, table hotel_usp). It gets
# the notebook contract (a parameters cell, one Parquet partition written under output_uri), a check
# skeleton, settings.yml (the platform's own, commented, with the model's names), requirements.txt (the
# platform's pyarrow pin), a copy of the sample lake, .gitignore, .dockerignore and a README for the data
# scientist. Nothing of the platform: the runner builds and runs it (make run MODEL_DIR=DIR). DIR must not
# exist, or be an empty folder: nothing is ever overwritten.
set -Eeuo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly ROOT TEMPLATE="${ROOT}/scripts/model-template"

die() {
	printf 'new-model: %s\n' "$*" >&2
	exit 2
}

# replace FILE FROM TO: every FROM in FILE becomes TO; FILE must hold FROM (the platform's file changed otherwise).
replace() {
	grep -qF -- "$2" "$1" || die "${1##*/} no longer holds '$2': update scripts/new-model.sh to the platform's settings.yml"
	FROM=$2 TO=$3 perl -pi -e 's/\Q$ENV{FROM}\E/$ENV{TO}/g' "$1"
}

main() {
	local dir=${1:-} name model notebook pin
	[[ -n "$dir" ]] || die "give the new model's folder: make new-model DIR=../hotel-usp"
	if [[ -e "$dir" && -n "$(ls -A "$dir" 2>/dev/null)" ]]; then
		die "${dir} exists and is not empty: give a new folder (nothing is overwritten)"
	fi
	name=$(basename "$dir")
	model=$(printf '%s' "$name" | tr '[:upper:]' '[:lower:]' | tr -c 'a-z0-9\n' '_')
	[[ "$model" =~ ^[a-z][a-z0-9_]{0,62}$ ]] ||
		die "cannot name a model after '${name}': give a folder whose name starts with a letter (e.g. ../hotel-usp)"
	notebook="${model}.ipynb"
	pin=$(grep -E '^pyarrow==' "${ROOT}/runner/requirements.txt") ||
		die "runner/requirements.txt pins no pyarrow: the platform's lock is broken (make lock)"

	mkdir -p "${dir}/sample"
	cp "${TEMPLATE}/model.ipynb" "${dir}/${notebook}"
	cp "${TEMPLATE}/check.py" "${TEMPLATE}/README.md" "$dir/"
	cp "${TEMPLATE}/gitignore" "${dir}/.gitignore"
	cp "${TEMPLATE}/dockerignore" "${dir}/.dockerignore"
	cp -R "${ROOT}/sample/lake" "${dir}/sample/lake"
	printf '# The packages the notebook and check.py import, pinned. pyarrow is the platform'\''s (the same version\n# the runner reads the output with); boto3 and IPython come with the platform too.\n%s\n' "$pin" \
		>"${dir}/requirements.txt"
	cp "${ROOT}/settings.yml" "${dir}/settings.yml"
	replace "${dir}/settings.yml" "# settings.yml -- this repository's model (usp)" "# settings.yml -- the model ${model}"
	replace "${dir}/settings.yml" "notebook: usp.ipynb" "notebook: ${notebook}"
	replace "${dir}/settings.yml" "prefix: usp/daily" "prefix: ${model}/daily"
	replace "${dir}/settings.yml" "table: usp" "table: ${model}"
	replace "${dir}/settings.yml" "compare_keys: [accommodation_id, usp]" "compare_keys: [accommodation_id]" # check.py's KEY
	for file in "${dir}/${notebook}" "${dir}/check.py" "${dir}/README.md"; do
		replace "$file" MODEL_NAME "$model"
	done
	replace "${dir}/README.md" NOTEBOOK "$notebook"
	replace "${dir}/README.md" PLATFORM "$ROOT"
	printf 'new-model: wrote the model %s in %s\n' "$model" "$dir"
	printf '  run it:    make run MODEL_DIR=%s\n' "$dir"
	printf '  then:      git init, push it to GitHub, and deploy it: make deploy GITHUB_REPO=<owner>/%s MODEL_DIR=%s\n' "$name" "$dir"
}

main "$@"
