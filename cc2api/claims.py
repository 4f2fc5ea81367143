"""Session claims: which live run holds each CLI session, and which runs are live where.

Two runs writing to one session would interleave their turns in its transcript, so a
session has at most one live run. ``--continue`` picks the project's most recent
session, which may be a live run's, so it needs the project to itself. A run's claims
are taken together at its start, may grow while it runs (the CLI names the session it
forked or created), and are all released when it ends.

Pure and synchronous: the store (:mod:`cc2api.store`) wraps it, and the registry never
awaits between a check and the claim it guards.
"""

from __future__ import annotations

from collections.abc import Sequence

from .errors import SessionBusy

__all__ = ["Claims"]


class Claims:
    """The sessions each live run holds, and the live runs of each project."""

    def __init__(self) -> None:
        self._holder: dict[str, str] = {}  # session id -> the run holding it
        self._held: dict[str, list[str]] = {}  # run id -> the sessions it holds
        self._project_of: dict[str, str] = {}  # run id -> its project key
        # Insertion-ordered (a dict, not a set), so the run named as a blocker is the oldest.
        self._live_in: dict[str, dict[str, None]] = {}  # project key -> its live runs

    def claim(
        self,
        run_id: str,
        sessions: Sequence[str],
        project: str,
        *,
        continue_from: str | None = None,
    ) -> None:
        """Claim ``sessions`` and a place in ``project`` for a new run, all or nothing.

        ``continue_from`` is the cwd of a run that continues the project's latest
        session (None for any other run); it needs the project to itself.

        Raises:
            SessionBusy: a live run holds one of ``sessions``, or is live in
                ``project`` when ``continue_from`` is given. Nothing is claimed.
        """
        for session in sessions:
            holder = self._holder.get(session)
            if holder is not None:
                raise SessionBusy(
                    f"session {session} is in use by run {holder}; wait for it to end or cancel it"
                )
        live_here = self._live_in.get(project)
        if continue_from is not None and live_here:
            blocker = next(iter(live_here))
            raise SessionBusy(
                f"run {blocker} is live in the project of {continue_from}, which "
                "continue_conversation would share; wait for it to end, cancel it, or "
                "use fork_session"
            )
        for session in sessions:
            self._holder[session] = run_id
        self._held[run_id] = list(sessions)
        self._live_in.setdefault(project, {})[run_id] = None
        self._project_of[run_id] = project

    def claim_later(self, run_id: str, session_id: str) -> str:
        """Claim a session a run has started using, unless another holds it; return the holder.

        The CLI has already opened the session by then, so a conflict cannot be
        refused, only reported: the caller compares the answer with ``run_id``.
        """
        holder = self._holder.setdefault(session_id, run_id)
        if holder == run_id:
            held = self._held.setdefault(run_id, [])
            if session_id not in held:
                held.append(session_id)
        return holder

    def release(self, run_id: str) -> None:
        """Release every session and the project place ``run_id`` holds; idempotent."""
        project = self._project_of.pop(run_id, None)
        if project is not None:
            live = self._live_in[project]
            live.pop(run_id, None)
            if not live:
                del self._live_in[project]
        for session in self._held.pop(run_id, ()):
            if self._holder.get(session) == run_id:
                del self._holder[session]

    def holder(self, session_id: str) -> str | None:
        """Return the live run holding ``session_id``, if any."""
        return self._holder.get(session_id)

    def held(self, run_id: str) -> list[str]:
        """Return the sessions ``run_id`` holds, in the order it claimed them."""
        return list(self._held.get(run_id, ()))

    def live_in(self, project: str) -> list[str]:
        """Return the live runs of ``project``, oldest first."""
        return list(self._live_in.get(project, ()))
