"""Turning what an ``on_approval`` callback returns into the body the gateway takes."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from ..models import ApprovalAnswer

# What a callback may return: True/False, "allow"/"deny", an ApprovalAnswer, or its dict.
Verdict = bool | str | ApprovalAnswer | dict[str, Any]
ApprovalHandler = Callable[[dict[str, Any]], Verdict | Awaitable[Verdict]]


def answer_body(verdict: Verdict) -> dict[str, Any]:
    """Return the ``POST /chat/{id}/approvals/{approval_id}`` body for a callback's verdict."""
    if isinstance(verdict, bool):
        return {"behavior": "allow" if verdict else "deny"}
    if isinstance(verdict, str):
        if verdict not in ("allow", "deny"):
            raise ValueError(f"an approval is answered 'allow' or 'deny', not {verdict!r}")
        return {"behavior": verdict}
    if isinstance(verdict, ApprovalAnswer):
        return verdict.model_dump(exclude_none=True)
    return ApprovalAnswer.model_validate(verdict).model_dump(exclude_none=True)


async def decide(handler: ApprovalHandler, approval: dict[str, Any]) -> dict[str, Any]:
    """Ask ``handler`` about one approval and return the answer's body.

    A plain function runs in a worker thread, so one that waits for a person does
    not stall the event loop. Cancellation abandons a waiting plain function (its
    thread finishes on its own) and cancels a coroutine.
    """
    if inspect.iscoroutinefunction(handler):
        verdict = await handler(approval)
    else:
        outcome = await anyio.to_thread.run_sync(handler, approval, abandon_on_cancel=True)
        verdict = await outcome if inspect.isawaitable(outcome) else outcome
    return answer_body(verdict)
