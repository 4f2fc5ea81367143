"""Webhook deliveries: a run's events POSTed, signed, to its webhook_url, never holding it back.

Design
======

A run's destination (its checked URL, the secret that signs for it, whose run it is)
is decided at ``POST /chat`` by :meth:`Deliverer.destination`, which refuses what the
SSRF rules refuse (:mod:`cc2api.webhook_hosts`) and a URL with no secret to sign with.
The registry tells :meth:`Deliverer.observe` of each gateway event a run emits; an
``approval`` that waits for an answer becomes ``approval.requested``, and ``done``
becomes ``run.completed`` with the cost and usage :meth:`Deliverer.run_ended` was told
just before (the run's destination is then forgotten).

Enqueueing never waits: :meth:`Deliverer.enqueue` starts one task per delivery in the
deliverer's nursery, unless ``WEBHOOK_MAX_PENDING`` deliveries are waiting or under
way, when it drops the new one (recorded as ``dropped``). A delivery is tried up to
``WEBHOOK_MAX_ATTEMPTS`` times, waiting ``WEBHOOK_RETRY_SECONDS`` and then twice as long
each time between attempts (at most :data:`MAX_RETRY_DELAY`, and up to a tenth more at
random, so that the retries of many deliveries spread out); a 4xx answer other than
408, 425 and 429 fails it at once, as asking again would get the same answer. Each
attempt resolves the host again under the rules,
connects to the address it checked (the Host header and TLS name stay the URL's), and
may take ``WEBHOOK_TIMEOUT_SECONDS``. At most :data:`MAX_IN_FLIGHT` attempts are under way
at once; a slow receiver holds one of them, never a run. Redirects are not followed.

Every attempt is written to the store as it ends (:mod:`cc2api.webhook_records`) and
counted in ``cc2api_webhook_deliveries_total{outcome}`` once per delivery. Secrets
appear in no log, record or error.

Lifetime: :meth:`Deliverer.serve` runs in the app's nursery for as long as the app
is served; deliveries still waiting when it is cancelled are not sent.
"""

from __future__ import annotations

import json
import logging
import random
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import httpx
import trio

from . import __version__
from .codes import ErrorCode
from .errors import ApiError
from .keys import ApiKey
from .logs import run_extra
from .metrics import Metrics
from .models import ChatRequest
from .settings import Settings
from .store import Store
from .webhook_hosts import HostList, WebhookForbidden, WebhookTarget, check_url, resolve
from .webhook_records import WebhookAttempt
from .webhook_sign import SIGNATURE_HEADER, signature_header
from .webhook_wire import WebhookEnvelope, WebhookEventType, WebhookOutcome

if TYPE_CHECKING:
    from .registry import Registry
    from .runner import Run

__all__ = [
    "MAX_IN_FLIGHT",
    "MAX_RETRY_DELAY",
    "RESOLVER_THREADS",
    "Deliverer",
    "Destination",
    "WebhookSecretMissing",
    "follow_runs",
    "retry_delay",
]

log = logging.getLogger(__name__)

MAX_IN_FLIGHT = 32  # attempts under way at once, whatever WEBHOOK_MAX_PENDING allows
RESOLVER_THREADS = 8  # DNS lookups under way at once (POST /chat's and attempts')
_ERROR_CHARS = 300  # of an exception's text, in a record
MAX_RETRY_DELAY = 300.0  # seconds between two attempts, unless WEBHOOK_RETRY_SECONDS is more
_JITTER = 0.1  # a delay is lengthened by up to this fraction of it, at random
# 4xx answers that may change if asked again (timeout, too early, too many requests).
_RETRIED_4XX = frozenset({408, 425, 429})


def retry_delay(base: float, attempt: int, jitter: float) -> float:
    """Return the seconds to wait after failed attempt ``attempt`` (from 1).

    ``base`` doubled each attempt, capped at :data:`MAX_RETRY_DELAY` (or ``base`` when
    more), lengthened by ``jitter`` (0 to 1) times a tenth of it.
    """
    delay = min(base * 2.0 ** min(attempt - 1, 60), max(base, MAX_RETRY_DELAY))
    return delay * (1 + _JITTER * jitter)


def _final(status: int) -> bool:
    # A client error that asking again would get again.
    return 400 <= status < 500 and status not in _RETRIED_4XX


class WebhookSecretMissing(ApiError):
    """Raised when a run names a webhook_url but nothing can sign for it."""

    status = 400
    code = ErrorCode.WEBHOOK_SECRET_MISSING


@dataclass(frozen=True)
class Destination:
    """Where a run's webhooks go and what signs them (the secret never in a repr)."""

    target: WebhookTarget
    secret: str = field(repr=False)
    key_id: str | None


@dataclass(frozen=True)
class _Delivery:
    run_id: str
    delivery_id: str
    event_type: WebhookEventType
    body: bytes
    destination: Destination


class Deliverer:
    """Delivers the webhooks of every run of one app; see the module's page."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        metrics: Metrics,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._allowed = HostList(settings.webhook_allowed_hosts)
        secret = settings.webhook_secret
        self._admin_secret = None if secret is None else secret.get_secret_value()
        self._max_pending = settings.webhook_max_pending
        self._retry = settings.webhook_retry_seconds
        self._max_attempts = settings.webhook_max_attempts
        self._timeout = settings.webhook_timeout_seconds
        self._store = store
        self._metrics = metrics
        self._usage: dict[str, dict[str, Any]] = {}  # of ended runs, until their done
        self._clock = clock
        self._destinations: dict[str, Destination] = {}
        self._pending = 0
        self._in_flight = trio.CapacityLimiter(MAX_IN_FLIGHT)
        # Its own threads: a slow DNS server must not take trio's default pool's.
        self._resolvers = trio.CapacityLimiter(RESOLVER_THREADS)
        self._nursery: trio.Nursery | None = None
        self._client: httpx.AsyncClient | None = None

    @property
    def pending(self) -> int:
        """Return how many deliveries are waiting or under way."""
        return self._pending

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Own the deliveries' nursery and HTTP client until cancelled.

        Cancellation: every delivery under way or waiting stops (unsent ones are lost),
        and the client's connections close (shielded, bounded).
        """
        # trust_env=False: a proxy from the environment would connect elsewhere than
        # the address that was checked. No keep-alive: a connection is to a pinned
        # address, verified for one host's name, and must never carry another host's.
        # With webhooks off nothing is ever sent: no client, and none of the memory its
        # TLS context takes.
        client = (
            httpx.AsyncClient(
                timeout=self._timeout,
                follow_redirects=False,
                trust_env=False,
                limits=httpx.Limits(max_keepalive_connections=0),
            )
            if self._allowed
            else None
        )
        try:
            async with trio.open_nursery() as nursery:
                self._client, self._nursery = client, nursery
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._nursery = self._client = None
            if client is not None:
                with trio.CancelScope(shield=True), trio.move_on_after(2):
                    await client.aclose()

    async def destination(self, chat: ChatRequest, key: ApiKey | None) -> Destination | None:
        """Return where ``chat``'s run sends webhooks (its URL, else its key's), or None.

        Raises:
            WebhookForbidden: webhooks are off, or the URL's host is not listed or
                resolves to an address the rules refuse, or does not resolve within
                WEBHOOK_TIMEOUT_SECONDS (``webhook_forbidden``).
            WebhookSecretMissing: no secret signs for the run: the admin's runs need
                WEBHOOK_SECRET, a key made before webhooks a rotated secret.

        Cancellation: the host's lookup is abandoned; nothing is kept.
        """
        url = chat.webhook_url or (None if key is None else key.policy.webhook_url)
        if url is None:
            return None
        target = check_url(url, self._allowed)
        secret = self._admin_secret if key is None else key.webhook_secret
        if secret is None:
            whose = (
                "set WEBHOOK_SECRET (16 characters or more) for the admin's runs"
                if key is None
                else f"key {key.name} has no webhook secret yet: PATCH /admin/keys/{key.name} "
                'with {"rotate_webhook_secret": true} gives it one'
            )
            raise WebhookSecretMissing(f"webhook_url needs a secret to sign with: {whose}")
        with trio.move_on_after(self._timeout) as lookup:
            await resolve(target, self._allowed, self._resolvers)
        if lookup.cancelled_caught:
            raise WebhookForbidden(
                f"webhook_url: could not resolve {target.host} in time "
                f"(WEBHOOK_TIMEOUT_SECONDS={self._timeout:g})"
            )
        return Destination(target, secret, None if key is None else key.key_id)

    def watch(self, run_id: str, destination: Destination | None) -> None:
        """Send the webhooks of run ``run_id`` to ``destination`` (None: it has none)."""
        if destination is not None:
            self._destinations[run_id] = destination

    def watches(self, run_id: str) -> bool:
        """Return whether run ``run_id`` has somewhere to send its webhooks."""
        return run_id in self._destinations

    def run_ended(self, run_id: str, usage: Mapping[str, Any]) -> None:
        """Keep what run.completed adds to the done event (the run's cost and usage).

        The registry calls it as the run ends, just before its ``done`` event.
        """
        if run_id in self._destinations:
            self._usage[run_id] = dict(usage)

    def observe(self, run_id: str, event: str, data: Mapping[str, Any]) -> None:
        """Take in one gateway event of a run; enqueue the webhook it makes, if any."""
        if event == "approval":
            destination = self._destinations.get(run_id)
            if destination is not None and data.get("refused") is None:
                self.enqueue(run_id, destination, "approval.requested", dict(data))
        elif event == "done":
            destination = self._destinations.pop(run_id, None)
            usage = self._usage.pop(run_id, {})
            if destination is not None:
                completed = {**data, **usage}
                self.enqueue(run_id, destination, "run.completed", completed)

    def enqueue(
        self,
        run_id: str,
        destination: Destination,
        event_type: WebhookEventType,
        data: dict[str, Any],
    ) -> None:
        """Start delivering one webhook; never waits, and drops it when too many wait."""
        envelope = WebhookEnvelope(
            id=str(uuid.uuid4()),
            type=event_type,
            created=int(self._clock()),
            process_id=run_id,
            data=data,
        )
        body = json.dumps(envelope.wire(), separators=(",", ":"), default=str).encode()
        delivery = _Delivery(run_id, envelope.id, event_type, body, destination)
        nursery = self._nursery
        if nursery is None or self._pending >= self._max_pending:
            why = "not serving" if nursery is None else f"{self._pending} pending"
            log.warning(
                "run %s: webhook %s dropped (%s)", run_id, event_type, why, extra=run_extra(run_id)
            )
            self._metrics.webhook_delivery("dropped")
            if nursery is not None and self._pending < 2 * self._max_pending:
                self._pending += 1  # the record's write counts, so drops stay bounded
                nursery.start_soon(self._record_drop, delivery)
            return
        self._pending += 1
        nursery.start_soon(self._deliver, delivery)

    async def _record_drop(self, delivery: _Delivery) -> None:
        try:
            await self._record(
                delivery, 0, None, f"over WEBHOOK_MAX_PENDING={self._max_pending}", "dropped"
            )
        finally:
            self._pending -= 1

    async def _deliver(self, delivery: _Delivery) -> None:
        outcome: WebhookOutcome = "failed"
        try:
            for attempt in range(1, self._max_attempts + 1):
                async with self._in_flight:
                    status, error = await self._attempt(delivery)
                if status is not None and 200 <= status < 300:
                    outcome = "delivered"
                elif isinstance(error, _Refused):
                    outcome = "refused"
                elif attempt < self._max_attempts and not (status and _final(status)):
                    outcome = "retrying"
                else:
                    outcome = "failed"
                await self._record(
                    delivery, attempt, status, None if error is None else str(error), outcome
                )
                if outcome != "retrying":
                    break
                # Jitter only spreads retries out: no secret depends on it.
                await trio.sleep(retry_delay(self._retry, attempt, random.random()))  # noqa: S311
        finally:
            self._pending -= 1
        self._metrics.webhook_delivery(outcome)
        log.info(
            "run %s: webhook %s %s",
            delivery.run_id,
            delivery.event_type,
            outcome,
            extra=run_extra(delivery.run_id),
        )

    async def _attempt(self, delivery: _Delivery) -> tuple[int | None, _Problem | None]:
        client = self._client
        if client is None:
            return None, _Problem("the server is stopping")
        sending = _Sending(client, self._allowed, self._resolvers, self._timeout, self._clock)
        return await _send(sending, delivery)

    async def _record(
        self,
        delivery: _Delivery,
        attempt: int,
        status: int | None,
        error: str | None,
        outcome: WebhookOutcome,
    ) -> None:
        record = WebhookAttempt(
            run_id=delivery.run_id,
            api_key_id=delivery.destination.key_id,
            delivery_id=delivery.delivery_id,
            event_type=delivery.event_type,
            attempt=attempt,
            at=datetime.now(UTC),
            status_code=status,
            error=error,
            outcome=outcome,
        )
        try:
            await self._store.add_webhook_attempt(record)
        except Exception:
            log.exception(
                "run %s: a webhook attempt could not be recorded",
                delivery.run_id,
                extra=run_extra(delivery.run_id),
            )


@dataclass(frozen=True)
class _Sending:
    """What every attempt is sent with."""

    client: httpx.AsyncClient
    allowed: HostList
    resolvers: trio.CapacityLimiter
    timeout: float
    clock: Callable[[], float]


async def _send(sending: _Sending, delivery: _Delivery) -> tuple[int | None, _Problem | None]:
    """Make one attempt at ``delivery``: return the answer's status, or why there was none.

    Cancellation: the attempt is abandoned (its connection closed by httpx).
    """
    destination = delivery.destination
    target = destination.target
    try:
        with trio.fail_after(sending.timeout):
            address = await resolve(target, sending.allowed, sending.resolvers)
            url, headers, extensions = target.pinned(address)
            sent_at = int(sending.clock())
            headers.update(
                {
                    "Content-Type": "application/json",
                    "User-Agent": f"cc2api/{__version__}",
                    "X-Cc2api-Event": delivery.event_type,
                    "X-Cc2api-Delivery": delivery.delivery_id,
                    SIGNATURE_HEADER: signature_header(destination.secret, sent_at, delivery.body),
                }
            )
            request = sending.client.build_request(
                "POST", url, content=delivery.body, headers=headers, extensions=extensions
            )
            # Only the status is wanted: the receiver's body is never read.
            response = await sending.client.send(request, stream=True)
            await response.aclose()
            return response.status_code, None
    except WebhookForbidden as refused:
        return None, _Refused(refused.detail)
    except trio.TooSlowError:
        return None, _Problem(f"no answer within {sending.timeout:g} s")
    except httpx.HTTPError as error:
        # The text names no secret; it may name the URL, which the caller sent.
        return None, _Problem(f"{type(error).__name__}: {error}"[:_ERROR_CHARS])
    except Exception as error:
        # A fault of ours or of a library's must fail this delivery only, never the
        # app's nursery. Only its type is logged above DEBUG: its text could hold
        # what the request carried.
        log.error(  # noqa: TRY400 (no traceback: see above)
            "run %s: webhook %s attempt failed unexpectedly (%s)",
            delivery.run_id,
            delivery.event_type,
            type(error).__name__,
            extra=run_extra(delivery.run_id),
        )
        log.debug("the unexpected error", exc_info=True, extra=run_extra(delivery.run_id))
        return None, _Problem(f"an unexpected {type(error).__name__}")


def follow_runs(deliverer: Deliverer, registry: Registry) -> None:
    """Tell ``deliverer`` of every event of ``registry``'s runs, and of each one's end."""

    def ended(run: Run) -> None:
        if not deliverer.watches(run.run_id):
            return  # the common case: no webhooks, so no record to build at every run's end
        # What run.completed adds to the done event: the run's cost and tokens.
        record = registry.record(run)
        usage = {
            "total_cost_usd": record.total_cost_usd,
            "usage": record.usage,
            "num_turns": record.num_turns,
        }
        deliverer.run_ended(run.run_id, usage)

    registry.on_end(ended)
    registry.on_event(deliverer.observe)


class _Problem(str):
    """Why an attempt got no answer, in words."""

    __slots__ = ()


class _Refused(_Problem):
    """An attempt the SSRF rules refused: no later attempt would be allowed either."""

    __slots__ = ()
