"""The asynchronous client: every route of the gateway, under trio or asyncio alike."""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx

from .approvals import ApprovalHandler
from .config import resolve
from .events import FINAL, Event
from .http import call
from .run import AsyncRun


def _q(identifier: str) -> str:
    # An id goes into a path as one segment, its dots too: "../admin/keys" must not
    # reach another route (the ids the gateway makes are UUIDs, so nothing real changes).
    return quote(identifier, safe="").replace(".", "%2E")


class AsyncClient:
    """A client of one gateway: ``async with AsyncClient() as client: ...``.

    Configuration comes from the arguments, else ``CC2API_URL`` (default
    ``http://127.0.0.1:9876``), ``CC2API_KEY`` (sent as Bearer), or ``CC2API_USER``
    and ``CC2API_PASSWORD`` (Basic). Every method raises :class:`ApiError` for an
    answer that is not 2xx and :class:`ConnectionLost` when the server cannot be
    reached; cancelling one abandons its request unless it says otherwise.
    ``reconnect_timeout`` is how long a stream tries to reattach without hearing
    from the server; ``cancel_timeout`` how long leaving a run early waits for the
    gateway to say its processes are gone.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        key: str | None = None,
        user: str | None = None,
        password: str | None = None,
        timeout: float = 60.0,
        reconnect_timeout: float = 120.0,
        cancel_timeout: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        config = resolve(url, key=key, user=user, password=password, environ=environ)
        self.url = config.url
        self.timeout = timeout
        self.reconnect_timeout = reconnect_timeout
        self.cancel_timeout = cancel_timeout
        # The gateway pings a quiet stream every 15 s: a read that waits longer than
        # ``timeout`` means the connection is dead, and a stream reattaches.
        self.http = httpx.AsyncClient(
            base_url=config.url, auth=config.auth, timeout=timeout, transport=transport
        )

    async def __aenter__(self) -> AsyncClient:
        await self.http.__aenter__()
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        await self.http.__aexit__(kind, error, trace)

    async def aclose(self) -> None:
        """Close the connections."""
        await self.http.aclose()

    # -- runs

    def chat(
        self,
        prompt: str,
        *,
        cwd: str | None = None,
        on_approval: ApprovalHandler | None = None,
        **options: Any,
    ) -> AsyncRun:
        """Return a run to start with ``async with``; ``options`` are further POST /chat fields.

        The run is started with ``detach: true`` and followed, so a dropped
        connection loses nothing; leaving the block early cancels it.
        ``on_approval`` (with ``approval="http"``), plain or async, is asked about
        each pending tool call and returns True/False, "allow"/"deny", or an
        ``ApprovalAnswer``.
        """
        body = {"prompt": prompt, **({"cwd": cwd} if cwd is not None else {}), **options}
        body["detach"] = True
        body.pop("stream", None)
        return AsyncRun(self, start=body, on_approval=on_approval)

    def follow(
        self,
        process_id: str,
        *,
        after: int | None = None,
        on_approval: ApprovalHandler | None = None,
    ) -> AsyncRun:
        """Return a run to follow with ``async with``: its events after ``after`` (None: all).

        Leaving the block early leaves the run running: this client did not start it.
        """
        return AsyncRun(self, process_id=process_id, after=after, on_approval=on_approval)

    async def start(self, prompt: str, *, cwd: str | None = None, **options: Any) -> str:
        """Start a detached run and return its process id at once, without following it.

        Shielded until the id is known (see :meth:`AsyncRun.__aenter__`).
        """
        body = self.chat(prompt, cwd=cwd, **options).body
        async with AsyncRun(self, start=body, leave_running=True) as run:
            return run._id()

    async def events(self, process_id: str) -> list[Event]:
        """Return the run's events so far, without waiting for more."""
        newest = (await self.run(process_id))["last_event_id"]
        events: list[Event] = []
        if not newest:
            return events
        async with self.follow(process_id) as run:
            async for event in run:
                events.append(event)
                if event.event == FINAL or (event.id is not None and event.id >= newest):
                    break
        return events

    async def cancel(self, process_id: str) -> dict[str, Any]:
        """DELETE the run; answers once its processes are gone: ``{"process_id", "status"}``."""
        answer: dict[str, Any] = await call(self.http, "DELETE", f"/chat/{_q(process_id)}")
        return answer

    async def interrupt(self, process_id: str) -> dict[str, Any]:
        """Interrupt the run's turn; answers once the run has ended."""
        answer: dict[str, Any] = await call(self.http, "POST", f"/chat/{_q(process_id)}/interrupt")
        return answer

    async def send(self, process_id: str, prompt: str) -> dict[str, Any]:
        """Send a follow-up message into a live run: ``{"process_id", "ahead"}``."""
        path = f"/chat/{_q(process_id)}/messages"
        answer: dict[str, Any] = await call(self.http, "POST", path, body={"prompt": prompt})
        return answer

    async def approvals(self, process_id: str) -> list[dict[str, Any]]:
        """Return the run's pending approvals, oldest first."""
        answer = await call(self.http, "GET", f"/chat/{_q(process_id)}/approvals")
        pending: list[dict[str, Any]] = answer["approvals"]
        return pending

    async def approve(
        self,
        process_id: str,
        approval_id: str,
        *,
        allow: bool,
        message: str | None = None,
        updated_input: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Answer one approval: allow (optionally with ``updated_input``) or deny (``message``)."""
        body: dict[str, Any] = {"behavior": "allow" if allow else "deny"}
        if message is not None:
            body["message"] = message
        if updated_input is not None:
            body["updated_input"] = updated_input
        return await self.approve_body(process_id, approval_id, body)

    async def approve_body(
        self, process_id: str, approval_id: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        """Answer one approval with a body as the route takes it."""
        path = f"/chat/{_q(process_id)}/approvals/{_q(approval_id)}"
        answer: dict[str, Any] = await call(self.http, "POST", path, body=body)
        return answer

    # -- listings

    async def health(self) -> dict[str, Any]:
        """Return ``GET /health``."""
        answer: dict[str, Any] = await call(self.http, "GET", "/health")
        return answer

    async def processes(self, **filters: Any) -> list[dict[str, Any]]:
        """Return the live runs and the finished detached ones still kept."""
        answer = await call(self.http, "GET", "/processes", params=filters)
        listed: list[dict[str, Any]] = answer["processes"]
        return listed

    async def runs(self, **filters: Any) -> dict[str, Any]:
        """Return one page of the history (``status``, ``since``, ``limit``, ``cursor``, ...)."""
        answer: dict[str, Any] = await call(self.http, "GET", "/runs", params=filters)
        return answer

    async def run(self, process_id: str) -> dict[str, Any]:
        """Return one run's record."""
        answer: dict[str, Any] = await call(self.http, "GET", f"/runs/{_q(process_id)}")
        return answer

    async def sessions(self, **filters: Any) -> dict[str, Any]:
        """Return one page of sessions (``cwd``, ``since``, ``limit``, ``cursor``)."""
        answer: dict[str, Any] = await call(self.http, "GET", "/sessions", params=filters)
        return answer

    async def session(self, session_id: str, **params: Any) -> dict[str, Any]:
        """Return a session and a page of its transcript (``limit``, ``cursor``)."""
        path = f"/sessions/{_q(session_id)}"
        answer: dict[str, Any] = await call(self.http, "GET", path, params=params)
        return answer

    async def delete_session(self, session_id: str) -> dict[str, Any]:
        """Delete a session's transcript and files."""
        answer: dict[str, Any] = await call(self.http, "DELETE", f"/sessions/{_q(session_id)}")
        return answer

    async def usage(self, **filters: Any) -> dict[str, Any]:
        """Return ``GET /usage`` (``since``, ``until``, ``group_by``, ``key``)."""
        answer: dict[str, Any] = await call(self.http, "GET", "/usage", params=filters)
        return answer
