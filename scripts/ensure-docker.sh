#!/usr/bin/env bash
# ensure-docker.sh -- make sure a Docker engine answers; on a fresh Debian machine, as root, install and
# start one. Used by `make build`, `make run` and `make test`. With `--registry`, also make sure Debian's
# docker-registry is installed: the buildspec tests run it as their stand-in for ECR.
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

# A dockerd killed with its machine's session leaves its pid file, and a new one refuses to start.
remove_stale_pidfile() {
	local pidfile=/var/run/docker.pid pid
	[[ -f "$pidfile" ]] || return 0
	pid=$(<"$pidfile")
	# A live dockerd has that pid, that name, and a state other than zombie (Z) or dead (X).
	if [[ -z "$pid" ]] || ! grep -qs '^dockerd$' "/proc/${pid}/comm" ||
		grep -qs '^State:[[:space:]]*[ZX]' "/proc/${pid}/status"; then
		log "removing the stale ${pidfile} (pid ${pid:-?} is not a running dockerd)"
		rm -f -- "$pidfile"
	fi
}

# start_engine: start dockerd and wait until it answers; 0 when it does, 1 when it exits or times out.
start_engine() {
	local logfile=${DOCKERD_LOG:-/tmp/dockerd.log} waited=0 pid
	remove_stale_pidfile
	log "starting dockerd in the background (log: ${logfile})"
	nohup dockerd >"$logfile" 2>&1 &
	pid=$!
	until engine_answers; do
		if ! kill -0 "$pid" 2>/dev/null; then
			log "dockerd exited at start: $(tail -n 1 "$logfile")"
			return 1
		fi
		if ((waited >= 60)); then
			log "dockerd did not answer within 60 s: see ${logfile}"
			kill "$pid" 2>/dev/null || true
			return 1
		fi
		sleep 1
		waited=$((waited + 1))
	done
}

install_registry() {
	command -v docker-registry >/dev/null 2>&1 && return 0
	if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
		log "docker-registry is missing: install Debian's docker-registry package (the tests' stand-in for ECR)"
		exit 1
	fi
	log "installing Debian's docker-registry"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-registry >/dev/null
}

main() {
	if [[ "${1:-}" == --registry ]]; then install_registry; fi
	if engine_answers; then return 0; fi
	if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
		log "no Docker engine answers and this is not a Debian machine where I am root:" \
			"start Docker (Docker Desktop, or 'sudo systemctl start docker') and try again"
		exit 1
	fi
	install_engine
	# Its managed containerd can be slow to come back after a kill: one more try before giving up.
	start_engine || { sleep 2 && start_engine; } || exit 1
	log "Docker engine is up"
}

main "$@"
