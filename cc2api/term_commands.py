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
import os
from collections.abc import Mapping
from typing import Any

from .term_config import add_connection_options, url_given

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


def run_client_command(args: argparse.Namespace, environ: Mapping[str, str] = os.environ) -> int:
    """Run a client command against the configured gateway; return the exit status.

    The client, rich and the handlers are imported here, not with this module: a
    server started by ``cc2api serve`` never loads them.
    """
    from .term_handlers import run_command  # noqa: PLC0415 (see above)

    return run_command(args, environ)
