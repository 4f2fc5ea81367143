"""``cc2api keys ...``: manage API keys from the command line.

With the server up, each command goes to its admin API (``/admin/keys``) with the
.env credential, so the change applies at once. With it down, the command opens the
store itself, holding its lock, so no gateway starts meanwhile. STORE=memory keeps
keys in the server's memory only: there, the server must be up.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.parse
from collections.abc import Sequence
from typing import Any

import trio

from .admin_client import CommandFailed, request
from .key_admin import KeyAdmin, merged_policy
from .key_store import SqliteKeys
from .key_wire import KeyPolicy
from .keys import KeyRing
from .settings import Settings
from .store import StoreUnusable
from .stores import data_dir

__all__ = ["add_key_commands", "run_keys"]


def add_key_commands(commands: Any) -> None:
    """Add ``keys`` and its subcommands to the ``cc2api`` parser's subcommands."""
    keys = commands.add_parser("keys", help="manage API keys (one per client)")
    keys.add_argument("--json", action="store_true", help="print the answers as JSON")
    actions = keys.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="make a key and print its token, once")
    create.add_argument("name")
    _policy_options(create)
    actions.add_parser("list", help="list the keys")
    show = actions.add_parser("show", help="show one key")
    show.add_argument("name")
    update = actions.add_parser("update", help="change some of a key's policy")
    update.add_argument("name")
    _policy_options(update)
    update.add_argument(
        "--unset",
        action="append",
        default=[],
        metavar="FIELD",
        help="set FIELD back to its default",
    )
    revoke = actions.add_parser("revoke", help="refuse a key from now on")
    revoke.add_argument("name")
    revoke.add_argument("--cancel-runs", action="store_true", help="cancel its runs too")


def _policy_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cwd-root", action="append", dest="cwd_roots", metavar="DIR")
    parser.add_argument("--force-restricted", action="store_true", default=None)
    parser.add_argument("--disallow", action="append", dest="disallowed_tools", metavar="TOOL")
    parser.add_argument("--permission-mode", action="append", dest="permission_modes")
    parser.add_argument(
        "--no-caller-config",
        action="store_false",
        dest="trust_caller_config",
        default=None,
        help="refuse CLI configuration from this key's requests",
    )
    parser.add_argument("--max-runs", type=int)
    parser.add_argument("--max-queued", type=int)
    parser.add_argument("--runs-per-minute", type=int)
    parser.add_argument("--timeout", type=float, dest="timeout_seconds", metavar="SECONDS")
    parser.add_argument("--budget-usd-day", type=float)
    parser.add_argument("--budget-usd-month", type=float)
    parser.add_argument(
        "--no-pool",
        action="store_false",
        dest="pooled",
        default=None,
        help="never give this key's runs a CLI from the warm pool",
    )


def _policy_changes(args: argparse.Namespace) -> dict[str, Any]:
    changes = {
        name: getattr(args, name)
        for name in KeyPolicy.model_fields
        if getattr(args, name, None) is not None
    }
    for name in getattr(args, "unset", []):
        changes[name] = None
    return changes


def run_keys(args: argparse.Namespace, settings: Settings) -> int:
    """Run one ``cc2api keys`` command; return the exit status."""
    try:
        answer = _over_http(args, settings)
        if answer is None:
            answer = trio.run(_offline, args, settings)
    except CommandFailed as error:
        print(f"cc2api: {error}", file=sys.stderr)
        return 1
    _print(args, answer)
    return 0


def _over_http(args: argparse.Namespace, settings: Settings) -> dict[str, Any] | None:
    name = urllib.parse.quote(getattr(args, "name", ""), safe="")
    match args.action:
        case "create":
            policy = _policy_changes(args)
            return request(settings, "POST", "/admin/keys", {"name": args.name, "policy": policy})
        case "list":
            return request(settings, "GET", "/admin/keys")
        case "show":
            return request(settings, "GET", f"/admin/keys/{name}")
        case "update":
            body = {"policy": _policy_changes(args)}
            return request(settings, "PATCH", f"/admin/keys/{name}", body)
        case _:
            cancel = "true" if args.cancel_runs else "false"
            return request(settings, "DELETE", f"/admin/keys/{name}?cancel_runs={cancel}")


async def _offline(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    """Do the command on the store's files, holding their lock (no server is up)."""
    if settings.store != "sqlite":
        raise CommandFailed(
            "the server is not running, and STORE=memory keeps keys in its memory only"
        )
    from .store_files import DB_NAME, close_files, open_files  # noqa: PLC0415

    folder = data_dir(settings)
    try:
        opened = await trio.to_thread.run_sync(open_files, folder)
    except StoreUnusable as error:
        raise CommandFailed(f"the server is not answering and {error}") from None
    try:
        admin = KeyAdmin(KeyRing(), SqliteKeys(folder / DB_NAME), settings)
        await admin.load()
        return await _act(admin, args)
    except Exception as error:
        detail = getattr(error, "detail", None)
        if detail is None:
            raise
        raise CommandFailed(detail) from None
    finally:
        close_files(opened, opened.readers)


async def _act(admin: KeyAdmin, args: argparse.Namespace) -> dict[str, Any]:
    match args.action:
        case "create":
            policy = merged_policy(KeyPolicy(), _policy_changes(args))
            key, token = await admin.create(args.name, policy)
            return {**key.info().wire(), "token": token, "webhook_secret": key.webhook_secret}
        case "list":
            return {"keys": [key.info().wire() for key in admin.ring.all()]}
        case "show":
            return admin.get(args.name).info().wire()
        case "update":
            return (await admin.update(args.name, _policy_changes(args))).info().wire()
        case _:
            revoked = await admin.revoke(args.name)
            return {"key": revoked.info().wire(), "cancelled": []}


def _print(args: argparse.Namespace, answer: dict[str, Any]) -> None:
    if args.json:
        print(json.dumps(answer, indent=2, default=str))
        return
    if args.action == "list":
        _table(answer["keys"])
        return
    key = answer.get("key", answer)
    if "token" in answer:
        print(f"token: {answer['token']}")
        print("(shown only now: only its SHA-256 is kept)")
    if answer.get("webhook_secret"):
        print(f"webhook secret: {answer['webhook_secret']}")
        print("(shown only now: what its webhooks are signed with)")
    _table([key])
    policy = {k: v for k, v in key["policy"].items() if v not in (None, [], False)}
    policy.pop("trust_caller_config", None)
    if key["policy"].get("trust_caller_config") is False:
        policy["trust_caller_config"] = False
    for field, value in policy.items():
        print(f"  {field}: {value}")
    for run_id in answer.get("cancelled", []):
        print(f"cancelled run {run_id}")


def _table(keys: Sequence[dict[str, Any]]) -> None:
    rows = [("NAME", "CREATED", "REVOKED", "KEY ID")]
    rows += [
        (key["name"], key["created_at"], key["revoked_at"] or "-", key["key_id"]) for key in keys
    ]
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)))
