"""What starts a run's CLI, built once: argv, environment and folders."""

from __future__ import annotations

from pathlib import Path

from cc2api.cli_args import command_line_bytes
from cc2api.confinement import ConfineSetup
from cc2api.launch import WORKDIR_PREFIX, Launch, plan_launch
from cc2api.models import ChatRequest
from cc2api.policy import Policy
from cc2api.proctree import MARKER_VAR

from .helpers import make_settings

CLAUDE = Path("/usr/bin/claude-stand-in")
RUN_ID = "5b0c5c4e-8f3e-4a53-9f0e-2d6f1b0e1a11"


def launch_of(body: dict[str, object], *, environ: dict[str, str] | None = None) -> Launch:
    """The launch a permissive gateway builds for ``body``."""
    request = ChatRequest.model_validate(body)
    plan = Policy(make_settings(), {}, euid=1000).plan(request)
    return plan_launch(
        run_id=RUN_ID,
        claude=CLAUDE,
        request=request,
        plan=plan,
        environ=environ or {"PATH": "/usr/bin"},
        confine=ConfineSetup(Path("/nonexistent")),
    )


class TestLaunch:
    def test_the_run_folder_is_named_by_the_run_and_a_secret(self) -> None:
        """A run's folder is named after its run id and a part nobody is told."""
        first = launch_of({"prompt": "p", "cwd": "/w"})
        second = launch_of({"prompt": "p", "cwd": "/w"})
        assert first.workdir.name.startswith(f"{WORKDIR_PREFIX}{RUN_ID}-")
        assert first.workdir != second.workdir
        assert not first.workdir.exists()  # made only when the run starts

    def test_every_process_is_marked_with_the_run(self) -> None:
        """The environment carries the marker teardown finds the run's processes by."""
        launch = launch_of({"prompt": "p", "cwd": "/w"}, environ={"PATH": "/bin", "A": "1"})
        assert launch.env[MARKER_VAR] == RUN_ID
        assert launch.env["A"] == "1"

    def test_the_prompt_never_reaches_argv(self) -> None:
        """The prompt and system prompt go by stdin and files, never on the command line."""
        launch = launch_of({"prompt": "SECRET-1", "cwd": "/w", "system_prompt": "SECRET-2"})
        assert not any("SECRET" in arg for arg in launch.argv)
        assert launch.argv[0] == str(CLAUDE)

    def test_the_measured_size_is_the_whole_command_line(self) -> None:
        """What is measured against the kernel's limit is exactly what is spawned."""
        launch = launch_of({"prompt": "p", "cwd": "/w", "model": "m" * 1000})
        assert launch.command_line_bytes() == command_line_bytes(list(launch.argv), launch.env)
        assert launch.command_line_bytes() > 1000
