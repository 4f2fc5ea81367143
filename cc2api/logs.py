"""The server's log: text lines (the default) or one JSON object per line (LOG_FORMAT=json).

Records may carry these fields (``extra=`` on the logging call), which JSON lines
show as keys of their own: ``run_id``, ``key`` (the API key's name, or ``admin``),
``route``, ``method``, ``path``, ``status``, ``duration_ms`` and ``address``.
Nothing here reads a record's arguments beyond its message: what a call does not
pass cannot leak, and no call passes a prompt, a token or a password.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, Literal

__all__ = ["FIELDS", "JsonFormatter", "configure", "run_extra"]

# What a JSON line may carry besides time, level, logger and message, in this order.
FIELDS = ("run_id", "key", "route", "method", "path", "status", "duration_ms", "address")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def run_extra(run_id: str, key: str | None = None) -> dict[str, Any]:
    """Return the ``extra=`` of a log line about one run (and the key that started it)."""
    return {"run_id": run_id} if key is None else {"run_id": run_id, "key": key}


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object: time (UTC, ISO 8601), level, logger, message."""

    def format(self, record: logging.LogRecord) -> str:
        """Return the record as a line of JSON, with its known fields and any traceback."""
        moment = datetime.fromtimestamp(record.created, UTC)
        entry: dict[str, Any] = {
            "time": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = record.__dict__
        for name in FIELDS:
            value = fields.get(name)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        # One line whatever the message holds: json.dumps escapes newlines.
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure(level: str, log_format: Literal["text", "json"]) -> None:
    """Send every log record to stderr, as text lines or as JSON lines."""
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
