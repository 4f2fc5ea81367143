"""The sessions API: the CLI's sessions listed, read and deleted, over :mod:`cc2api.session_index`.

The sessions are those of the CLI's configuration folder the runs use
(``Registry.real_config``). With ALLOWED_CWD_ROOTS set, only those recorded inside the
roots exist here: any other is 404, as if it did not. Every file is read in a worker
thread, a few requests at a time; the store adds which runs used each session and
which holds it now.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

import trio
from quart import Blueprint, Response, current_app, request
from quart.blueprints import BlueprintSetupState

from . import query
from .errors import NotFound
from .gateway import Gateway, current_gateway
from .hooks import json_response
from .principal import current_principal
from .session_index import (
    SessionIndex,
    SessionQuery,
    SessionSummary,
    Visible,
    decode_line_cursor,
    decode_list_cursor,
)
from .store import Store
from .wire import ErrorCode, Session, SessionDeleted, SessionMessages, Sessions

__all__ = ["session_routes"]

EXTENSION = "cc2api.sessions"
# Listings and transcript pages read files: this many at once, the rest wait.
READERS = 2
session_routes = Blueprint("sessions", __name__)


@dataclass(frozen=True)
class _Sessions:
    """What the sessions API keeps for as long as the app: summaries, and its readers' limit."""

    index: SessionIndex
    readers: trio.CapacityLimiter


@session_routes.record_once
def _setup(state: BlueprintSetupState) -> None:
    state.app.extensions[EXTENSION] = _Sessions(SessionIndex(), trio.CapacityLimiter(READERS))


def _state() -> _Sessions:
    state = current_app.extensions[EXTENSION]
    assert isinstance(state, _Sessions)  # noqa: S101 (set when the blueprint is registered)
    return state


def _visible(gateway: Gateway) -> Visible:
    """Return which recorded folders may be shown: any, or those inside ALLOWED_CWD_ROOTS."""
    if not gateway.settings.allowed_cwd_roots:
        return lambda cwd: True
    within = gateway.policy.within_roots
    return lambda cwd: cwd is not None and within(cwd)


def _session_id_of(value: str) -> str:
    """Return the session id a path names, in canonical form.

    Raises:
        NotFound: it is not a UUID, so no session has it (and it is never a path).
    """
    try:
        return str(uuid.UUID(value))
    except ValueError:
        detail = f"{value!r} is not a session id (a UUID)"
        raise NotFound(detail, code=ErrorCode.UNKNOWN_SESSION) from None


def _session(summary: SessionSummary, runs: dict[str, list[str]], store: Store) -> Session:
    return Session(
        session_id=summary.session_id,
        cwd=summary.cwd,
        created_at=summary.created_at,
        last_activity=summary.last_activity,
        message_count=summary.message_count,
        preview=summary.preview,
        runs=runs.get(summary.session_id, []),
        held_by=store.holder(summary.session_id),
    )


async def _owned(store: Store, session_id: str) -> dict[str, list[str]]:
    """Return the runs that used the session (the caller's own, for a key).

    Raises:
        NotFound: the caller is a key none of whose runs used it: another key's
            session answers as one that does not exist.
    """
    key_id = current_principal().key_id
    runs = await store.session_runs([session_id], key_id)
    if key_id is not None and not runs.get(session_id):
        raise NotFound(f"no session {session_id}", code=ErrorCode.UNKNOWN_SESSION)
    return runs


@session_routes.get("/sessions")
async def list_sessions() -> Response:
    """List the CLI's sessions, newest activity first."""
    gateway, state = current_gateway(), _state()
    args = request.args
    query.only(args, ("cwd", "since", "cursor", "limit"))
    wanted = SessionQuery(
        cwd=query.folder_of(args, "cwd"),
        since=query.moment_of(args, "since"),
        after=query.cursor_of(args, decode_list_cursor),
        limit=query.limit_of(args),
    )
    store, key_id = gateway.registry.store, current_principal().key_id
    # A key sees the sessions its own runs used, and only those runs of them.
    only = None if key_id is None else frozenset(await store.sessions_of(key_id))
    page = await trio.to_thread.run_sync(
        state.index.list_page,
        gateway.registry.real_config,
        wanted,
        _visible(gateway),
        only,
        limiter=state.readers,
    )
    runs = await store.session_runs([summary.session_id for summary in page.sessions], key_id)
    listed = [_session(summary, runs, store) for summary in page.sessions]
    body = Sessions(sessions=listed, count=len(listed), next_cursor=page.next_cursor)
    return json_response(body.wire())


@session_routes.get("/sessions/<session_id>")
async def session_messages(session_id: str) -> Response:
    """Return a session's summary and a page of its transcript, in file order."""
    gateway, state = current_gateway(), _state()
    session_id = _session_id_of(session_id)
    args = request.args
    query.only(args, ("cursor", "limit"))
    start = query.cursor_of(args, decode_line_cursor) or (0, 0)
    limit = query.limit_of(args)
    store = gateway.registry.store
    runs = await _owned(store, session_id)
    config, visible = gateway.registry.real_config, _visible(gateway)

    def page_body() -> bytes:
        page = state.index.read_page(config, session_id, visible, start=start, limit=limit)
        # Built unchecked, the lines added after: they are the CLI's, maybe megabytes,
        # and a model would only copy them.
        body: dict[str, Any] = SessionMessages.model_construct(
            session=_session(page.summary, runs, store),
            messages=[],
            count=len(page.messages),
            next_cursor=page.next_cursor,
        ).wire()
        body["messages"] = page.messages
        return json.dumps(body).encode()

    body = await trio.to_thread.run_sync(page_body, limiter=state.readers)
    return Response(body, status=200, mimetype="application/json")


@session_routes.delete("/sessions/<session_id>")
async def delete_session(session_id: str) -> Response:
    """Delete a session's transcript and its folder, unless a live run holds it."""
    gateway, state = current_gateway(), _state()
    session_id = _session_id_of(session_id)
    store = gateway.registry.store
    await _owned(store, session_id)
    # Held for the deletion, as a run holds it: a run starting meanwhile that names it
    # is refused as busy, and one holding it already refuses the deletion.
    claimant = str(uuid.uuid4())
    store.claim(claimant, [session_id], f"deleting {session_id}")  # SessionBusy: 409
    try:
        await trio.to_thread.run_sync(
            state.index.delete,
            gateway.registry.real_config,
            session_id,
            _visible(gateway),
            limiter=state.readers,
        )
    finally:
        store.release(claimant)
    return json_response(SessionDeleted(session_id=session_id, deleted=True).wire())
