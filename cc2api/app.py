"""The HTTP application: ``create_app(settings)`` builds a fresh one, with no global state."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import uuid
import weakref
from collections.abc import Callable, Mapping
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import trio
from pydantic import BaseModel, ValidationError
from quart import Response, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from . import __version__, confinement
from .auth import BasicAuth, LoginThrottle
from .cli_args import (
    MAX_COMMAND_LINE_BYTES,
    RunFiles,
    build_argv,
    cli_environment,
    command_line_bytes,
)
from .configfiles import load_configs
from .discovery import ClaudeInfo, probe
from .docs import PUBLIC_PREFIXES, add_docs
from .errors import (
    ApiError,
    BadRequest,
    InvalidCwd,
    NotFound,
    RunEnded,
    Unauthorized,
    Unavailable,
    ValidationFailed,
)
from .eventlog import Reader
from .jsonbody import load_object, off_loop
from .models import ApprovalAnswer, ChatRequest, FollowUp
from .policy import Policy
from .registry import Registry
from .resume import choose_session
from .runner import Run, Status
from .settings import Settings
from .sse import stream

log = logging.getLogger(__name__)

EXTENSION = "cc2api"
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
Body = TypeVar("Body", bound=BaseModel)
_PUBLIC_PATHS = frozenset({"/health"})


class Gateway:
    """What one app holds: its settings, registry and what startup learned of the CLI."""

    def __init__(self, settings: Settings, environ: Mapping[str, str]) -> None:
        self.settings = settings
        self.environ = dict(environ)
        self.registry = Registry(settings, self.environ)
        self.claude = ClaudeInfo(None, None, "not checked yet")
        self.auth = BasicAuth(settings.auth_user, settings.auth_password.get_secret_value())
        self.throttle = LoginThrottle(
            settings.auth_max_failures,
            settings.auth_failure_window_seconds,
            settings.auth_lockout_seconds,
            clock=trio.current_time,
            max_failures_global=settings.auth_max_failures_global,
        )
        self.policy = Policy(settings, self.environ, euid=os.geteuid())
        # Why runs that must be confined cannot be (set at startup), or None.
        self.confinement_problem: str | None = None
        # Large bodies are parsed in worker threads, two at a time at most.
        self.parsers = trio.CapacityLimiter(2)


def gateway_of(app: QuartTrio) -> Gateway:
    """Return the gateway state of an app made by :func:`create_app`."""
    state = app.extensions[EXTENSION]
    assert isinstance(state, Gateway)  # noqa: S101 (set by create_app only)
    return state


def _json(
    body: Mapping[str, Any], status: int = 200, *, headers: Mapping[str, str] | None = None
) -> Response:
    return Response(
        json.dumps(body), status=status, headers=dict(headers or {}), mimetype="application/json"
    )


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


def create_app(  # noqa: PLR0915 (the routes are closures over one gateway)
    settings: Settings, *, environ: Mapping[str, str] | None = None
) -> QuartTrio:
    """Build the gateway app.

    ``environ`` is the environment the CLI inherits (default: this process's, read
    once here). The registry's nursery lives for as long as the app is served.
    """
    app = QuartTrio(__name__)
    # Quart stops storing a body past this, chunked or not, and answers 413.
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = True
    gateway = Gateway(settings, os.environ if environ is None else environ)
    app.extensions[EXTENSION] = gateway
    registry = gateway.registry
    origins = frozenset(settings.cors_origins)

    @app.before_serving
    async def _startup() -> None:
        gateway.claude = await probe(settings.claude_path, gateway.environ)
        if gateway.claude.usable:
            log.info("claude %s at %s", gateway.claude.version, gateway.claude.path)
        else:
            log.error("degraded: %s", gateway.claude.problem)
        if gateway.policy.confines and not confinement.available():
            gateway.confinement_problem = (
                "runs must be confined (ALLOWED_CWD_ROOTS, untrusted caller config or "
                "CONFINE_RUNS=on), but this kernel offers no Landlock ABI 2 or later, or a "
                "system call filter hides it; run on Linux 5.19 or later, allow the landlock_* "
                "system calls, or set CONFINE_RUNS=off to run them unconfined"
            )
            log.error("degraded: %s", gateway.confinement_problem)
        elif gateway.policy.confines:
            for gap in confinement.gaps():
                log.warning("confined runs on this kernel can still %s", gap)
        if gateway.policy.confines and confinement.uses_login(
            registry.real_config, gateway.environ
        ):
            log.warning(
                "confined runs use a copy of the CLI's login, and what the CLI refreshes "
                "stays in that copy: set ANTHROPIC_API_KEY for confined runs"
            )
        password_file = settings.auth_password_file
        if (
            gateway.policy.confines
            and password_file is not None
            and confinement.readable_by_runs(password_file, settings.confine_read_paths)
        ):
            log.warning(
                "AUTH_PASSWORD_FILE %s is where confined runs may read (the system's folders "
                "or CONFINE_READ_PATHS): move it elsewhere, or use systemd's LoadCredential=",
                password_file,
            )
        await app.nursery.start(registry.serve)

    @app.after_serving
    async def _shutdown() -> None:
        await registry.drain()

    @app.before_request
    async def _authenticate() -> None:
        if request.path in _PUBLIC_PATHS or request.path.startswith(PUBLIC_PREFIXES):
            return
        if request.method == "OPTIONS" and request.headers.get("Origin") in origins:
            return
        address = request.remote_addr or "unknown"
        gateway.throttle.check(address)
        header = request.headers.get("Authorization")
        try:
            gateway.auth.check(header)
        except Unauthorized:
            if header:  # a request without credentials guesses nothing
                gateway.throttle.failed(address)
                log.warning("failed login from %s", address)
            raise
        gateway.throttle.succeeded(address)

    @app.after_request
    async def _close_unread(response: Response) -> Response:
        # A refusal sent before the body was read leaves the body in the connection,
        # and quart-trio stops reading it: the next request on that connection would
        # hang. Closing it is the only safe end.
        has_body = "Content-Length" in request.headers or "Transfer-Encoding" in request.headers
        if has_body and (response.status_code >= 400 or request.method != "POST"):
            response.headers["Connection"] = "close"
        return response

    @app.after_request
    async def _cors(response: Response) -> Response:
        origin = request.headers.get("Origin")
        if origins:
            response.vary.add("Origin")
        if origin is not None and origin in origins:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Allow-Credentials"] = "true"
            response.headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type"
            response.headers["Access-Control-Allow-Methods"] = "GET, POST, DELETE, OPTIONS"
            response.headers["Access-Control-Expose-Headers"] = "X-Process-ID"
        return response

    @app.errorhandler(ApiError)
    async def _api_error(error: ApiError) -> Response:
        return _json(error.body(), error.status, headers=error.headers())

    @app.errorhandler(HTTPException)
    async def _http_error(error: HTTPException) -> Response:
        status = error.code or 500
        code = (error.name or "error").lower().replace(" ", "_")
        detail = error.description or error.name
        if status == 404:
            detail = f"no route for {request.method} {request.path}"
        elif status == 405:
            detail = f"{request.method} is not allowed on {request.path}"
        elif status == 413:
            detail = f"the request body is larger than {settings.max_body_bytes} bytes"
        return _json({"detail": detail, "code": code}, status)

    @app.errorhandler(Exception)
    async def _unexpected(error: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.path)
        body = {"detail": "internal error; see the server log", "code": "internal_error"}
        return _json(body, 500)

    add_docs(app, settings.docs_assets_dir)

    @app.get("/health")
    async def health() -> Response:
        claude = gateway.claude
        problem = claude.problem if not claude.usable else gateway.confinement_problem
        if problem is None and not registry.serving:
            problem = "the server is not accepting runs (starting or shutting down)"
        body: dict[str, Any] = {
            "status": "ok" if problem is None else "degraded",
            "claude_version": claude.version,
            "active_processes": len(registry.live_runs()),
            "running": registry.slots.running,
            "queued": registry.slots.queued,
            "version": __version__,
        }
        if problem is not None:
            body["reason"] = problem
        return _json(body)

    @app.post("/chat")
    async def chat() -> Response:
        chat_request = await off_loop(parse_chat_request, await _raw_body(), gateway.parsers)
        claude = gateway.claude
        if not claude.usable or claude.path is None:
            raise Unavailable(f"cannot start runs: {claude.problem}", code="cli_unavailable")
        plan = gateway.policy.plan(chat_request)
        check_folders(chat_request)
        if plan.confined and gateway.confinement_problem is not None:
            raise Unavailable(
                f"cannot start runs: {gateway.confinement_problem}", code="confinement_unavailable"
            )
        # Files are read only now that the rules have allowed them.
        plan = replace(plan, configs=await load_configs(chat_request))
        if (plan.bounded or plan.confined) and (
            chat_request.session_id is not None
            or chat_request.continue_conversation
            or chat_request.new_session_id is not None
        ):
            chat_request = await trio.to_thread.run_sync(
                choose_session,
                chat_request,
                plan.cwd,
                registry.real_config,
                gateway.policy.within_roots,
            )
        size = command_line_bytes(
            build_argv(claude.path, chat_request, plan, RunFiles(Path(tempfile.gettempdir()))),
            {**cli_environment(gateway.environ), **plan.extra_env},
        )
        if size > MAX_COMMAND_LINE_BYTES:
            raise ValidationFailed(
                f"the options and the server's environment add up to {size} bytes of "
                f"command line, over the {MAX_COMMAND_LINE_BYTES} this server allows"
            )
        run = registry.start(chat_request, plan, claude.path)
        if not chat_request.stream:
            return await _document(run)
        return _event_stream(run, run.attach_reader(), run.stream_closed, run.stream_started)

    def _event_stream(
        run: Run,
        reader: Reader,
        on_close: Callable[[], None],
        on_start: Callable[[], None] | None = None,
    ) -> Response:
        body = stream(reader, settings.heartbeat_seconds, on_close, on_start)
        # A client that hangs up before Quart starts the body drops it unstarted,
        # and its cleanup never runs: do it the moment the body is dropped.
        token = trio.lowlevel.current_trio_token()
        weakref.finalize(body, _abandoned, token, reader, on_close).atexit = False
        response = Response(
            body,
            mimetype="text/event-stream",
            headers={"X-Process-ID": run.process_id, **SSE_HEADERS},
        )
        response.timeout = None  # Quart would cut the stream after RESPONSE_TIMEOUT
        return response

    async def _document(run: Run) -> Response:
        try:
            await run.finished.wait()
        finally:
            run.stream_closed()  # the client hung up (or the run is over: no-op)
        # Parsing up to 64 MiB of lines is no work for the event loop.
        body, status = await trio.to_thread.run_sync(run_document, run)
        run.lines = None  # answered: the document need not be kept with the run
        return _json(body, status, headers={"X-Process-ID": run.process_id})

    @app.delete("/chat/<process_id>")
    async def cancel(process_id: str) -> Response:
        run = await registry.cancel(_process_id(process_id))
        return _json({"process_id": run.process_id, "status": str(run.status)})

    @app.get("/chat/<process_id>/events")
    async def events(process_id: str) -> Response:
        run = registry.get(_process_id(process_id))
        after = _last_event_id(run)
        return _event_stream(run, run.log.reader(after), lambda: None)

    @app.post("/chat/<process_id>/interrupt")
    async def interrupt(process_id: str) -> Response:
        run = registry.get(_process_id(process_id))
        await _raw_body()  # whatever was sent is ignored, but read: the connection stays usable
        await run.interrupt()
        body = {
            "process_id": run.process_id,
            "status": str(run.status),
            "forced": run.interrupt_forced,
        }
        return _json(body)

    @app.post("/chat/<process_id>/messages")
    async def follow_up(process_id: str) -> Response:
        run = registry.get(_process_id(process_id))
        message = await off_loop(
            partial(parse_body, model=FollowUp), await _raw_body(), gateway.parsers
        )
        if run.status not in (Status.QUEUED, Status.RUNNING):
            raise RunEnded(f"run {run.process_id} has ended or is ending ({run.status})")
        ahead = run.conversation.follow_up(message.prompt)
        return _json({"process_id": run.process_id, "ahead": ahead}, 202)

    @app.get("/chat/<process_id>/approvals")
    async def approvals(process_id: str) -> Response:
        run = registry.get(_process_id(process_id))
        pending = [approval.describe() for approval in run.conversation.pending()]
        return _json({"approvals": pending, "count": len(pending)})

    @app.post("/chat/<process_id>/approvals/<approval_id>")
    async def answer(process_id: str, approval_id: str) -> Response:
        run = registry.get(_process_id(process_id))
        reply = await off_loop(
            partial(parse_body, model=ApprovalAnswer), await _raw_body(), gateway.parsers
        )
        approval = run.conversation.answer(
            approval_id, reply.behavior, reply.updated_input, reply.message
        )
        return _json({"approval_id": approval.approval_id, "answer": approval.answer})

    @app.get("/processes")
    async def processes() -> Response:
        runs = [run.describe() for run in registry.runs()]
        return _json({"processes": runs, "count": len(runs)})

    return app


def _abandoned(
    token: trio.lowlevel.TrioToken, reader: Reader, on_close: Callable[[], None]
) -> None:
    # Called by the garbage collector, in whatever thread dropped the body, maybe
    # after the trio run is over (which had ended the run already): hand the work
    # to the run's own event loop.
    with contextlib.suppress(trio.RunFinishedError):
        token.run_sync_soon(reader.close)
        token.run_sync_soon(on_close)


async def _raw_body() -> bytes:
    raw = await request.get_data(as_text=False)
    return raw.encode() if isinstance(raw, str) else raw


def _last_event_id(run: Run) -> int:
    """Return the id a reader resumes after: Last-Event-ID, or last_event_id, or 0."""
    given = request.headers.get("Last-Event-ID") or request.args.get("last_event_id")
    if given is None or given == "":
        return 0
    if not given.isascii() or not given.isdigit() or len(given) > 18:
        raise BadRequest(
            f"Last-Event-ID / last_event_id must be an event id (a whole number), got {given!r}",
            code="invalid_last_event_id",
        )
    after = int(given)
    if after > run.log.last_id:
        raise BadRequest(
            f"event {after} does not exist: the run's last event is {run.log.last_id}",
            code="invalid_last_event_id",
        )
    return after


# The HTTP status of a stream: false answer, by how the run ended.
_DOCUMENT_STATUS = {
    Status.COMPLETED: 200,
    Status.INTERRUPTED: 200,
    Status.FAILED: 502,
    Status.TIMEOUT: 504,
    Status.CANCELLED: 409,
}


def run_document(run: Run) -> tuple[dict[str, Any], int]:
    """Return the ``stream: false`` answer for a finished run, and its HTTP status."""
    body: dict[str, Any] = {
        "process_id": run.process_id,
        "session_id": run.session_id,
        "status": str(run.status),
        "exit_code": run.exit_code,
        "result": run.result,
        "messages": [_parsed(line) for line in run.lines or ()],
    }
    if run.error is not None:
        body = {"detail": run.error["message"], "code": run.error["code"], **body}
        body["error"] = run.error
    elif run.status is Status.CANCELLED:
        body = {"detail": "the run was cancelled", "code": "cancelled", **body}
    return body, _DOCUMENT_STATUS.get(run.status, 500)


def _parsed(line: bytes) -> Any:
    try:
        return json.loads(line)
    except (ValueError, RecursionError):
        return line.decode("utf-8", "replace")  # not JSON: passed on as text


def _process_id(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        detail = f"{value!r} is not a process id (a UUID)"
        raise NotFound(detail, code="process_not_found") from None
