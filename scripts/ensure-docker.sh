#!/usr/bin/env bash
# ensure-docker.sh -- make sure a Docker engine answers; on a fresh Debian machine, as root, install and
# start one. Used by `make build`, `make run` and `make test`.
set -Eeuo pipefail

log() { printf 'ensure-docker: %s\n' "$*" >&2; }

engine_answers() { docker info >/dev/null 2>&1; }

install_engine() {
	if ! command -v dockerd >/dev/null 2>&1; then
		log "installing Debian's docker.io"
		apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null
	fi
}

start_engine() {
	local logfile=${DOCKERD_LOG:-/tmp/dockerd.log} waited=0
	log "starting dockerd in the background (log: ${logfile})"
	nohup dockerd >"$logfile" 2>&1 &
	until engine_answers; do
		if ((waited >= 60)); then
			log "dockerd did not answer within 60 s: see ${logfile}"
			exit 1
		fi
		sleep 1
		waited=$((waited + 1))
	done
}

main() {
	if engine_answers; then return 0; fi
	if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
		log "no Docker engine answers and this is not a Debian machine where I am root:" \
			"start Docker (Docker Desktop, or 'sudo systemctl start docker') and try again"
		exit 1
	fi
	command -v docker >/dev/null 2>&1 || install_engine
	install_engine
	start_engine
	log "Docker engine is up"
}

main "$@"
