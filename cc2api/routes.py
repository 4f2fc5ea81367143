"""The API's routes, over the :class:`~cc2api.gateway.Gateway` of the app serving them."""

from __future__ import annotations

import contextlib
import json
import sys
import weakref
from collections.abc import Callable
from functools import partial
from typing import Any

import trio
from quart import Blueprint, Response, request

from . import query
from .bodies import last_event_id, parse_body, parse_chat_request, raw_body, run_id_of
from .errors import NotFound
from .gateway import current_gateway
from .hooks import json_response
from .jsonbody import off_loop
from .key_filter import key_filter
from .models import ApprovalAnswer, FollowUp
from .principal import current_principal
from .recovery import lost_done
from .replay import Frames, Live, Replay
from .runner import Run
from .sse import Source, frame_json, stream
from .wire import (
    ApprovalAnswered,
    Approvals,
    Cancelled,
    Document,
    ErrorCode,
    FollowUpAccepted,
    Interrupted,
    Processes,
    Status,
    as_final,
)

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
routes = Blueprint("gateway", __name__)


@routes.get("/health")
async def health() -> Response:
    """Say whether runs can start, and how many there are."""
    return json_response(current_gateway().health())


@routes.post("/chat")
async def chat() -> Response:
    """Start a run: its events as SSE, or (``stream: false``) one document at its end."""
    gateway = current_gateway()
    chat_request = await off_loop(parse_chat_request, await raw_body(), gateway.parsers)
    run = await gateway.start_run(chat_request, current_principal())
    if not chat_request.stream:
        return await _document(run)
    return _event_stream(run.run_id, run.attach_reader(), run.stream_closed, run.stream_started)


@routes.delete("/chat/<process_id>")
async def cancel(process_id: str) -> Response:
    """Cancel a run; answered once its processes are gone."""
    run = await current_gateway().registry.cancel(run_id_of(process_id), current_principal())
    return json_response(Cancelled(process_id=run.run_id, status=as_final(run.status)).wire())


@routes.get("/chat/<process_id>/events")
async def events(process_id: str) -> Response:
    """Replay a run's events after Last-Event-ID (from the store, then memory), then follow it."""
    registry, viewer = current_gateway().registry, current_principal()
    run_id = run_id_of(process_id)
    run = registry.find(run_id, viewer)
    if run is not None:
        after = last_event_id(run.last_event_id)
        live = Live(lambda: run.first_kept, run.replay)
        return _event_stream(run_id, Replay(registry.store, run_id, after, live), lambda: None)
    record = None if registry.find(run_id) else await registry.store.get_run(run_id)
    if record is None or not viewer.owns(record.api_key_id):
        raise NotFound(f"no process {run_id}", code=ErrorCode.PROCESS_NOT_FOUND)
    if record.status == Status.LOST:
        # Its gateway may have sent events the store never got: a client that saw them
        # is past the stored end. It gets `done`, without an id (its own id stays).
        after = last_event_id(sys.maxsize)
        if after >= record.last_event_id and record.ended_at is not None:
            done = lost_done(record, record.ended_at)
            frames = frame_json(None, done.event, done.wire())
            return _event_stream(run_id, Frames(frames), lambda: None)
    else:
        after = last_event_id(record.last_event_id)
    return _event_stream(run_id, Replay(registry.store, run_id, after, None), lambda: None)


@routes.post("/chat/<process_id>/interrupt")
async def interrupt(process_id: str) -> Response:
    """Stop the run's current turn; answered once the run has ended."""
    run = current_gateway().registry.get(run_id_of(process_id), current_principal())
    await raw_body()  # whatever was sent is ignored, but read: the connection stays usable
    await run.interrupt()
    body = Interrupted(
        process_id=run.run_id, status=as_final(run.status), forced=run.interrupt_forced
    )
    return json_response(body.wire())


@routes.post("/chat/<process_id>/messages")
async def follow_up(process_id: str) -> Response:
    """Queue a follow-up user message for a live run."""
    gateway = current_gateway()
    run = gateway.registry.get(run_id_of(process_id), current_principal())
    message = await off_loop(partial(parse_body, model=FollowUp), await raw_body(), gateway.parsers)
    ahead = run.follow_up(message.prompt)
    return json_response(FollowUpAccepted(process_id=run.run_id, ahead=ahead).wire(), 202)


@routes.get("/chat/<process_id>/approvals")
async def approvals(process_id: str) -> Response:
    """List the run's approvals waiting for an answer."""
    pending = current_gateway().registry.get(run_id_of(process_id), current_principal()).approvals()
    return json_response(Approvals(approvals=pending, count=len(pending)).wire())


@routes.post("/chat/<process_id>/approvals/<approval_id>")
async def answer(process_id: str, approval_id: str) -> Response:
    """Answer one of the run's approvals."""
    gateway = current_gateway()
    run = gateway.registry.get(run_id_of(process_id), current_principal())
    reply = await off_loop(
        partial(parse_body, model=ApprovalAnswer), await raw_body(), gateway.parsers
    )
    approval = run.answer(approval_id, reply.behavior, reply.updated_input, reply.message)
    answered = ApprovalAnswered(approval_id=approval.approval_id, answer=reply.behavior)
    return json_response(answered.wire())


@routes.get("/processes")
async def processes() -> Response:
    """List the live runs and the finished detached ones, oldest first (the caller's own)."""
    gateway = current_gateway()
    query.only(request.args, ("key",))
    key_id = key_filter(gateway, request.args)
    runs = [run.describe() for run in gateway.registry.runs(current_principal(), key_id)]
    return json_response(Processes(processes=runs, count=len(runs)).wire())


def _event_stream(
    run_id: str,
    reader: Source,
    on_close: Callable[[], None],
    on_start: Callable[[], None] | None = None,
) -> Response:
    gateway = current_gateway()
    body = stream(
        reader, gateway.settings.heartbeat_seconds, on_close, on_start, gateway.metrics.sse_sent
    )
    # A client that hangs up before Quart starts the body drops it unstarted,
    # and its cleanup never runs: do it the moment the body is dropped.
    token = trio.lowlevel.current_trio_token()
    weakref.finalize(body, abandoned, token, reader, on_close).atexit = False
    response = Response(
        body, mimetype="text/event-stream", headers={"X-Process-ID": run_id, **SSE_HEADERS}
    )
    response.timeout = None  # Quart would cut the stream after RESPONSE_TIMEOUT
    return response


async def _document(run: Run) -> Response:
    try:
        await run.finished.wait()
    finally:
        run.stream_closed()  # the client hung up (or the run is over: no-op)
    # Parsing up to 64 MiB of lines is no work for the event loop; answered, the
    # document need not be kept with the run.
    body, status = await trio.to_thread.run_sync(run_document, run, run.take_document())
    return json_response(body, status, headers={"X-Process-ID": run.run_id})


def abandoned(token: trio.lowlevel.TrioToken, reader: Source, on_close: Callable[[], None]) -> None:
    """Close a stream whose body was dropped unstarted, in the run's own event loop.

    Called by the garbage collector, in whatever thread dropped the body, maybe
    after the trio run is over (which had ended the run already).
    """
    with contextlib.suppress(trio.RunFinishedError):
        token.run_sync_soon(reader.close)
        token.run_sync_soon(on_close)


# The HTTP status of a stream: false answer, by how the run ended.
_DOCUMENT_STATUS = {
    Status.COMPLETED: 200,
    Status.INTERRUPTED: 200,
    Status.FAILED: 502,
    Status.TIMEOUT: 504,
    Status.CANCELLED: 409,
}  # lost is never answered: a document's run ends in this gateway


def run_document(run: Run, lines: list[bytes]) -> tuple[dict[str, Any], int]:
    """Return the ``stream: false`` answer for a finished run, and its HTTP status."""
    state = run.state
    failure: dict[str, Any] = {}
    if state.error is not None:
        failure = {"detail": state.error.message, "code": state.error.code, "error": state.error}
    elif state.status is Status.CANCELLED:
        failure = {"detail": "the run was cancelled", "code": ErrorCode.CANCELLED}
    # Built unchecked, and the messages added after: they may be 64 MiB, the CLI's
    # own, and a model would only copy them.
    document = Document.model_construct(
        process_id=run.run_id,
        session_id=state.session_id,
        status=state.status,
        exit_code=state.exit_code,
        result=state.result,
        messages=[],
        **failure,
    ).wire()
    document["messages"] = [_parsed(line) for line in lines]
    return document, _DOCUMENT_STATUS.get(state.status, 500)


def _parsed(line: bytes) -> Any:
    try:
        return json.loads(line)
    except (ValueError, RecursionError):
        return line.decode("utf-8", "replace")  # not JSON: passed on as text
