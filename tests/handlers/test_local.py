# No `from __future__ import annotations`: the Annotated[..., Depends(local_function)] tests need real annotations.
import asyncio
import enum
import threading
from typing import Annotated, Optional

import pytest
from fastapi import Depends
from fastapi.testclient import TestClient

from fastapi_events.dispatcher import dispatch
from fastapi_events.errors import ConfigurationError, HandlerFailedError
from fastapi_events.handlers.local import LocalHandler
from fastapi_events.typing import Event
from tests.apps import app_with


def serve(handler: LocalHandler, *events: tuple) -> None:
    app = app_with(handler)

    @app.get("/")
    async def index() -> dict[str, str]:
        for event in events:
            dispatch(*event)
        return {}

    with TestClient(app) as client:
        assert client.get("/").status_code == 200


class Animal(enum.Enum):
    CAT_EATS = "cat_eats_a_fish"


def test_register_forms_and_fnmatch_patterns() -> None:
    handler = LocalHandler()
    calls: list[tuple[str, str]] = []

    @handler.register
    async def everything(event: Event) -> None:
        calls.append(("everything", str(event[0])))

    @handler.register(event_name="cat*")
    @handler.register(event_name="dog_?arks")
    def stacked(event: Event) -> None:
        calls.append(("stacked", str(event[0])))

    @handler.register("bird.[ab]*")
    async def positional(event: Event) -> None:
        calls.append(("positional", str(event[0])))

    async def direct(event: Event) -> None:
        calls.append(("direct", str(event[0])))

    handler.register(direct, event_name=Animal.CAT_EATS)

    serve(handler, (Animal.CAT_EATS,), ("dog_barks",), ("bird.alpha",), ("bird.zeta",), ("CAT_upper",))
    assert sorted(calls) == sorted(
        [
            ("everything", "Animal.CAT_EATS"),
            ("stacked", "Animal.CAT_EATS"),
            ("direct", "Animal.CAT_EATS"),
            ("everything", "dog_barks"),
            ("stacked", "dog_barks"),
            ("everything", "bird.alpha"),
            ("positional", "bird.alpha"),
            ("everything", "bird.zeta"),
            ("everything", "CAT_upper"),
        ]
    )


def test_handlers_receive_the_original_enum_member() -> None:
    handler = LocalHandler()
    got: list[Event] = []

    @handler.register(event_name="cat_*")
    async def on_cat(event: Event) -> None:
        got.append(event)

    serve(handler, (Animal.CAT_EATS, {"fish": 1}))
    assert got == [(Animal.CAT_EATS, {"fish": 1})]


def test_nested_sync_async_and_yield_dependencies_with_annotated() -> None:
    handler = LocalHandler()
    log: list[str] = []
    threads: dict[str, bool] = {}

    async def get_db_conn() -> str:
        log.append("conn")
        return "conn"

    def sync_settings() -> dict[str, int]:
        threads["sync dep off loop"] = threading.current_thread() is not threading.main_thread()
        log.append("settings")
        return {"retries": 3}

    async def get_db_session(db_conn: str = Depends(get_db_conn)):
        log.append(f"open session on {db_conn}")
        yield f"session({db_conn})"
        log.append("close session")

    def sync_resource():
        log.append("acquire")
        yield "resource"
        log.append("release")

    @handler.register(event_name="*")
    async def handle_all_events(
        event: Event,
        db_session=Depends(get_db_session),
        settings: Annotated[dict[str, int] | None, Depends(sync_settings)] = None,
        resource: Annotated[str, Depends(sync_resource)] = "",
        again: str = Depends(get_db_conn),
    ) -> None:
        log.append(f"handle {event[0]} with {db_session}, {settings['retries']}, {resource}, {again}")

    serve(handler, ("e1",))
    assert log[-3:] == ["handle e1 with session(conn), 3, resource, conn", "release", "close session"]
    assert log.count("conn") == 1, "a dependency is resolved once per event (use_cache)"
    assert threads == {"sync dep off loop": True}


def test_annotated_depends_inside_optional_is_resolved() -> None:
    # Python 3.10 turns `Annotated[X | None, Depends(f)] = None` into this shape by itself; written out, it is the
    # same on every version.
    handler = LocalHandler()
    seen: list[object] = []

    def get_limit() -> int:
        return 7

    @handler.register(event_name="*")
    async def h(event: Event, limit: Optional[Annotated[int, Depends(get_limit)]] = None) -> None:  # noqa: UP045
        seen.append(limit)

    serve(handler, ("e1",))
    assert seen == [7]


def test_use_cache_false_resolves_again() -> None:
    handler = LocalHandler()
    counter = {"n": 0}

    async def counted() -> int:
        counter["n"] += 1
        return counter["n"]

    @handler.register(event_name="*")
    async def h(event, a=Depends(counted), b=Depends(counted, use_cache=False)) -> None:
        assert (a, b) == (1, 2)

    serve(handler, ("x",))
    assert counter["n"] == 2


def test_yield_dependency_teardown_runs_when_the_handler_raises() -> None:
    handler = LocalHandler()
    seen: list[str] = []

    async def transaction():
        try:
            yield "tx"
        except ValueError as exc:
            seen.append(f"rollback after {exc}")
            raise
        else:
            seen.append("commit")

    @handler.register(event_name="*")
    async def failing(event, tx=Depends(transaction)) -> None:
        raise ValueError("handler failed")

    serve(handler, ("e",))
    assert seen == ["rollback after handler failed"]


def test_sync_handler_gets_dependencies_and_runs_off_the_loop() -> None:
    handler = LocalHandler()
    got: dict[str, object] = {}

    def dep() -> str:
        return "value"

    async def async_dep() -> str:
        return "async value"

    @handler.register(event_name="*")
    def sync_handler(event, value: str = Depends(dep)) -> None:
        got["value"] = value
        got["off loop"] = threading.current_thread() is not threading.main_thread()

    @handler.register(event_name="*")
    def sync_with_async_dep(event, value: Annotated[str, Depends(async_dep)]) -> None:
        got["async value"] = value

    serve(handler, ("e",))
    assert got == {"value": "value", "off loop": True, "async value": "async value"}


def test_callable_objects_with_async_call_are_awaited() -> None:
    handler = LocalHandler()
    got: list[str] = []

    class Repository:
        def __init__(self) -> None:
            self.name = "repo"

    class AsyncHandler:
        async def __call__(self, event: Event, repo: Repository = Depends()) -> None:
            await asyncio.sleep(0)
            got.append(f"{event[0]}:{repo.name}")

    class AsyncDependency:
        async def __call__(self) -> str:
            return "dep"

    handler.register(AsyncHandler(), event_name="obj")

    @handler.register(event_name="obj")
    async def uses_object_dep(event, v: str = Depends(AsyncDependency())) -> None:
        got.append(v)

    serve(handler, ("obj",))
    assert sorted(got) == ["dep", "obj:repo"]


def test_dependencies_can_ask_for_the_event() -> None:
    handler = LocalHandler()
    got: list[str] = []

    def tenant(event: Event) -> str:
        return event[1]["tenant"]

    @handler.register(event_name="*")
    async def h(event, tenant_id: str = Depends(tenant)) -> None:
        got.append(tenant_id)

    serve(handler, ("x", {"tenant": "acme"}))
    assert got == ["acme"]


def test_unresolvable_parameter_fails_at_registration() -> None:
    handler = LocalHandler()
    with pytest.raises(ConfigurationError, match="other"):

        @handler.register
        async def h(event, other) -> None: ...


def test_unevaluable_depends_annotation_is_a_clear_error() -> None:
    handler = LocalHandler()

    async def h(event, dep: "Annotated[str, Depends(not_defined_anywhere)]") -> None: ...  # noqa: F821

    with pytest.raises(ConfigurationError, match="not_defined_anywhere"):
        handler.register(h)


@pytest.mark.anyio
async def test_handle_strict_reports_failures_for_consumers() -> None:
    handler = LocalHandler()

    @handler.register(event_name="a*")
    async def ok(event) -> None: ...

    @handler.register(event_name="ab")
    def bad(event) -> None:
        raise RuntimeError("nope")

    assert await handler.handle_strict(("a", None)) == 1
    assert await handler.handle_strict(("zzz", None)) == 0
    with pytest.raises(HandlerFailedError) as info:
        await handler.handle_strict(("ab", None))
    assert info.value.event_name == "ab"
    assert [name.rsplit(".", 1)[-1] for name, _ in info.value.failures] == ["bad"]
