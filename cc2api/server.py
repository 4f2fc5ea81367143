"""Serve an app with Hypercorn's trio worker, and shut down gracefully on SIGTERM/SIGINT."""

from __future__ import annotations

import logging
import signal

import trio
from hypercorn.config import Config
from hypercorn.utils import wrap_app
from quart_trio import QuartTrio

from .access_log import ACCESS_LOGGER, AccessLogger
from .app import gateway_of
from .descriptors import default_cap, raise_limit, reserved, room
from .http_server import serve_guarded
from .settings import Settings

log = logging.getLogger(__name__)

# Runs are already torn down when Hypercorn starts its own shutdown; this is only for
# the streams to send their last events.
STREAM_FLUSH_SECONDS = 5.0
# The app's startup: the store's first pruning (seconds per GB on a slow disk), then ending
# a crashed gateway's leftovers (KILL_GRACE_SECONDS, then SIGKILL). Hypercorn's own 60 s
# would fail a start that is only slow, and fail it again at every restart.
STARTUP_SECONDS = 600.0


def hypercorn_config(app: QuartTrio) -> Config:
    """Return the Hypercorn configuration for an app's settings."""
    settings = gateway_of(app).settings
    config = Config()
    host = f"[{settings.host}]" if ":" in settings.host else settings.host  # IPv6
    config.bind = [f"{host}:{settings.port}"]
    # One line per request, built by AccessLogger from safe parts only (access_log.py).
    config.accesslog = logging.getLogger(ACCESS_LOGGER)
    config.logger_class = AccessLogger
    config.errorlog = logging.getLogger("hypercorn.error")
    config.graceful_timeout = STREAM_FLUSH_SECONDS
    config.startup_timeout = STARTUP_SECONDS + settings.kill_grace_seconds
    config.keep_alive_timeout = 75
    return config


def connection_cap(settings: Settings) -> int:
    """Raise the soft descriptor limit as far as allowed; return the connection cap it leaves."""
    before, limit = raise_limit()
    runs = settings.cli_places  # the pool's CLIs hold pipes as runs do
    cap = settings.max_connections or default_cap(limit, runs)
    raised = f" (raised from {before})" if limit != before else ""
    log.info(
        "descriptor limit %d%s: at most %d connections, %d descriptors kept for %d runs",
        limit,
        raised,
        cap,
        reserved(runs),
        runs,
    )
    if cap > room(limit, runs):
        log.warning(
            "the descriptor limit %d is too low for %d runs and %d connections: raise it "
            "(LimitNOFILE= in the unit) or lower MAX_CONCURRENT_RUNS",
            limit,
            runs,
            cap,
        )
    return cap


async def serve(
    app: QuartTrio,
    stop: trio.Event,
    *,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` until ``stop`` is set, then drain every run and shut down.

    Connections are capped below the descriptor limit (raised first); a
    connection's first request head must come in within HEADER_TIMEOUT_SECONDS, and
    its client must take data within CLIENT_STALL_SECONDS of a send.

    Draining refuses new runs, cancels the live ones and waits for their process
    trees to be gone, so each open stream ends with ``done`` (``cancelled``)
    before Hypercorn closes connections. ``task_status`` receives the bound URLs.

    Raises:
        StoreUnusable: the store cannot be opened (before anything listens).

    Cancellation: cancelling this task stops serving at once; runs are still torn
    down (shielded) by the registry before it returns.
    """
    gateway = gateway_of(app)
    registry = gateway.registry
    # Before listening: a store that cannot be opened stops the start, with its reason.
    await registry.store.open()

    async def shutdown_trigger() -> None:
        await stop.wait()
        log.info("shutting down: draining %d run(s)", len(registry.runs()))
        await registry.drain()

    config = hypercorn_config(app)
    await serve_guarded(
        wrap_app(app, config.wsgi_max_body_size, "asgi"),
        config,
        max_connections=connection_cap(gateway.settings),
        header_timeout=gateway.settings.header_timeout_seconds,
        per_address=gateway.settings.max_connections_per_address,
        send_timeout=gateway.settings.client_stall_seconds,
        shutdown_trigger=shutdown_trigger,
        task_status=task_status,
    )


async def serve_until_signalled(app: QuartTrio) -> None:
    """Serve ``app`` until SIGTERM or SIGINT arrives, then shut down gracefully."""
    stop = trio.Event()
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:

            async def wait_for_signal() -> None:
                async for signum in signals:
                    name = signal.Signals(signum).name
                    if stop.is_set():
                        # Impatient operator: stop serving now. Runs are still torn
                        # down, shielded, as the registry's nursery is cancelled.
                        log.warning("received %s again: stopping without draining", name)
                        nursery.cancel_scope.cancel()
                        return
                    log.info("received %s: draining", name)
                    stop.set()

            async def run_server(*, task_status: trio.TaskStatus[list[str]]) -> None:
                await serve(app, stop, task_status=task_status)
                nursery.cancel_scope.cancel()  # also ends wait_for_signal if serving failed

            nursery.start_soon(wait_for_signal)
            urls = await nursery.start(run_server)
            log.info("listening on %s", ", ".join(urls))
