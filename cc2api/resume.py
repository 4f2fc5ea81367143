"""Which session a bounded or confined run resumes, chosen by the gateway, not the CLI.

The CLI finds a session by its folder's project key, which ``/x/a-b`` and ``/x/a/b``
share, so on its own it would resume, or continue, a session recorded in a folder
outside ALLOWED_CWD_ROOTS. For runs the operator bounds (roots set) or confines, the
gateway therefore looks the session up itself: ``session_id`` must name a transcript
recorded inside the roots, and ``continue_conversation`` becomes ``--resume`` of the
newest session recorded in exactly the run's folder (none: a new conversation, as
the CLI's own --continue starts when it finds none). A confined run also needs the
transcript's place, to copy it into its private configuration folder.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from .codes import ErrorCode
from .errors import Forbidden, NotFound, SessionExists
from .models import ChatRequest
from .sessions import latest_for, recorded_cwd, transcript


def choose_session(
    request: ChatRequest, cwd: str, config: Path, within_roots: Callable[[str], bool]
) -> ChatRequest:
    """Return ``request`` with the session it resumes named by ``session_id``, checked.

    Blocking file I/O: call it from a worker thread.

    Raises:
        NotFound: ``session_id`` names no session of this folder's project.
        Forbidden: the session was recorded outside ALLOWED_CWD_ROOTS.
        SessionExists: ``new_session_id`` names a session that exists already (the CLI
            of a confined run, which sees only its own, would take it and overwrite it).
    """
    new = request.new_session_id
    if new is not None and os.path.lexists(transcript(config, cwd, new)):
        raise SessionExists(
            f"session {new} exists already in the project of {cwd}: new_session_id names "
            "a new session"
        )
    if request.session_id is not None:
        recorded = recorded_cwd(transcript(config, cwd, request.session_id))
        if recorded is None:
            raise NotFound(
                f"no session {request.session_id} of {cwd} to resume",
                code=ErrorCode.UNKNOWN_SESSION,
            )
        if not within_roots(recorded):
            raise Forbidden(
                f"session {request.session_id} was recorded in a folder outside ALLOWED_CWD_ROOTS",
                code=ErrorCode.CWD_FORBIDDEN,
            )
        return request
    if request.continue_conversation:
        latest = latest_for(config, cwd)
        update: dict[str, object] = {"session_id": latest, "continue_conversation": False}
        if latest is None:
            update["fork_session"] = False  # nothing to fork: a new session anyway
        return request.model_copy(update=update)
    return request
