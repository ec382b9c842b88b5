#!/usr/bin/env bash
# `make test`: the supported spread of tox.ini. The core environments (py310-oldest, then starlette-only) and the
# documentation site (docs) run one after the other in the background while the full suite (newest) runs in the
# foreground - the full suite mostly waits on its servers, so it runs on several pytest-xdist workers
# (.ci/pytest-newest.sh) and the core environments fit beside it. The background output is printed as one block
# once it is done, so the log reads environment by environment. Every environment runs even after another one
# failed, so one log shows all of the spread; the summary at the end says which failed and how long each took.
#   SPREAD_PARALLEL=0   run everything one after the other
#   TOX=path            the tox to use (default: the Makefile's bootstrap one, see .ci/tox.sh)
set -uo pipefail
cd "$(dirname "$0")/.."

# Fail at once, loudly, when an interpreter of the spread is missing.
bash .ci/find-python.sh 3.10 >/dev/null && bash .ci/find-python.sh newest >/dev/null || exit 1
tox() { bash .ci/tox.sh "$@"; }

declare -A status seconds
started=$SECONDS
core_log="$(mktemp)"
trap 'rm -f "$core_log"' EXIT

BACKGROUND=(py310-oldest starlette-only docs)

run_core() {
    local env began
    for env in "${BACKGROUND[@]}"; do
        echo "===== tox -e $env ====="
        began=$SECONDS
        tox run -e "$env"
        echo "$env=$?"
        echo "$env-seconds=$((SECONDS - began))"
    done
}

if [ "${SPREAD_PARALLEL:-1}" = 1 ]; then
    echo "spread: ${BACKGROUND[*]} run in the background; their output follows the newest run's"
    run_core >"$core_log" 2>&1 </dev/null &
    core_pid=$!
    echo "===== tox -e newest ====="
    began=$SECONDS
    tox run -e newest
    status[newest]=$?
    seconds[newest]=$((SECONDS - began))
    wait "$core_pid"
    cat "$core_log"
else
    run_core | tee "$core_log"
    echo "===== tox -e newest ====="
    began=$SECONDS
    tox run -e newest
    status[newest]=$?
    seconds[newest]=$((SECONDS - began))
fi
for env in "${BACKGROUND[@]}"; do
    # The exit status of each background run is its line "<env>=<status>"; none means it never finished.
    status[$env]="$(sed -n "s/^$env=\([0-9]*\)$/\1/p" "$core_log" | tail -n 1)"
    status[$env]="${status[$env]:-1}"
    seconds[$env]="$(sed -n "s/^$env-seconds=\([0-9]*\)$/\1/p" "$core_log" | tail -n 1)"
done

echo "===== spread: $((SECONDS - started)) s ====="
failed=0
for env in py310-oldest starlette-only newest docs; do
    if [ "${status[$env]}" = 0 ]; then
        echo "  $env: ok (${seconds[$env]:-?} s)"
    else
        echo "  $env: FAILED (exit ${status[$env]}, ${seconds[$env]:-?} s)"
        failed=1
    fi
done
exit "$failed"
