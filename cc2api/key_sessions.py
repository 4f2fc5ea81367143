"""Which sessions a key's run may use: only those of its own runs."""

from __future__ import annotations

from pathlib import Path

import trio

from .codes import ErrorCode
from .errors import NotFound, SessionExists
from .models import ChatRequest
from .session_index import require_resumable
from .store import MAX_PAGE, RunQuery, Store

__all__ = ["own_session"]


async def own_session(store: Store, config: Path, chat: ChatRequest, key_id: str) -> ChatRequest:
    """Return ``chat`` resuming only a session of the key's own runs.

    Another key's session answers as one that does not exist. ``continue_conversation``
    becomes a resume of the newest session of the key's own runs in exactly this
    folder (none: a new conversation), never the folder's newest, which may be
    another key's. A ``new_session_id`` that exists already is refused.

    Raises:
        NotFound: ``unknown_session``: none of the key's runs used ``session_id``.
        SessionExists: ``new_session_id`` names a session the CLI keeps.

    Cancellation: the lookups stop; nothing has changed.
    """
    new = chat.new_session_id
    if new is not None:
        # A key's new session must be new: it would otherwise write into another's.
        try:
            await trio.to_thread.run_sync(require_resumable, config, chat.cwd, new)
        except NotFound:
            pass
        else:
            raise SessionExists(f"session {new} exists already: new_session_id names a new one")
    if chat.session_id is not None:
        runs = await store.session_runs([chat.session_id], key_id)
        if not runs.get(chat.session_id):
            raise NotFound(
                f"no session {chat.session_id} to resume", code=ErrorCode.UNKNOWN_SESSION
            )
        return chat
    if chat.continue_conversation:
        page = await store.list_runs(
            RunQuery(cwd_prefix=chat.cwd, api_key_id=key_id, limit=MAX_PAGE)
        )
        latest = next(
            (r.session_id for r in page.records if r.cwd == chat.cwd and r.session_id), None
        )
        update: dict[str, object] = {"continue_conversation": False}
        if latest is not None:
            update["session_id"] = latest
        else:  # a new conversation: nothing to fork
            update["fork_session"] = False
        return chat.model_copy(update=update)
    return chat
