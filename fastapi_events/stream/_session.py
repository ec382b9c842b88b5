"""One connected subscriber: the loop that writes its queue out, and everything that can end it.

The connection's own task does the writing (no task per subscriber besides a disconnect watcher). A client
that stops reading blocks that task inside ``send``; once its subscription overflowed or was closed it gets
``send_timeout`` seconds to take the final message, then the send is cancelled and the connection dropped, so a
stuck client can neither hold memory nor delay server shutdown.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable

from ..typing import Receive
from ._entry import StreamEvent
from ._subscription import Subscription

Writer = Callable[[list[StreamEvent]], Awaitable[None]]
Notice = Callable[[], Awaitable[None]]


class Session:
    def __init__(
        self,
        subscription: Subscription,
        receive: Receive,
        disconnect: str,
        *,
        keepalive: float | None,
        send_timeout: float,
    ) -> None:
        self.subscription = subscription
        self.receive = receive
        self.disconnect = disconnect
        self.keepalive = keepalive
        self.send_timeout = send_timeout
        #: The client went away: nothing more can be sent.
        self.gone = False
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        self._aborted = False
        self._finished = False
        self._tick_handle: asyncio.TimerHandle | None = None
        self._abort_handle: asyncio.TimerHandle | None = None

    async def run(self, write: Writer, ping: Notice, overflow: Notice, end: Notice) -> None:
        subscription = self.subscription
        loop = self._loop
        watcher = loop.create_task(self._watch())
        subscription.on_stop(self._arm_abort)
        if self.keepalive:
            self._tick_handle = loop.call_later(self.keepalive, self._tick)
        try:
            while True:
                await subscription.wait()
                if subscription.pending:
                    subscription.ping = False
                    await write(subscription.take())
                elif self.gone:
                    return
                elif subscription.overflowed:
                    await overflow()
                    return
                elif subscription.closed:
                    await end()
                    return
                elif subscription.ping:
                    subscription.ping = False
                    await ping()
        except OSError:
            # The client went away while we were sending (servers raise ClientDisconnected, an OSError).
            self.gone = True
        except asyncio.CancelledError:
            if not self._aborted:
                raise
            # We cancelled our own send to drop a stuck client: not a cancellation of the request.
            if sys.version_info >= (3, 11) and self._task is not None:
                self._task.uncancel()
        finally:
            self._finished = True
            watcher.cancel()
            for timer in (self._tick_handle, self._abort_handle):
                if timer is not None:
                    timer.cancel()

    async def _watch(self) -> None:
        while True:
            message = await self.receive()
            if message["type"] == self.disconnect:
                self.gone = True
                self.subscription.close()
                return

    def _tick(self) -> None:
        self.subscription.ping = True
        self.subscription.wake()
        assert self.keepalive
        self._tick_handle = self._loop.call_later(self.keepalive, self._tick)

    def _arm_abort(self) -> None:
        if self._abort_handle is None:
            self._abort_handle = self._loop.call_later(self.send_timeout, self._abort)

    def _abort(self) -> None:
        if not self._finished and self._task is not None:
            self._aborted = True
            self._task.cancel()


__all__ = ["Session"]
