#!/usr/bin/env bash
# Installs the Debian packages the test suite and benchmarks need:
#   redis-server                       - Redis streams transport tests
#   wrk                                - HTTP load generator for benchmarks/
#   chromium                           - the real browser Playwright drives (tests/_browser.py; never downloaded)
#   postgresql                         - the outbox tests' database (initdb/postgres started by the suite)
#   google-cloud-cli-pubsub-emulator   - Google Pub/Sub emulator (normally preinstalled)
#   default-jre-headless               - Java runtime for the emulator (only when no `java` is found)
# Python packages are NOT installed here (see `pip install -e .[test]`).
# Idempotent and non-interactive: runs `apt-get update` only when something is missing.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive

log() { printf '[install-deps] %s\n' "$*"; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo -n"
    else
        log "not root and sudo is unavailable; cannot install packages" >&2
        exit 1
    fi
fi

is_installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q '^install ok installed$'
}

missing=()

for pkg in redis-server wrk chromium postgresql; do
    if is_installed "$pkg"; then
        log "$pkg: already installed"
    else
        log "$pkg: missing"
        missing+=("$pkg")
    fi
done

if is_installed google-cloud-cli-pubsub-emulator; then
    log "google-cloud-cli-pubsub-emulator: already installed"
else
    log "google-cloud-cli-pubsub-emulator: missing"
    missing+=(google-cloud-cli-pubsub-emulator)
fi

if command -v java >/dev/null 2>&1 && java -version >/dev/null 2>&1; then
    log "java: present ($(java -version 2>&1 | head -n 1))"
else
    log "java: missing, will install default-jre-headless"
    missing+=(default-jre-headless)
fi

if [ "${#missing[@]}" -eq 0 ]; then
    log "nothing to install"
    exit 0
fi

log "running apt-get update"
$SUDO apt-get update -q </dev/null

log "installing: ${missing[*]}"
if ! $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null; then
    for pkg in "${missing[@]}"; do
        if [ "$pkg" = google-cloud-cli-pubsub-emulator ]; then
            log "hint: google-cloud-cli-pubsub-emulator comes from Google's apt repository" >&2
            log "      (https://packages.cloud.google.com/apt cloud-sdk main); add it and re-run" >&2
        fi
    done
    exit 1
fi

# The Debian redis-server package starts a system-wide service; the tests start their own
# servers on free ports, so that service is not needed (harmless if it is running).
log "installed: ${missing[*]}"
log "done"
