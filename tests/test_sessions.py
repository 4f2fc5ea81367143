"""The CLI's session files: recorded folders, the newest of a folder, and safe copies."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest

from cc2api.safecopy import CopyTooLarge
from cc2api.sessions import copy_session, latest_for, project_key, recorded_cwd, transcript


def write_session(config: Path, cwd: str, *, recorded: str | None = None, mtime: float = 0) -> str:
    """Write a transcript like the CLI's for ``cwd`` (recorded in ``recorded``); return its id."""
    session = str(uuid.uuid4())
    path = transcript(config, cwd, session)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        {"type": "queue-operation", "operation": "enqueue", "sessionId": session},
        {"type": "user", "cwd": recorded or cwd, "sessionId": session, "message": {}},
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    if mtime:
        os.utime(path, (mtime, mtime))
    return session


def test_project_keys_collide_as_the_clis_do() -> None:
    """/x/a-b and /x/a/b share a project key, every non-alphanumeric becoming '-'."""
    assert project_key("/x/a-b") == project_key("/x/a/b") == "-x-a-b"


def test_the_recorded_folder_comes_from_the_first_turn(tmp_path: Path) -> None:
    """A transcript's recorded cwd is the one its first user line carries."""
    session = write_session(tmp_path, "/srv/a", recorded="/srv/elsewhere")
    assert recorded_cwd(transcript(tmp_path, "/srv/a", session)) == "/srv/elsewhere"


def test_a_missing_or_unreadable_transcript_has_no_folder(tmp_path: Path) -> None:
    """No transcript, a symbolic link, or a FIFO gives None (and never blocks)."""
    assert recorded_cwd(tmp_path / "none.jsonl") is None
    real = tmp_path / "real.jsonl"
    real.write_text(json.dumps({"type": "user", "cwd": "/x"}) + "\n")
    (tmp_path / "link.jsonl").symlink_to(real)
    assert recorded_cwd(tmp_path / "link.jsonl") is None
    os.mkfifo(tmp_path / "fifo.jsonl")
    assert recorded_cwd(tmp_path / "fifo.jsonl") is None


def test_the_newest_session_of_exactly_this_folder_is_chosen(tmp_path: Path) -> None:
    """Of a project's sessions, the newest recorded in the folder itself wins, not a namesake's."""
    inside, outside = str(tmp_path / "a" / "b"), str(tmp_path / "a-b")
    older = write_session(tmp_path, inside, mtime=1_000)
    write_session(tmp_path, inside, recorded=outside, mtime=3_000)  # the same project key
    newer = write_session(tmp_path, inside, mtime=2_000)
    assert project_key(inside) == project_key(outside)
    assert latest_for(tmp_path, inside) == newer
    assert older != newer
    assert latest_for(tmp_path, str(tmp_path / "none")) is None


def test_a_session_is_copied_with_its_folder(tmp_path: Path) -> None:
    """The transcript and its folder (tool results, subagents) are copied; links are not."""
    source, target = tmp_path / "source", tmp_path / "target"
    session = write_session(source, "/w")
    folder = transcript(source, "/w", session).with_suffix("")
    (folder / "tool-results").mkdir(parents=True)
    (folder / "tool-results" / "1.txt").write_text("big output")
    (folder / "leak.txt").symlink_to("/etc/passwd")
    assert copy_session(source, target, project_key("/w"), session)
    copied = transcript(target, "/w", session)
    assert copied.read_text() == transcript(source, "/w", session).read_text()
    assert (copied.with_suffix("") / "tool-results" / "1.txt").read_text() == "big output"
    assert not (copied.with_suffix("") / "leak.txt").exists()


def test_a_project_folder_replaced_by_a_link_is_not_followed(tmp_path: Path) -> None:
    """A run's private projects/<key> made a link to another folder copies nothing back."""
    elsewhere = tmp_path / "elsewhere"
    session = write_session(elsewhere, "/w")
    source = tmp_path / "source"
    (source / "projects").mkdir(parents=True)
    (source / "projects" / project_key("/w")).symlink_to(elsewhere / "projects" / project_key("/w"))
    with pytest.raises(OSError, match="symbolic link"):
        copy_session(source, tmp_path / "target", project_key("/w"), session)
    assert not (tmp_path / "target").exists()


def test_only_the_clis_own_session_folders_are_copied(tmp_path: Path) -> None:
    """Beside a transcript, only subagents/ and tool-results/ are copied; a linked folder is not."""
    source, target = tmp_path / "source", tmp_path / "target"
    session = write_session(source, "/w")
    folder = transcript(source, "/w", session).with_suffix("")
    for sub in ("subagents", "planted"):
        (folder / sub).mkdir(parents=True)
        (folder / sub / "a.txt").write_text(sub)
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.txt").write_text("secret")
    (folder / "tool-results").symlink_to(tmp_path / "outside")
    copy_session(source, target, project_key("/w"), session)
    copied = transcript(target, "/w", session).with_suffix("")
    assert (copied / "subagents" / "a.txt").read_text() == "subagents"
    assert not (copied / "planted").exists()
    assert not (copied / "tool-results").exists()


def test_a_session_over_its_budget_is_not_copied_in_part(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When its folder pushes a session over the limit, not even its transcript is copied."""
    source, target = tmp_path / "source", tmp_path / "target"
    session = write_session(source, "/w")
    size = transcript(source, "/w", session).stat().st_size
    monkeypatch.setattr("cc2api.sessions.MAX_SESSION_BYTES", size + 10)
    results = transcript(source, "/w", session).with_suffix("") / "tool-results"
    results.mkdir(parents=True)
    (results / "big.txt").write_text("x" * 100)
    with pytest.raises(CopyTooLarge):
        copy_session(source, target, project_key("/w"), session)
    assert not transcript(target, "/w", session).exists()


def test_the_operators_linked_files_are_followed_when_trusted(tmp_path: Path) -> None:
    """Copying from the real config folder follows links, as dotfile managers make them."""
    source, target = tmp_path / "source", tmp_path / "target"
    session = write_session(tmp_path / "dotfiles", "/w")
    (source / "projects").mkdir(parents=True)
    (source / "projects" / project_key("/w")).symlink_to(
        tmp_path / "dotfiles" / "projects" / project_key("/w")
    )
    assert copy_session(source, target, project_key("/w"), session, trusted=True)
    assert transcript(target, "/w", session).is_file()


def test_a_transcript_replaced_by_a_link_is_not_followed(tmp_path: Path) -> None:
    """A run that swapped its transcript for a link to another file gets nothing copied back."""
    source, target = tmp_path / "source", tmp_path / "target"
    session = str(uuid.uuid4())
    path = transcript(source, "/w", session)
    path.parent.mkdir(parents=True)
    path.symlink_to(tmp_path / "someone-elses.jsonl")
    (tmp_path / "someone-elses.jsonl").write_text("secret\n")
    with pytest.raises(OSError, match=r"symbolic link|Too many levels"):
        copy_session(source, target, project_key("/w"), session)
    assert not transcript(target, "/w", session).exists()


def test_no_transcript_copies_nothing(tmp_path: Path) -> None:
    """A session without a transcript (none was written) is not an error."""
    assert not copy_session(tmp_path / "a", tmp_path / "b", "-w", str(uuid.uuid4()))


def test_only_session_ids_are_copied(tmp_path: Path) -> None:
    """A name that is not a session id (a path, say) is refused before any file is touched."""
    with pytest.raises(ValueError, match="not a session id"):
        copy_session(tmp_path, tmp_path / "b", "-w", "../../etc/passwd")


def test_an_oversized_session_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A session's files over the size limit are refused rather than copied in part."""
    monkeypatch.setattr("cc2api.sessions.MAX_SESSION_BYTES", 10)
    session = write_session(tmp_path / "a", "/w")
    with pytest.raises(CopyTooLarge):
        copy_session(tmp_path / "a", tmp_path / "b", project_key("/w"), session)
    assert not transcript(tmp_path / "b", "/w", session).exists()
