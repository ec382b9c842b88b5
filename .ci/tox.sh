#!/usr/bin/env bash
# Runs tox with the interpreters of the spread, found by find-python.sh (PATH, then pyenv; a missing one fails):
#   .ci/tox.sh run -e py310-oldest        TOX=path/to/tox to use another tox than the Makefile's bootstrap one
# tox.ini reads the newest interpreter from FASTAPI_EVENTS_PY_NEWEST. For py310-oldest, tox-uv asks uv for
# "cpython-3.10" (the env name's factor wins over base_python), and uv stops at the first python3.10 on PATH - a
# pyenv shim of an inactive version fails - so a directory with a link to the working one goes first on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."

py310="$(bash .ci/find-python.sh 3.10)"
newest="$(bash .ci/find-python.sh newest)"
links="$PWD/.tox/.interpreters"
mkdir -p "$links"
ln -sfn "$py310" "$links/python3.10"
export PATH="$links:$PATH" FASTAPI_EVENTS_PY310="$py310" FASTAPI_EVENTS_PY_NEWEST="$newest"
exec "${TOX:-.venv-tox/bin/tox}" "$@"
