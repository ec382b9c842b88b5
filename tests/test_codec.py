"""The wire format every forwarder and consumer shares."""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import json
import os
import sys
import uuid

import pydantic
import pytest

from fastapi_events.codec import decode_event, encode_event, new_event_id
from fastapi_events.errors import MalformedMessageError, SerializationError


class Kind(enum.Enum):
    CREATED = "order.created"


class Colour(enum.Enum):
    RED = "red"


@dataclasses.dataclass
class Line:
    sku: str
    qty: int


class Order(pydantic.BaseModel):
    id: uuid.UUID
    at: datetime.datetime


def test_default_body_is_the_old_json_list_with_enum_names_by_value() -> None:
    assert json.loads(encode_event(("user.signed-up", {"id": 1}))) == ["user.signed-up", {"id": 1}]
    assert json.loads(encode_event((Kind.CREATED, None))) == ["order.created", None]


def test_common_payload_types_are_encoded_losslessly() -> None:
    oid = uuid.uuid4()
    at = datetime.datetime(2024, 5, 1, 12, 30, tzinfo=datetime.timezone.utc)
    payload = {
        "when": at,
        "day": datetime.date(2024, 5, 1),
        "time": datetime.time(7, 8, 9),
        "id": oid,
        "amount": decimal.Decimal("10.10"),
        "colour": Colour.RED,
        "tags": {"b", "a"},
        "frozen": frozenset({3, 1}),
        "model": Order(id=oid, at=at),
        "line": Line("x", 2),
    }
    name, decoded = decode_event(encode_event(("e", payload)))
    assert name == "e"
    assert decoded == {
        "when": "2024-05-01T12:30:00+00:00",
        "day": "2024-05-01",
        "time": "07:08:09",
        "id": str(oid),
        "amount": "10.10",
        "colour": "red",
        "tags": ["a", "b"],
        "frozen": [1, 3],
        "model": {"id": str(oid), "at": "2024-05-01T12:30:00Z"},
        "line": {"sku": "x", "qty": 2},
    }


def test_unencodable_payload_names_the_event_and_the_type() -> None:
    class Secret:
        pass

    with pytest.raises(SerializationError) as info:
        encode_event(("payment.failed", {"card": Secret()}))
    assert info.value.event_name == "payment.failed"
    assert "Secret" in str(info.value)
    assert "payment.failed" in str(info.value)
    with pytest.raises(SerializationError, match="not JSON-encodable"):
        encode_event(("nan", float("nan")))


def test_custom_serializer_str_or_bytes_replaces_the_body() -> None:
    assert encode_event(("e", 1), serializer=lambda ev: f"{ev[0]}={ev[1]}") == b"e=1"
    assert encode_event(("e", 1), serializer=lambda ev: b"\x00raw") == b"\x00raw"

    def broken(ev: object) -> str:
        raise RuntimeError("boom")

    with pytest.raises(SerializationError, match="serializer failed: RuntimeError: boom"):
        encode_event(("e", 1), serializer=broken)
    with pytest.raises(SerializationError, match="expected str or bytes"):
        encode_event(("e", 1), serializer=lambda ev: 42)  # type: ignore[arg-type,return-value]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"\xff\xfe", "not valid UTF-8"),
        (b"", "empty"),
        (b"{not json", "not JSON"),
        (b'{"a": 1}', "expected a JSON array"),
        (b'["only-name"]', "2 items"),
        (b"[1, {}]", "event name must be a JSON string"),
        (b'["", {}]', "event name is empty"),
    ],
)
def test_decode_rejects_malformed_bodies_precisely(body: bytes, reason: str) -> None:
    with pytest.raises(MalformedMessageError, match=reason):
        decode_event(body)


def test_decode_accepts_str_and_bytes() -> None:
    assert decode_event('["a", [1, 2]]') == ("a", [1, 2])
    assert decode_event(bytearray(b'["a", null]')) == ("a", None)


def test_event_ids_are_distinct_random_uuid4_hex() -> None:
    ids = [new_event_id() for _ in range(1000)]
    assert len(set(ids)) == len(ids)
    for event_id in ids:
        parsed = uuid.UUID(hex=event_id)
        assert parsed.hex == event_id
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122


@pytest.mark.skipif(sys.platform == "win32", reason="os.fork")
def test_a_forked_worker_does_not_repeat_its_parents_event_ids() -> None:
    new_event_id()  # ids drawn ahead of time now wait in the parent
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next ids and leave at once
        os.close(read)
        os.write(write, " ".join(new_event_id() for _ in range(10)).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        child = set(pipe.read().split())
    os.waitpid(pid, 0)
    parent = {new_event_id() for _ in range(10)}
    assert len(child) == 10
    assert not child & parent
