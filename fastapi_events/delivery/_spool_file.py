"""Opening a spool file without ever dropping the locks of the process's other SQLite connections on it.

Closing *any* descriptor of a file drops every POSIX lock the process holds on it, including the locks of SQLite
connections open on it (the forwarder's writer); another process's writer may then write at the same time and
corrupt the file (SQLite's "How To Corrupt An SQLite Database File", section 2.2). So the spool file is opened only
through SQLite, except once to create it with its 0600 mode.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import urllib.parse

#: Seconds a writer (or a reader, while the file is being created) waits for another process's transaction.
BUSY_TIMEOUT = 10.0
_OPEN_GUARD = threading.Lock()


def connect(path: str, *, create: bool, readonly: bool, timeout: float) -> sqlite3.Connection:
    """Open ``path`` through SQLite; create it first (mode 0600) when ``create`` and it does not exist yet.

    Closing *any* descriptor of a file drops every POSIX lock the process holds on it, including the locks of
    SQLite connections open on it (the forwarder's writer), after which another process's writer can corrupt the
    file. So nothing here opens the file itself, except to create it: ``O_EXCL`` makes that a new file no
    connection can hold locks on, and the process-wide guard keeps every other connection of this module from
    opening it before the descriptor is closed. The ``mode=rw``/``mode=ro`` URIs make SQLite fail instead of
    creating a file with default permissions.
    """
    with _OPEN_GUARD:
        if create:
            with contextlib.suppress(FileExistsError):
                # 0600: events may carry personal data; SQLite gives the -wal and -shm files the same mode.
                os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))
        mode = "ro" if readonly else "rw"
        uri = f"file:{urllib.parse.quote(os.path.abspath(path))}?mode={mode}"
        try:
            return sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False, timeout=timeout)
        except sqlite3.OperationalError as exc:
            if not os.path.exists(path):
                raise FileNotFoundError(f"no spool file at {path}") from exc
            raise


__all__ = ["BUSY_TIMEOUT", "connect"]
