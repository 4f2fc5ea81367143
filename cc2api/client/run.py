"""One run as the client follows it: every event once, in order, across dropped connections."""

from __future__ import annotations

import math
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing
from types import TracebackType
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar
from urllib.parse import quote

import anyio
import anyio.lowlevel
import httpx

from .approvals import ApprovalHandler, decide
from .errors import ApiError, ClientError, ConnectionLost
from .events import FINAL, Event
from .http import TRANSIENT, api_error
from .sse import Parser

if TYPE_CHECKING:
    from .async_client import AsyncClient

FIRST_DELAY = 0.2
MAX_DELAY = 5.0
CLOSE_PATIENCE = 5.0  # closing a connection sends nothing that could take longer

P = ParamSpec("P")
T = TypeVar("T")


class AsyncRun:
    """A run being followed; use as ``async with client.chat(...) as run: async for event in run``.

    Entering starts the run (``chat``) or connects to it (``follow``). The events
    come from ``POST /chat`` and, after a drop, from ``GET /chat/{id}/events`` with
    ``Last-Event-ID``: each event is yielded once, in order, and a connection that
    keeps failing is retried with backoff (0.2 s doubling to 5 s) until
    ``reconnect_timeout`` passes without progress (then :class:`ConnectionLost`).
    Leaving the block before ``done`` (break, an exception, cancellation) cancels a
    run this object started, and returns once the gateway says its processes are
    gone; a run it only follows is left running.
    """

    def __init__(
        self,
        client: AsyncClient,
        *,
        start: dict[str, Any] | None = None,
        process_id: str | None = None,
        after: int | None = None,
        on_approval: ApprovalHandler | None = None,
        leave_running: bool = False,
    ) -> None:
        self._client = client
        self._start = start
        self._owned = start is not None and not leave_running
        self.process_id = process_id
        self.last_event_id = after
        self.done: dict[str, Any] | None = None
        self._on_approval = on_approval
        self._response: httpx.Response | None = None
        self._events: AsyncGenerator[Event, None] | None = None
        self._dropped_seen: set[int] = set()
        self._delay = FIRST_DELAY
        self._progress_at = 0.0

    @property
    def body(self) -> dict[str, Any] | None:
        """The POST /chat body this run starts with (None: it follows a run)."""
        return self._start

    @property
    def status(self) -> str | None:
        """The run's final status once ``done`` has come; None before."""
        return None if self.done is None else str(self.done.get("status"))

    async def __aenter__(self) -> AsyncRun:
        """Start the run, shielded until its process id is known, so a cancellation
        that comes meanwhile cancels the run instead of leaving it running unseen."""
        if self._start is not None:
            with anyio.move_on_after(self._client.timeout, shield=True):
                await self._send_start(self._start)
            if self.process_id is None:
                raise ConnectionLost("POST /chat: no answer within the client's timeout")
            try:
                await anyio.lowlevel.checkpoint_if_cancelled()
            except BaseException:
                await self._leave()
                raise
        self._progress_at = anyio.current_time()
        self._events = self._stream()
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        """Close the stream; cancel the run if this object started it and it has not ended."""
        await self._leave()

    def __aiter__(self) -> AsyncRun:
        return self

    async def __anext__(self) -> Event:
        if self._events is None:
            raise RuntimeError("enter the run first: `async with client.chat(...) as run:`")
        return await self._events.__anext__()

    async def wait(self) -> dict[str, Any]:
        """Take every event to the end and return the ``done`` event's data.

        Cancellation leaves the run as leaving the block does.
        """
        async for _ in self:
            pass
        if self.done is None:  # pragma: no cover - the stream ends only at done
            raise ConnectionLost("the stream ended without done")
        return self.done

    async def cancel(self) -> dict[str, Any]:
        """DELETE the run; returns once its processes are gone (see :meth:`AsyncClient.cancel`)."""
        return await self._client.cancel(self._id())

    async def interrupt(self) -> dict[str, Any]:
        """Interrupt the run's turn; returns once the run has ended."""
        return await self._client.interrupt(self._id())

    async def send(self, prompt: str) -> dict[str, Any]:
        """Send a follow-up message into the run."""
        return await self._client.send(self._id(), prompt)

    def _id(self) -> str:
        if self.process_id is None:
            raise RuntimeError("the run has no process id yet: enter it first")
        return self.process_id

    async def _send_start(self, body: dict[str, Any]) -> None:
        http = self._client.http
        try:
            response = await http.send(http.build_request("POST", "/chat", json=body), stream=True)
        except httpx.TransportError as error:
            raise ConnectionLost(f"POST /chat: {error!r}") from error
        if response.status_code != 200:
            await response.aread()
            await response.aclose()
            raise api_error(response)
        self.process_id = response.headers.get("X-Process-ID")
        self._response = response

    async def _stream(self) -> AsyncGenerator[Event, None]:
        while self.done is None:
            response, self._response = self._response, None
            if response is None:
                response = await self._reconnect()
            try:
                async with aclosing(self._read(response)) as events:
                    async for event in events:
                        yield event
            finally:
                with anyio.move_on_after(CLOSE_PATIENCE, shield=True):
                    await response.aclose()

    async def _read(self, response: httpx.Response) -> AsyncGenerator[Event, None]:
        """Yield the new events of one connection; return when it ends or drops."""
        parser = Parser()
        progress = False
        try:
            async for chunk in response.aiter_raw():
                # Any byte, a ping too, shows the server is there: patience restarts.
                self._progress_at = anyio.current_time()
                for frame in parser.feed(chunk):
                    event = Event.from_frame(frame)
                    if not self._is_new(event):
                        continue
                    progress = True
                    if event.event == FINAL:
                        self.done = event.data if isinstance(event.data, dict) else {}
                    elif event.event == "approval" and self._on_approval is not None:
                        await self._answer(event)
                    yield event
                    if self.done is not None:
                        return
        except httpx.TransportError:
            pass  # a drop: the caller reconnects after the last event seen
        finally:
            if progress:
                self._delay = FIRST_DELAY

    def _is_new(self, event: Event) -> bool:
        if event.id is not None:
            if self.last_event_id is not None and event.id <= self.last_event_id:
                return False
            self.last_event_id = event.id
            return True
        if event.event == "dropped" and isinstance(event.data, dict):
            first = int(event.data.get("first_id", 0))
            if first in self._dropped_seen:
                return False
            self._dropped_seen.add(first)
        return True

    async def _reconnect(self) -> httpx.Response:
        """Connect to the run's events after the last one seen, retrying with backoff."""
        http = self._client.http
        # Patience counts from the last byte that came, so a connection that is cut
        # again and again before bringing any cannot keep the client waiting for ever.
        deadline = self._progress_at + self._client.reconnect_timeout
        headers = {}
        if self.last_event_id is not None:
            headers["Last-Event-ID"] = str(self.last_event_id)
        path = f"/chat/{quote(self._id(), safe='').replace('.', '%2E')}/events"
        request = http.build_request("GET", path, headers=headers)
        failure = "no answer"
        while True:
            if self._delay > FIRST_DELAY or failure != "no answer":
                if anyio.current_time() + self._delay > deadline:
                    raise ConnectionLost(f"GET {path}: {failure}")
                await anyio.sleep(self._delay)
            # The next connect waits longer unless this one brings an event (see _read).
            self._delay = min(self._delay * 2, MAX_DELAY)
            try:
                response = await http.send(request, stream=True)
            except httpx.TransportError as error:
                failure = repr(error)
                continue
            if response.status_code == 200:
                return response
            await response.aread()
            await response.aclose()
            if response.status_code not in TRANSIENT:
                raise api_error(response)
            failure = f"{response.status_code} {response.reason_phrase}"

    async def _answer(self, event: Event) -> None:
        """Answer one approval through ``on_approval``, riding out a dropped connection.

        A replay (``follow``, or a reattach) brings approvals answered long ago:
        only one still pending is put to the callback.
        """
        if self._on_approval is None or event.data.get("refused") is not None:
            return  # refused by the gateway already: nobody may answer it
        approval_id = str(event.data["approval_id"])
        patience = self._client.reconnect_timeout
        pending = await self._patiently(patience, self._client.approvals, self._id())
        if not any(entry.get("approval_id") == approval_id for entry in pending):
            return
        body = await decide(self._on_approval, event.data)
        try:
            await self._patiently(
                patience, self._client.approve_body, self._id(), approval_id, body
            )
        except ApiError as error:
            # Answered first by someone else or by its timeout, or gone with its turn.
            if error.code not in ("approval_answered", "approval_not_found"):
                raise

    @staticmethod
    async def _patiently(
        patience: float, call: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Await ``call(*args)``, retrying with backoff while the server cannot be reached.

        Gives up with :class:`ConnectionLost` after ``patience`` seconds.
        """
        delay, deadline = FIRST_DELAY, anyio.current_time() + patience
        while True:
            try:
                return await call(*args, **kwargs)
            except ConnectionLost:
                if anyio.current_time() + delay > deadline:
                    raise
            await anyio.sleep(delay)
            delay = min(delay * 2, MAX_DELAY)

    async def _leave(self) -> None:
        with anyio.move_on_after(self._client.cancel_timeout, shield=True):
            if self._events is not None:
                await self._events.aclose()
            if self._response is not None:
                await self._response.aclose()
                self._response = None
            if self._owned and self.done is None and self.process_id is not None:
                await self._cancel_until_answered()

    async def _cancel_until_answered(self) -> None:
        try:
            # Retried while the server cannot be reached, for as long as _leave's scope lets.
            answer = await self._patiently(math.inf, self._client.cancel, self._id())
        except ClientError:
            return  # gone already (404), or refused: nothing left to cancel
        self.done = {"process_id": self.process_id, "status": answer.get("status")}
