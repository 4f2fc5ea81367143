"""The blocking client: the asynchronous one, run on an event loop in a thread of its own.

One implementation serves both, so the blocking client reattaches, deduplicates
and cancels exactly as the asynchronous one does.
"""

from __future__ import annotations

import functools
import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import AbstractContextManager, ExitStack
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

from anyio.from_thread import BlockingPortal, start_blocking_portal

from .approvals import ApprovalHandler
from .async_client import AsyncClient
from .events import Event
from .run import AsyncRun

P = ParamSpec("P")
T = TypeVar("T")
_END = object()


class Client:
    """A blocking client of one gateway: ``with Client() as client: ...``.

    It takes the arguments of :class:`AsyncClient` and has its methods, which
    block instead; :meth:`chat` and :meth:`follow` return a :class:`Run`.
    """

    def __init__(self, url: str | None = None, **options: Any) -> None:
        self._arguments = (url, options)
        self._stack = ExitStack()
        self._portal: BlockingPortal | None = None
        self._client: AsyncClient | None = None
        self._runs: set[Run] = set()

    def __enter__(self) -> Client:
        url, options = self._arguments
        client = AsyncClient(url, **options)
        try:
            self._portal = self._stack.enter_context(start_blocking_portal())
            self._client = self._stack.enter_context(
                self._portal.wrap_async_context_manager(client)
            )
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        # Runs still followed are left first (cancelling the ones they started), while
        # the connections they need are open.
        for run in list(self._runs):
            run.__exit__(None, None, None)
        self._stack.__exit__(kind, error, trace)
        self._portal = self._client = None

    def close(self) -> None:
        """Close the connections and stop the client's thread."""
        self.__exit__(None, None, None)

    def _call(self, method: Callable[P, Any], *args: P.args, **kwargs: P.kwargs) -> Any:
        return self._ready().call(functools.partial(method, *args, **kwargs))

    def _ready(self) -> BlockingPortal:
        if self._portal is None:
            raise RuntimeError("use the client in a `with Client() as client:` block")
        return self._portal

    @property
    def aio(self) -> AsyncClient:
        """The asynchronous client underneath."""
        if self._client is None:
            raise RuntimeError("use the client in a `with Client() as client:` block")
        return self._client

    def chat(
        self,
        prompt: str,
        *,
        cwd: str | None = None,
        on_approval: ApprovalHandler | None = None,
        **options: Any,
    ) -> Run:
        """Return a run to start with ``with``; see :meth:`AsyncClient.chat`."""
        run = self.aio.chat(prompt, cwd=cwd, on_approval=on_approval, **options)
        return Run(self._ready(), run, self._runs)

    def follow(
        self,
        process_id: str,
        *,
        after: int | None = None,
        on_approval: ApprovalHandler | None = None,
    ) -> Run:
        """Return a run to follow with ``with``; see :meth:`AsyncClient.follow`."""
        run = self.aio.follow(process_id, after=after, on_approval=on_approval)
        return Run(self._ready(), run, self._runs)

    def start(self, prompt: str, *, cwd: str | None = None, **options: Any) -> str:
        """Start a detached run and return its process id."""
        process_id: str = self._call(self.aio.start, prompt, cwd=cwd, **options)
        return process_id

    def events(self, process_id: str) -> list[Event]:
        """Return the run's events so far."""
        found: list[Event] = self._call(self.aio.events, process_id)
        return found

    def cancel(self, process_id: str) -> dict[str, Any]:
        """DELETE the run; returns once its processes are gone."""
        return dict(self._call(self.aio.cancel, process_id))

    def interrupt(self, process_id: str) -> dict[str, Any]:
        """Interrupt the run's turn; returns once the run has ended."""
        return dict(self._call(self.aio.interrupt, process_id))

    def send(self, process_id: str, prompt: str) -> dict[str, Any]:
        """Send a follow-up message into a live run."""
        return dict(self._call(self.aio.send, process_id, prompt))

    def approvals(self, process_id: str) -> list[dict[str, Any]]:
        """Return the run's pending approvals."""
        return list(self._call(self.aio.approvals, process_id))

    def approve(
        self,
        process_id: str,
        approval_id: str,
        *,
        allow: bool,
        message: str | None = None,
        updated_input: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Answer one approval."""
        return dict(
            self._call(
                self.aio.approve,
                process_id,
                approval_id,
                allow=allow,
                message=message,
                updated_input=updated_input,
            )
        )

    def health(self) -> dict[str, Any]:
        """Return ``GET /health``."""
        return dict(self._call(self.aio.health))

    def processes(self, **filters: Any) -> list[dict[str, Any]]:
        """Return the live runs and the finished detached ones still kept."""
        return list(self._call(self.aio.processes, **filters))

    def runs(self, **filters: Any) -> dict[str, Any]:
        """Return one page of the history."""
        return dict(self._call(self.aio.runs, **filters))

    def run(self, process_id: str) -> dict[str, Any]:
        """Return one run's record."""
        return dict(self._call(self.aio.run, process_id))

    def sessions(self, **filters: Any) -> dict[str, Any]:
        """Return one page of sessions."""
        return dict(self._call(self.aio.sessions, **filters))

    def session(self, session_id: str, **params: Any) -> dict[str, Any]:
        """Return a session and a page of its transcript."""
        return dict(self._call(self.aio.session, session_id, **params))

    def delete_session(self, session_id: str) -> dict[str, Any]:
        """Delete a session."""
        return dict(self._call(self.aio.delete_session, session_id))

    def usage(self, **filters: Any) -> dict[str, Any]:
        """Return ``GET /usage``."""
        return dict(self._call(self.aio.usage, **filters))


class Run(AbstractContextManager["Run"]):
    """A run followed from blocking code: ``with client.chat(...) as run: for event in run``.

    A task on the client's loop takes the events and hands them over through a
    queue, so the calling thread can be interrupted (Ctrl-C) at any time; leaving
    the block before ``done`` then cancels the task, which cancels a run it
    started and returns once its processes are gone.
    """

    def __init__(self, portal: BlockingPortal, run: AsyncRun, client_runs: set[Run]) -> None:
        self._portal = portal
        self._run = run
        self._client_runs = client_runs  # its client's runs still followed
        self._events: queue.Queue[Any] = queue.Queue()
        self._task: Future[None] | None = None
        self._started = threading.Event()
        self._finished = threading.Event()
        self._ended: object = None  # _END, or the error the run ended with, once taken

    @property
    def process_id(self) -> str | None:
        """The run's process id, known once the block is entered."""
        return self._run.process_id

    @property
    def done(self) -> dict[str, Any] | None:
        """The ``done`` event's data, once it has come."""
        return self._run.done

    @property
    def status(self) -> str | None:
        """The run's final status, once it has one."""
        return self._run.status

    @property
    def last_event_id(self) -> int | None:
        """The id of the newest event seen."""
        return self._run.last_event_id

    def __enter__(self) -> Run:
        """Start (or connect to) the run; returns once it is under way.

        Interrupted meanwhile (Ctrl-C), it cancels a run it started, waits until the
        gateway says its processes are gone, and re-raises.
        """
        self._task = self._portal.start_task_soon(self._pump)
        self._client_runs.add(self)
        try:
            while not (self._started.wait(0.1) or self._finished.is_set()):
                pass
        except BaseException:
            self.__exit__(None, None, None)
            raise
        if not self._started.is_set():
            self._client_runs.discard(self)
            self._task.result()  # raises what the start raised
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
        # The task's own exit cancels the run (bounded); wait for it to say so.
        while not self._finished.wait(0.1):
            pass
        self._client_runs.discard(self)

    def __iter__(self) -> Iterator[Event]:
        while self._ended is None:
            item = self._events.get()
            if item is _END or isinstance(item, BaseException):
                self._ended = item
                break
            yield item
        if isinstance(self._ended, BaseException):
            raise self._ended

    def wait(self) -> dict[str, Any]:
        """Take every event to the end and return the ``done`` event's data."""
        for _ in self:
            pass
        return self._run.done or {}

    def cancel(self) -> dict[str, Any]:
        """DELETE the run; returns once its processes are gone."""
        return dict(self._portal.call(self._run.cancel))

    def interrupt(self) -> dict[str, Any]:
        """Interrupt the run's turn; returns once the run has ended."""
        return dict(self._portal.call(self._run.interrupt))

    def send(self, prompt: str) -> dict[str, Any]:
        """Send a follow-up message into the run."""
        return dict(self._portal.call(self._run.send, prompt))

    async def _pump(self) -> None:
        try:
            async with self._run:
                self._started.set()
                try:
                    async for event in self._run:
                        self._events.put(event)
                except Exception as error:  # handed to the reading thread
                    self._events.put(error)
                    return
                self._events.put(_END)
        finally:
            self._finished.set()
