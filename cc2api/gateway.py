"""The gateway service: what one app holds, and how a request becomes a run."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import trio
from quart import current_app
from quart_trio import QuartTrio

from . import __version__, confinement
from .auth import BasicAuth, LoginThrottle
from .bodies import check_folders
from .cli_args import MAX_COMMAND_LINE_BYTES, cli_environment
from .configfiles import load_configs
from .credentials import Credentials
from .discovery import ClaudeInfo, probe
from .errors import Unauthorized, Unavailable, ValidationFailed
from .key_admin import KeyAdmin
from .key_limits import KeyLimits, day_start, month_start
from .key_policy import KeyPolicies
from .key_sessions import own_session
from .key_store import KeyStore, MemoryKeys, SqliteKeys
from .keys import KeyRing
from .launch import Launch, plan_launch
from .limits import RunLimits
from .metrics import Metrics
from .models import ChatRequest
from .policy import Plan, Policy
from .pool_profile import Profile, profile_of
from .principal import ADMIN, Principal
from .registry import Registry
from .resume import choose_session
from .runner import Run
from .session_index import require_resumable
from .settings import Settings
from .sqlite_store import SqliteStore
from .store import STORE_MARKER_VAR, Store
from .stores import open_store
from .webhooks import Deliverer, follow_runs
from .wire import ErrorCode, Health, StoreHealth

log = logging.getLogger(__name__)

EXTENSION = "cc2api"


class Gateway:
    """One app's state: its settings, registry, and what startup learned of the CLI.

    App-long: made by ``create_app``, reached by handlers through :func:`current_gateway`.
    """

    def __init__(
        self,
        settings: Settings,
        environ: Mapping[str, str],
        limits: RunLimits | None = None,
        store: Store | None = None,
    ) -> None:
        self.settings = settings
        self.environ = dict(environ)
        # What every run's CLI inherits, built once: the server's environment less
        # what is withheld.
        self.cli_environ = cli_environment(self.environ)
        # A run's scheduled prompts (CronCreate) would fire in whatever later run has its
        # input open: off unless the operator turns them on in the server's environment.
        self.cli_environ.setdefault("CLAUDE_CODE_DISABLE_CRON", "1")
        store = open_store(settings) if store is None else store
        # Beside each run's own marker: a restarted gateway ends its own leftovers only.
        self.cli_environ[STORE_MARKER_VAR] = store.store_id
        self.metrics = Metrics()
        if isinstance(store, SqliteStore):
            store.observe_writes(self.metrics.store_wrote)
        self.registry = Registry(
            settings,
            self.cli_environ,
            limits=limits or RunLimits.from_settings(settings),
            store=store,
            metrics=self.metrics,
        )
        self.metrics.watch(
            self.registry.slots, lambda: store.stats().backlog_bytes, self.registry.pool.health
        )
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
        self.key_policies = KeyPolicies(settings, self.policy, self.environ, os.geteuid())
        self.keys = KeyAdmin(KeyRing(), _key_store(store), settings)
        self.credentials = Credentials(self.auth, self.keys.ring)
        self.key_limits = KeyLimits(trio.current_time)
        self.registry.on_end(self._count_spend)
        self.webhooks = Deliverer(settings, store, self.metrics)
        follow_runs(self.webhooks, self.registry)
        # Why runs that must be confined cannot be (set at startup), or None.
        self.confinement_problem: str | None = None
        self.origins = frozenset(settings.cors_origins)  # CORS, never a wildcard
        # Large bodies are parsed in worker threads, two at a time at most.
        self.parsers = trio.CapacityLimiter(2)

    async def check(self) -> None:
        """Learn what the CLI and the kernel offer, and say what is wrong in the log.

        Cancellation: the probe of the CLI stops; nothing else awaits.
        """
        self.claude = await probe(self.settings.claude_path, self.environ)
        if self.claude.usable:
            log.info("claude %s at %s", self.claude.version, self.claude.path)
        else:
            log.error("degraded: %s", self.claude.problem)
        if not confinement.available():
            # A key's roots can make its runs confined where the operator's are not.
            self.confinement_problem = (
                "runs must be confined (ALLOWED_CWD_ROOTS, untrusted caller config or "
                "CONFINE_RUNS=on), but this kernel offers no Landlock ABI 2 or later, or a "
                "system call filter hides it; run on Linux 5.19 or later, allow the landlock_* "
                "system calls, or set CONFINE_RUNS=off to run them unconfined"
            )
            if self.policy.confines:
                log.error("degraded: %s", self.confinement_problem)
            elif self.settings.confine_runs == "auto":
                log.warning(
                    "API keys' runs are confined (CONFINE_RUNS=auto) and will get 503: %s",
                    self.confinement_problem,
                )
        if not self.policy.confines:
            return
        if self.confinement_problem is None:
            for gap in confinement.gaps():
                log.warning("confined runs on this kernel can still %s", gap)
        if confinement.uses_login(self.registry.real_config, self.environ):
            log.warning(
                "confined runs use a copy of the CLI's login, and what the CLI refreshes "
                "stays in that copy: set ANTHROPIC_API_KEY for confined runs"
            )
        password_file = self.settings.auth_password_file
        if password_file is not None and confinement.readable_by_runs(
            password_file, self.settings.confine_read_paths
        ):
            log.warning(
                "AUTH_PASSWORD_FILE %s is where confined runs may read (the system's folders "
                "or CONFINE_READ_PATHS): move it elsewhere, or use systemd's LoadCredential=",
                password_file,
            )

    def health(self) -> dict[str, Any]:
        """Return the ``GET /health`` body."""
        claude, registry = self.claude, self.registry
        confining = self.confinement_problem if self.policy.confines else None
        problem = claude.problem if not claude.usable else confining
        if problem is None and not registry.serving:
            problem = "the server is not accepting runs (starting or shutting down)"
        if problem is None:
            problem = registry.store.problem
        store = registry.store
        stats = store.stats()
        health = Health(
            status="ok" if problem is None else "degraded",
            claude_version=claude.version,
            active_processes=len(registry.live_runs()),
            running=registry.slots.running,
            queued=registry.slots.queued,
            version=__version__,
            store=StoreHealth(
                kind="sqlite" if store.kind == "sqlite" else "memory",
                backlog_bytes=stats.backlog_bytes,
                backlog_peak_bytes=stats.backlog_peak_bytes,
            ),
            pool=registry.pool.health(),
            **({} if problem is None else {"reason": problem}),
        )
        return health.wire()

    async def load_keys(self) -> None:
        """Fill the key ring from the store, and each key's spend from its usage.

        Cancellation: the reads stop; the gateway must not serve without its keys.
        """
        await self.keys.load()
        now = datetime.now(UTC)
        store = self.registry.store
        await store.flush()
        day = await store.spent(day_start(now))
        month = await store.spent(month_start(now))
        self.key_limits.load_spend(day, month)

    def _count_spend(self, run: Run) -> None:
        key_id = run.owner.key_id
        cost = run.usage().cost_usd
        if key_id is not None and cost:
            self.key_limits.add_cost(key_id, cost)

    async def start_run(self, chat: ChatRequest, owner: Principal = ADMIN) -> Run:
        """Check a request against the operator's rules (and its key's) and start its run.

        Raises:
            Unavailable: the CLI, or the confinement the run needs, is not available.
            WebhookForbidden, WebhookSecretMissing: its webhook_url (or its key's) may
                not be reached, or nothing signs for it (see :meth:`Deliverer.destination`).
            Forbidden, ValidationFailed, InvalidCwd: the rules or the folders refuse it.
            NotFound: ``session_id`` names no session the CLI keeps, or none of the
                key's runs used (``unknown_session``).
            TooManyRequests: the key's budget is spent (``budget_exhausted``) or its rate
                reached (``rate_limited``).
            SessionBusy, QueueFull: see :meth:`Registry.start`.

        Cancellation: nothing has started; the request is simply dropped.
        """
        claude = self.claude
        if not claude.usable or claude.path is None:
            raise Unavailable(
                f"cannot start runs: {claude.problem}", code=ErrorCode.CLI_UNAVAILABLE
            )
        key = owner.key
        remaining = None if key is None else self.key_limits.remaining(key)
        plan, policy = self.key_policies.plan(chat, key)
        check_folders(chat)
        if key is not None:
            chat = await own_session(
                self.registry.store, self.registry.real_config, chat, key.key_id
            )
            if remaining is not None:
                asked = chat.max_budget_usd
                capped = remaining if asked is None else min(asked, remaining)
                chat = chat.model_copy(update={"max_budget_usd": capped})
        if plan.confined and self.confinement_problem is not None:
            raise Unavailable(
                f"cannot start runs: {self.confinement_problem}",
                code=ErrorCode.CONFINEMENT_UNAVAILABLE,
            )
        # Files are read only now that the rules have allowed them.
        plan = replace(plan, configs=await load_configs(chat))
        if (plan.bounded or plan.confined) and chat.names_session:
            chat = await trio.to_thread.run_sync(
                choose_session, chat, plan.cwd, self.registry.real_config, policy.within_roots
            )
        elif chat.session_id is not None and self.registry.store.holder(chat.session_id) is None:
            # Any other run: a session deleted or never saved is refused before a CLI starts.
            # One a live run holds is busy (the registry says so), even before its CLI has
            # written the transcript.
            await trio.to_thread.run_sync(
                require_resumable, self.registry.real_config, plan.cwd, chat.session_id
            )
        launch = self.launch_of(chat, plan, claude.path)
        size = launch.command_line_bytes()
        if size > MAX_COMMAND_LINE_BYTES:
            raise ValidationFailed(
                f"the options and the server's environment add up to {size} bytes of "
                f"command line, over the {MAX_COMMAND_LINE_BYTES} this server allows"
            )
        profile = self._profile(chat, plan, launch, owner)
        destination = await self.webhooks.destination(chat, key)
        if key is None:
            run = self.registry.start(chat, plan, launch, profile=profile)
            self.webhooks.watch(run.run_id, destination)  # before its supervisor's first step
            return run
        # The key as it is now: revoked or changed while this request was read and
        # checked (its awaits), it must not start a run a revocation's cancel missed.
        key = self.keys.ring.by_id(key.key_id)
        if key is None or key.revoked:
            raise Unauthorized("this key has been revoked")
        self.key_limits.admit(key)
        try:
            share = self.key_limits.share(key)
            run = self.registry.start(chat, plan, launch, owner, share, profile=profile)
        except BaseException:
            self.key_limits.forget_start(key)
            raise
        self.webhooks.watch(run.run_id, destination)
        return run

    def launch_of(self, chat: ChatRequest, plan: Plan, claude: Path) -> Launch:
        """Return the launch of a new run of ``chat``, planned as ``plan`` (pure)."""
        return plan_launch(
            run_id=str(uuid.uuid4()),
            claude=claude,
            request=chat,
            plan=plan,
            environ=self.cli_environ,
            confine=self.registry.confine,
        )

    def _profile(
        self, chat: ChatRequest, plan: Plan, launch: Launch, owner: Principal
    ) -> Profile | None:
        key = owner.key
        if not self.registry.pool.enabled or chat.names_session:
            return None
        if key is not None and not key.policy.pooled:
            return None
        return profile_of(launch, chat, plan, owner.key_id)


def _key_store(store: Store) -> KeyStore:
    path = store.stats().path
    return MemoryKeys() if store.kind != "sqlite" or path is None else SqliteKeys(path)


def gateway_of(app: QuartTrio) -> Gateway:
    """Return the gateway of an app made by ``create_app``."""
    state = app.extensions[EXTENSION]
    assert isinstance(state, Gateway)  # noqa: S101 (set by create_app only)
    return state


def current_gateway() -> Gateway:
    """Return the gateway of the app serving the current request."""
    return gateway_of(current_app)  # type: ignore[arg-type]
