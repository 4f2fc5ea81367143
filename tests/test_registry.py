"""The registry without HTTP: runs nobody reads are not left running."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import trio

from cc2api.eventlog import Reader
from cc2api.launch import plan_launch
from cc2api.limits import RunLimits
from cc2api.models import ChatRequest
from cc2api.policy import Plan, Policy
from cc2api.registry import Registry
from cc2api.routes import abandoned as _abandoned
from cc2api.runner import Run
from cc2api.store import InMemoryStore, RunRecord, Store
from cc2api.wire import Status

from .helpers import FAKE_CLAUDE, exists, make_settings, wait_until

pytestmark = pytest.mark.timeout(30)


def full(request: ChatRequest) -> Plan:
    """The plan a permissive gateway makes for ``request``."""
    return Policy(make_settings(), {}, euid=1000).plan(request)


@asynccontextmanager
async def registry_serving(
    environ: dict[str, str],
    *,
    reader_timeout: float = 10.0,
    store: Store | None = None,
    **settings: Any,
) -> AsyncIterator[Registry]:
    """A registry with its nursery open for the block; cancelled (runs torn down) after."""
    made = make_settings(**settings)
    limits = replace(RunLimits.from_settings(made), reader_timeout=reader_timeout)
    registry = Registry(made, environ, limits=limits, store=store)
    async with trio.open_nursery() as nursery:
        await nursery.start(registry.serve)
        try:
            yield registry
        finally:
            nursery.cancel_scope.cancel()


async def drain(reader: Reader) -> bytes:
    """Return every frame left for ``reader``, to the end of the run."""
    frames = b""
    while (chunk := await reader.receive(60)) != b"":
        frames += chunk or b""
    return frames


def start_request(registry: Registry, request: ChatRequest) -> Run:
    """Start a run of the fake CLI for ``request``, with full access."""
    plan = full(request)
    launch = plan_launch(
        run_id=str(uuid.uuid4()),
        claude=FAKE_CLAUDE,
        request=request,
        plan=plan,
        environ=registry.environ,
        confine=registry.confine,
    )
    return registry.start(request, plan, launch)


def start(registry: Registry, prompt: str, cwd: Path) -> Run:
    """Start a run of the fake CLI with full access."""
    request = ChatRequest.model_validate({"prompt": prompt, "cwd": str(cwd)})
    return start_request(registry, request)


async def test_run_nobody_reads_is_cancelled(fake_environ: dict[str, str], workdir: Path) -> None:
    """A run whose stream no reader takes (the client left early) is cancelled after a while."""
    async with registry_serving(
        fake_environ, reader_timeout=0.5, kill_grace_seconds=1.0
    ) as registry:
        run = start(registry, "hang", workdir)
        await wait_until(lambda: run.pid is not None, timeout=5)
        pid = run.pid
        assert pid is not None
        with trio.fail_after(10):
            await run.finished.wait()
        assert run.status is Status.CANCELLED
        assert not exists(pid)
        assert registry.runs() == []


async def test_run_with_a_reader_is_not_cancelled(
    fake_environ: dict[str, str], workdir: Path
) -> None:
    """A run whose stream is being read is left alone past the reader timeout."""
    async with registry_serving(fake_environ, reader_timeout=0.2) as registry:
        run = start(registry, "hang", workdir)
        events = run.attach_reader()
        run.stream_started()
        await events.receive(60)  # the process event
        await trio.sleep(0.6)
        assert run.status is Status.RUNNING
        run.cancel()
        await drain(events)
        assert run.describe().status == "cancelled"


async def test_cancel_after_the_end_keeps_the_final_status(
    fake_environ: dict[str, str], workdir: Path
) -> None:
    """Cancelling a run that has already completed does not change its status."""
    async with registry_serving(fake_environ) as registry:
        run = start(registry, "echo", workdir)
        await drain(run.attach_reader())
        await run.finished.wait()
        run.cancel()
        assert run.status is Status.COMPLETED


async def test_registry_cancelled_ends_runs_as_cancelled(
    fake_environ: dict[str, str], workdir: Path
) -> None:
    """Cancelling the registry's nursery (a hard shutdown) ends runs as cancelled, trees gone."""
    registry = Registry(make_settings(kill_grace_seconds=1.0), fake_environ)
    request = ChatRequest.model_validate({"prompt": "escape", "cwd": str(workdir)})
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            await nursery.start(registry.serve)
            run = start_request(registry, request)
            events = run.attach_reader()
            frames = b""
            while b"child_pid" not in frames:
                frames += await events.receive(60) or b""
            nursery.cancel_scope.cancel()
        rest = await drain(events)
    child = int(frames.split(b'"child_pid":')[1].split(b"}")[0])
    assert run.status is Status.CANCELLED
    assert b'"status":"cancelled"' in rest
    assert b"event: error" not in rest
    assert not exists(child)


async def test_cancel_does_not_wait_for_a_stalled_reader(
    fake_environ: dict[str, str], workdir: Path
) -> None:
    """Cancel returns as soon as the processes are gone even if the reader has stalled."""
    async with registry_serving(fake_environ, kill_grace_seconds=1.0) as registry:
        run = start(registry, "lines 50 100000", workdir)
        events = run.attach_reader()  # taken, then never read: the CLI blocks on stdout
        await wait_until(lambda: run.pid is not None, timeout=5)
        await trio.sleep(0.5)
        assert run.status is Status.RUNNING  # 5 MB: more than a pipe and a read hold
        with trio.fail_after(1.0):
            await registry.cancel(run.run_id)
        received = await drain(events)
        assert received.startswith(b"id: 1\nevent: process")
        assert b'"status":"cancelled"' in received


async def test_cancel_from_another_thread_via_the_finalizer(
    fake_environ: dict[str, str], workdir: Path
) -> None:
    """The dropped-body finalizer cancels the run even when a worker thread runs it."""
    async with registry_serving(fake_environ, kill_grace_seconds=1.0) as registry:
        run = start(registry, "hang", workdir)
        reader = run.attach_reader()
        await wait_until(lambda: run.pid is not None, timeout=5)
        token = trio.lowlevel.current_trio_token()
        await trio.to_thread.run_sync(_abandoned, token, reader, run.stream_closed)
        with trio.fail_after(5):
            await run.finished.wait()
        assert run.status is Status.CANCELLED


async def test_cancel_during_a_natural_teardown_says_cancelled(
    fake_environ: dict[str, str], workdir: Path
) -> None:
    """A cancel that arrives while a finished CLI's leftovers are torn down reports cancelled."""
    async with registry_serving(fake_environ, kill_grace_seconds=1.0) as registry:
        run = start(registry, "stubborn-leftover", workdir)
        events = run.attach_reader()
        frames = b""
        while b'"type":"result"' not in frames:
            frames += await events.receive(60) or b""
        await trio.sleep(0.3)  # the CLI has exited; its stubborn leftover holds the teardown
        with trio.fail_after(5):
            cancelled = await registry.cancel(run.run_id)
        assert cancelled.status is Status.CANCELLED
        assert b'"status":"cancelled"' in await drain(events)


class FailingStore(InMemoryStore):
    """An in-memory store whose saves fail from the ``fail_from``-th on: a store that broke."""

    def __init__(self, fail_from: int) -> None:
        super().__init__()
        self.saves = 0
        self.fail_from = fail_from

    def save_run(self, record: RunRecord) -> None:
        """Save, or fail as a broken store would."""
        self.saves += 1
        if self.saves >= self.fail_from:
            raise OSError("the store is broken")
        super().save_run(record)


async def test_a_failed_start_gives_back_the_slot_and_the_session(
    fake_environ: dict[str, str], workdir: Path
) -> None:
    """A run the store cannot record at its start is not kept: its slot and session are free."""
    session = str(uuid.uuid4())
    body = {"prompt": "echo hi", "cwd": str(workdir), "new_session_id": session}
    request = ChatRequest.model_validate(body)
    async with registry_serving(fake_environ, store=FailingStore(1)) as registry:
        with pytest.raises(OSError, match="broken"):
            start_request(registry, request)
        assert registry.runs() == []
        assert registry.slots.running == 0
        assert registry.store.holder(session) is None


async def test_a_run_whose_end_cannot_be_recorded_still_ends(
    fake_environ: dict[str, str], workdir: Path
) -> None:
    """A store that fails while a run goes costs the record only: the run completes."""
    async with registry_serving(fake_environ, store=FailingStore(2)) as registry:
        run = start(registry, "echo hi", workdir)
        events = run.attach_reader()
        run.stream_started()
        with trio.fail_after(20):
            frames = await drain(events)
            await run.finished.wait()
        assert b"event: done" in frames
        assert run.status is Status.COMPLETED
        assert registry.slots.running == 0
