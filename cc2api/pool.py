"""The warm pool: CLIs spawned ahead of need, so a run's first event comes in milliseconds.

A CLI started with stream-json input prints nothing until its first user message,
and most of a short run's time is its start-up. The pool spawns CLIs for the plans
runs have been asking for (:class:`~cc2api.pool_profile.Profile`), and a run whose
profile and key match a waiting one takes it instead of spawning. It is off unless
POOL_SIZE is set.

Bounds. At most POOL_SIZE CLIs wait, in all, shared among the profiles kept warm:
the declared ones (POOL_PROFILES_FILE) with their own sizes, then the
POOL_PROFILES_MAX most recently used, split evenly. Their memory (each one's whole
tree) stays within POOL_MAX_RSS_MB. A waiting CLI is retired after
POOL_MAX_IDLE_SECONDS, when a file it read at start changed, or when its profile
is dropped; one that exits or prints is spoiled. Each is replaced.

Ownership. Every pooled CLI's watch task runs in the pool's nursery, which lives in
the registry's runs nursery: whatever ends the runs (shutdown, a fault of the
registry) ends the pool's CLIs too, each torn down as a run's tree is.
"""

from __future__ import annotations

import logging
import os
from collections import Counter, OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import trio

from .confinement import ConfineSetup
from .launch import pool_marker
from .limits import RunLimits
from .pool_member import Warm
from .pool_profile import Profile
from .pool_spawn import Mismatch, start_warm
from .pool_targets import targets
from .proctree import tree_usage
from .safecopy import CopyTooLarge
from .settings import MiB, Settings
from .wire import PoolHealth

log = logging.getLogger(__name__)

__all__ = ["Pool", "PoolStats"]

SWEEP_SECONDS = 1.0  # how often waiting CLIs are checked for staleness and age
STARTING_POLL_SECONDS = 0.1  # how often a starting CLI is looked at, to start the next
# CLIs started at once: a start takes most of a CPU for about a second, and the runs
# under way need the others.
STARTS_AT_ONCE = max(1, (os.cpu_count() or 2) // 2)
# What a CLI counts as until it has started (an idle one holds ~154 MB), and at least.
ESTIMATE_BYTES = 160 * MiB
# A profile whose CLIs keep dying before use is tried again after this, doubling.
BACKOFF_SECONDS = (1.0, 60.0)

Ident = tuple[str | None, str]


@dataclass
class PoolStats:
    """What the pool has done since start, and holds now."""

    hits: int = 0
    misses: int = 0
    spawned: int = 0
    rss_bytes: int = 0
    profiles: int = 0
    retired: Counter[str] = field(default_factory=Counter)  # by reason


class Pool:
    """Spawns, files, hands out and retires pooled CLIs; one per registry."""

    def __init__(
        self,
        settings: Settings,
        *,
        environ: Mapping[str, str],
        confine: ConfineSetup,
        limits: RunLimits,
        reap: Callable[[], None],
        store_id: str,
    ) -> None:
        self.size = settings.pool_size
        # Its CLIs' ids: the store's in them, so recovery ends (and cleans up) only its own.
        self._marker = pool_marker(store_id)
        self._max_profiles = settings.pool_profiles_max
        self._max_idle = settings.pool_max_idle_seconds
        self._max_rss = settings.pool_max_rss_mb * MiB
        self._environ = environ
        self._confine = confine
        self._limits = limits
        self._reap = reap
        self._declared: dict[Ident, tuple[Profile, int]] = {}
        self._recent: OrderedDict[Ident, Profile] = OrderedDict()  # most recent last
        self._idle: dict[Ident, list[Warm]] = {}  # oldest first
        self._backoff: dict[Ident, tuple[int, float]] = {}  # failures in a row, not before
        self._sizes: dict[Ident, int] = {}  # what a started CLI of the profile last held
        self._barred: set[str] = set()  # keys revoked, or not to be pooled
        self._wake = trio.Event()
        self._nursery: trio.Nursery | None = None
        self.stats = PoolStats()

    def health(self) -> PoolHealth:
        """Return the pool as ``GET /health`` shows it."""
        stats = self.stats
        everyone = self._everyone()
        started = sum(warm.started for warm in everyone)
        return PoolHealth(
            size=self.size,
            idle=started,
            starting=len(everyone) - started,
            profiles=stats.profiles,
            hits=stats.hits,
            misses=stats.misses,
            spawned=stats.spawned,
            retired=dict(stats.retired),
            rss_bytes=stats.rss_bytes,
            max_rss_bytes=self._max_rss,
        )

    @property
    def enabled(self) -> bool:
        """Return whether the pool keeps CLIs at all (POOL_SIZE > 0)."""
        return self.size > 0

    def declare(self, profile: Profile, size: int) -> None:
        """Keep ``size`` CLIs of ``profile`` warm from now on (POOL_PROFILES_FILE)."""
        self._declared[profile.ident] = (profile, size)
        self._wake.set()

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Keep the pool filled until cancelled.

        Cancellation: every waiting CLI is torn down (shielded, bounded by the kill
        grace) before this returns; handed-over CLIs are their runs'.
        """
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            try:
                while True:
                    try:
                        await self._fill_once()
                    except Exception:
                        # The pool is an optimization: a fault of its own must not end
                        # the runs' nursery, and the server with it.
                        log.exception("pool: filling failed; trying again in a second")
                        await trio.sleep(SWEEP_SECONDS)
            finally:
                self._nursery = None
                nursery.cancel_scope.cancel()

    async def take(self, profile: Profile) -> Warm | None:
        """Return a waiting CLI of ``profile`` (now the caller's), or None: spawn cold.

        Notes the profile as just used. A CLI that is stale, too old or spoiled is
        retired on the way, never returned. Cancellation: shielded hand-over (see
        :meth:`Warm.hand_over`); a returned CLI is the caller's to tear down.
        """
        if not self.enabled or self._nursery is None or profile.key_id in self._barred:
            return None
        ident = profile.ident
        self._note(profile)
        now = trio.current_time()
        waiting = self._idle.get(ident, [])
        while waiting:
            # A started one, the oldest first (the others stay fresh longer); failing
            # that, one still starting, further on than a cold spawn.
            warm = next((w for w in waiting if w.started), waiting[0])
            waiting.remove(warm)
            if warm.reason is not None:
                continue  # spoiled, its watch about to unlist it
            if unfit := warm.unfit(now, self._max_idle, self._confine.real_config):
                warm.retire(unfit)
            elif await warm.hand_over() is not None:
                self.stats.hits += 1
                self._backoff.pop(ident, None)
                self._wake.set()
                return warm
        self.stats.misses += 1
        self._wake.set()
        return None

    def key_changed(self, key_id: str, *, poolable: bool) -> None:
        """Drop a key's profiles and retire its waiting CLIs: its policy changed, or it
        was revoked. A key not ``poolable`` (revoked, or ``pooled: false``) gets none
        until it is again, even for runs planned before."""
        for ident in [i for i in self._recent if i[0] == key_id]:
            self._drop(ident, "evicted")
        for ident in [i for i in self._declared if i[0] == key_id]:
            del self._declared[ident]
            self._drop(ident, "evicted")
        if poolable:
            self._barred.discard(key_id)
        else:
            self._barred.add(key_id)

    def _note(self, profile: Profile) -> None:
        ident = profile.ident
        if ident in self._declared:
            return
        self._recent[ident] = profile
        self._recent.move_to_end(ident)
        while len(self._recent) > self._max_profiles:
            oldest = next(iter(self._recent))
            self._drop(oldest, "evicted")

    def _drop(self, ident: Ident, reason: str) -> None:
        self._recent.pop(ident, None)
        self._backoff.pop(ident, None)
        self._sizes.pop(ident, None)
        for warm in self._idle.pop(ident, []):
            warm.retire(reason)

    def _sweep(self) -> None:
        now = trio.current_time()
        config = self._confine.real_config
        for waiting in self._idle.values():
            for warm in list(waiting):
                if unfit := warm.unfit(now, self._max_idle, config):
                    waiting.remove(warm)
                    warm.retire(unfit)

    def _targets(self) -> dict[Ident, int]:
        declared = [(ident, size) for ident, (_, size) in self._declared.items()]
        return targets(self.size, declared, list(reversed(self._recent)))

    async def _fill_once(self) -> None:
        self._wake = trio.Event()
        self._sweep()
        await self._measure()
        wanted = self._targets()
        now = trio.current_time()
        idle = {ident: len(waiting) for ident, waiting in self._idle.items()}
        total = sum(idle.values())
        self.stats.profiles = len(wanted)
        short = [
            ident
            for ident, count in wanted.items()
            if idle.get(ident, 0) < count and self._backoff.get(ident, (0, 0.0))[1] <= now
        ]
        for ident in [i for i, count in idle.items() if count > wanted.get(i, 0)]:
            # Over its share (its profile fell back): the surplus goes only when a profile
            # that can be spawned for needs the room.
            if short and total >= self.size:
                self._idle[ident].pop().retire("rebalanced")
                total -= 1
        starting = sum(not warm.started for warm in self._everyone())
        room = total < self.size and starting < STARTS_AT_ONCE
        if short and room and self._counted() + self._estimate(short[0]) <= self._max_rss:
            await self._spawn(self._profile(short[0]))
            return
        if self._counted() > self._max_rss and total - starting:
            self._retire_one("memory")
        backoffs = [max(0.0, t - now) for _, t in self._backoff.values() if t > now]
        deadline = min([STARTING_POLL_SECONDS if starting else SWEEP_SECONDS, *backoffs])
        with trio.move_on_after(deadline):
            await self._wake.wait()

    def _profile(self, ident: Ident) -> Profile:
        declared = self._declared.get(ident)
        return declared[0] if declared is not None else self._recent[ident]

    def _everyone(self) -> list[Warm]:
        # Not those spoiled and about to be unlisted by their watch.
        return [w for waiting in self._idle.values() for w in waiting if w.reason is None]

    def _estimate(self, ident: Ident) -> int:
        # What a CLI of the profile will hold once started: as much as the last one did.
        return max(self._sizes.get(ident, 0), ESTIMATE_BYTES)

    def _counted(self) -> int:
        # A started CLI counts as what it holds (never less than the estimate); one still
        # starting, whose memory peaks at twice what it will keep, as its profile's estimate.
        return sum(
            max(warm.rss_bytes, ESTIMATE_BYTES)
            if warm.started
            else self._estimate(warm.profile.ident)
            for warm in self._everyone()
        )

    def _retire_one(self, reason: str) -> None:
        started = [warm for warm in self._everyone() if warm.started]
        newest = max(started, key=lambda warm: warm.spawned_at)
        self._idle[newest.profile.ident].remove(newest)
        newest.retire(reason)
        # Its profile's CLIs outgrow the room: do not start the next one at once.
        self._failed(newest.profile.ident)

    async def _measure(self) -> None:
        everyone = self._everyone()
        usage = await trio.to_thread.run_sync(tree_usage, [warm.cli.pid for warm in everyone])
        now = trio.current_time()
        for warm in everyone:
            if (used := usage.get(warm.cli.pid)) is not None:
                warm.measured(used, now)
                if warm.started:
                    self._sizes[warm.profile.ident] = warm.rss_bytes
        # Those handed over while it measured are the runs' now.
        self.stats.rss_bytes = sum(warm.rss_bytes for warm in self._everyone())

    async def _spawn(self, profile: Profile) -> None:
        ident = profile.ident
        try:
            warm = await start_warm(
                profile,
                self._marker,
                environ=self._environ,
                confine=self._confine,
                limits=self._limits,
                reap=self._reap,
            )
        except Mismatch:
            log.exception("pool: a profile is no longer kept warm")
            self._drop(ident, "evicted")
            self._declared.pop(ident, None)
            return
        except (OSError, CopyTooLarge) as error:
            log.warning("pool: could not start a CLI for %s: %s", profile.cwd, error)
            self._failed(ident)
            return
        self.stats.spawned += 1
        assert self._nursery is not None  # noqa: S101 (called from serve's loop only)
        self._nursery.start_soon(warm.watch, self._ended, name=f"pooled CLI {warm.marker}")
        if ident in self._declared or ident in self._recent:
            self._idle.setdefault(ident, []).append(warm)
        else:
            warm.retire("evicted")  # dropped (evicted, or its key changed) as it started

    def _failed(self, ident: Ident) -> None:
        count = self._backoff.get(ident, (0, 0.0))[0] + 1
        first, ceiling = BACKOFF_SECONDS
        delay = min(ceiling, first * 2 ** (count - 1))
        self._backoff[ident] = (count, trio.current_time() + delay)

    def _ended(self, warm: Warm) -> None:
        waiting = self._idle.get(warm.profile.ident, [])
        if warm in waiting:
            waiting.remove(warm)
        if warm.reason is None:
            return  # handed over
        self.stats.retired[warm.reason] += 1
        if warm.reason in ("exited", "printed", "error"):
            log.warning(
                "pool: a CLI waiting for %s %s before its first message; replacing it",
                warm.profile.cwd,
                warm.reason,
            )
            self._failed(warm.profile.ident)
        self._wake.set()
