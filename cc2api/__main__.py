"""Command line: ``cc2api serve`` (also ``python -m cc2api``)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import trio
from pydantic import ValidationError

from . import __version__
from .app import create_app
from .doctor import run_check
from .envfile import environment_with, init_env
from .keys_cli import add_key_commands, run_keys
from .logs import configure as configure_logging
from .proctree import make_undumpable
from .server import serve_until_signalled
from .settings import Settings, explain
from .store import StoreUnusable
from .term_commands import add_client_commands, is_client_command, run_client_command
from .usage_cli import add_usage_command, run_usage


def main(argv: list[str] | None = None) -> int:  # noqa: PLR0911 (one return a command)
    """Run the command line and return the exit status."""
    parser = argparse.ArgumentParser(prog="cc2api", description="HTTP gateway for Claude Code")
    parser.add_argument("--version", action="version", version=f"cc2api {__version__}")
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("serve", help="serve the gateway on HOST:PORT (the default)")
    commands.add_parser("check", help="check settings, the CLI, its login and the port")
    init = commands.add_parser(
        "init-env",
        help="write .env if missing: the password from CC2API_AUTH_PASSWORD, else generated",
    )
    init.add_argument("--path", type=Path, default=Path(".env"))
    init.add_argument("--user", default="admin")
    init.add_argument("--claude-path", type=Path, default=None)
    init.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    add_key_commands(commands)
    add_usage_command(commands)
    add_client_commands(commands)
    args = parser.parse_args(argv)
    if is_client_command(args, os.environ):  # a client of some gateway: no server settings
        return run_client_command(args)
    # Under systemd .env may be root's alone (EnvironmentFile= has read it for us).
    env_file = Path(".env") if os.access(".env", os.R_OK) else None
    environ = environment_with(env_file)
    if args.command == "check":
        return run_check(environ)
    if args.command == "init-env":
        # The password comes through the environment, never argv, where `ps` shows it.
        given = os.environ.get("CC2API_AUTH_PASSWORD") or None
        if any("=" not in item for item in args.set):
            parser.error("--set takes NAME=VALUE")
        extra = dict(item.split("=", 1) for item in args.set)
        try:
            password = init_env(
                args.path,
                user=args.user,
                password=given,
                claude_path=args.claude_path,
                extra=extra,
            )
        except ValueError as error:
            print(f"cc2api: {error}", file=sys.stderr)
            return 2
        if password is None:
            print(f"{args.path} exists; leaving it as it is")
        elif given:
            print(f"wrote {args.path}: user {args.user}, password as given")
        else:
            print(f"wrote {args.path}: user {args.user}, password {password} (shown only now)")
        return 0
    try:
        settings = Settings(_env_file=env_file)  # type: ignore[call-arg]
    except ValidationError as error:
        print(f"cc2api: cannot start: {explain(error)}", file=sys.stderr)
        return 2
    if args.command in ("keys", "usage"):  # the operator's commands, on the server or its store
        return run_keys(args, settings) if args.command == "keys" else run_usage(args, settings)
    configure_logging(settings.log_level, settings.log_format)
    # The server's environment may hold AUTH_PASSWORD (EnvironmentFile=) and its memory
    # holds it in any case; processes of the same user, the CLI's tools among them, must
    # not read either from /proc. Root still can (PERMISSIONS.md).
    make_undumpable()
    refused: list[str] = []
    try:
        trio.run(serve_until_signalled, create_app(settings, environ=environ))
    except* StoreUnusable as group:
        refused = [str(error) for error in _leaves(group)]
    for reason in refused:
        print(f"cc2api: cannot start: {reason}", file=sys.stderr)
    return 2 if refused else 0


def _leaves(group: BaseExceptionGroup[StoreUnusable]) -> list[StoreUnusable]:
    found: list[StoreUnusable] = []
    for error in group.exceptions:
        found += _leaves(error) if isinstance(error, BaseExceptionGroup) else [error]
    return found


if __name__ == "__main__":
    sys.exit(main())
