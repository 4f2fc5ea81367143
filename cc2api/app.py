"""The HTTP application: ``create_app(settings)`` builds a fresh one, with no global state."""

from __future__ import annotations

import os
from collections.abc import Mapping

from quart_trio import QuartTrio

from .admin_routes import admin_routes
from .console_routes import console_routes
from .docs import add_docs
from .gateway import EXTENSION, Gateway, gateway_of
from .history import history
from .hooks import install_hooks
from .limits import RunLimits
from .metrics_routes import metrics_routes
from .pool_declare import declare_pool
from .routes import routes
from .session_routes import session_routes
from .settings import Settings
from .store import Store
from .usage_routes import usage_routes
from .webhook_routes import webhook_routes

__all__ = ["create_app", "gateway_of"]


def create_app(
    settings: Settings,
    *,
    environ: Mapping[str, str] | None = None,
    limits: RunLimits | None = None,
    store: Store | None = None,
) -> QuartTrio:
    """Build the gateway app.

    ``environ`` is the environment the CLI inherits (default: this process's, read
    once here); ``limits`` replaces the limits the settings give (for tests that need
    short fixed timings); ``store`` replaces the one the settings choose. The registry's
    nursery, and the store's writer, live for as long as the app is served.
    """
    app = QuartTrio(__name__)
    # Quart stops storing a body past this, chunked or not, and answers 413.
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = True
    gateway = Gateway(settings, os.environ if environ is None else environ, limits, store)
    app.extensions[EXTENSION] = gateway

    @app.before_serving
    async def _startup() -> None:
        await gateway.check()
        await app.nursery.start(gateway.webhooks.serve)
        await app.nursery.start(gateway.registry.serve)
        await gateway.load_keys()
        await declare_pool(gateway)

    @app.after_serving
    async def _shutdown() -> None:
        await gateway.registry.drain()

    install_hooks(app)
    add_docs(app, settings.docs_assets_dir)
    app.register_blueprint(routes)
    app.register_blueprint(history)
    app.register_blueprint(session_routes)
    app.register_blueprint(admin_routes)
    app.register_blueprint(usage_routes)
    app.register_blueprint(metrics_routes)
    app.register_blueprint(webhook_routes)
    app.register_blueprint(console_routes)
    return app
