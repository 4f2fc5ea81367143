"""``cc2api usage``: GET /usage as a table, from the running server or from the store's files."""

from __future__ import annotations

import argparse
import sqlite3
import sys
import urllib.parse
from datetime import UTC, datetime, timedelta
from typing import Any

from . import store_sql
from .admin_client import CommandFailed, request
from .key_store import read_keys
from .settings import Settings
from .store_files import DB_NAME, reader
from .stores import data_dir
from .usage import ADMIN_GROUP, ADMIN_KEY, DEFAULT_DAYS, GROUP_BYS, UsageQuery
from .usage_table import format_usage
from .usage_wire import Usage, UsageGroup

__all__ = ["add_usage_command", "run_usage"]


def add_usage_command(commands: Any) -> None:
    """Add ``usage`` to the ``cc2api`` parser's subcommands."""
    usage = commands.add_parser("usage", help="print runs, cost and tokens, as GET /usage")
    usage.add_argument("--since", help="ISO 8601 (default: 30 days before --until)")
    usage.add_argument("--until", help="ISO 8601 (default: now)")
    usage.add_argument("--group-by", choices=GROUP_BYS, default="day")
    usage.add_argument("--key", help="only this key's runs (admin: the admin's own)")
    usage.add_argument("--json", action="store_true", help="print GET /usage's answer")


def run_usage(args: argparse.Namespace, settings: Settings) -> int:
    """Print the usage; return the exit status."""
    params = {"group_by": args.group_by}
    params |= {
        name: getattr(args, name) for name in ("since", "until", "key") if getattr(args, name)
    }
    try:
        answer = request(settings, "GET", "/usage?" + urllib.parse.urlencode(params))
        usage = Usage.model_validate(answer) if answer is not None else _offline(args, settings)
    except CommandFailed as error:
        print(f"cc2api: {error}", file=sys.stderr)
        return 1
    print(
        usage.model_dump_json(indent=2) if args.json else format_usage(usage), end="\n" * args.json
    )
    return 0


def _moment(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise CommandFailed(f"--{name}: {value!r} is not an ISO 8601 time") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _offline(args: argparse.Namespace, settings: Settings) -> Usage:
    """Read the usage from the store's database, read-only (no server is up)."""
    if settings.store != "sqlite":
        raise CommandFailed("the server is not running, and STORE=memory keeps usage in its memory")
    db = data_dir(settings) / DB_NAME
    if not db.exists():
        raise CommandFailed(f"the server is not running, and there is no store at {db}")
    until = _moment(args.until, "until") or datetime.now(UTC)
    since = _moment(args.since, "since") or until - timedelta(days=DEFAULT_DAYS)
    try:
        conn = reader(db)
    except sqlite3.Error as error:
        raise CommandFailed(f"cannot read {db}: {error}") from None
    try:
        key_id = None
        if args.key == ADMIN_GROUP:
            key_id = ADMIN_KEY
        elif args.key is not None:
            key_id = next((k.key_id for k in read_keys(conn) if k.name == args.key), None)
            if key_id is None:
                raise CommandFailed(f"key: no key named {args.key!r}")
        rows = store_sql.usage(conn, UsageQuery(since, until, args.group_by, key_id))
    finally:
        conn.close()
    groups = [UsageGroup.of(row) for row in rows]
    return Usage(since=since, until=until, group_by=args.group_by, groups=groups)
