"""The CLI's sessions as the API shows them: summaries, listing, pages, deletion, resumes."""

from __future__ import annotations

import json
import os
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from werkzeug.datastructures import MultiDict

from cc2api import session_index
from cc2api.errors import NotFound, ValidationFailed
from cc2api.query import cursor_of, folder_of, limit_of, moment_of, only
from cc2api.session_index import (
    SessionIndex,
    SessionQuery,
    decode_line_cursor,
    decode_list_cursor,
    encode_line_cursor,
    encode_list_cursor,
    require_resumable,
)
from cc2api.sessions import project_key, transcript

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def stamp(minutes: float) -> str:
    """Return the CLI's form of the time ``minutes`` after T0."""
    moment = T0 + timedelta(minutes=minutes)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def anyone(cwd: str | None) -> bool:
    """Let every session be seen, as a gateway without ALLOWED_CWD_ROOTS does."""
    return True


class CLI:
    """Writes transcripts the way CLI 2.1.197 does, into a config folder of a test's own."""

    def __init__(self, config: Path) -> None:
        self.config = config

    def lines(self, session: str, cwd: str, prompt: str, at: float) -> list[dict[str, Any]]:
        """Return one turn as the CLI writes it: queue, prompt, attachment, answer, last-prompt."""
        user = str(uuid.uuid4())
        return [
            {
                "type": "queue-operation",
                "operation": "enqueue",
                "timestamp": stamp(at),
                "sessionId": session,
                "content": prompt,
            },
            {
                "type": "queue-operation",
                "operation": "dequeue",
                "timestamp": stamp(at),
                "sessionId": session,
            },
            {
                "parentUuid": None,
                "isSidechain": False,
                "type": "user",
                "message": {"role": "user", "content": prompt},
                "uuid": user,
                "timestamp": stamp(at + 0.1),
                "cwd": cwd,
                "sessionId": session,
            },
            {
                "parentUuid": user,
                "isSidechain": False,
                "attachment": {"type": "skill_listing", "content": "- a skill"},
                "type": "attachment",
                "uuid": str(uuid.uuid4()),
                "timestamp": stamp(at + 0.2),
                "cwd": cwd,
                "sessionId": session,
            },
            {
                "parentUuid": user,
                "isSidechain": False,
                "message": {
                    "role": "assistant",
                    "type": "message",
                    "content": [{"type": "text", "text": f"echo: {prompt}"}],
                },
                "type": "assistant",
                "uuid": str(uuid.uuid4()),
                "timestamp": stamp(at + 0.5),
                "cwd": cwd,
                "sessionId": session,
            },
            {"type": "last-prompt", "lastPrompt": prompt, "sessionId": session},
        ]

    def write(
        self,
        cwd: str,
        entries: list[dict[str, Any]] | None = None,
        *,
        session: str | None = None,
        prompt: str = "hello there",
        at: float = 0,
        folder: str | None = None,
    ) -> str:
        """Write a session of ``cwd`` (one turn unless ``entries``); return its id."""
        session = session or str(uuid.uuid4())
        lines = self.lines(session, cwd, prompt, at) if entries is None else entries
        path = self.path(cwd, session, folder)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(line) + "\n" for line in lines))
        return session

    def append(self, cwd: str, session: str, entries: list[dict[str, Any]]) -> None:
        """Append entries to a session, as a resumed run does."""
        with self.path(cwd, session).open("a") as file:
            file.write("".join(json.dumps(line) + "\n" for line in entries))

    def path(self, cwd: str, session: str, folder: str | None = None) -> Path:
        """Return where the CLI keeps the session (in ``folder`` of projects, if given)."""
        if folder is None:
            return transcript(self.config, cwd, session)
        return self.config / "projects" / folder / f"{session}.jsonl"


@pytest.fixture(name="cli")
def _cli(tmp_path: Path) -> CLI:
    config = tmp_path / "config"
    (config / "projects").mkdir(parents=True)
    return CLI(config)


@pytest.fixture(name="index")
def _index() -> SessionIndex:
    return SessionIndex()


def listed(index: SessionIndex, cli: CLI, **query: Any) -> list[str]:
    """Return the ids GET /sessions would list, on one page."""
    page = index.list_page(cli.config, SessionQuery(**query), anyone)
    return [summary.session_id for summary in page.sessions]


class TestSummary:
    def test_a_real_shaped_transcript_is_summarized(self, cli: CLI, index: SessionIndex) -> None:
        """A turn gives its cwd, first and last entries' times, two messages and the prompt."""
        session = cli.write("/srv/repo", prompt="fix the bug\nin parser.py", at=5)
        summary = index.summary(cli.config, session, anyone)
        assert summary.cwd == "/srv/repo"
        assert summary.created_at == T0 + timedelta(minutes=5)  # the queue entry's
        assert summary.last_activity == T0 + timedelta(minutes=5.5)  # not last-prompt's mtime
        assert summary.message_count == 2
        assert summary.preview == "fix the bug in parser.py"

    def test_preview_skips_what_is_not_a_prompt(self, cli: CLI, index: SessionIndex) -> None:
        """Meta entries, tool results and the CLI's markers are passed over for the prompt."""
        session = str(uuid.uuid4())
        entries: list[dict[str, Any]] = [
            {"type": "user", "isMeta": True, "message": {"content": "caveat"}},
            {"type": "user", "message": {"content": "<local-command-stdout>x"}},
            {
                "type": "user",
                "message": {"content": [{"type": "tool_result", "content": "out"}]},
            },
            {"type": "user", "message": {"content": [{"type": "text", "text": "  real one "}]}},
        ]
        cli.write("/srv/a", entries, session=session)
        assert index.summary(cli.config, session, anyone).preview == "real one"

    def test_a_long_prompt_is_cut_at_200_characters(self, cli: CLI, index: SessionIndex) -> None:
        """A prompt longer than 200 characters is previewed by its first 200 and an ellipsis."""
        session = cli.write("/srv/a", prompt="x" * 1_000_000)
        assert index.summary(cli.config, session, anyone).preview == "x" * 200 + "\u2026"

    def test_a_slash_command_is_the_fallback_preview(self, cli: CLI, index: SessionIndex) -> None:
        """With no prompt but a slash command, the command's name is the preview."""
        command = "<command-name>/compact</command-name><command-args></command-args>"
        session = cli.write("/srv/a", [{"type": "user", "message": {"content": command}}])
        assert index.summary(cli.config, session, anyone).preview == "/compact"

    def test_no_prompt_gives_no_preview(self, cli: CLI, index: SessionIndex) -> None:
        """A session with only queue entries (a run killed at once) has a null preview."""
        entries = [{"type": "queue-operation", "operation": "enqueue", "timestamp": stamp(1)}]
        session = cli.write("/srv/a", entries)
        summary = index.summary(cli.config, session, anyone)
        assert (summary.preview, summary.message_count, summary.cwd) == (None, 0, None)

    def test_without_timestamps_the_file_time_is_used(self, cli: CLI, index: SessionIndex) -> None:
        """A transcript with no timestamps is created and last active at its mtime."""
        session = cli.write("/srv/a", [{"type": "user", "message": {"content": "hi"}}])
        moment = (T0 + timedelta(days=3)).timestamp()
        os.utime(cli.path("/srv/a", session), (moment, moment))
        summary = index.summary(cli.config, session, anyone)
        assert summary.created_at == summary.last_activity == T0 + timedelta(days=3)

    def test_meta_sidechain_and_team_entries_are_not_messages(
        self, cli: CLI, index: SessionIndex
    ) -> None:
        """Only user and assistant entries count, and not meta, sidechain or teams' ones."""
        entries: list[dict[str, Any]] = [
            {"type": "user", "message": {"content": "a"}},
            {"type": "user", "isMeta": True, "message": {"content": "b"}},
            {"type": "assistant", "isSidechain": True, "message": {}},
            {"type": "assistant", "teamName": "t", "message": {}},
            {"type": "system", "subtype": "compact_boundary"},
            {"type": "assistant", "message": {}},
        ]
        session = cli.write("/srv/a", entries)
        assert index.summary(cli.config, session, anyone).message_count == 2

    def test_cwd_is_the_first_recorded(self, cli: CLI, index: SessionIndex) -> None:
        """The recorded folder is the first entry's cwd, as resumes check it."""
        session = cli.write("/srv/a", cli.lines("s", "/srv/first", "p", 0))
        cli.append("/srv/a", session, cli.lines("s", "/srv/second", "p", 1))
        assert index.summary(cli.config, session, anyone).cwd == "/srv/first"

    def test_an_unfinished_last_line_waits(self, cli: CLI, index: SessionIndex) -> None:
        """A line still being written is not counted until its newline arrives."""
        session = cli.write("/srv/a")
        path = cli.path("/srv/a", session)
        line = json.dumps({"type": "user", "message": {"content": "more"}}) + "\n"
        with path.open("a") as file:
            file.write(line[:10])
        assert index.summary(cli.config, session, anyone).message_count == 2
        with path.open("a") as file:
            file.write(line[10:])
        assert index.summary(cli.config, session, anyone).message_count == 3

    def test_an_appended_transcript_is_summarized_again(
        self, cli: CLI, index: SessionIndex
    ) -> None:
        """A resumed session's new turn counts, and its time becomes the last activity."""
        session = cli.write("/srv/a", at=0)
        assert index.summary(cli.config, session, anyone).message_count == 2
        cli.append("/srv/a", session, cli.lines(session, "/srv/a", "again", 60))
        summary = index.summary(cli.config, session, anyone)
        assert summary.message_count == 4
        assert summary.last_activity == T0 + timedelta(minutes=60.5)
        assert summary.preview == "hello there"

    def test_a_rewritten_transcript_is_read_again(self, cli: CLI, index: SessionIndex) -> None:
        """A transcript replaced by a longer one in place (not appended) is read from the start."""
        session = cli.write("/srv/a", prompt="first")
        assert index.summary(cli.config, session, anyone).preview == "first"
        rewritten = cli.lines(session, "/srv/a", "FIRST, rewritten", 0)
        with cli.path("/srv/a", session).open("r+") as file:  # the same inode, other bytes
            file.write("".join(json.dumps(line) + "\n" for line in rewritten))
        assert index.summary(cli.config, session, anyone).preview == "FIRST, rewritten"

    def test_the_cache_is_bounded(self, cli: CLI) -> None:
        """The index keeps no more summaries than it was made for."""
        index = SessionIndex(entries=2)
        for n in range(5):
            cli.write(f"/srv/{n}")
        assert len(listed(index, cli)) == 5
        assert len(index) == 2


class TestListing:
    def test_newest_activity_first(self, cli: CLI, index: SessionIndex) -> None:
        """Sessions come newest last activity first, whatever their creation order."""
        old = cli.write("/srv/a", at=0)
        new = cli.write("/srv/b", at=10)
        resumed = cli.write("/srv/a", at=-10)
        cli.append("/srv/a", resumed, cli.lines(resumed, "/srv/a", "again", 20))
        assert listed(index, cli) == [resumed, new, old]

    def test_pages_walk_every_session_once(self, cli: CLI, index: SessionIndex) -> None:
        """Following next_cursor with limit 2 lists every session once, in order, then stops."""
        sessions = [cli.write(f"/srv/{n}", at=n) for n in range(5)]
        seen: list[str] = []
        after = None
        pages = 0
        while True:
            page = index.list_page(cli.config, SessionQuery(after=after, limit=2), anyone)
            seen += [summary.session_id for summary in page.sessions]
            pages += 1
            if page.next_cursor is None:
                break
            after = decode_list_cursor(page.next_cursor)
        assert seen == sessions[::-1]
        assert pages == 3

    def test_cwd_filter_is_the_recorded_folder(self, cli: CLI, index: SessionIndex) -> None:
        """/x/a-b and /x/a/b share a project, but cwd lists only sessions recorded in the one."""
        assert project_key("/x/a-b") == project_key("/x/a/b")
        inside = cli.write("/x/a/b")
        cli.write("/x/a/b", cli.lines(str(uuid.uuid4()), "/x/a-b", "namesake", 0))
        cli.write("/x/c")
        assert listed(index, cli, cwd="/x/a/b") == [inside]

    def test_a_long_folder_is_found_by_its_cut_key(self, cli: CLI, index: SessionIndex) -> None:
        """A folder whose key passes 200 characters is found in the CLI's cut, hashed project."""
        cwd = "/srv/" + "d" * 150 + "/" + "e" * 150
        folder = project_key(cwd)[:200] + "-g9y4z0"
        session = cli.write(cwd, folder=folder)
        assert listed(index, cli, cwd=cwd) == [session]
        require_resumable(cli.config, cwd, session)

    def test_since_keeps_recent_activity(self, cli: CLI, index: SessionIndex) -> None:
        """since lists the sessions last active at or after it."""
        cli.write("/srv/a", at=0)
        recent = cli.write("/srv/b", at=30)
        assert listed(index, cli, since=T0 + timedelta(minutes=30.5)) == [recent]

    def test_hidden_sessions_are_not_listed(self, cli: CLI, index: SessionIndex) -> None:
        """A session the visibility rule refuses (outside the roots) is not listed."""
        inside = cli.write("/roots/a")
        cli.write("/elsewhere")
        page = index.list_page(
            cli.config, SessionQuery(), lambda cwd: cwd is not None and cwd.startswith("/roots/")
        )
        assert [summary.session_id for summary in page.sessions] == [inside]

    def test_only_uuid_transcripts_are_sessions(self, cli: CLI, index: SessionIndex) -> None:
        """Other files and folders of a project (memory/, agent files, notes) are no sessions."""
        session = cli.write("/srv/a")
        folder = cli.path("/srv/a", session).parent
        (folder / "memory").mkdir()
        (folder / "agent-1234.jsonl").write_text("{}\n")
        (folder / "notes.txt").write_text("x")
        (folder / f"{session.upper()}.jsonl").write_text("{}\n")
        assert listed(index, cli) == [session]

    def test_links_are_not_followed(self, cli: CLI, index: SessionIndex, tmp_path: Path) -> None:
        """A linked project folder or a linked transcript is not listed, nor read."""
        elsewhere = CLI(tmp_path / "elsewhere")
        outside = elsewhere.write("/srv/a")
        projects = cli.config / "projects"
        (projects / "-linked").symlink_to(elsewhere.path("/srv/a", outside).parent)
        (projects / "-srv-b").mkdir()
        linked = str(uuid.uuid4())
        (projects / "-srv-b" / f"{linked}.jsonl").symlink_to(elsewhere.path("/srv/a", outside))
        assert listed(index, cli) == []
        with pytest.raises(NotFound):
            index.summary(cli.config, linked, anyone)

    def test_a_sidechain_transcript_is_not_listed(self, cli: CLI, index: SessionIndex) -> None:
        """A transcript whose first entry is a sidechain's is left out, as the SDK does."""
        entries = [{"type": "user", "isSidechain": True, "message": {"content": "sub"}}]
        sidechain = cli.write("/srv/a", entries)
        assert listed(index, cli) == []
        assert index.summary(cli.config, sidechain, anyone).session_id == sidechain

    def test_an_id_in_two_projects_is_listed_once(self, cli: CLI, index: SessionIndex) -> None:
        """A session copied into a second project is listed once, as its newest copy."""
        session = cli.write("/srv/a", at=0)
        cli.write("/srv/b", session=session, at=5)
        page = index.list_page(cli.config, SessionQuery(), anyone)
        assert [(s.session_id, s.cwd) for s in page.sessions] == [(session, "/srv/b")]

    def test_no_projects_folder_lists_nothing(self, tmp_path: Path, index: SessionIndex) -> None:
        """A config folder the CLI never wrote to has no sessions."""
        page = index.list_page(tmp_path / "none", SessionQuery(), anyone)
        assert (page.sessions, page.next_cursor) == ([], None)


class TestPages:
    def test_lines_come_parsed_in_file_order(self, cli: CLI, index: SessionIndex) -> None:
        """A transcript's lines come as the CLI wrote them, each parsed, in order, in pages."""
        session = cli.write("/srv/a")
        cli.append("/srv/a", session, cli.lines(session, "/srv/a", "again", 1))
        expected = [
            json.loads(line) for line in cli.path("/srv/a", session).read_text().splitlines()
        ]
        got: list[Any] = []
        start = (0, 0)
        while True:
            page = index.read_page(cli.config, session, anyone, start=start, limit=5)
            got += page.messages
            if page.next_cursor is None:
                break
            start = decode_line_cursor(page.next_cursor)
        assert got == expected
        assert len(expected) == 12

    def test_a_line_that_is_not_json_comes_as_text(self, cli: CLI, index: SessionIndex) -> None:
        """A line that is not JSON is passed on as its text."""
        session = cli.write("/srv/a")
        with cli.path("/srv/a", session).open("a") as file:
            file.write("not json\n")
        page = index.read_page(cli.config, session, anyone, limit=500)
        assert page.messages[-1] == "not json"

    def test_a_page_holds_at_most_max_page_bytes(
        self, cli: CLI, index: SessionIndex, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Lines past MAX_PAGE_BYTES wait for the next page; a bigger line comes alone."""
        monkeypatch.setattr(session_index, "MAX_PAGE_BYTES", 1000)
        big = [{"type": "user", "message": {"content": "y" * 2000}}]
        small = [{"type": "user", "message": {"content": "z"}}] * 3
        session = cli.write("/srv/a", big + small)
        first = index.read_page(cli.config, session, anyone, limit=500)
        assert len(first.messages) == 1
        assert first.next_cursor is not None
        rest = index.read_page(
            cli.config, session, anyone, start=decode_line_cursor(first.next_cursor), limit=500
        )
        assert (len(rest.messages), rest.next_cursor) == (3, None)

    def test_a_cursor_survives_an_append(self, cli: CLI, index: SessionIndex) -> None:
        """After a resumed run appends, the next page starts where the last ended."""
        session = cli.write("/srv/a")
        first = index.read_page(cli.config, session, anyone, limit=4)
        assert first.next_cursor is not None
        cli.append("/srv/a", session, cli.lines(session, "/srv/a", "again", 1))
        rest = index.read_page(
            cli.config, session, anyone, start=decode_line_cursor(first.next_cursor), limit=500
        )
        assert [m["type"] for m in rest.messages[:2]] == ["assistant", "last-prompt"]
        assert len(rest.messages) == 8

    def test_a_stale_offset_falls_back_to_the_line(self, cli: CLI, index: SessionIndex) -> None:
        """A cursor whose offset is no line's start (the file was rewritten) counts lines."""
        session = cli.write("/srv/a")
        page = index.read_page(cli.config, session, anyone, start=(4, 3), limit=500)
        assert [m["type"] for m in page.messages] == ["assistant", "last-prompt"]

    def test_an_unknown_or_hidden_session_is_not_found(self, cli: CLI, index: SessionIndex) -> None:
        """Reading a session that does not exist, or is hidden, is NotFound unknown_session."""
        hidden = cli.write("/elsewhere")
        for session, visible in ((str(uuid.uuid4()), anyone), (hidden, lambda cwd: False)):
            with pytest.raises(NotFound) as raised:
                index.read_page(cli.config, session, visible)
            assert raised.value.code == "unknown_session"


class TestDelete:
    def test_the_transcript_and_its_folder_go(self, cli: CLI, index: SessionIndex) -> None:
        """Deleting removes the transcript and its subagents and tool results; others stay."""
        session = cli.write("/srv/a")
        other = cli.write("/srv/a")
        folder = cli.path("/srv/a", session).with_suffix("")
        (folder / "subagents").mkdir(parents=True)
        (folder / "subagents" / "agent-1.jsonl").write_text("{}\n")
        (folder / "tool-results").mkdir()
        (folder / "tool-results" / "big.txt").write_text("x")
        index.delete(cli.config, session, anyone)
        assert not cli.path("/srv/a", session).exists()
        assert not folder.exists()
        assert listed(index, cli) == [other]

    def test_links_beside_it_are_removed_not_followed(
        self, cli: CLI, index: SessionIndex, tmp_path: Path
    ) -> None:
        """A link in the session's folder, or as the folder, goes; what it points at stays."""
        precious = tmp_path / "precious"
        precious.mkdir()
        (precious / "keep.txt").write_text("keep")
        first, second = cli.write("/srv/a"), cli.write("/srv/a")
        beside = cli.path("/srv/a", first).with_suffix("")
        beside.mkdir()
        (beside / "tool-results").symlink_to(precious)
        cli.path("/srv/a", second).with_suffix("").symlink_to(precious)
        index.delete(cli.config, first, anyone)
        index.delete(cli.config, second, anyone)
        assert (precious / "keep.txt").read_text() == "keep"
        assert listed(index, cli) == []

    def test_every_copy_goes(self, cli: CLI, index: SessionIndex) -> None:
        """A session copied into two projects is gone from both."""
        session = cli.write("/srv/a")
        cli.write("/srv/b", session=session)
        index.delete(cli.config, session, anyone)
        assert not cli.path("/srv/a", session).exists()
        assert not cli.path("/srv/b", session).exists()

    def test_an_unknown_or_hidden_session_is_kept(self, cli: CLI, index: SessionIndex) -> None:
        """Deleting an unknown session, or one outside the roots, is NotFound; nothing goes."""
        hidden = cli.write("/elsewhere")
        with pytest.raises(NotFound):
            index.delete(cli.config, str(uuid.uuid4()), anyone)
        with pytest.raises(NotFound):
            index.delete(cli.config, hidden, lambda cwd: False)
        assert cli.path("/elsewhere", hidden).exists()


class TestResumable:
    def test_a_session_of_the_folder_passes(self, cli: CLI) -> None:
        """A transcript in the project of the run's folder can be resumed."""
        require_resumable(cli.config, "/srv/a", cli.write("/srv/a"))

    def test_a_session_of_another_project_passes(self, cli: CLI) -> None:
        """A transcript in another project (a git worktree's, which the CLI finds) passes."""
        require_resumable(cli.config, "/srv/main", cli.write("/srv/main-worktree"))

    def test_a_missing_session_is_unknown(self, cli: CLI, index: SessionIndex) -> None:
        """No transcript of the id, or a deleted one, is NotFound unknown_session."""
        session = cli.write("/srv/a")
        index.delete(cli.config, session, anyone)
        for missing in (session, str(uuid.uuid4())):
            with pytest.raises(NotFound) as raised:
                require_resumable(cli.config, "/srv/a", missing)
            assert raised.value.code == "unknown_session"


class TestCursors:
    def test_cursors_round_trip(self) -> None:
        """A listing's and a page's cursors decode to what they were made of."""
        session = str(uuid.uuid4())
        assert decode_list_cursor(encode_list_cursor(T0, session)) == (T0, session)
        assert decode_line_cursor(encode_line_cursor(7, 1234)) == (7, 1234)

    @pytest.mark.parametrize(
        "cursor",
        [
            "",
            "!!",
            "bm90IGEgY3Vyc29y",
            encode_line_cursor(1, 2),
            encode_list_cursor(T0, "../../etc/passwd"),
        ],
    )
    def test_a_foreign_list_cursor_is_refused(self, cursor: str) -> None:
        """Anything but a listing's own cursor is a ValueError."""
        with pytest.raises(ValueError, match="not a cursor"):
            decode_list_cursor(cursor)

    @pytest.mark.parametrize("cursor", ["", "bA", encode_list_cursor(T0, str(uuid.uuid4()))])
    def test_a_foreign_line_cursor_is_refused(self, cursor: str) -> None:
        """Anything but a page's own cursor is a ValueError."""
        with pytest.raises(ValueError, match="not a cursor"):
            decode_line_cursor(cursor)


def args(**values: str) -> MultiDict[str, str]:
    """Return query parameters as Quart gives them."""
    return MultiDict(values)


class TestQueryParameters:
    @pytest.mark.parametrize("given", ["0", "501", "-1", "1.5", "x", "1" * 30, "٣"])
    def test_a_bad_limit_names_the_parameter(self, given: str) -> None:
        """A limit that is not a whole number from 1 to 500 is refused, naming `limit`."""
        with pytest.raises(ValidationFailed, match=r"^limit: "):
            limit_of(args(limit=given))

    def test_limit_defaults_to_100(self) -> None:
        """Without limit a page holds up to 100; 500 is allowed."""
        assert (limit_of(args()), limit_of(args(limit="500"))) == (100, 500)

    @pytest.mark.parametrize("given", ["yesterday", "2026-12-01T09:00:00", "2026-13-01T00:00Z"])
    def test_since_needs_an_iso_time_with_a_zone(self, given: str) -> None:
        """since must be ISO 8601 with a time zone; a naive or malformed time is refused."""
        with pytest.raises(ValidationFailed, match=r"^since: "):
            moment_of(args(since=given), "since")

    def test_since_is_read_in_utc(self) -> None:
        """A since with an offset is the same instant in UTC."""
        assert moment_of(args(since="2026-12-01T11:00:00+02:00"), "since") == T0

    def test_cwd_must_be_absolute(self) -> None:
        """A relative cwd filter is refused, naming `cwd`."""
        with pytest.raises(ValidationFailed, match=r"^cwd: "):
            folder_of(args(cwd="srv/a"), "cwd")

    def test_unknown_or_repeated_parameters_are_refused(self) -> None:
        """A parameter the endpoint does not take, or one given twice, is refused by name."""
        with pytest.raises(ValidationFailed, match=r"^cwd_prefix: unknown"):
            only(args(cwd_prefix="/srv"), ("cwd", "limit"))
        with pytest.raises(ValidationFailed, match=r"^limit: given more than once"):
            only(MultiDict([("limit", "1"), ("limit", "2")]), ("cwd", "limit"))

    def test_a_bad_cursor_names_the_parameter(self) -> None:
        """A cursor the server did not give is refused, naming `cursor`."""
        with pytest.raises(ValidationFailed, match=r"^cursor: "):
            cursor_of(args(cursor="abc"), decode_list_cursor)
