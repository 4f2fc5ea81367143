"""The terminal client's commands: ``cc2api run``, ``ps``, ``logs``, ``cancel``, ``approve``,
``sessions`` and, given a gateway URL, ``usage``.

They speak only the public HTTP API, through :class:`cc2api.client.Client`, and never
build the server's settings unless no gateway is configured at all (then the local
``.env`` says where it is; see term_config). Exit statuses: a run's status (completed
0; failed or lost 1; timeout 124; cancelled or interrupted 130), and 2 when the
gateway refuses a request or cannot be reached.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any, TextIO

from rich.console import Console

from .client import ApiError, Client, ConnectionLost
from .term_config import add_connection_options, target, url_given
from .term_run import INTERRUPTED, RunRequest, follow_logs, run
from .term_tables import processes_table, sessions_table, usage_table
from .usage_wire import Usage

__all__ = ["add_client_commands", "is_client_command", "run_client_command"]

CLIENT_COMMANDS = frozenset({"run", "ps", "logs", "cancel", "approve", "sessions"})
REFUSED = 2  # the gateway refused the request, or could not be reached
PIPE_WIDTH = 10_000  # columns of output that goes to a pipe or a file


def add_client_commands(commands: Any) -> None:
    """Add the client's subcommands to the ``cc2api`` parser's, and ``--url`` to ``usage``.

    Call it after ``add_usage_command``: ``usage`` goes to the HTTP API when a URL is given.
    """
    run_parser = commands.add_parser("run", help="run a prompt on a gateway and show its stream")
    run_parser.add_argument("prompt")
    run_parser.add_argument("--cwd", default=None, help="the folder to run in (default: this one)")
    run_parser.add_argument("--model")
    run_parser.add_argument(
        "--tools", action="append", metavar="TOOL", help="a built-in tool the model may see"
    )
    run_parser.add_argument(
        "--allow", action="append", metavar="PATTERN", help="a tool pattern run without asking"
    )
    run_parser.add_argument(
        "--approve", choices=["ask"], help="ask on this terminal before each tool call runs"
    )
    run_parser.add_argument(
        "--detach", action="store_true", help="start the run, print its process id, and leave"
    )
    run_parser.add_argument("--json", action="store_true", help="print each event's data line")
    add_connection_options(run_parser)

    ps = commands.add_parser("ps", help="list the gateway's live runs")
    ps.add_argument("--json", action="store_true", help="print GET /processes' answer")
    add_connection_options(ps)

    logs = commands.add_parser("logs", help="print a run's events (-f: and follow them)")
    logs.add_argument("process_id")
    logs.add_argument("-f", "--follow", action="store_true", help="follow the run to its end")
    logs.add_argument("--json", action="store_true", help="print each event's data line")
    add_connection_options(logs)

    cancel = commands.add_parser("cancel", help="cancel a run; returns once its processes are gone")
    cancel.add_argument("process_id")
    add_connection_options(cancel)

    approve = commands.add_parser("approve", help="answer a run's pending tool approval")
    approve.add_argument("process_id")
    approve.add_argument("approval_id", nargs="?", help="default: the oldest pending one")
    verdict = approve.add_mutually_exclusive_group(required=True)
    verdict.add_argument("--allow", action="store_true")
    verdict.add_argument("--deny", action="store_true")
    approve.add_argument("--message", help="why (sent to the model with a denial)")
    add_connection_options(approve)

    sessions = commands.add_parser("sessions", help="list the CLI sessions the gateway knows")
    sessions.add_argument("--cwd", help="only the sessions of this folder")
    sessions.add_argument("--limit", type=int)
    sessions.add_argument("--cursor", help="the next page, as the last one said")
    sessions.add_argument("--json", action="store_true", help="print GET /sessions' answer")
    add_connection_options(sessions)

    # ``usage --key`` names the key whose usage to show: the credential comes from CC2API_KEY.
    add_connection_options(commands.choices["usage"], key=False)


def is_client_command(args: argparse.Namespace, environ: Mapping[str, str]) -> bool:
    """Return whether the parsed command is the client's (``usage`` only with a URL given)."""
    return args.command in CLIENT_COMMANDS or (args.command == "usage" and url_given(args, environ))


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


def run_client_command(args: argparse.Namespace, environ: Mapping[str, str] = os.environ) -> int:
    """Run a client command against the configured gateway; return the exit status."""
    out, err = _console(sys.stdout), _console(sys.stderr)
    try:
        where = target(args, environ)
    except ValueError as error:
        err.print(f"cc2api: {error}", markup=False)
        return REFUSED
    try:
        client = Client(
            where.url, key=where.key, user=where.user, password=where.password, environ={}
        )
        with client:
            return HANDLERS[args.command](client, args, out, err)
    except ApiError as error:
        err.print(f"cc2api: {error.code}: {error.detail} (HTTP {error.status})", markup=False)
    except ConnectionLost as error:
        err.print(f"cc2api: cannot reach the gateway at {where.url}: {error}", markup=False)
    except ValueError as error:  # a bad URL
        err.print(f"cc2api: {error}", markup=False)
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
            err.print(f"cc2api: run {args.process_id} has no pending approval", markup=False)
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
