"""The descriptor budget: how many connections fit in RLIMIT_NOFILE beside the runs.

Every connection holds a descriptor, and so does every pipe of a run's CLI; a server
that runs out of them can neither accept nor start a run (EMFILE). So the soft limit
is raised to what the hard limit allows, and connections get what the runs leave.
"""

from __future__ import annotations

import resource

# As the unit's LimitNOFILE; more buys nothing with the default cap below.
NOFILE_TARGET = 65536
# Enough for any one machine's clients; a larger cap only lets an attacker hold more.
DEFAULT_MAX_CONNECTIONS = 4096
# The derived cap is never below this, even when the limit leaves less room: a server
# that accepts nothing is no better than one that hits EMFILE now and then.
MIN_CONNECTIONS = 16
# A run's CLI takes three pipes and a pidfd, a file or two for its system prompt, and a
# /proc scan opens one file at a time: 16 is ample.
DESCRIPTORS_PER_RUN = 16
# The server's own: listening sockets, epoll, trio's wakeup pipe, logs, modules, threads.
BASE_DESCRIPTORS = 128


def attainable_limit() -> int:
    """Return the soft RLIMIT_NOFILE this process can have: raised up to NOFILE_TARGET."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    ceiling = NOFILE_TARGET if hard == resource.RLIM_INFINITY else min(hard, NOFILE_TARGET)
    if soft == resource.RLIM_INFINITY:
        return NOFILE_TARGET
    return max(soft, ceiling)


def raise_limit() -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE to ``attainable_limit()``; return it before and after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = attainable_limit()
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return soft, target
    return soft, soft


def reserved(max_concurrent_runs: int) -> int:
    """Return the descriptors kept for the server itself and its runs."""
    return BASE_DESCRIPTORS + DESCRIPTORS_PER_RUN * max_concurrent_runs


def room(limit: int, max_concurrent_runs: int) -> int:
    """Return how many connections fit in ``limit`` beside the runs."""
    return limit - reserved(max_concurrent_runs)


def default_cap(limit: int, max_concurrent_runs: int) -> int:
    """Return the connection cap when MAX_CONNECTIONS is not set."""
    return max(MIN_CONNECTIONS, min(DEFAULT_MAX_CONNECTIONS, room(limit, max_concurrent_runs)))
