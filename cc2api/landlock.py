"""Confine a command's whole process tree with Landlock, then exec it.

The gateway starts a confined run's CLI as::

    python -I -S landlock.py --rx CLI --rw CWD --rw RUN_DIR [...] -- CLI ARGS...

Landlock is applied by the kernel to this process before ``exec`` and is inherited by
every process it starts (the Bash tool, git, MCP servers, whatever the model runs);
none of them can lift it, so no prompt can talk the CLI out of it. It needs no
privileges, namespaces or setuid helper, so it works under the hardened systemd unit.

This file is run as a script by path with ``-I -S``: it imports only the standard
library and nothing of cc2api, so that it starts in about 20 ms and loads nothing
after the ruleset is in force. The gateway also imports it, for :func:`abi_version`.

What is allowed besides the paths given: read and execute on the system's program
folders, read on ``/etc``, the device files every shell needs, and from ``/proc``
only the CLI's own ``maps`` and ``stat`` (without which the CLI, a Bun binary, will
not run) and system-wide counters; all of ``/proc`` would let the run read the
environment of the gateway and of other runs. With ABI 6, signals and abstract Unix
sockets are scoped too: the run cannot signal or connect to anything outside itself.

What Landlock does not cover (each seen with kernel 6.18, ABI 7): changing metadata
(chmod, chown, utimes) of files outside; stat and path walks (existence and sizes
stay visible); connecting to Unix sockets by path; a root process's capabilities.
PERMISSIONS.md says so too.

Exit status 111 and a line on stderr mean the sandbox could not be set up: the
command is then never run. ``--max-abi N`` uses no more than ABI N, to see what a run
on an older kernel is held to.
"""

from __future__ import annotations

import ctypes
import os
import stat
import sys

SETUP_FAILED = 111
PREFIX = "cc2api-landlock"

# Syscall numbers are the same on every architecture that has Landlock (asm-generic).
_CREATE_RULESET = 444
_ADD_RULE = 445
_RESTRICT_SELF = 446
_CREATE_RULESET_VERSION = 1 << 0
_RULE_PATH_BENEATH = 1
_PR_SET_NO_NEW_PRIVS = 38

# Filesystem access rights (include/uapi/linux/landlock.h), with the ABI adding them.
EXECUTE = 1 << 0
WRITE_FILE = 1 << 1
READ_FILE = 1 << 2
READ_DIR = 1 << 3
REMOVE_DIR = 1 << 4
REMOVE_FILE = 1 << 5
MAKE_CHAR = 1 << 6
MAKE_DIR = 1 << 7
MAKE_REG = 1 << 8
MAKE_SOCK = 1 << 9
MAKE_FIFO = 1 << 10
MAKE_BLOCK = 1 << 11
MAKE_SYM = 1 << 12
REFER = 1 << 13  # ABI 2: link and rename across folders
TRUNCATE = 1 << 14  # ABI 3: truncate(2), O_TRUNC
IOCTL_DEV = 1 << 15  # ABI 5: ioctl(2) on devices
SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0  # ABI 6
SCOPE_SIGNAL = 1 << 1  # ABI 6

# ABI 2 (Linux 5.19, and Debian 12's 6.1) is the least that confines reads and writes
# and lets the CLI link files between its own folders (REFER). What later ABIs add, a
# run on an older kernel can still do: see GAPS.
MIN_ABI = 2
GAPS = {
    3: "truncate(2) files outside its folders by path (Landlock ABI 3, Linux 6.2)",
    5: "use ioctl(2) on device files (Landlock ABI 5, Linux 6.10)",
    6: "signal processes outside it, the gateway among them, and connect to abstract "
    "Unix sockets (Landlock ABI 6, Linux 6.12)",
}
FILE_RIGHTS = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV  # valid on a file
RO = READ_FILE | READ_DIR
RX = RO | EXECUTE
# Everything but making device nodes: a root process could mknod the disk in cwd.
RW = (
    RX
    | WRITE_FILE
    | REMOVE_DIR
    | REMOVE_FILE
    | MAKE_DIR
    | MAKE_REG
    | MAKE_SOCK
    | MAKE_FIFO
    | MAKE_SYM
    | REFER
    | TRUNCATE
)
DEV = READ_FILE | WRITE_FILE | TRUNCATE | IOCTL_DEV

# Measured with strace on the CLI 2.1.197 and what its Bash tool runs: the loader and
# libraries, bash and git; /etc for passwd, nsswitch, CA certificates, localtime and
# the shell's rc files. Missing paths are skipped.
SYSTEM_RX = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64")
SYSTEM_RO = ("/etc",)
SYSTEM_DEV = ("/dev/null", "/dev/zero", "/dev/urandom", "/dev/random", "/dev/full")
# The CLI's own process only (/proc/self resolves to this pid, which exec keeps), and
# counters runtimes size themselves with; no other process's files.
PROC_RO = (
    "/proc/self/maps",
    "/proc/self/stat",
    "/proc/cpuinfo",
    "/proc/meminfo",
    "/proc/stat",
    "/proc/uptime",
    "/proc/loadavg",
    "/proc/version",
    "/proc/filesystems",
)


class _Ruleset(ctypes.Structure):
    _fields_ = (
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),  # ABI 6; the size passed says which fields count
    )


class _PathBeneath(ctypes.Structure):
    _pack_ = 1  # packed in the kernel's header: 12 bytes
    _fields_ = (("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32))


class SetupError(Exception):
    """Raised when the ruleset cannot be built or enforced."""


def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    return libc


def _check(result: int, what: str) -> int:
    if result < 0:
        errno = ctypes.get_errno()
        raise SetupError(f"{what}: {os.strerror(errno)}")
    return result


def abi_version() -> int:
    """Return the kernel's Landlock ABI version; 0 when it is missing, off or filtered."""
    try:
        libc = _libc()
    except OSError:
        return 0
    version = libc.syscall(_CREATE_RULESET, None, ctypes.c_size_t(0), _CREATE_RULESET_VERSION)
    return max(int(version), 0)


def gaps(abi: int) -> list[str]:
    """Return what a run confined with ``abi`` can still do that a newer ABI would stop."""
    return [gap for needed, gap in GAPS.items() if abi < needed]


def _handled(abi: int) -> int:
    rights = (1 << 13) - 1  # ABI 1: EXECUTE to MAKE_SYM
    rights |= REFER if abi >= 2 else 0
    rights |= TRUNCATE if abi >= 3 else 0
    rights |= IOCTL_DEV if abi >= 5 else 0
    return rights


def _allow(libc: ctypes.CDLL, ruleset: int, path: str, access: int, *, required: bool) -> None:
    """Allow ``access`` beneath ``path``; a missing path is skipped unless ``required``."""
    try:
        # O_PATH needs no permission, and binds the rule to this inode: renaming or
        # swapping the name afterwards cannot redirect it.
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except FileNotFoundError:
        if required:
            raise SetupError(f"{path} does not exist") from None
        return
    try:
        if not stat.S_ISDIR(os.fstat(fd).st_mode):
            access &= FILE_RIGHTS  # the kernel refuses folder rights on a file
        rule = _PathBeneath(allowed_access=access, parent_fd=fd)
        _check(
            libc.syscall(_ADD_RULE, ruleset, _RULE_PATH_BENEATH, ctypes.byref(rule), 0),
            f"allowing {path}",
        )
    except BaseException:
        os.close(fd)
        raise
    if path.startswith("/proc/"):
        # procfs makes a new inode for /proc/<pid>/x whenever its dentry is evicted, and
        # the rule would silently stop matching mid-run. An O_PATH descriptor kept open
        # across exec (it grants nothing) pins it.
        os.set_inheritable(fd, True)
    else:
        os.close(fd)


def confine(
    rx: list[str],
    ro: list[str],
    rw: list[str],
    dev: list[str],
    *,
    proc: bool = True,
    max_abi: int | None = None,
) -> int:
    """Restrict this process and all it will start to the paths given; return the ABI.

    ``max_abi`` uses no more of Landlock than that ABI offers, as an older kernel would.

    Raises:
        SetupError: Landlock is missing or too old, a --rw path is missing, or the
            kernel refused the ruleset.
    """
    abi = abi_version() if max_abi is None else min(abi_version(), max_abi)
    if abi < MIN_ABI:
        raise SetupError(f"Landlock ABI {abi} is below {MIN_ABI} (kernel too old or Landlock off)")
    libc = _libc()
    handled = _handled(abi)
    attr = _Ruleset(handled_access_fs=handled)
    size = ctypes.sizeof(ctypes.c_uint64)
    if abi >= 6:
        attr.scoped = SCOPE_SIGNAL | SCOPE_ABSTRACT_UNIX_SOCKET
        size = ctypes.sizeof(_Ruleset)
    ruleset = _check(
        libc.syscall(_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), 0),
        "creating the ruleset",
    )
    try:
        for paths, access, required in (
            ((*SYSTEM_RX, *rx), RX, False),
            ((*SYSTEM_RO, *ro, *(PROC_RO if proc else ())), RO, False),
            ((*SYSTEM_DEV, *dev), DEV, False),
            (tuple(rw), RW, True),
        ):
            for path in paths:
                _allow(libc, ruleset, path, access & handled, required=required)
        # Needed to restrict oneself unprivileged; it also keeps setuid programs (sudo)
        # from gaining privileges inside.
        _check(libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "setting no_new_privs")
        _check(libc.syscall(_RESTRICT_SELF, ruleset, 0), "enforcing the ruleset")
    finally:
        os.close(ruleset)
    return abi


def _parse(argv: list[str]) -> tuple[dict[str, list[str]], list[str]]:
    options: dict[str, list[str]] = {
        "--rx": [],
        "--ro": [],
        "--rw": [],
        "--dev": [],
        "--max-abi": [],
    }
    index = 0
    while index < len(argv) and argv[index] != "--":
        name = argv[index]
        if name not in options or index + 1 >= len(argv):
            raise SetupError(
                f"bad option {name!r}; usage: --rx|--ro|--rw|--dev PATH ... [--max-abi N] -- CMD"
            )
        options[name].append(argv[index + 1])
        index += 2
    command = argv[index + 1 :]
    if not command:
        raise SetupError("no command after --")
    if not all(value.isdigit() for value in options["--max-abi"]):
        raise SetupError("--max-abi takes a number")
    return options, command


def main(argv: list[str]) -> None:
    """Confine, then exec the command; never returns."""
    try:
        options, command = _parse(argv)
        capped = options["--max-abi"]
        confine(
            options["--rx"],
            options["--ro"],
            options["--rw"],
            options["--dev"],
            max_abi=int(capped[-1]) if capped else None,
        )
    except SetupError as error:
        sys.stderr.write(f"{PREFIX}: cannot confine the run: {error}\n")
        sys.exit(SETUP_FAILED)
    try:
        os.execv(command[0], command)  # noqa: S606 (the CLI's argv, as the gateway built it)
    except OSError as error:
        sys.stderr.write(f"{PREFIX}: cannot start {command[0]}: {error.strerror}\n")
        sys.exit(127)


if __name__ == "__main__":
    main(sys.argv[1:])
