"""The systemd unit: verifies clean, scores at most 4.0 on systemd's exposure scale, and
gives the store a state directory of its own."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from .helpers import REPO

pytestmark = pytest.mark.timeout(60)

TEMPLATE = REPO / "systemd" / "cc2api.service"


def render(prefix: Path) -> Path:
    """Fill the template the way install.sh does, for a user cc2api installed at ``prefix``."""
    (prefix / "venv" / "bin").mkdir(parents=True)
    (prefix / "venv" / "bin" / "cc2api").write_text("#!/bin/sh\n")
    (prefix / "venv" / "bin" / "cc2api").chmod(0o755)
    (prefix / ".env").write_text("")
    text = TEMPLATE.read_text()
    for name, value in {
        "@PREFIX@": str(prefix),
        "@USER@": "cc2api",
        "@GROUP@": "cc2api",
        "@HOME@": "/var/lib/cc2api",
        "@WORK_DIRS@": "-/srv/work",
        "@STATE@": "cc2api",
    }.items():
        text = text.replace(name, value)
    assert re.search(r"@[A-Z_]+@", text) is None
    unit = prefix / "cc2api.service"
    unit.write_text(text)
    return unit


def systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    assert found, "systemd-analyze is needed (Debian package systemd)"
    return found


def test_unit_verifies_clean(tmp_path: Path) -> None:
    """`systemd-analyze verify` finds nothing to say about the rendered unit."""
    done = subprocess.run(
        [systemd_analyze(), "verify", str(render(tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0
    assert done.stdout + done.stderr == ""


def test_unit_exposure_at_most_four(tmp_path: Path) -> None:
    """`systemd-analyze security --offline=true` rates the unit's exposure 4.0 or less."""
    done = subprocess.run(
        [systemd_analyze(), "security", "--offline=true", str(render(tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    found = re.search(r"Overall exposure level for cc2api.service: (\d+\.\d+)", done.stdout)
    assert found, done.stdout + done.stderr
    assert float(found.group(1)) <= 4.0


def test_unit_keeps_what_the_gateway_needs() -> None:
    """The unit signals the gateway alone on stop (then SIGKILLs the rest of its control
    group), restarts on failure, allows many descriptors and leaves W^X memory alone."""
    text = TEMPLATE.read_text()
    assert re.search(r"^KillMode=mixed$", text, re.MULTILINE)
    assert re.search(r"^LimitNOFILE=65536$", text, re.MULTILINE)
    assert "Restart=on-failure" in text
    assert re.search(r"^MemoryDenyWriteExecute=", text, re.MULTILINE) is None
    timeout = int(re.search(r"^TimeoutStopSec=(\d+)", text, re.MULTILINE).group(1))  # type: ignore[union-attr]
    assert timeout >= 5 + 5 + 10  # kill grace, stream flush, and room to spare


def directives(text: str) -> dict[str, list[str]]:
    """Return each directive's values in a unit's text, in order (comments left out)."""
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", ";", "[")):
            name, value = line.split("=", 1)
            found.setdefault(name, []).append(value)
    return found


def test_unit_gives_the_store_its_state_directory(tmp_path: Path) -> None:
    """The store's folder is systemd's state directory /var/lib/NAME, mode 0700, and
    DATA_DIR points there as a default that .env (read after it) may override."""
    found = directives(render(tmp_path).read_text())
    assert found["StateDirectory"] == ["cc2api"]
    assert found["StateDirectoryMode"] == ["0700"]
    assert "DATA_DIR=/var/lib/cc2api" in found["Environment"]
    assert found["EnvironmentFile"] == [f"{tmp_path}/.env"]
    # A template's placeholder, so that a second install (cc2api-USER) gets its own.
    assert directives(TEMPLATE.read_text())["StateDirectory"] == ["@STATE@"]


def test_no_hardening_hides_the_state_directory() -> None:
    """Nothing in the hardening takes /var/lib away from the service: ProtectSystem=strict
    (which StateDirectory= is exempt from), no DynamicUser= (which would move it to
    /var/lib/private), and no path list that hides or freezes /var or /var/lib."""
    found = directives(TEMPLATE.read_text())
    assert found["ProtectSystem"] == ["strict"]
    assert "DynamicUser" not in found
    state = Path("/var/lib/cc2api")
    for name in ("InaccessiblePaths", "ReadOnlyPaths", "TemporaryFileSystem", "BindReadOnlyPaths"):
        for value in found.get(name, []):
            for path in value.split():
                covered = Path(path.lstrip("-+").split(":")[0])
                assert not state.is_relative_to(covered), f"{name}={value} covers {state}"
