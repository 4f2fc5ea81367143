"""The warm pool's parts that need no CLI: profiles, staleness, shares and the file."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from cc2api.confinement import ConfineSetup
from cc2api.launch import plan_launch
from cc2api.models import ChatRequest
from cc2api.policy import Policy
from cc2api.pool_file import read_pool_file
from cc2api.pool_profile import Profile, profile_of, signature
from cc2api.pool_targets import targets

from .helpers import make_settings

CLAUDE = Path("/usr/bin/claude-stand-in")


def profile(body: dict[str, Any], key_id: str | None = None, run_id: str = "run-a") -> Profile:
    """Return the profile of the launch a permissive gateway builds for ``body``."""
    request = ChatRequest.model_validate({"prompt": "p", "cwd": "/w", **body})
    plan = Policy(make_settings(), {}, euid=1000).plan(request)
    launch = plan_launch(
        run_id=run_id,
        claude=CLAUDE,
        request=request,
        plan=plan,
        environ={"PATH": "/usr/bin"},
        confine=ConfineSetup(Path("/nonexistent")),
    )
    return profile_of(launch, request, plan, key_id)


class TestProfiles:
    def test_runs_differing_only_in_prompt_and_run_id_share_a_profile(self) -> None:
        """Two launches of the same plan have one profile, whatever their prompts and ids."""
        first = profile({"prompt": "one", "system_prompt": "Be terse."}, run_id="run-a")
        second = profile({"prompt": "two", "system_prompt": "Be terse."}, run_id="run-b")
        assert first.ident == second.ident

    @pytest.mark.parametrize(
        "change",
        [
            {"model": "claude-sonnet-4-5"},
            {"system_prompt": "Be verbose."},
            {"append_system_prompt": "And polite."},
            {"cwd": "/elsewhere"},
            {"allowed_tools": ["Read"]},
            {"permission_mode": "plan"},
        ],
    )
    def test_any_difference_in_what_the_cli_gets_makes_another_profile(
        self, change: dict[str, Any]
    ) -> None:
        """A different option, system prompt file or folder is a different profile."""
        assert (
            profile({"system_prompt": "Be terse."}).ident
            != profile({"system_prompt": "Be terse.", **change}).ident
        )

    def test_two_keys_never_share_a_profile(self) -> None:
        """Equal plans of two keys (or a key and the admin) are filed apart."""
        idents = {profile({}, key_id).ident for key_id in (None, "k1", "k2")}
        assert len(idents) == 3

    def test_a_profile_keeps_no_prompt(self) -> None:
        """The prompt of the run a profile was learned from is not kept with it."""
        assert profile({"prompt": "a secret plan"}).request.prompt == ""


class TestSignature:
    @pytest.mark.parametrize(
        "name",
        ["CLAUDE.md", "CLAUDE.local.md", ".claude/settings.json", ".claude/settings.local.json"],
    )
    def test_making_or_changing_a_start_up_file_changes_the_signature(
        self, tmp_path: Path, name: str
    ) -> None:
        """A start-up file made, then rewritten, changes cwd's signature each time."""
        cwd, config = tmp_path / "work", tmp_path / "config"
        cwd.mkdir()
        before = signature(str(cwd), config, CLAUDE)
        path = cwd / name
        path.parent.mkdir(exist_ok=True)
        path.write_text("one\n")
        made = signature(str(cwd), config, CLAUDE)
        written = path.stat().st_mtime_ns
        path.write_text("two\n")
        # As a write a tick later: the same size, a later time, whatever the clock's grain.
        os.utime(path, ns=(0, written + 10_000_000))
        assert len({before, made, signature(str(cwd), config, CLAUDE)}) == 3

    def test_a_parents_claude_md_and_the_users_settings_count(self, tmp_path: Path) -> None:
        """CLAUDE.md in a parent folder and the config folder's settings.json are watched."""
        cwd, config = tmp_path / "a" / "b", tmp_path / "config"
        cwd.mkdir(parents=True)
        config.mkdir()
        before = signature(str(cwd), config, CLAUDE)
        (tmp_path / "a" / "CLAUDE.md").write_text("rule\n")
        middle = signature(str(cwd), config, CLAUDE)
        (config / "settings.json").write_text("{}\n")
        assert len({before, middle, signature(str(cwd), config, CLAUDE)}) == 3

    def test_an_agent_added_or_the_cli_replaced_changes_the_signature(self, tmp_path: Path) -> None:
        """A new agent in the config folder, or a CLI replaced (upgraded), counts."""
        config, claude = tmp_path / "config", tmp_path / "claude"
        (config / "agents").mkdir(parents=True)
        claude.write_text("one\n")
        before = signature(str(tmp_path), config, claude)
        (config / "agents" / "reviewer.md").write_text("---\nname: reviewer\n---\n")
        middle = signature(str(tmp_path), config, claude)
        (tmp_path / "claude.new").write_text("two\n")
        (tmp_path / "claude.new").replace(claude)
        assert len({before, middle, signature(str(tmp_path), config, claude)}) == 3

    def test_other_files_do_not_count(self, tmp_path: Path) -> None:
        """Files the CLI does not read at start leave the signature as it was."""
        before = signature(str(tmp_path), tmp_path / "config", CLAUDE)
        (tmp_path / "notes.md").write_text("x\n")
        assert signature(str(tmp_path), tmp_path / "config", CLAUDE) == before


class TestTargets:
    def test_one_learned_profile_gets_the_whole_pool(self) -> None:
        """With one plan in use, every place in the pool is its."""
        assert targets(4, [], ["a"]) == {"a": 4}

    def test_learned_profiles_share_evenly_the_most_recent_taking_the_rest(self) -> None:
        """Places are split evenly; the most recent profiles get the remainder."""
        assert targets(5, [], ["a", "b"]) == {"a": 3, "b": 2}
        assert targets(2, [], ["a", "b", "c"]) == {"a": 1, "b": 1}

    def test_declared_profiles_come_first(self) -> None:
        """Declared sizes are served before the learned profiles share what is left."""
        assert targets(4, [("d", 3)], ["a", "b"]) == {"d": 3, "a": 1}
        assert targets(2, [("d", 3)], ["a"]) == {"d": 2}


class TestPoolFile:
    def write(self, tmp_path: Path, data: object) -> Path:
        path = tmp_path / "pool.json"
        path.write_text(json.dumps(data))
        return path

    def test_entries_are_requests_with_a_size_and_a_key(self, tmp_path: Path) -> None:
        """An entry is a POST /chat body without a prompt, with its size and key."""
        path = self.write(
            tmp_path, [{"cwd": "/w", "model": "m", "size": 2, "key": "ci"}, {"cwd": "/v"}]
        )
        first, second = read_pool_file(path)
        assert (first.request.model, first.size, first.key) == ("m", 2, "ci")
        assert (second.size, second.key) == (1, None)

    @pytest.mark.parametrize(
        ("data", "says"),
        [
            ({"cwd": "/w"}, "array"),
            (["/w"], "entry 0: must be an object"),
            ([{"cwd": "/w", "prompt": "hi"}], "entry 0: has a prompt"),
            ([{"cwd": "/w"}, {"cwd": "/w", "size": 0}], "entry 1: size"),
            ([{"cwd": "/w", "key": "no spaces"}], "entry 0: key"),
            ([{"cwd": "/w", "model": 3}], "entry 0: model"),
            (
                [{"cwd": "/w", "session_id": "0b0e3f5e-4f7c-4c1b-9d35-7c1f4f2b6a10"}],
                "names a session",
            ),
            ([{"cwd": "/w", "continue_conversation": True}], "names a session"),
        ],
    )
    def test_a_bad_file_is_refused_naming_the_entry(
        self, tmp_path: Path, data: object, says: str
    ) -> None:
        """A malformed file or entry is refused with a message naming what is wrong."""
        with pytest.raises(ValueError, match=says):
            read_pool_file(self.write(tmp_path, data))

    def test_a_file_that_is_not_json_is_refused(self, tmp_path: Path) -> None:
        """A file that is not JSON is refused, with its path."""
        path = tmp_path / "pool.json"
        path.write_text("[{")
        with pytest.raises(ValueError, match="not JSON"):
            read_pool_file(path)

    def test_the_settings_refuse_a_file_asking_for_more_than_the_pool(self, tmp_path: Path) -> None:
        """POOL_PROFILES_FILE's sizes may not add up to more than POOL_SIZE, nor need a pool."""
        path = self.write(tmp_path, [{"cwd": "/w", "size": 3}])
        with pytest.raises(ValidationError, match="over POOL_SIZE=2"):
            make_settings(pool_size=2, pool_profiles_file=path)
        with pytest.raises(ValidationError, match="POOL_SIZE is 0"):
            make_settings(pool_profiles_file=path)
        assert make_settings(pool_size=3, pool_profiles_file=path).pool_size == 3
