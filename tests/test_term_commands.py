"""The terminal client's commands, run as ``python -m cc2api ...`` with pipes, against a real
gateway and the fake CLI."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest
import trio

from .cutting_proxy import CuttingProxy
from .helpers import (
    PASSWORD,
    USER,
    Ran,
    Shared,
    alive,
    listing,
    make_settings,
    run_cc2api,
    saved_session,
    served,
)
from .test_keys import make_key

pytestmark = pytest.mark.timeout(120)


def client_env(url: str | None, home: Path, **more: str) -> dict[str, str]:
    """Return a client's environment: the gateway's URL and the admin's credential."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), **more}
    if url is not None:
        env |= {"CC2API_URL": url, "CC2API_USER": USER, "CC2API_PASSWORD": PASSWORD}
    return env


async def cc2api(env: dict[str, str], cwd: Path, *args: str) -> Ran:
    """Run ``python -m cc2api ARGS`` and return what it did."""
    return await run_cc2api(env, cwd, *args)


@pytest.fixture(name="env")
def _env(gw: Shared, tmp_path: Path) -> dict[str, str]:
    """The environment of a client of the session's gateway."""
    return client_env(gw.url, tmp_path)


class TestRun:
    async def test_a_run_is_rendered_and_exits_0(self, env: dict[str, str], workdir: Path) -> None:
        """``cc2api run`` shows the run's id, its text and its end, in the current folder."""
        ran = await cc2api(env, workdir, "run", "echo hello there")
        assert ran.returncode == 0, ran.stderr
        lines = ran.stdout.splitlines()
        assert lines[0].startswith("run ")
        assert "echo hello there" in lines
        assert lines[-1].startswith("completed · ")
        assert "\x1b[" not in ran.stdout  # no colour in a pipe

    async def test_cost_and_tokens_come_from_the_result_line(
        self, env: dict[str, str], workdir: Path
    ) -> None:
        """The closing line shows the result line's cost and tokens."""
        ran = await cc2api(env, workdir, "run", "priced")
        assert ran.returncode == 0, ran.stderr
        assert ran.stdout.splitlines()[-1].endswith("$0.0123 · 11 in, 22 out tokens")

    async def test_json_prints_each_events_data_line(
        self, env: dict[str, str], workdir: Path
    ) -> None:
        """``--json`` prints one JSON object a line: process, the CLI's lines, then done."""
        ran = await cc2api(env, workdir, "run", "lines 3", "--json")
        assert ran.returncode == 0, ran.stderr
        lines = [json.loads(line) for line in ran.stdout.splitlines()]
        assert list(lines[0]) == ["process_id"]
        assert [line.get("n") for line in lines[2:5]] == [0, 1, 2]
        assert lines[-1]["status"] == "completed"
        assert lines[-1]["process_id"] == lines[0]["process_id"]

    async def test_options_reach_the_request(self, env: dict[str, str], workdir: Path) -> None:
        """--model, --tools and --allow become the CLI's --model, --tools and --allowedTools."""
        ran = await cc2api(
            env, workdir, "run", "argv", "--json", "--model", "opus",
            "--tools", "Bash", "--tools", "Read", "--allow", "Bash(git:*)",
        )  # fmt: skip
        assert ran.returncode == 0, ran.stderr
        argv = next(json.loads(line) for line in ran.stdout.splitlines() if "argv" in line)["argv"]
        assert {"--model=opus", "--tools=Bash", "--tools=Read"} <= set(argv)
        assert "--allowedTools=Bash(git:*)" in argv

    async def test_cwd_is_sent(self, env: dict[str, str], tmp_path: Path, workdir: Path) -> None:
        """--cwd runs the CLI in that folder, given relative to the current one."""
        ran = await cc2api(env, tmp_path, "run", "echo hi", "--json", "--cwd", "work")
        init = json.loads(ran.stdout.splitlines()[1])
        assert init["cwd"] == str(workdir)

    async def test_a_failed_run_says_why_and_exits_1(
        self, env: dict[str, str], workdir: Path
    ) -> None:
        """A CLI that crashes: the error in plain words, its stderr, status failed, exit 1."""
        ran = await cc2api(env, workdir, "run", "crash")
        assert ran.returncode == 1
        assert "error: the Claude Code CLI exited" in ran.stdout
        assert "fatal: something broke" in ran.stdout
        assert ran.stdout.splitlines()[-1].startswith("failed")

    async def test_a_timed_out_run_exits_124(
        self, fake_environ: dict[str, str], tmp_path: Path, workdir: Path
    ) -> None:
        """A run the gateway stops at its time limit exits 124."""
        async with served(make_settings(run_timeout_seconds=1), fake_environ) as gateway:
            ran = await cc2api(client_env(gateway.url, tmp_path), workdir, "run", "hang")
        assert ran.returncode == 124, ran.stdout + ran.stderr
        assert ran.stdout.splitlines()[-1].startswith("timeout")

    async def test_a_run_cancelled_elsewhere_exits_130(
        self, gw: Shared, env: dict[str, str], workdir: Path
    ) -> None:
        """A run cancelled with ``cc2api cancel`` from another terminal exits 130."""
        async with trio.open_nursery() as nursery:
            outcome: list[Ran] = []

            async def run() -> None:
                outcome.append(await cc2api(env, workdir, "run", "hang"))

            nursery.start_soon(run)
            with trio.fail_after(30):
                while not (runs := await running(gw)):
                    await trio.sleep(0.05)
            cancelled = await cc2api(env, workdir, "cancel", runs[0]["process_id"])
        assert cancelled.returncode == 0, cancelled.stderr
        assert cancelled.stdout.strip() == f"{runs[0]['process_id']}: cancelled"
        assert outcome[0].returncode == 130
        assert outcome[0].stdout.splitlines()[-1].startswith("cancelled")

    async def test_sigint_cancels_the_run_and_leaves_no_process(
        self, gw: Shared, env: dict[str, str], tmp_path: Path, workdir: Path
    ) -> None:
        """SIGINT (Ctrl-C) cancels the run: exit 130, "cancelled", the CLI gone first."""
        await interrupt_a_hanging_run(gw, env, tmp_path, workdir)

    async def test_sigint_before_the_answer_still_cancels_the_run(
        self, gw: Shared, env: dict[str, str], tmp_path: Path, workdir: Path
    ) -> None:
        """SIGINT while the gateway's answer is still on its way cancels the run, and waits."""
        async with trio.open_nursery() as nursery:
            proxy = CuttingProxy(int(gw.url.rsplit(":", 1)[1]), hold_answers=3.0)
            await nursery.start(proxy.serve)
            # The answer is held: the client is still waiting for it when SIGINT comes.
            await interrupt_a_hanging_run(gw, {**env, "CC2API_URL": proxy.url}, tmp_path, workdir)
            nursery.cancel_scope.cancel()

    async def test_detach_prints_the_process_id_only(
        self, gw: Shared, env: dict[str, str], workdir: Path
    ) -> None:
        """``--detach`` prints the run's id and leaves it running."""
        ran = await cc2api(env, workdir, "run", "hang", "--detach")
        assert ran.returncode == 0, ran.stderr
        process_id = ran.stdout.strip()
        assert (await gw.client.get(f"/runs/{process_id}")).json()["status"] in (
            "queued",
            "running",
        )


class TestRefusals:
    async def test_an_api_error_prints_code_and_detail_and_exits_2(
        self, env: dict[str, str], workdir: Path
    ) -> None:
        """A refused request prints the server's code and detail to stderr and exits 2."""
        ran = await cc2api(env, workdir, "run", "echo", "--cwd", "/no/such/folder")
        assert ran.returncode == 2
        assert "invalid_cwd" in ran.stderr
        assert "/no/such/folder" in ran.stderr
        assert ran.stdout == ""

    async def test_a_wrong_password_exits_2(self, gw: Shared, tmp_path: Path) -> None:
        """A wrong credential: unauthorized, exit 2, and the password not printed."""
        env = client_env(gw.url, tmp_path) | {"CC2API_PASSWORD": "wrong-secret-xyz"}
        ran = await cc2api(env, tmp_path, "ps")
        assert ran.returncode == 2
        assert "unauthorized" in ran.stderr
        assert "wrong-secret-xyz" not in ran.stdout + ran.stderr

    async def test_an_unreachable_gateway_exits_2(self, tmp_path: Path) -> None:
        """No gateway at the URL: a plain message and exit 2."""
        ran = await cc2api(client_env("http://127.0.0.1:9", tmp_path), tmp_path, "ps")
        assert ran.returncode == 2
        assert "cannot reach the gateway at http://127.0.0.1:9" in ran.stderr

    async def test_a_key_from_the_environment_sees_only_its_own_runs(
        self, fake_environ: dict[str, str], tmp_path: Path, workdir: Path
    ) -> None:
        """With CC2API_KEY, ps lists the key's runs and not the admin's; logs of theirs is 404."""
        async with served(make_settings(confine_runs="off"), fake_environ) as gateway:
            token = await make_key(gateway.client, "bot")
            admin = client_env(gateway.url, tmp_path)
            theirs = (await cc2api(admin, workdir, "run", "hang", "--detach")).stdout.strip()
            env = client_env(None, tmp_path, CC2API_URL=gateway.url, CC2API_KEY=token)
            mine = (await cc2api(env, workdir, "run", "hang", "--detach")).stdout.strip()
            listed = json.loads((await cc2api(env, workdir, "ps", "--json")).stdout)
            refused = await cc2api(env, workdir, "logs", theirs)
            by_option = await cc2api(
                client_env(None, tmp_path, CC2API_URL=gateway.url), workdir, "ps", "--key", token
            )
            for process_id in (theirs, mine):
                await gateway.client.delete(f"/chat/{process_id}")
        assert [run["process_id"] for run in listed] == [mine]
        assert refused.returncode == 2
        assert "process_not_found" in refused.stderr
        assert mine in by_option.stdout
        assert theirs not in by_option.stdout
        assert token not in by_option.stdout + by_option.stderr

    async def test_the_local_env_file_is_used_when_nothing_is_configured(
        self, gw: Shared, tmp_path: Path
    ) -> None:
        """Without CC2API_* the gateway and admin credential of ./.env are used."""
        port = gw.url.rsplit(":", 1)[1]
        (tmp_path / ".env").write_text(f"PORT={port}\nAUTH_USER={USER}\nAUTH_PASSWORD={PASSWORD}\n")
        ran = await cc2api(client_env(None, tmp_path), tmp_path, "ps")
        assert ran.returncode == 0, ran.stderr
        assert "runs" in ran.stdout.splitlines()[0]

    async def test_a_local_env_file_naming_another_host_gets_no_credential(
        self, tmp_path: Path
    ) -> None:
        """A .env whose HOST is another machine is refused: no password is sent anywhere."""
        secret = tmp_path / "secret"
        secret.write_text("not-for-them")
        (tmp_path / ".env").write_text(
            f"HOST=gateway.example\nPORT=80\nAUTH_PASSWORD_FILE={secret}\n"
        )
        env = client_env(None, tmp_path, AUTH_PASSWORD="exported-in-the-shell")
        ran = await cc2api(env, tmp_path, "ps")
        assert ran.returncode == 2
        assert "HOST=gateway.example" in ran.stderr
        assert "CC2API_URL" in ran.stderr

    async def test_the_local_env_file_alone_gives_the_credential(
        self, gw: Shared, tmp_path: Path
    ) -> None:
        """A password exported in the shell does not go with a .env that holds none."""
        port = gw.url.rsplit(":", 1)[1]
        (tmp_path / ".env").write_text(f"PORT={port}\n")
        env = client_env(None, tmp_path, AUTH_USER=USER, AUTH_PASSWORD=PASSWORD)
        ran = await cc2api(env, tmp_path, "ps")
        assert ran.returncode == 2
        assert "unauthorized" in ran.stderr


async def interrupt_a_hanging_run(
    gw: Shared, env: dict[str, str], tmp_path: Path, workdir: Path
) -> None:
    """Start ``cc2api run hang``, SIGINT it once its CLI runs, and check it cancelled the run.

    Exit 130 and "cancelled" last, the CLI's process gone, the run's record cancelled.
    """
    out, err = tmp_path / "out", tmp_path / "err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = await trio.lowlevel.open_process(
            [sys.executable, "-m", "cc2api", "run", "hang"],
            env=env,
            cwd=workdir,
            stdout=stdout,
            stderr=stderr,
        )
    try:
        with trio.fail_after(30):
            while not (runs := await running(gw)):
                await trio.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        with trio.fail_after(60):
            await proc.wait()
    finally:
        proc.kill()
    assert proc.returncode == 130, err.read_text()
    assert out.read_text().splitlines()[-1] == "cancelled"
    assert not alive(runs[0]["pid"])
    run = (await gw.client.get(f"/runs/{runs[0]['process_id']}")).json()
    assert run["status"] == "cancelled"


class TestOtherCommands:
    async def test_ps_logs_and_cancel_a_detached_run(
        self, env: dict[str, str], workdir: Path
    ) -> None:
        """ps lists a detached run, logs replays its events, cancel ends it and its CLI."""
        process_id = (await cc2api(env, workdir, "run", "hang", "--detach")).stdout.strip()
        listed = json.loads((await cc2api(env, workdir, "ps", "--json")).stdout)
        mine = next(run for run in listed if run["process_id"] == process_id)
        table = await cc2api(env, workdir, "ps")
        with trio.fail_after(30):
            while not (pid := await _cli_pid(env, workdir, process_id)):
                await trio.sleep(0.05)
        logs = await cc2api(env, workdir, "logs", process_id)
        cancelled = await cc2api(env, workdir, "cancel", process_id)
        after = await cc2api(env, workdir, "logs", process_id, "--json")
        assert mine["status"] in ("queued", "running")
        assert process_id in table.stdout
        assert logs.returncode == 0, logs.stderr
        assert logs.stdout.splitlines()[0] == f"run {process_id}"
        assert cancelled.returncode == 0, cancelled.stderr
        assert not alive(pid)
        assert json.loads(after.stdout.splitlines()[-1])["status"] == "cancelled"

    async def test_logs_follow_exits_with_the_runs_status(
        self, env: dict[str, str], workdir: Path
    ) -> None:
        """``logs -f`` follows a run to its end and exits with its status."""
        process_id = (await cc2api(env, workdir, "run", "crash", "--detach")).stdout.strip()
        followed = await cc2api(env, workdir, "logs", "-f", process_id)
        assert followed.returncode == 1
        assert followed.stdout.splitlines()[-1].startswith("failed")

    async def test_approve_allows_the_oldest_pending_approval(
        self, env: dict[str, str], workdir: Path
    ) -> None:
        """``approve ID --allow`` answers the pending tool call; the run then completes."""
        started = await cc2api(env, workdir, "run", "ask touch x", "--approve", "ask", "--detach")
        process_id = started.stdout.strip()
        await _pending(env, workdir, process_id)
        answered = await cc2api(env, workdir, "approve", process_id, "--allow")
        followed = await cc2api(env, workdir, "logs", "-f", "--json", process_id)
        none_left = await cc2api(env, workdir, "approve", process_id, "--deny")
        assert answered.returncode == 0, answered.stderr
        assert answered.stdout.strip().endswith(": allowed")
        assert followed.returncode == 0
        decision = decision_of(followed.stdout)
        assert decision["behavior"] == "allow"
        assert none_left.returncode == 1
        assert "no pending approval" in none_left.stderr

    async def test_approve_denies_a_given_approval_with_a_message(
        self, env: dict[str, str], workdir: Path
    ) -> None:
        """``approve ID APPROVAL_ID --deny --message`` sends the denial and its reason."""
        started = await cc2api(env, workdir, "run", "ask touch x", "--approve", "ask", "--detach")
        process_id = started.stdout.strip()
        approval_id = await _pending(env, workdir, process_id)
        denied = await cc2api(
            env, workdir, "approve", process_id, approval_id, "--deny", "--message", "not now"
        )
        followed = await cc2api(env, workdir, "logs", "-f", "--json", process_id)
        assert denied.returncode == 0, denied.stderr
        decision = decision_of(followed.stdout)
        assert decision == {"behavior": "deny", "message": "not now"}

    async def test_approve_ask_reads_the_answer_from_stdin(
        self, env: dict[str, str], workdir: Path
    ) -> None:
        """``--approve ask`` in a pipe reads y from stdin and allows the tool call."""
        with trio.fail_after(60):
            done = await trio.run_process(
                [sys.executable, "-m", "cc2api", "run", "ask touch x", "--approve", "ask"],
                env=env,
                cwd=workdir,
                stdin=b"y\n",
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )
        out = done.stdout.decode()
        assert done.returncode == 0, done.stderr
        assert "Allow Bash?" in out
        assert '"command": "touch x"' in out
        assert "allowed" in out
        assert "  approval: allow" in out

    async def test_sessions_lists_the_gateways_sessions(
        self, gw: Shared, env: dict[str, str], workdir: Path
    ) -> None:
        """``sessions`` shows a session the CLI saved, with its first prompt."""
        session = saved_session(gw.home, workdir, prompt="a prompt to find again")
        shown = await cc2api(env, workdir, "sessions", "--cwd", str(workdir))
        answer = json.loads((await cc2api(env, workdir, "sessions", "--json")).stdout)
        assert shown.returncode == 0, shown.stderr
        row = next(line for line in shown.stdout.splitlines() if session in line)
        assert "a prompt to find again" in row
        assert session in [s["session_id"] for s in answer["sessions"]]

    async def test_usage_over_http_with_a_url(
        self, env: dict[str, str], tmp_path: Path, workdir: Path
    ) -> None:
        """``usage`` with CC2API_URL asks the gateway's GET /usage: a table, or its JSON."""
        await cc2api(env, workdir, "run", "spend 0.5", "--json")
        table = await cc2api(env, tmp_path, "usage", "--group-by", "model")
        answer = await cc2api(env, tmp_path, "usage", "--json")
        url = env.pop("CC2API_URL")
        by_option = await cc2api(env, tmp_path, "usage", "--url", url, "--json")
        assert table.returncode == 0, table.stderr
        assert table.stdout.startswith("usage by model")
        assert any(line.split()[:1] == ["total"] for line in table.stdout.splitlines())
        assert json.loads(answer.stdout)["groups"]
        assert json.loads(by_option.stdout)["group_by"] == "day"


def decision_of(json_lines: str) -> dict[str, Any]:
    """Return the answer the fake CLI says it got, from ``--json`` output."""
    lines = [json.loads(line) for line in json_lines.splitlines()]
    found: dict[str, Any] = next(line["decision"] for line in lines if line.get("decision"))
    return found


async def running(gw: Shared) -> list[dict[str, Any]]:
    """Return the gateway's running runs whose CLI has started."""
    return [r for r in await listing(gw.client) if r["status"] == "running" and r["pid"]]


async def _cli_pid(env: dict[str, str], cwd: Path, process_id: str) -> int | None:
    listed = json.loads((await cc2api(env, cwd, "ps", "--json")).stdout)
    return next((r["pid"] for r in listed if r["process_id"] == process_id), None)


async def _pending(env: dict[str, str], cwd: Path, process_id: str) -> str:
    """Wait until the run has a pending approval; return its id."""

    def pending(listed: list[dict[str, object]]) -> bool:
        return any(r["process_id"] == process_id and r["pending_approvals"] for r in listed)

    with trio.fail_after(30):
        while not pending(json.loads((await cc2api(env, cwd, "ps", "--json")).stdout)):
            await trio.sleep(0.1)
    logs = await cc2api(env, cwd, "logs", "--json", process_id)
    approval = next(json.loads(x) for x in logs.stdout.splitlines() if "approval_id" in x)
    return str(approval["approval_id"])


class TestWithTheRealCli:
    async def test_a_tool_call_its_result_and_streamed_text_render(
        self, real_claude: Path, real_environ: dict[str, str], tmp_path: Path, workdir: Path
    ) -> None:
        """The real CLI's lines: the Bash call, its output, the answer once, cost and tokens."""
        settings = make_settings(claude_path=real_claude, kill_grace_seconds=3.0)
        async with served(settings, real_environ) as gateway:
            env = client_env(gateway.url, tmp_path)
            ran = await cc2api(env, workdir, "run", "RUN_BASH: echo hi-there")
        assert ran.returncode == 0, ran.stdout + ran.stderr
        lines = ran.stdout.splitlines()
        assert "● Bash echo hi-there" in lines
        assert "  └ hi-there" in lines
        answers = [line for line in lines if "hi-there" in line and not line.startswith(("●", " "))]
        assert len(answers) == 1, lines  # streamed, and not printed again whole
        assert lines[-1].startswith("completed · ")
        assert lines[-1].endswith(" tokens")
        assert "$" in lines[-1]
