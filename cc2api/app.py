"""The HTTP application: ``create_app(settings)`` builds a fresh one, with no global state."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import uuid
import weakref
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import trio
from pydantic import ValidationError
from quart import Response, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from . import __version__
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
    InvalidCwd,
    NotFound,
    Unauthorized,
    Unavailable,
    ValidationFailed,
)
from .jsonbody import load_object
from .models import ChatRequest
from .policy import Policy
from .registry import Registry
from .runner import Run
from .settings import Settings
from .sse import stream

log = logging.getLogger(__name__)

EXTENSION = "cc2api"
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
        )
        self.policy = Policy(settings, self.environ, euid=os.geteuid())


def gateway_of(app: QuartTrio) -> Gateway:
    """Return the gateway state of an app made by :func:`create_app`."""
    state = app.extensions[EXTENSION]
    assert isinstance(state, Gateway)  # noqa: S101 (set by create_app only)
    return state


def _json(
    body: Mapping[str, Any], status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    return Response(
        json.dumps(body), status=status, headers=dict(headers or {}), mimetype="application/json"
    )


def _field_errors(error: ValidationError) -> str:
    parts = []
    for problem in error.errors():
        field = ".".join(str(part) for part in problem["loc"]) or "body"
        if problem["type"] == "extra_forbidden":
            message = "unknown field"
        elif problem["type"] == "missing":
            message = "field required"
        else:
            message = problem["msg"].removeprefix("Value error, ")
        parts.append(f"{field}: {message}")
    return "; ".join(parts)


def parse_chat_request(raw: bytes) -> ChatRequest:
    """Validate a ``POST /chat`` body.

    Raises:
        InvalidJSON: the body is not a JSON object.
        ValidationFailed: a field is missing, unknown, mistyped or has a refused value.
        InvalidCwd: ``cwd`` is not an absolute path of an existing directory.
    """
    body = load_object(raw)
    try:
        chat = ChatRequest.model_validate(body)
    except ValidationError as error:
        raise ValidationFailed(_field_errors(error)) from None
    if not os.path.isabs(chat.cwd):
        raise InvalidCwd(f"cwd must be an absolute path, got {chat.cwd!r}")
    if not os.path.isdir(chat.cwd):
        raise InvalidCwd(f"cwd {chat.cwd!r} is not an existing directory")
    return chat


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
        return _json(error.body(), error.status, error.headers())

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
        problem = claude.problem if not claude.usable else None
        if problem is None and not registry.serving:
            problem = "the server is not accepting runs (starting or shutting down)"
        body: dict[str, Any] = {
            "status": "ok" if problem is None else "degraded",
            "claude_version": claude.version,
            "active_processes": len(registry.runs()),
            "running": registry.slots.running,
            "queued": registry.slots.queued,
            "version": __version__,
        }
        if problem is not None:
            body["reason"] = problem
        return _json(body)

    @app.post("/chat")
    async def chat() -> Response:
        raw = await request.get_data(as_text=False)
        chat_request = parse_chat_request(raw.encode() if isinstance(raw, str) else raw)
        claude = gateway.claude
        if not claude.usable or claude.path is None:
            raise Unavailable(f"cannot start runs: {claude.problem}", code="cli_unavailable")
        plan = gateway.policy.plan(chat_request)
        # Files are read only now that the rules have allowed them.
        plan = replace(plan, configs=await load_configs(chat_request))
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
        body = stream(run, settings.heartbeat_seconds)
        # A client that hangs up before Quart starts the body drops it unstarted,
        # and its cleanup never runs: cancel the run the moment it is dropped.
        token = trio.lowlevel.current_trio_token()
        weakref.finalize(body, _cancel_abandoned, token, run).atexit = False
        response = Response(
            body,
            mimetype="text/event-stream",
            headers={
                "X-Process-ID": run.process_id,
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            },
        )
        response.timeout = None  # Quart would cut the stream after RESPONSE_TIMEOUT
        return response

    @app.delete("/chat/<process_id>")
    async def cancel(process_id: str) -> Response:
        run = await registry.cancel(_process_id(process_id))
        return _json({"process_id": run.process_id, "status": str(run.status)})

    @app.get("/processes")
    async def processes() -> Response:
        runs = [run.describe() for run in registry.runs()]
        return _json({"processes": runs, "count": len(runs)})

    return app


def _cancel_abandoned(token: trio.lowlevel.TrioToken, run: Run) -> None:
    # Called by the garbage collector, in whatever thread dropped the body, maybe
    # after the trio run is over (which had ended the run already): hand the cancel
    # to the run's own event loop.
    with contextlib.suppress(trio.RunFinishedError):
        token.run_sync_soon(run.cancel)


def _process_id(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        detail = f"{value!r} is not a process id (a UUID)"
        raise NotFound(detail, code="process_not_found") from None
