"""One event as the stream keeps it: its id, name and JSON payload, with the wire frames built at most once."""

from __future__ import annotations

import json
from typing import Any

from .._names import event_name_str
from ..codec import encode_payload
from ..errors import SerializationError
from ..typing import Event

#: Internal, comparable form of an id: ``(position, 0)`` in memory, ``(milliseconds, sequence)`` for Redis.
Key = tuple[int, int]

_UNSET: Any = object()


class StreamEvent:
    """An event in the stream's history.

    ``id`` is what SSE clients see (``id:``) and send back as ``Last-Event-ID``; ``data`` is the payload encoded
    with the same JSON encoder the forwarders use; ``payload`` is the payload (decoded from ``data`` on first use
    when the event came from Redis).
    """

    __slots__ = ("_payload", "_sse", "_ws", "data", "id", "key", "name")

    def __init__(self, key: Key, event_id: str, name: str, data: bytes, payload: Any = _UNSET) -> None:
        self.key = key
        self.id = event_id
        self.name = name
        self.data = data
        self._payload = payload
        self._sse: bytes | None = None
        self._ws: str | None = None

    @property
    def payload(self) -> Any:
        if self._payload is _UNSET:
            self._payload = json.loads(self.data)
        return self._payload

    @property
    def event(self) -> Event:
        """``(name, payload)``, the shape handlers and ``filter=`` callables get."""
        return (self.name, self.payload)

    @property
    def sse(self) -> bytes:
        # Built by the first subscriber that needs it and shared by all others: fan-out costs a list append.
        frame = self._sse
        if frame is None:
            frame = b"id: %s\nevent: %s\ndata: %s\n\n" % (self.id.encode(), self.name.encode(), self.data)
            self._sse = frame
        return frame

    @property
    def ws(self) -> str:
        text = self._ws
        if text is None:
            name = json.dumps(self.name, ensure_ascii=False)
            text = f'{{"id":{json.dumps(self.id)},"name":{name},"payload":{self.data.decode()}}}'
            self._ws = text
        return text

    def __repr__(self) -> str:
        return f"StreamEvent(id={self.id!r}, name={self.name!r}, data={self.data[:60]!r})"


def checked_name(event: Event) -> str:
    """The event's name as SSE can carry it (an ``event:`` line cannot hold a line break)."""
    name = event_name_str(event[0])
    if "\n" in name or "\r" in name:
        raise SerializationError(name, "event name contains a line break, which an SSE event: line cannot carry")
    return name


def encode(event: Event) -> tuple[str, bytes]:
    """``(name, payload JSON)``; raises :class:`SerializationError` naming the event and the offending type."""
    name = checked_name(event)
    try:
        return name, encode_payload(event[1])
    except (TypeError, ValueError) as exc:
        raise SerializationError(name, f"payload is not JSON-encodable: {exc}") from exc


def control_frame(name: str, info: dict[str, Any]) -> bytes:
    """An SSE message without ``id:`` (``gap``, ``overflow``): it must not move the client's Last-Event-ID."""
    return b"event: %s\ndata: %s\n\n" % (name.encode(), encode_payload(info))


def control_text(name: str, info: dict[str, Any]) -> str:
    return f'{{"id":null,"name":{json.dumps(name)},"payload":{encode_payload(info).decode()}}}'


def parse_key(text: str) -> Key | None:
    """``"12"`` -> ``(12, 0)``, ``"1700000000000-3"`` -> ``(1700000000000, 3)``; None when it is neither."""
    head, sep, tail = text.strip().partition("-")
    if not head.isdigit() or (sep and not tail.isdigit()):
        return None
    return (int(head), int(tail) if sep else 0)


__all__ = ["Key", "StreamEvent", "checked_name", "control_frame", "control_text", "encode", "parse_key"]
