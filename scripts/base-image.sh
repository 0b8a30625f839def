#!/usr/bin/env bash
# base-image.sh -- print the base image to build the runner on.
#
# The real base (the Dockerfile's BASE_IMAGE default) when it is present or can be pulled. On a machine
# with no registry access, a stand-in of the same Debian release and Python minor version, built from
# Debian packages with mmdebstrap and slimmed as Debian's -slim images are (no docs, man pages or
# locales); the host's CA bundle goes into the stand-in (and only there) so pip inside `docker build`
# trusts the same certificates as the host.
set -Eeuo pipefail

readonly STANDIN=${STANDIN_IMAGE:-notebook-runner-standin:bookworm-slim}
REAL=$(sed -n 's/^ARG BASE_IMAGE=//p' "$(dirname "${BASH_SOURCE[0]}")/../Dockerfile")
readonly REAL

log() { printf 'base-image: %s\n' "$*" >&2; }

cleanup() { if [[ -n "${TMP:-}" ]]; then rm -rf -- "$TMP"; fi; }

build_standin() {
	local ca=/etc/ssl/certs/ca-certificates.crt
	if ! command -v mmdebstrap >/dev/null 2>&1; then
		[[ $(id -u) -eq 0 ]] || {
			log "cannot pull ${REAL} and mmdebstrap is missing: install it (apt-get install mmdebstrap) or get registry access"
			exit 1
		}
		log "installing mmdebstrap"
		apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mmdebstrap >/dev/null
	fi
	TMP=$(mktemp -d)
	trap cleanup EXIT
	log "building the stand-in ${STANDIN} from Debian bookworm packages (about 30 s)"
	# shellcheck disable=SC2016 # "$1" is the root the hooks get from mmdebstrap, not ours
	mmdebstrap --quiet --variant=minbase --include=python3,python3-venv,ca-certificates \
		--dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
		--dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
		--dpkgopt='path-exclude=/usr/share/info/*' \
		--customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*' \
		--customize-hook="cp ${ca} \"\$1/usr/local/share/host-ca-bundle.crt\"" \
		bookworm "${TMP}/rootfs.tar" >&2
	docker import --change 'ENV PIP_CERT=/usr/local/share/host-ca-bundle.crt' \
		--change 'CMD ["python3"]' "${TMP}/rootfs.tar" "$STANDIN" >/dev/null
}

main() {
	if docker image inspect "$REAL" >/dev/null 2>&1 || docker pull -q "$REAL" >/dev/null 2>&1; then
		printf '%s\n' "$REAL"
		return
	fi
	docker image inspect "$STANDIN" >/dev/null 2>&1 || build_standin
	log "no registry: building on the stand-in ${STANDIN}"
	printf '%s\n' "$STANDIN"
}

main "$@"
