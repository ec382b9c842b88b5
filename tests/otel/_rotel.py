"""A real OpenTelemetry collector for the end-to-end test: rotel (``pip install --pre rotel``).

rotel receives OTLP over gRPC and HTTP on loopback ports, exports to a blackhole and prints every span it
received (``--debug-log traces --debug-log-verbosity detailed``) to stdout, which the server harness captures
in its log file; :func:`parse_spans` reads them back.
"""

from __future__ import annotations

import importlib.util
import os
import re
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests._servers import ManagedServer, free_port, tcp_connectable


def rotel_agent() -> Path:
    spec = importlib.util.find_spec("rotel")
    if spec is None or spec.origin is None:
        pytest.fail("rotel is not installed: pip install --pre rotel (an OTLP collector used by the e2e test)")
    agent = Path(spec.origin).parent / "rotel-agent"
    if not os.access(agent, os.X_OK):
        pytest.fail(f"rotel's collector binary is missing or not executable: {agent}; reinstall rotel")
    return agent


class RotelServer(ManagedServer):
    name = "rotel"
    startup_timeout = 20.0

    def __init__(self) -> None:
        super().__init__()
        self.grpc_port = free_port()

    @property
    def traces_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/traces"

    def check_binaries(self) -> None:
        rotel_agent()

    def process_env(self) -> dict[str, str]:
        # rotel-agent links the libpython of the interpreter it was installed for; a pyenv interpreter keeps it in
        # its own LIBDIR, off the loader's default path (only the system Python's is found without this).
        env = super().process_env()
        libdir = sysconfig.get_config_var("LIBDIR")
        if libdir:
            env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, (libdir, env.get("LD_LIBRARY_PATH"))))
        return env

    def command(self) -> list[str]:
        return [
            str(rotel_agent()),
            "start",
            "--otlp-http-endpoint",
            f"127.0.0.1:{self.port}",
            "--otlp-grpc-endpoint",
            f"127.0.0.1:{self.grpc_port}",
            "--exporter",
            "blackhole",
            "--debug-log",
            "traces",
            "--debug-log-verbosity",
            "detailed",
            "--batch-timeout",
            "50ms",
            "--pid-file",
            str(self.workdir / "rotel.pid"),
            "--log-file",
            str(self.workdir / "rotel-agent.log"),
        ]

    def is_ready(self) -> bool:
        return tcp_connectable(self.port) and tcp_connectable(self.grpc_port)


@dataclass
class ReceivedSpan:
    name: str
    kind: str
    trace_id: str
    span_id: str
    parent_id: str
    links: list[tuple[str, str]] = field(default_factory=list)  # (trace id, span id)
    attributes: dict[str, str] = field(default_factory=dict)


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_FIELD = re.compile(r"^\s*(Trace ID|Parent ID|ID|Name|Kind)\s*:\s*(.*?)\s*$")
_ARROW = re.compile(r"^\s*-> ([^:]+): (.*?)\s*$")


def parse_spans(text: str) -> list[ReceivedSpan]:
    """The spans in rotel's detailed debug output (one ``Span #n`` block each)."""
    spans: list[ReceivedSpan] = []
    current: dict[str, str] | None = None
    section = ""
    link: dict[str, str] = {}
    for raw in _ANSI.sub("", text).splitlines():
        line = raw.rstrip()
        if line.startswith("Span #"):
            current = {}
            section = "span"
            spans.append(ReceivedSpan("", "", "", "", ""))
            continue
        if current is None:
            continue
        if line.startswith(("ResourceSpans #", "ScopeSpans #")):
            current, section = None, ""
            continue
        if line.startswith("Attributes:"):
            section = "attributes"
            continue
        if line.startswith("Links:"):
            section = "links"
            continue
        if line.startswith("SpanLink #"):
            link = {}
            continue
        if line.startswith("Events:"):
            section = "events"
            continue
        span = spans[-1]
        match = _FIELD.match(line)
        if section == "span" and match:
            key, value = match.groups()
            if key == "Trace ID":
                span.trace_id = value
            elif key == "Parent ID":
                span.parent_id = value
            elif key == "ID":
                span.span_id = value
            elif key == "Name":
                span.name = value
            else:
                span.kind = value
            continue
        arrow = _ARROW.match(line)
        if arrow is None:
            continue
        key, value = arrow.groups()
        if section == "attributes":
            span.attributes[key] = re.sub(r"^\w+\((.*)\)$", r"\1", value)
        elif section == "links":
            link[key] = value
            if "Trace ID" in link and "ID" in link:
                span.links.append((link["Trace ID"], link["ID"]))
                link = {}
    return spans
