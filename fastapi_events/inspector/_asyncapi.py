"""``GET /asyncapi.json``: the app's events as an AsyncAPI 3.0 document.

- one channel per event name (address: the name) and per handled pattern (address: the pattern), each listing
  the messages of the known names it covers;
- one channel per forwarder destination (address: the queue/topic), carrying every known message;
- ``send`` operations for the names the app dispatches and the forwarders' destinations, ``receive`` operations
  for each local handler registration.

Message payloads are the pydantic JSON schemas of the registry and ``__event_name__`` models; their ``$defs``
move to ``components.schemas`` so that references resolve inside the document.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ._catalog import entries, json_schema
from ._components import forwarders

ASYNCAPI_VERSION = "3.0.0"
_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_COMPONENTS_REF = "#/components/schemas/{model}"


class _Keys:
    """Component keys matching AsyncAPI's ``^[A-Za-z0-9.\\-_]+$``, unique per kind."""

    def __init__(self) -> None:
        self._taken: dict[str, str] = {}

    def key(self, wanted: str) -> str:
        if wanted in self._taken:
            return self._taken[wanted]
        readable = wanted.replace("*", "all").replace("?", "any")
        base = _KEY_UNSAFE.sub("_", readable).strip("_") or "x"
        candidate, n = base, 1
        while candidate in self._taken.values():
            n += 1
            candidate = f"{base}_{n}"
        self._taken[wanted] = candidate
        return candidate


def document(seen: Mapping[str, int], *, title: str, version: str) -> dict[str, Any]:
    schemas: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    message_keys, channel_keys, operation_keys = _Keys(), _Keys(), _Keys()
    known = entries(seen)

    names = [item for item in known if not item.pattern]
    message_of: dict[str, str] = {}
    for item in names:
        key = message_keys.key(item.name)
        message_of[item.name] = key
        message: dict[str, Any] = {"name": item.name, "contentType": "application/json"}
        payload = json_schema(item.model, _COMPONENTS_REF)
        if payload is not None:
            schemas.update(payload.pop("$defs", {}))
            message["payload"] = payload
            message["title"] = item.model.__name__ if item.model is not None else item.name
        messages[key] = message

    def channel(address: str, covered: list[str], description: str) -> str:
        key = channel_keys.key(address)
        channels[key] = {
            "address": address,
            "description": description,
            "messages": {message_of[n]: {"$ref": f"#/components/messages/{message_of[n]}"} for n in covered},
        }
        return key

    def refs(channel_key: str) -> list[dict[str, str]]:
        return [{"$ref": f"#/channels/{channel_key}/messages/{m}"} for m in channels[channel_key]["messages"]]

    channel_of: dict[str, str] = {}
    for item in names:
        channel_of[item.name] = channel(item.name, [item.name], f"The event {item.name!r}.")
        operations[operation_keys.key(f"send.{item.name}")] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{channel_of[item.name]}"},
            "summary": f"dispatch({item.name!r}, ...)",
            "messages": refs(channel_of[item.name]),
        }
    for item in known:
        for registration in item.registrations:
            if registration.pattern != item.name:
                continue
            if item.name not in channel_of:  # a pattern: one channel for the names it covers
                covered = [n.name for n in names if registration.regex.match(n.name)]
                channel_of[item.name] = channel(item.name, covered, f"Events matching {item.name!r}.")
            key = channel_of[item.name]
            operations[operation_keys.key(f"receive.{item.name}.{registration.name}")] = {
                "action": "receive",
                "channel": {"$ref": f"#/channels/{key}"},
                "summary": f"local handler {registration.name}",
                "messages": refs(key),
            }
    for handler in forwarders():
        transport = handler.transport
        system, destination = str(transport.system), str(transport.destination)
        key = channel(destination, list(message_of), f"{system} destination of {handler!r}; body: [name, payload].")
        operations[operation_keys.key(f"forward.{system}.{destination}")] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{key}"},
            "summary": f"forwarded by {handler!r}",
            "messages": refs(key),
        }

    doc: dict[str, Any] = {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": title,
            "version": version,
            "description": "Events dispatched and handled by this app (generated by fastapi-events).",
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages},
    }
    if schemas:
        doc["components"]["schemas"] = schemas
    return doc


__all__ = ["ASYNCAPI_VERSION", "document"]
