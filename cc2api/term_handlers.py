"""The terminal client's handlers: one function a command, each given a connected client.

Loaded only when a client command runs (see term_commands), so that the server's
process does not carry the client, rich and the tables.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Callable, Mapping
from typing import Any, TextIO

from rich.console import Console

from .client import ApiError, Client, ConnectionLost
from .term_commands import PIPE_WIDTH, REFUSED
from .term_config import target
from .term_render import printable
from .term_run import INTERRUPTED, RunRequest, follow_logs, run
from .term_tables import processes_table, sessions_table, usage_table
from .usage_wire import Usage

__all__ = ["run_command"]


def _console(stream: TextIO) -> Console:
    terminal = stream.isatty()
    # No colour and no cursor tricks off a terminal, whatever FORCE_COLOR says; and
    # no wrapping either: a script reads whole lines.
    return Console(
        file=stream,
        color_system="auto" if terminal else None,
        force_terminal=terminal,
        width=None if terminal else PIPE_WIDTH,
        highlight=False,
    )


def run_command(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Run a client command against the configured gateway; return the exit status."""
    out, err = _console(sys.stdout), _console(sys.stderr)
    try:
        where = target(args, environ)
    except ValueError as error:
        err.print(printable(f"cc2api: {error}"), markup=False)
        return REFUSED
    try:
        client = Client(
            where.url, key=where.key, user=where.user, password=where.password, environ={}
        )
        with client:
            return HANDLERS[args.command](client, args, out, err)
    except ApiError as error:
        err.print(
            printable(f"cc2api: {error.code}: {error.detail} (HTTP {error.status})"), markup=False
        )
    except ConnectionLost as error:
        err.print(
            printable(
                f"cc2api: cannot reach the gateway at {_without_userinfo(where.url)}: {error}"
            ),
            markup=False,
        )
    except ValueError as error:  # a bad URL
        err.print(printable(f"cc2api: {error}"), markup=False)
    except KeyboardInterrupt:
        err.print("interrupted")
        return INTERRUPTED
    return REFUSED


def _print_json(out: Console, answer: Any) -> None:
    out.out(json.dumps(answer, indent=2, ensure_ascii=False), highlight=False)


def _run(client: Client, args: argparse.Namespace, out: Console, err: Console) -> int:
    options: dict[str, Any] = {}
    if args.model:
        options["model"] = args.model
    if args.tools:
        options["tools"] = args.tools
    if args.allow:
        options["allowed_tools"] = args.allow
    if args.approve == "ask":
        options["approval"] = "http"
    if not args.json and not args.detach:
        options["include_partial_messages"] = True  # the text as it comes
    request = RunRequest(
        prompt=args.prompt,
        cwd=os.path.abspath(args.cwd or os.getcwd()),
        options=options,
        ask=args.approve == "ask",
        json=args.json,
        detach=args.detach,
    )
    return run(client, request, out, err)


def _ps(client: Client, args: argparse.Namespace, out: Console, err: Console) -> int:
    processes = client.processes()
    if args.json:
        _print_json(out, processes)
    else:
        out.print(processes_table(processes))
    return 0


def _logs(client: Client, args: argparse.Namespace, out: Console, err: Console) -> int:
    return follow_logs(client, args.process_id, out, json=args.json, follow=args.follow)


def _cancel(client: Client, args: argparse.Namespace, out: Console, err: Console) -> int:
    answer = client.cancel(args.process_id)
    out.print(f"{answer.get('process_id')}: {answer.get('status')}", markup=False)
    return 0


def _approve(client: Client, args: argparse.Namespace, out: Console, err: Console) -> int:
    approval_id = args.approval_id
    if approval_id is None:
        pending = client.approvals(args.process_id)
        if not pending:
            err.print(
                printable(f"cc2api: run {args.process_id} has no pending approval"), markup=False
            )
            return 1
        approval_id = pending[0]["approval_id"]
    client.approve(args.process_id, approval_id, allow=args.allow, message=args.message)
    out.print(f"{approval_id}: {'allowed' if args.allow else 'denied'}", markup=False)
    return 0


def _sessions(client: Client, args: argparse.Namespace, out: Console, err: Console) -> int:
    filters = {name: getattr(args, name) for name in ("cwd", "limit", "cursor")}
    answer = client.sessions(**{name: value for name, value in filters.items() if value})
    if args.json:
        _print_json(out, answer)
    else:
        out.print(sessions_table(answer))
    return 0


def _usage(client: Client, args: argparse.Namespace, out: Console, err: Console) -> int:
    filters = {"group_by": args.group_by, "since": args.since, "until": args.until, "key": args.key}
    answer = client.usage(**{name: value for name, value in filters.items() if value})
    if args.json:
        _print_json(out, answer)
    else:
        out.print(usage_table(Usage.model_validate(answer)))
    return 0


Handler = Callable[[Client, argparse.Namespace, Console, Console], int]
HANDLERS: dict[str, Handler] = {
    "run": _run,
    "ps": _ps,
    "logs": _logs,
    "cancel": _cancel,
    "approve": _approve,
    "sessions": _sessions,
    "usage": _usage,
}


def _without_userinfo(url: str) -> str:
    # A URL may carry user:password@; an error message must not.
    return re.sub(r"//[^/@]*@", "//", url, count=1)
