"""What a run used: tokens per model and its cost, from the CLI's own lines.

A run that ends with a ``result`` line has the CLI's figures: ``modelUsage`` per model
(tokens and ``costUSD``) and ``total_cost_usd``. A run cancelled before its result
has none: its tokens are summed from the ``usage`` of its assistant messages (each
message counted once, by its id: the CLI prints one line per content block, each with
the message's usage so far), and its cost is unknown. Nothing the CLI prints is
trusted: a figure of the wrong type counts as 0.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "TOKEN_FIELDS",
    "USAGE_MARK",
    "AssistantUsage",
    "ModelUsage",
    "RunUsage",
    "dump_usage",
    "load_usage",
    "usage_of",
]

# Our names for the four token counts, and the CLI's in a message's usage and in modelUsage.
TOKEN_FIELDS = {
    "input_tokens": ("input_tokens", "inputTokens"),
    "output_tokens": ("output_tokens", "outputTokens"),
    "cache_read_tokens": ("cache_read_input_tokens", "cacheReadInputTokens"),
    "cache_creation_tokens": ("cache_creation_input_tokens", "cacheCreationInputTokens"),
}
USAGE_MARK = b'"usage":{'
ID_MARK = b'"id":"'
MODEL_MARK = b'"model":"'
# An assistant line's message id and model are near its start; its usage near its end.
HEAD_SCAN = 512
# The most kept of a message's usage object: far more than it takes, bounded all the same.
TAIL_BYTES = 2048
UNKNOWN_MODEL = "unknown"
_decoder = json.JSONDecoder()


def _tokens(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _money(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return float(value)
    return None


@dataclass(frozen=True)
class ModelUsage:
    """One model's tokens in one run, and its cost (None: unknown)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_creation_tokens: int = 0
    cost_usd: float | None = None

    @classmethod
    def from_counts(cls, counts: Mapping[str, Any], *, camel: bool) -> ModelUsage:
        """Read the CLI's counts: a message's ``usage``, or a ``modelUsage`` entry (camel)."""
        names = {ours: theirs[1 if camel else 0] for ours, theirs in TOKEN_FIELDS.items()}
        return cls(
            **{ours: _tokens(counts.get(theirs)) for ours, theirs in names.items()},
            cost_usd=_money(counts.get("costUSD")) if camel else None,
        )

    def plus(self, other: ModelUsage) -> ModelUsage:
        """Return the sum; a cost is known only when both are."""
        cost = (
            None
            if self.cost_usd is None or other.cost_usd is None
            else self.cost_usd + other.cost_usd
        )
        return ModelUsage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cache_read_tokens + other.cache_read_tokens,
            self.cache_creation_tokens + other.cache_creation_tokens,
            cost,
        )


@dataclass(frozen=True)
class RunUsage:
    """A run's tokens by model, and its cost in USD (None: unknown, the run had no result)."""

    models: Mapping[str, ModelUsage] = field(default_factory=dict)
    cost_usd: float | None = None

    @property
    def total(self) -> ModelUsage:
        """Return the tokens of every model together, with the run's cost."""
        total = ModelUsage(cost_usd=0.0)
        for usage in self.models.values():
            total = total.plus(ModelUsage(**{**usage.__dict__, "cost_usd": 0.0}))
        return ModelUsage(**{**total.__dict__, "cost_usd": self.cost_usd})


class AssistantUsage:
    """The usage of a run's assistant messages, by message id: the figures of a run without
    a result.

    Fed the raw lines, it keeps, per message, only the bytes from its last line's
    ``"usage":{`` on (at most TAIL_BYTES), and parses them only when asked: the CLI
    prints a line per content block, and only the last line of a message counts, so
    parsing each as it passes would be work thrown away on the stream's hot path.
    """

    def __init__(self) -> None:
        self._tails: dict[str, tuple[str, bytes]] = {}  # message id -> model, usage's bytes
        self._parsed: dict[str, tuple[str, ModelUsage]] = {}

    def see(self, line: bytes) -> None:
        """Take in one assistant line (its message's id, model and usage so far)."""
        at = line.rfind(USAGE_MARK)
        if at < 0:
            return
        start = at + len(USAGE_MARK) - 1
        head = line[:HEAD_SCAN]
        message_id = _quoted_after(head, ID_MARK) or f"line-{len(self._tails)}"
        model = _quoted_after(head, MODEL_MARK) or UNKNOWN_MODEL
        # A later line of the same message carries its usage so far: the last one counts.
        self._tails[message_id] = (model, line[start : start + TAIL_BYTES])
        self._parsed.pop(message_id, None)

    def usage(self) -> RunUsage:
        """Return the tokens by model; the cost is unknown."""
        for message_id, (model, tail) in self._tails.items():
            if message_id not in self._parsed:
                self._parsed[message_id] = (model, _counts(tail))
        models: dict[str, ModelUsage] = {}
        for model, usage in self._parsed.values():
            models[model] = models.get(model, ModelUsage()).plus(usage)
        return RunUsage(models=models, cost_usd=None)


def _counts(tail: bytes) -> ModelUsage:
    """Return the usage object at the start of ``tail``; nothing for one that is not."""
    try:
        counts, _ = _decoder.raw_decode(tail.decode("utf-8", "replace"))
    except (ValueError, RecursionError):
        return ModelUsage()
    return ModelUsage.from_counts(counts, camel=False) if isinstance(counts, dict) else ModelUsage()


def _quoted_after(head: bytes, mark: bytes) -> str | None:
    at = head.find(mark)
    if at < 0:
        return None
    start = at + len(mark)
    end = head.find(b'"', start)
    if end < 0 or end - start > 200:
        return None
    return head[start:end].decode("utf-8", "replace")


def usage_of(result: Mapping[str, Any] | None, assistant: AssistantUsage) -> RunUsage:
    """Return a run's usage: its last result's figures, else its assistant messages' tokens."""
    if result is None:
        return assistant.usage()
    cost = _money(result.get("total_cost_usd"))
    by_model = result.get("modelUsage")
    models: dict[str, ModelUsage] = {}
    if isinstance(by_model, dict):
        for model, counts in by_model.items():
            if isinstance(counts, dict):
                models[str(model)[:200]] = ModelUsage.from_counts(counts, camel=True)
    if not models:  # a CLI without modelUsage: its usage, under the one model it used
        usage = result.get("usage")
        if isinstance(usage, dict):
            models[UNKNOWN_MODEL] = ModelUsage.from_counts(usage, camel=False)
    return RunUsage(models=models, cost_usd=cost)


def dump_usage(usage: RunUsage) -> str:
    """Return ``usage`` as JSON text, as the store keeps it (:func:`load_usage` reads it)."""
    models = {name: dict(counts.__dict__) for name, counts in usage.models.items()}
    return json.dumps({"models": models, "cost_usd": usage.cost_usd}, separators=(",", ":"))


def load_usage(text: str) -> RunUsage:
    """Return the usage :func:`dump_usage` wrote; a figure of the wrong type counts as 0."""
    found = json.loads(text)
    models: dict[str, ModelUsage] = {}
    if not isinstance(found, dict):
        return RunUsage()
    given = found.get("models")
    for name, counts in (given if isinstance(given, dict) else {}).items():
        if isinstance(counts, dict):
            models[str(name)] = ModelUsage(
                **{ours: _tokens(counts.get(ours)) for ours in TOKEN_FIELDS},
                cost_usd=_money(counts.get("cost_usd")),
            )
    return RunUsage(models=models, cost_usd=_money(found.get("cost_usd")))
