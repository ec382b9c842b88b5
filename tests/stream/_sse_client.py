"""A small SSE client (httpx streaming) that parses messages the way EventSource does."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass
class Message:
    event: str
    data: str
    id: str | None = None

    @property
    def payload(self) -> Any:
        return json.loads(self.data)


class Parser:
    """Feeds lines, returns a message on each blank line and a comment line as is (as EventSource parses)."""

    def __init__(self) -> None:
        self.event, self.data, self.id = "message", [], None  # type: ignore[var-annotated]

    def feed(self, line: str) -> Message | str | None:
        if line == "":
            message = Message(self.event, "\n".join(self.data), self.id) if self.data else None
            self.event, self.data, self.id = "message", [], None
            return message
        if line.startswith(":"):
            return line
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "event":
            self.event = value
        elif name == "data":
            self.data.append(value)
        elif name == "id":
            self.id = value
        return None


class SSEReader:
    """Reads one SSE response in a task; ``messages``/``comments`` fill up as they arrive.

    ``async with SSEReader(url) as reader:`` returns once the response headers arrived.
    """

    def __init__(self, url: str, headers: dict[str, str] | None = None) -> None:
        self.url = url
        self.headers = headers or {}
        self.messages: list[Message] = []
        self.comments: list[str] = []
        self.status: int | None = None
        self.body = ""
        self.ended = False
        self.error: BaseException | None = None
        self._client = httpx.AsyncClient(timeout=httpx.Timeout(30, read=120), follow_redirects=True)
        self._task: asyncio.Task[None] | None = None
        self._headers_seen = asyncio.Event()

    async def _run(self) -> None:
        try:
            async with self._client.stream("GET", self.url, headers=self.headers) as response:
                self.status = response.status_code
                self._headers_seen.set()
                if response.status_code != 200:
                    self.body = (await response.aread()).decode()
                    return
                parser = Parser()
                async for line in response.aiter_lines():
                    item = parser.feed(line)
                    if isinstance(item, str):
                        self.comments.append(item)
                    elif item is not None:
                        self.messages.append(item)
            self.ended = True
        except Exception as exc:  # the server dropped us
            self.error = exc
        finally:
            self._headers_seen.set()

    async def wait_messages(self, count: int, timeout: float = 20) -> list[Message]:
        await until(lambda: len(self.messages) >= count or self.ended or self.error is not None, timeout)
        assert len(self.messages) >= count, (self.messages, self.error)
        return self.messages

    async def __aenter__(self) -> SSEReader:
        self._task = asyncio.get_running_loop().create_task(self._run())
        await asyncio.wait_for(self._headers_seen.wait(), 20)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.wait([self._task])
        await self._client.aclose()


async def until(predicate: Callable[[], object], timeout: float = 20, message: str = "condition") -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        await asyncio.sleep(0.02)


async def until_async(predicate: Callable[[], Awaitable[bool]], timeout: float = 20, message: str = "it") -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        await asyncio.sleep(0.05)
