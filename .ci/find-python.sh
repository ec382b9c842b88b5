#!/usr/bin/env bash
# Prints the path of a working CPython interpreter, or fails loudly (CI must not silently test less).
#   find-python.sh 3.10     - that minor version
#   find-python.sh newest   - the newest of 3.10..3.14 present
# Looks on PATH (python3.X that really runs: pyenv shims of an inactive version do not) and in pyenv's versions.
set -euo pipefail

want="${1:?usage: find-python.sh 3.X|newest}"
if [ "$want" = newest ]; then
    minors=(3.14 3.13 3.12 3.11 3.10)
else
    minors=("$want")
fi
pyenv_root="${PYENV_ROOT:-$HOME/.pyenv}"

for minor in "${minors[@]}"; do
    candidates=()
    if command -v "python$minor" >/dev/null 2>&1; then
        candidates+=("$(command -v "python$minor")")
    fi
    for found in "$pyenv_root"/versions/"$minor".*/bin/"python$minor"; do
        [ -x "$found" ] && candidates+=("$found")
    done
    for candidate in "${candidates[@]}"; do
        if "$candidate" -c "import sys, venv; assert sys.version_info[:2] == tuple(map(int, '$minor'.split('.')))" \
            >/dev/null 2>&1; then
            echo "$candidate"
            exit 0
        fi
    done
done

echo "find-python.sh: no working python$want found on PATH or under $pyenv_root/versions;" \
    "install it (e.g. pyenv install $want) - the supported spread needs it" >&2
exit 1
