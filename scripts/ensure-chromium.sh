#!/usr/bin/env bash
# ensure-chromium.sh -- make sure Debian's chromium is installed: the tests read the run's report in it, as
# an engineer does (tests/browser.py drives it with Playwright). On a fresh Debian machine, as root, install
# it; elsewhere, say how.
set -Eeuo pipefail

log() { printf 'ensure-chromium: %s\n' "$*" >&2; }

main() {
	if command -v chromium >/dev/null 2>&1; then
		return 0
	fi
	if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
		log "chromium is missing: install Debian's chromium package (sudo apt-get install chromium), or set CHROMIUM=/path/to/chrome"
		exit 1
	fi
	log "installing Debian's chromium (the tests read reports in it)"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
	command -v chromium >/dev/null 2>&1 || { log "apt-get installed no chromium: see its output above"; exit 1; }
}

main "$@"
