"""``cc2api check``: say what stands between this machine and a working gateway."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial

import trio
from pydantic import ValidationError

from . import landlock
from .cli_args import cli_environment
from .descriptors import attainable_limit, default_cap, reserved, room
from .discovery import probe
from .doctor_store import store_findings
from .policy import Policy
from .settings import Settings, explain

AUTH_TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True)
class Finding:
    """One line of the report: ``ok``, ``note`` or ``problem`` (with the fix)."""

    level: str
    text: str

    def __str__(self) -> str:
        return f"{self.level}: {self.text}"


async def check(environ: Mapping[str, str], *, euid: int) -> list[Finding]:
    """Return the findings for this machine and these settings (environment and .env).

    Cancellation: the CLI checks are child processes that trio kills and reaps.
    """
    findings: list[Finding] = []
    try:
        settings = Settings()  # type: ignore[call-arg]  # read from the environment and .env
    except ValidationError as error:
        for line in explain(error).split("; "):
            findings.append(Finding("problem", line))
        return findings
    findings.append(Finding("ok", "settings are valid"))
    findings.append(Finding("ok", f"the password comes from {settings.password_source}"))
    findings += _confinement(settings, environ, euid)
    claude = await probe(settings.claude_path, environ)
    if claude.usable and claude.path is not None:
        findings.append(Finding("ok", f"claude {claude.version} at {claude.path}"))
        findings.append(await _auth(str(claude.path), environ))
    else:
        findings.append(
            Finding(
                "problem",
                f"{claude.problem} — fix: `npm install -g @anthropic-ai/claude-code`, "
                "or set CLAUDE_PATH to the claude binary",
            )
        )
    findings += [Finding(level, text) for level, text in store_findings(settings)]
    findings.append(_port(settings.host, settings.port))
    findings.append(_connections(settings))
    if euid == 0:
        if settings.allow_root_full_access or environ.get("IS_SANDBOX") == "1":
            findings.append(Finding("note", "running as root with full access allowed (sandbox)"))
        else:
            findings.append(
                Finding(
                    "note",
                    "running as root: full-access requests will get 403; run cc2api as "
                    "another user (install.sh does), or set ALLOW_ROOT_FULL_ACCESS=true "
                    "inside a sandbox",
                )
            )
    health = "ok" if claude.usable else f"degraded ({claude.problem})"
    findings.append(Finding("ok" if claude.usable else "note", f"/health would say {health}"))
    return findings


async def _auth(claude: str, environ: Mapping[str, str]) -> Finding:
    try:
        with trio.fail_after(AUTH_TIMEOUT_SECONDS):
            done = await trio.run_process(
                [claude, "auth", "status"],
                capture_stdout=True,
                capture_stderr=True,
                check=False,
                env=cli_environment(environ),
                stdin=subprocess.DEVNULL,
            )
        status = json.loads(done.stdout)
    except (trio.TooSlowError, OSError, ValueError):
        return Finding("problem", "`claude auth status` gave no answer — fix: run it by hand")
    if isinstance(status, dict) and status.get("loggedIn"):
        how = status.get("apiKeySource") or status.get("authMethod") or "yes"
        return Finding("ok", f"the CLI can authenticate ({how})")
    return Finding(
        "problem",
        "the CLI is not logged in and has no API key — fix: set ANTHROPIC_API_KEY in .env "
        "or the service's environment, or run `claude auth login` as the service's user",
    )


def _connections(settings: Settings) -> Finding:
    limit = attainable_limit()
    runs = settings.cli_places  # the pool's CLIs hold pipes as runs do
    cap = settings.max_connections or default_cap(limit, runs)
    # This process's limit: a service manager may set another (LimitNOFILE= in the unit).
    text = (
        f"at most {cap} connections at once, with {reserved(runs)} descriptors kept for "
        f"{runs} runs (descriptor limit {limit} here)"
    )
    if cap > room(limit, runs):
        return Finding("note", f"{text}: too few descriptors; raise the limit (LimitNOFILE=)")
    return Finding("ok", text)


def _port(host: str, port: int) -> Finding:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe_socket:
        # As the server does: a port left in TIME_WAIT by a restart is free.
        probe_socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe_socket.bind((host, port))
        except OSError as error:
            running = _running_gateway(host, port)
            if running is not None:
                return Finding("ok", f"cc2api already runs on {host}:{port}: {running}")
            return Finding(
                "problem",
                f"cannot listen on {host}:{port} ({error.strerror}) — fix: stop what uses "
                "it or set PORT/HOST",
            )
    return Finding("ok", f"{host}:{port} is free")


def _running_gateway(host: str, port: int) -> str | None:
    """Return what a cc2api listening there says of its health, or None."""
    address = f"[{host}]" if ":" in host else host
    if address in ("0.0.0.0", "[::]"):  # noqa: S104 (a wildcard bind is reached on loopback)
        address = "127.0.0.1"
    try:
        with urllib.request.urlopen(f"http://{address}:{port}/health", timeout=3) as answer:
            health = json.load(answer)
    except (OSError, ValueError):
        return None
    if not isinstance(health, dict) or "active_processes" not in health:
        return None
    return f"/health says {health.get('status')}" + (
        f" ({health['reason']})" if health.get("reason") else ""
    )


def _confinement(settings: Settings, environ: Mapping[str, str], euid: int) -> list[Finding]:
    """Say whether runs are confined, and what this kernel leaves them free to do."""
    if not Policy(settings, environ, euid=euid).confines:
        return [Finding("note", "runs are not confined (see CONFINE_RUNS in PERMISSIONS.md)")]
    abi = landlock.abi_version()
    if abi < landlock.MIN_ABI:
        return [
            Finding(
                "problem",
                f"runs must be confined, but this kernel offers Landlock ABI {abi} — fix: "
                "Linux 5.19 or later with Landlock on, or CONFINE_RUNS=off to run unconfined",
            )
        ]
    findings = [Finding("ok", f"runs are confined (Landlock ABI {abi})")]
    findings += [Finding("note", f"confined runs can still {gap}") for gap in landlock.gaps(abi)]
    return findings


def run_check(environ: Mapping[str, str] | None = None) -> int:
    """Print the findings, one a line; return 1 when there is a problem, else 0."""
    env = os.environ if environ is None else environ
    findings = trio.run(partial(check, env, euid=os.geteuid()))
    for finding in findings:
        print(finding)
    return 1 if any(f.level == "problem" for f in findings) else 0
