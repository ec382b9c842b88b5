#!/usr/bin/env bash
# The newest environment's test command (tox.ini), in two passes of pytest:
#   1. everything not marked `serial`, on PYTEST_WORKERS pytest-xdist workers (default 4). The full suite mostly
#      waits on its servers (brokers restarted mid-stream, consumers' group joins, leases running out), so more
#      workers than the machine's 2 CPUs pay off; each worker starts its own session servers on free ports.
#   2. the tests marked `serial` (each says why: event-loop timing, a kill that must land mid-batch), alone.
# The second pass runs even when the first failed, so one log shows both; the exit status fails if either did.
#   PYTEST_WORKERS=0   one pass, no workers (as plain `pytest`)
# Arguments go to both passes. With arguments, a pass they select nothing from is not a failure (e.g.
# `make test-newest PYTEST_ARGS=tests/webhooks` has no serial test); without them it is (a marker gone missing).
set -uo pipefail

workers="${PYTEST_WORKERS:-4}"
if [ "$workers" = 0 ]; then
    exec python -m pytest --durations=10 "$@"
fi

NO_TESTS=5 # pytest's exit status when the selection is empty

pass() {
    local name=$1 status
    shift
    echo "----- newest, $name -----"
    python -m pytest --durations=10 "$@"
    status=$?
    if [ "$status" = "$NO_TESTS" ] && [ "$has_args" = 1 ]; then
        status=0
    fi
    echo "----- newest, $name: exit $status -----"
    return "$status"
}

has_args=0
[ "$#" -gt 0 ] && has_args=1
status=0
pass "pass 1 of 2: not serial, $workers workers" -n "$workers" --dist loadgroup -m "not serial" "$@" || status=1
pass "pass 2 of 2: serial" -m serial "$@" || status=1
exit "$status"
