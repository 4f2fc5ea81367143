"""The events a run's stream carries, as the client hands them to its caller."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ..wire import (
    Approval,
    ApprovalAnswered,
    DoneEvent,
    DroppedEvent,
    ErrorEvent,
    ProcessEvent,
    QueuedEvent,
    Wire,
)
from .sse import Frame

# The core's typed shape of each event that has one; ``message`` is the CLI's own line.
MODELS: dict[str, type[Wire]] = {
    model.event: model
    for model in (
        ProcessEvent,
        QueuedEvent,
        ErrorEvent,
        DoneEvent,
        DroppedEvent,
        Approval,
        ApprovalAnswered,
    )
}

FINAL = "done"


@dataclass(frozen=True)
class Event:
    """One event of a run: ``id`` (its sequence number; None for ``dropped`` and a lost
    run's bare ``done``), ``event`` (its name), ``data`` (parsed JSON: a dict for every
    event the gateway makes and every JSON line of the CLI; a ``message`` line that is
    not JSON stays a str) and ``line``, the data exactly as it came."""

    id: int | None
    event: str
    data: Any = field(compare=False)
    line: str

    @classmethod
    def from_frame(cls, frame: Frame) -> Event:
        """Return the event an SSE frame carries."""
        try:
            data: Any = json.loads(frame.data)
        except ValueError:
            data = frame.data
        return cls(frame.id, frame.event, data, frame.data)

    @property
    def model(self) -> Wire | None:
        """The core's typed model of this event (``done``, ``error``, ``approval``, ...);
        None for a CLI line or an event without one."""
        shape = MODELS.get(self.event)
        if shape is None or not isinstance(self.data, dict):
            return None
        return shape.model_validate(self.data)

    @property
    def type(self) -> str | None:
        """For a CLI line: its ``type`` (``system``, ``assistant``, ``result``, ...)."""
        if self.event == "message" and isinstance(self.data, dict):
            kind = self.data.get("type")
            return kind if isinstance(kind, str) else None
        return None
