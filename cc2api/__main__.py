"""Command line: ``cc2api serve`` (also ``python -m cc2api``)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import trio
from pydantic import ValidationError

from . import __version__
from .app import create_app
from .envfile import init_env
from .server import serve_until_signalled
from .settings import Settings, explain


def main(argv: list[str] | None = None) -> int:
    """Run the command line and return the exit status."""
    parser = argparse.ArgumentParser(prog="cc2api", description="HTTP gateway for Claude Code")
    parser.add_argument("--version", action="version", version=f"cc2api {__version__}")
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("serve", help="serve the gateway on HOST:PORT (the default)")
    init = commands.add_parser("init-env", help="write .env with a generated password if missing")
    init.add_argument("--path", type=Path, default=Path(".env"))
    init.add_argument("--claude-path", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.command == "init-env":
        password = init_env(args.path, claude_path=args.claude_path)
        if password is None:
            print(f"{args.path} exists; leaving it as it is")
        else:
            print(f"wrote {args.path}: user admin, password {password} (shown only now)")
        return 0
    try:
        settings = Settings()  # type: ignore[call-arg]  # read from the environment
    except ValidationError as error:
        print(f"cc2api: cannot start: {explain(error)}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    trio.run(serve_until_signalled, create_app(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
