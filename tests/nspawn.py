"""A booted Debian 12 host in a systemd-nspawn container, for tests that need real systemd.

The Debian root is built once per recipe with debootstrap under ``CACHE`` and reused: each
boot lays a tmpfs over it (``--volatile=overlay``), so every boot starts from the same clean
root and leaves it unchanged. A build goes into a temporary folder that is renamed into
place only once complete, under a lock, so neither concurrent test runs nor an interrupted
build ever see half a root. The root's name carries a digest of the recipe (and of this
machine's CA bundle, which it holds): change either and a new root is built.

The container shares this machine's network (127.0.0.1 is the same on both sides) and
sees this machine's processes from outside only: the host's ``/proc`` shows every process
of the container, under host pids.

Never boot systemd on this machine's own root: its tmpfiles setup empties the whole
machine's ``/tmp``. Only inside a container, as here.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil

CACHE = Path("/var/cache/cc2api-tests")
SUITE = "bookworm"
# FIELD-NOTES.md's verified recipe; bump RECIPE_VERSION for a change not visible here.
RECIPE_VERSION = 1
PACKAGES = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "ca-certificates",
    "curl",
    "git",
    "python3",
    "sudo",
    "procps",
)
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
DEFAULT_MIRROR = "http://deb.debian.org/debian"
# Roots of older recipes are removed once unused this long.
STALE_SECONDS = 14 * 24 * 3600
# A clean environment for commands inside: none of the test process's variables leak in.
INSIDE_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "LANG": "C.UTF-8",
    "TERM": "dumb",
}


class NspawnError(RuntimeError):
    """Raised when the Debian root cannot be built or the container cannot boot or run."""


def recipe_digest() -> str:
    """Return the digest that names the root this recipe (and CA bundle) builds."""
    recipe = {"version": RECIPE_VERSION, "suite": SUITE, "packages": PACKAGES}
    digest = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode())
    digest.update(CA_BUNDLE.read_bytes())
    return digest.hexdigest()[:12]


def debian_mirror() -> str:
    """Return the Debian mirror this machine's apt uses, else deb.debian.org."""
    sources = Path("/etc/apt/sources.list.d/debian.sources")
    if sources.exists():
        found = re.search(r"^URIs:\s*(\S+)", sources.read_text(), re.MULTILINE)
        if found:
            return found.group(1)
    listing = Path("/etc/apt/sources.list")
    if listing.exists():
        found = re.search(rf"^deb\s+(\S+)\s+{SUITE}\s", listing.read_text(), re.MULTILINE)
        if found:
            return found.group(1)
    return DEFAULT_MIRROR


@contextmanager
def cache_lock(name: str = "root") -> Iterator[None]:
    """Hold one of the cache's locks (blocking) for the block: one holder at a time."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / f".{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def debian_root(log: Path, timeout: float = 1200) -> Path:
    """Return a bootable Debian 12 root for this recipe, building it first if needed.

    ``log`` receives debootstrap's output. Raises :class:`NspawnError` if the build fails.
    """
    root = CACHE / f"{SUITE}-{recipe_digest()}"
    with cache_lock():
        _forget_stale(keep=root)
        if not root.is_dir():
            _build(root, log, timeout)
        Path(f"{root}.used").touch()
    return root


def _forget_stale(keep: Path) -> None:
    # Under the lock, a half-built root is an interrupted build's: nobody is building it.
    for partial in CACHE.glob(".building-*"):
        shutil.rmtree(partial, ignore_errors=True)
    now = time.time()
    for used in CACHE.glob(f"{SUITE}-*.used"):
        root = Path(str(used).removesuffix(".used"))
        if root != keep and now - used.stat().st_mtime > STALE_SECONDS:
            shutil.rmtree(root, ignore_errors=True)
            used.unlink()


def _build(root: Path, log: Path, timeout: float) -> None:
    building = Path(tempfile.mkdtemp(prefix=".building-", dir=CACHE))
    target = building / "root"
    argv = [
        "debootstrap",
        "--variant=minbase",
        f"--include={','.join(PACKAGES)}",
        SUITE,
        str(target),
        debian_mirror(),
    ]
    with log.open("ab") as out:
        done = subprocess.run(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            timeout=timeout,
            check=False,
        )
    if done.returncode != 0:
        shutil.rmtree(building, ignore_errors=True)
        raise NspawnError(f"debootstrap failed ({done.returncode}); see {log}:\n{_tail(log)}")
    # TLS to the package registries needs this machine's bundle (it may hold a local CA).
    shutil.copyfile(CA_BUNDLE, target / CA_BUNDLE.relative_to("/"))
    target.rename(root)
    building.rmdir()


def _tail(path: Path, size: int = 4000) -> str:
    return path.read_bytes()[-size:].decode("utf-8", "replace") if path.exists() else ""


def systemd_cgroups() -> list[Path]:
    """Return this process's folders in the cgroup hierarchies systemd-nspawn places by.

    That is the unified (v2) one and, on a hybrid layout, v1's ``name=systemd``.
    """
    mounts: dict[str, Path] = {}
    for line in Path("/proc/self/mounts").read_text().splitlines():
        _, where, fstype, options, *_ = line.split()
        if fstype == "cgroup2":
            mounts[""] = Path(where)
        elif fstype == "cgroup" and "name=systemd" in options.split(","):
            mounts["name=systemd"] = Path(where)
    folders = []
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controllers in mounts:
            folders.append(mounts[controllers] / path.lstrip("/"))
    return folders


def _remove_cgroup(folder: Path) -> None:
    # A cgroup folder goes with rmdir once its processes and child folders are gone.
    for parent, children, _ in os.walk(folder, topdown=False):
        for child in children:
            with contextlib.suppress(OSError):
                (Path(parent) / child).rmdir()
    with contextlib.suppress(OSError):
        folder.rmdir()


@dataclass(frozen=True)
class Bind:
    """A folder of this machine mounted in the container."""

    source: Path
    target: str
    read_only: bool = True

    def option(self) -> str:
        """Return the systemd-nspawn option that mounts it."""
        return f"--bind{'-ro' if self.read_only else ''}={self.source}:{self.target}"


class Container:
    """A booted container: systemd as its pid 1 over a volatile copy of ``root``.

    Use it as a context manager: entering boots it and waits until systemd reports the
    system running; leaving powers it off (SIGTERM to systemd-nspawn) and waits for it.
    """

    def __init__(self, root: Path, name: str, binds: Sequence[Bind], console: Path) -> None:
        self.root = root
        self.name = name
        self.binds = tuple(binds)
        self.console = console
        self._nspawn: subprocess.Popen[bytes] | None = None
        self._cgroups: list[Path] = []
        self.leader = 0

    def __enter__(self) -> Container:
        try:
            self.boot()
        except BaseException:
            self.power_off()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.power_off()

    def boot(self, timeout: float = 120) -> None:
        """Start systemd-nspawn and wait until the container's systemd is up."""
        argv = [
            "systemd-nspawn",
            "-q",
            # This machine runs no systemd-machined, and no systemd to make a scope.
            "--register=no",
            "--keep-unit",
            "--volatile=overlay",
            "-D",
            str(self.root),
            "-b",
            "-M",
            self.name,
            "--console=read-only",
            # systemd-nspawn 252's own system call filter leaves out Landlock, which real
            # hosts do not filter: without this every service inside would find it missing.
            "--system-call-filter=landlock_create_ruleset landlock_add_rule landlock_restrict_self",
            *(bind.option() for bind in self.binds),
        ]
        # With --keep-unit, systemd-nspawn puts the container's systemd in a "payload"
        # cgroup below its own: give each container a cgroup of its own first, or two
        # containers booted from one cgroup would share (and fight over) one.
        self._cgroups = [folder / f"cc2api-test-{self.name}" for folder in systemd_cgroups()]
        for folder in self._cgroups:
            folder.mkdir()
        enter = " && ".join(f'echo $$ >"{folder}/cgroup.procs"' for folder in self._cgroups)
        with self.console.open("ab") as out:
            self._nspawn = subprocess.Popen(
                ["sh", "-c", f'{enter} && exec "$@"', "sh", *argv],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + timeout
        self.leader = self._wait(deadline, self._find_leader, "its systemd to start")
        self._wait(deadline, self._booted, "systemctl is-system-running to say running")

    def _wait(self, deadline: float, probe: Callable[[], int], what: str) -> int:
        assert self._nspawn is not None
        while not (found := probe()):
            if self._nspawn.poll() is not None:
                raise NspawnError(
                    f"systemd-nspawn exited ({self._nspawn.returncode}) before {what}; "
                    f"its console:\n{_tail(self.console)}"
                )
            if time.monotonic() > deadline:
                raise NspawnError(f"timed out waiting for {what}; console:\n{_tail(self.console)}")
            time.sleep(0.05)
        return found

    def _find_leader(self) -> int:
        assert self._nspawn is not None
        try:
            children = psutil.Process(self._nspawn.pid).children()
            return next((c.pid for c in children if c.name() == "systemd"), 0)
        except psutil.Error:
            return 0

    def _booted(self) -> int:
        state = self.run(["systemctl", "is-system-running"], check=False, timeout=30).stdout
        return int(state.strip() in ("running", "degraded"))

    def path(self, inside: str) -> Path:
        """Return where this machine sees the container's file ``inside`` (an absolute path)."""
        return Path(f"/proc/{self.leader}/root") / inside.lstrip("/")

    def pids(self) -> list[int]:
        """Return this machine's pids of every process in the container."""
        namespace = os.readlink(f"/proc/{self.leader}/ns/pid")
        found = []
        for pid in psutil.pids():
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{pid}/ns/pid") == namespace:
                    found.append(pid)
        return found

    def unit_pids(self, unit: str) -> list[int]:
        """Return this machine's pids of the processes in a unit's control group, inside."""
        found = []
        for pid in self.pids():
            with contextlib.suppress(OSError):
                lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
                if any(line.endswith(f"/{unit}") for line in lines):
                    found.append(pid)
        return found

    def argv(self, args: Sequence[str]) -> list[str]:
        """Return the command line that runs ``args`` inside, as root, in every namespace."""
        return ["nsenter", "-t", str(self.leader), "-a", *args]

    def run(
        self,
        args: Sequence[str],
        *,
        timeout: float,
        env: Mapping[str, str] | None = None,
        check: bool = True,
        input: str | None = None,  # noqa: A002 (subprocess.run's name)
    ) -> subprocess.CompletedProcess[str]:
        """Run a command inside and return it finished; ``check`` raises if it failed."""
        done = subprocess.run(
            self.argv(args),
            env={**INSIDE_ENV, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
        )
        if check and done.returncode != 0:
            raise NspawnError(
                f"{' '.join(args)} exited {done.returncode} inside {self.name}:\n"
                f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
            )
        return done

    def power_off(self, timeout: float = 60) -> None:
        """Power the container off cleanly (systemd-nspawn's SIGTERM), SIGKILL if it hangs."""
        proc, self._nspawn = self._nspawn, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
        cgroups, self._cgroups = self._cgroups, []
        for folder in cgroups:
            _remove_cgroup(folder)
