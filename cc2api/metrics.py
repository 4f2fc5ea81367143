"""Prometheus metrics: one registry per app, fed by the registry, the store and the hooks.

Nothing here is global: each :class:`Metrics` owns its ``CollectorRegistry`` (never
the default one), so ``create_app`` can run many times in one process. Label values
are bounded: key names (the admin makes them), routes (the URL map's rules, or
``unmatched``), statuses, and models (at most :data:`MAX_MODELS`, then ``other``).
No label ever holds a run id, a path or anything a caller typed.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from .runner import Run
    from .slots import Slots
    from .wire import PoolHealth

__all__ = ["MAX_MODELS", "OTHER_MODEL", "Metrics", "bearer_matches"]

MAX_MODELS = 50
OTHER_MODEL = "other"
# Seconds: a run lasts from a second to hours; a queue wait and a teardown are short.
_RUN_BUCKETS = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, float("inf"))
_SHORT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, float("inf"))
_TOKEN_KINDS = ("input", "output", "cache_read", "cache_creation")


def bearer_matches(header: str | None, token: str | None) -> bool:
    """Return whether ``header`` is ``Bearer <token>``, compared in constant time."""
    if token is None or not header:
        return False
    scheme, _, sent = header.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(sent.strip().encode(), token.encode())


class _AtScrape(Collector):
    """Read at scrape time: running and queued runs, the store's backlog, and SSE bytes.

    SSE bytes are a plain int added to per chunk (no lock: the event loop is one thread),
    and shown as a counter here: the hottest count costs an addition.
    """

    def __init__(self) -> None:
        self.slots: Slots | None = None  # none yet: 0 runs
        self.backlog: Callable[[], int] = lambda: 0
        self.pool: Callable[[], PoolHealth] | None = None
        self.sse_bytes = 0

    def collect(self) -> Iterator[Metric]:
        """Yield the three gauges as they stand now."""
        slots = self.slots
        running = GaugeMetricFamily("cc2api_runs_running", "Runs whose CLI is running.")
        queued = GaugeMetricFamily("cc2api_runs_queued", "Runs waiting for a free slot.")
        running.add_metric([], 0 if slots is None else slots.running)
        queued.add_metric([], 0 if slots is None else slots.queued)
        backlog = GaugeMetricFamily(
            "cc2api_store_backlog_bytes", "Event bytes queued for the store, not yet written."
        )
        backlog.add_metric([], self.backlog())
        sse = CounterMetricFamily("cc2api_sse_bytes", "Bytes of SSE bodies sent.")
        sse.add_metric([], self.sse_bytes)
        yield from (running, queued, backlog, sse)
        if self.pool is not None:
            yield from _pool_metrics(self.pool())


def _pool_metrics(pool: PoolHealth) -> Iterator[Metric]:
    gauges = (
        ("cc2api_pool_size", "POOL_SIZE: the most CLIs the warm pool keeps waiting.", pool.size),
        ("cc2api_pool_idle", "Pooled CLIs waiting for a run.", pool.idle),
        ("cc2api_pool_rss_bytes", "Resident memory of the waiting CLIs' trees.", pool.rss_bytes),
    )
    for name, text, value in gauges:
        gauge = GaugeMetricFamily(name, text)
        gauge.add_metric([], value)
        yield gauge
    counters = (
        ("cc2api_pool_hits", "Runs that took a waiting CLI.", pool.hits),
        ("cc2api_pool_misses", "Poolable runs that found none and spawned cold.", pool.misses),
        ("cc2api_pool_spawned", "CLIs the warm pool started.", pool.spawned),
    )
    for name, text, value in counters:
        counter = CounterMetricFamily(name, text)
        counter.add_metric([], value)
        yield counter
    retired = CounterMetricFamily(
        "cc2api_pool_retired", "Pooled CLIs ended unused, by reason.", labels=["reason"]
    )
    for reason, count in sorted(pool.retired.items()):
        retired.add_metric([reason], count)
    yield retired


class Metrics:
    """What ``GET /metrics`` shows; each method is one thing the gateway saw happen."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        reg = self.registry
        self._at_scrape = _AtScrape()
        reg.register(self._at_scrape)
        self.runs_started = Counter(
            "cc2api_runs_started", "Runs accepted, by key.", ["key"], registry=reg
        )
        self.runs_finished = Counter(
            "cc2api_runs_finished",
            "Runs ended, by key and final status.",
            ["key", "status"],
            registry=reg,
        )
        self.run_duration = Histogram(
            "cc2api_run_duration_seconds",
            "A run's time from its acceptance to its end, by final status.",
            ["status"],
            buckets=_RUN_BUCKETS,
            registry=reg,
        )
        self.queue_wait = Histogram(
            "cc2api_queue_wait_seconds",
            "A run's time from its acceptance to its CLI's spawn.",
            buckets=_SHORT_BUCKETS,
            registry=reg,
        )
        self.cost = Counter(
            "cc2api_cost_usd",
            "Cost the CLI reported, in USD, by key and model (runs of unknown cost add 0).",
            ["key", "model"],
            registry=reg,
        )
        self.tokens = Counter(
            "cc2api_tokens",
            "Tokens used, by key, model and kind (input, output, cache_read, cache_creation).",
            ["key", "model", "kind"],
            registry=reg,
        )
        self.teardown_seconds = Histogram(
            "cc2api_teardown_seconds",
            "Time to end every process of a run, reap the CLI and close its pipes.",
            buckets=_SHORT_BUCKETS,
            registry=reg,
        )
        self.teardown_survivors = Counter(
            "cc2api_teardown_survivors",
            "Processes still alive after a teardown gave up (should stay 0).",
            registry=reg,
        )
        self.http_requests = Counter(
            "cc2api_http_requests",
            "HTTP requests answered, by route (the URL rule, or unmatched) and status.",
            ["route", "status"],
            registry=reg,
        )
        self.store_write = Histogram(
            "cc2api_store_write_seconds",
            "Time the store took to write one batch (one transaction).",
            buckets=_SHORT_BUCKETS,
            registry=reg,
        )
        self.webhook_deliveries = Counter(
            "cc2api_webhook_deliveries",
            "Webhook deliveries ended, by outcome (delivered, failed, refused, dropped).",
            ["outcome"],
            registry=reg,
        )
        self._models: set[str] = set()
        # Looked up once per route and status: labels() costs more than inc().
        self._requests: dict[tuple[str, int], Counter] = {}

    def watch(
        self, slots: Slots, backlog: Callable[[], int], pool: Callable[[], PoolHealth]
    ) -> None:
        """Read the runs' slots, the store's backlog and the pool at every scrape."""
        self._at_scrape.slots = slots
        self._at_scrape.backlog = backlog
        self._at_scrape.pool = pool

    def model_label(self, model: str) -> str:
        """Return ``model``, or ``other`` once :data:`MAX_MODELS` others have been seen."""
        models = self._models
        if model in models:
            return model
        if len(models) >= MAX_MODELS:
            return OTHER_MODEL
        models.add(model)
        return model

    # -- what the registry sees --------------------------------------------

    def run_started(self, run: Run) -> None:
        """Count a run accepted."""
        self.runs_started.labels(run.owner.name).inc()

    def run_spawned(self, run: Run) -> None:
        """Observe how long a run waited before its CLI started."""
        state = run.state
        if state.spawned_at is not None:
            wait = (state.spawned_at - state.started_at).total_seconds()
            self.queue_wait.observe(max(wait, 0.0))

    def run_ended(self, run: Run) -> None:
        """Count a run ended, its duration, and (once) its cost and tokens."""
        key, status, state = run.owner.name, str(run.status), run.state
        self.runs_finished.labels(key, status).inc()
        if state.finished_at is not None:
            seconds = (state.finished_at - state.started_at).total_seconds()
            self.run_duration.labels(status).observe(max(seconds, 0.0))
        for model, used in run.usage().models.items():
            label = self.model_label(model)
            if used.cost_usd:
                self.cost.labels(key, label).inc(used.cost_usd)
            counts = (
                used.input_tokens,
                used.output_tokens,
                used.cache_read_tokens,
                used.cache_creation_tokens,
            )
            for kind, count in zip(_TOKEN_KINDS, counts, strict=True):
                if count:
                    self.tokens.labels(key, label, kind).inc(count)

    def teardown(self, seconds: float, survivors: int) -> None:
        """Observe one teardown: its duration, and the processes it left alive."""
        self.teardown_seconds.observe(seconds)
        if survivors:
            self.teardown_survivors.inc(survivors)

    # -- what the HTTP side and the store see ------------------------------

    def request(self, route: str, status: int) -> None:
        """Count one answered request."""
        counter = self._requests.get((route, status))
        if counter is None:
            counter = self._requests[route, status] = self.http_requests.labels(route, str(status))
        counter.inc()

    def webhook_delivery(self, outcome: str) -> None:
        """Count one webhook delivery that ended with ``outcome``."""
        self.webhook_deliveries.labels(outcome).inc()

    def sse_sent(self, size: int) -> None:
        """Count bytes of an SSE body handed to the server (one chunk: a batch of events)."""
        self._at_scrape.sse_bytes += size

    def store_wrote(self, seconds: float) -> None:
        """Observe one batch the store wrote."""
        self.store_write.observe(seconds)

    def exposition(self) -> bytes:
        """Return every metric in the Prometheus text format."""
        return generate_latest(self.registry)
