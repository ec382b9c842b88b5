"""A real PostgreSQL server for the outbox tests (Debian's ``postgresql`` package), started by the suite itself.

``initdb`` runs once per server in a temporary directory; ``postgres`` listens on a free 127.0.0.1 port with
unix sockets off and ``fsync=off``: the tests kill the server process, never the machine, so the OS keeps what
was written; commits stay synchronous, or a killed server would forget the last ones it acknowledged.
PostgreSQL refuses to run as root, and CI runs as root, so both run as the unprivileged ``nobody`` user then.
A missing binary FAILS the test.

Fixtures::

    postgres_server   -> PostgresServer (session-scoped, shared: never kill or restart it)
    pg_url            -> a fresh, empty database on the shared server: ``pg_url("asyncpg")`` / ``pg_url("psycopg")``
    fresh_postgres_server() -> a dedicated server for fault tests (kill()/restart() freely)
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests._servers import ManagedServer, _factory, _fail_missing, _scrubbed_env, _session_server

_RUN_AS = "nobody"


def _bin_dir() -> Path | None:
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if (Path(candidate) / "postgres").is_file():
            return Path(candidate)
    found = shutil.which("postgres")
    return Path(found).parent if found else None


def _as_user() -> list[str]:
    if os.geteuid() != 0:
        return []
    pwd.getpwnam(_RUN_AS)  # KeyError with a clear name when the user is missing
    return ["setpriv", f"--reuid={_RUN_AS}", "--regid=nogroup", "--clear-groups", "--"]


class PostgresServer(ManagedServer):
    name = "postgres"
    startup_timeout = 30.0
    stop_timeout = 15.0
    fatal_markers = ("could not bind", "FATAL:  could not create")

    def __init__(self, port: int | None = None, **kwargs: Any) -> None:
        super().__init__(port, **kwargs)
        self.data_dir = self.workdir / "data"
        self._initialised = False

    def check_binaries(self) -> None:
        if _bin_dir() is None:
            _fail_missing("postgres", "apt-get install postgresql (or run .ci/install-deps.sh)")

    def _initdb(self) -> None:
        bin_dir = _bin_dir()
        assert bin_dir is not None
        self.data_dir.mkdir(exist_ok=True)
        if os.geteuid() == 0:
            entry = pwd.getpwnam(_RUN_AS)
            os.chmod(self.workdir, 0o755)
            os.chown(self.data_dir, entry.pw_uid, entry.pw_gid)
        initdb = [str(bin_dir / "initdb"), "-D", str(self.data_dir), "-U", "postgres", "-A", "trust"]
        subprocess.run(
            [*_as_user(), *initdb, "-E", "UTF8", "--no-sync", "--no-instructions"],
            check=True,
            capture_output=True,
            env=_scrubbed_env(),
            cwd=self.workdir,
        )
        self._initialised = True

    def command(self) -> list[str]:
        bin_dir = _bin_dir()
        assert bin_dir is not None
        settings = {
            "listen_addresses": self.bind_host,
            "port": str(self.port),
            "unix_socket_directories": "",
            "fsync": "off",
            "full_page_writes": "off",
            "max_connections": "300",
        }
        args = [*_as_user(), str(bin_dir / "postgres"), "-D", str(self.data_dir)]
        for key, value in settings.items():
            args += ["-c", f"{key}={value}"]
        return args

    def start(self) -> PostgresServer:
        if not self._initialised and not self.is_running:
            self.check_binaries()
            self._initdb()
        super().start()
        return self

    def stop(self, timeout: float | None = None) -> None:
        # SIGINT is PostgreSQL's "fast" shutdown; SIGTERM would wait for every client to disconnect.
        proc = self._proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=self.stop_timeout if timeout is None else timeout)
        super().stop(timeout)

    def is_ready(self) -> bool:
        import psycopg

        try:
            with psycopg.connect(self.url("postgres").replace("+psycopg", ""), connect_timeout=1) as conn:
                conn.execute("SELECT 1")
        except psycopg.OperationalError:
            return False
        return True

    def url(self, database: str = "postgres", driver: str = "psycopg") -> str:
        return f"postgresql+{driver}://postgres@{self.bind_host}:{self.port}/{database}"

    def create_database(self) -> str:
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url().replace("+psycopg", ""), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return name


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """Shared PostgreSQL; use a database of your own (``pg_url``)."""
    yield from _session_server(PostgresServer())


@pytest.fixture
def pg_url(postgres_server: PostgresServer) -> Callable[[str], str]:
    """``pg_url(driver)``: the URL of a database created for this test alone (same database for every driver)."""
    database = postgres_server.create_database()
    return lambda driver="psycopg": postgres_server.url(database, driver)


@pytest.fixture
def fresh_postgres_server() -> Iterator[Callable[..., PostgresServer]]:
    """Factory: ``fresh_postgres_server()`` starts a dedicated PostgreSQL for the test (kill/restart it freely)."""
    yield from _factory(PostgresServer)
