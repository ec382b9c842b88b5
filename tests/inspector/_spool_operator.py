"""An operator at the command line, in a process of its own: ``python -m tests.inspector._spool_operator PATH SECONDS``.

Runs ``spool dead-letters --json``, ``spool stats --json`` and ``spool replay --id ...`` (one dead letter at a time)
on a live app's spool file in a loop, through the command line's own entry point, and prints one JSON line: how
many commands ran, which failed (with their output) and which event ids it replayed.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
import time

from fastapi_events.cli import main


def run(*argv: str) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(["spool", *argv])
        except Exception as exc:  # a crash is a failure to report, not a reason to stop the load
            return 99, f"{type(exc).__name__}: {exc}"
    return code, out.getvalue() + err.getvalue()


def operate(path: str, seconds: float) -> dict[str, object]:
    commands, failures, replayed = 0, [], []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        code, listed = run("dead-letters", "--json", path)
        commands += 1
        if code != 0:
            failures.append(listed)
            continue
        dead = [record["id"] for record in json.loads(listed) if record["replayable"]]
        code, output = run("stats", "--json", path)
        commands += 1
        if code != 0:
            failures.append(output)
        if dead:
            code, output = run("replay", "--json", "--id", dead[0], path)
            commands += 1
            if code != 0 or json.loads(output)["replayed"] != 1:
                failures.append(output)
            else:
                replayed.append(dead[0])
    return {"commands": commands, "failures": failures, "replayed": replayed}


if __name__ == "__main__":
    print(json.dumps(operate(sys.argv[1], float(sys.argv[2]))))
