"""What a request carries, checked: JSON bodies against their models, ids, Last-Event-ID."""

from __future__ import annotations

import os
import uuid
from typing import TypeVar

from pydantic import BaseModel, ValidationError
from quart import request

from .errors import BadRequest, InvalidCwd, NotFound, ValidationFailed
from .jsonbody import load_object
from .models import ChatRequest
from .wire import ErrorCode

Body = TypeVar("Body", bound=BaseModel)
# A validation error names at most this many problems: a body with thousands of
# unknown keys gets a short answer, not one that lists them all.
MAX_REPORTED_PROBLEMS = 5


def _field_errors(error: ValidationError) -> str:
    parts = []
    problems = error.errors(include_url=False, include_context=False, include_input=False)
    for problem in problems[:MAX_REPORTED_PROBLEMS]:
        field = ".".join(str(part) for part in problem["loc"]) or "body"
        if problem["type"] == "extra_forbidden":
            message = "unknown field"
        elif problem["type"] == "missing":
            message = "field required"
        else:
            message = problem["msg"].removeprefix("Value error, ")
        parts.append(f"{field}: {message}")
    if len(problems) > MAX_REPORTED_PROBLEMS:
        parts.append(f"and {len(problems) - MAX_REPORTED_PROBLEMS} more problems")
    return "; ".join(parts)


def parse_body(raw: bytes, model: type[Body]) -> Body:
    """Validate a JSON request body against ``model``.

    Raises:
        InvalidJSON: the body is not a JSON object.
        BodyTooComplex: it holds more values than any request needs.
        ValidationFailed: a field is missing, unknown, mistyped or has a refused value.
    """
    body = load_object(raw)
    try:
        return model.model_validate(body)
    except ValidationError as error:
        raise ValidationFailed(_field_errors(error)) from None


def parse_chat_request(raw: bytes) -> ChatRequest:
    """Validate a ``POST /chat`` body (its folders' existence: :func:`check_folders`).

    Raises:
        InvalidJSON: the body is not a JSON object.
        ValidationFailed: a field is missing, unknown, mistyped or has a refused value.
        InvalidCwd: ``cwd`` is not an absolute path.
    """
    chat = parse_body(raw, ChatRequest)
    if not os.path.isabs(chat.cwd):
        raise InvalidCwd(f"cwd must be an absolute path, got {chat.cwd!r}")
    return chat


def check_folders(chat: ChatRequest) -> None:
    """Check that the request's folders exist; call it once the roots have allowed them.

    Raises:
        InvalidCwd: ``cwd`` is not an existing directory.
        ValidationFailed: an ``add_dir`` or ``plugin_dir`` folder is not one.
    """
    if not os.path.isdir(chat.cwd):
        raise InvalidCwd(f"cwd {chat.cwd!r} is not an existing directory")
    missing = chat.missing_folder()
    if missing is not None:
        field, folder = missing
        raise ValidationFailed(f"{field}: {folder!r} is not an existing directory")


async def raw_body() -> bytes:
    """Return the request's body, read whole (Quart bounds it by MAX_BODY_BYTES)."""
    raw = await request.get_data(as_text=False)
    return raw.encode() if isinstance(raw, str) else raw


def run_id_of(value: str) -> str:
    """Return the run id a path names, in canonical form.

    Raises:
        NotFound: it is not a UUID, so no run has it.
    """
    try:
        return str(uuid.UUID(value))
    except ValueError:
        detail = f"{value!r} is not a process id (a UUID)"
        raise NotFound(detail, code=ErrorCode.PROCESS_NOT_FOUND) from None


def last_event_id(last_id: int) -> int:
    """Return the id a reader resumes after: Last-Event-ID, or last_event_id, or 0.

    Raises:
        BadRequest: it is not a whole number, or past ``last_id``, the run's last event.
    """
    given = request.headers.get("Last-Event-ID") or request.args.get("last_event_id")
    if given is None or given == "":
        return 0
    if not given.isascii() or not given.isdigit() or len(given) > 18:
        raise BadRequest(
            f"Last-Event-ID / last_event_id must be an event id (a whole number), got {given!r}",
            code=ErrorCode.INVALID_LAST_EVENT_ID,
        )
    after = int(given)
    if after > last_id:
        raise BadRequest(
            f"event {after} does not exist: the run's last event is {last_id}",
            code=ErrorCode.INVALID_LAST_EVENT_ID,
        )
    return after
