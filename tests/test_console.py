"""The web console at /console, in real headless Chromium against a real gateway."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import trio
from selenium import webdriver

from cc2api.console_routes import ASSETS, ASSETS_DIR, PAGE

from .console_driver import Console, _browser
from .cutting_proxy import CuttingProxy
from .helpers import (
    PASSWORD,
    USER,
    Shared,
    alive,
    chat_body,
    collect,
    make_settings,
    post_chat,
    saved_session,
    served,
    started_run,
    wait_until,
)
from .test_keys import as_key, make_key

pytestmark = pytest.mark.timeout(240)
browser = _browser  # the fixture, under its name

HOSTILE = '<img src=x onerror="window.__pwned=1">'


async def start_detached(client: httpx.AsyncClient, body: dict[str, Any]) -> str:
    """Start a detached run, hang up at once (it goes on), and return its process id."""
    async with client.stream("POST", "/chat", json={**body, "detach": True}) as response:
        assert response.status_code == 200, await response.aread()
        process_id: str = response.headers["x-process-id"]
    return process_id


async def event_ids(client: httpx.AsyncClient, process_id: str) -> list[int]:
    """Return the ids of every event of a run, as the API replays it."""
    async with client.stream("GET", f"/chat/{process_id}/events") as response:
        events = await collect(response)
    return [event.id for event in events if event.id is not None]


class TestPage:
    async def test_page_and_files_carry_the_security_headers(self, gw: Shared) -> None:
        """The page and its files are public and each answer has a strict CSP, nosniff and
        no-referrer; an unknown file is 404 with them too, while the data needs a login."""
        async with httpx.AsyncClient(base_url=gw.url) as anonymous:
            paths = ["/console", *(f"/console/{name}" for name in ASSETS)]
            answers = {path: await anonymous.get(path) for path in paths}
            unknown = await anonymous.get("/console/..%2Fapp.py")
            missing = await anonymous.get("/console/secrets.js")
            data = await anonymous.get("/processes")
        for path, answer in answers.items():
            assert answer.status_code == 200, path
            policy = answer.headers["content-security-policy"]
            assert "default-src 'self'" in policy
            assert "script-src 'self'" in policy
            assert "connect-src 'self'" in policy
            assert "frame-ancestors 'none'" in policy
            assert "unsafe-inline" not in policy
            assert answer.headers["x-content-type-options"] == "nosniff"
            assert answer.headers["referrer-policy"] == "no-referrer"
        assert answers["/console"].headers["content-type"].startswith("text/html")
        assert answers["/console/console.js"].headers["content-type"].startswith("text/javascript")
        assert answers["/console/console.css"].headers["content-type"].startswith("text/css")
        assert missing.status_code == 404
        assert missing.headers["x-content-type-options"] == "nosniff"
        assert unknown.status_code == 404
        assert data.status_code == 401

    def test_no_inline_script_no_markup_from_data_and_nothing_from_elsewhere(self) -> None:
        """The page loads only its own files; no script sets innerHTML or names another host."""
        page = (ASSETS_DIR / PAGE).read_text()
        scripts = re.findall(r"<script([^>]*)>(.*?)</script>", page, re.DOTALL)
        assert scripts
        assert all(
            'src="/console/' in attributes and not body.strip() for attributes, body in scripts
        )
        assert set(ASSETS) == {path.name for path in ASSETS_DIR.iterdir()} - {PAGE}
        for name in ASSETS:
            text = (ASSETS_DIR / name).read_text()
            assert not re.search(r"\.(inner|outer)HTML|insertAdjacentHTML|document\.write", text), (
                name
            )
            assert not re.search(r"https?://", text), name


class TestApprovals:
    async def test_allow_in_the_console_runs_the_tool_and_shows_its_result(
        self,
        browser: webdriver.Chrome,
        real_claude: Path,
        real_environ: dict[str, str],
        workdir: Path,
    ) -> None:
        """A real CLI's pending Bash call shows in the console; Allow runs it; its result shows."""
        settings = make_settings(claude_path=real_claude, kill_grace_seconds=3.0)
        body = chat_body("RUN_BASH: touch approved.txt", workdir, tools=["Bash"], approval="http")
        async with served(settings, real_environ) as gw:
            process_id = await start_detached(gw.client, body)
            console = Console(browser, gw.url)
            await console.sign_in_admin(USER, PASSWORD)
            await console.wait_for("#pending-approvals .approval", "touch approved.txt")
            await console.screenshot("approval-in-runs-list")
            await console.click(f'a.run-row[data-process-id="{process_id}"]')
            await console.wait_for("#approvals .approval .tool-name", "Bash")
            await console.wait_for("#approvals .approval-input", "touch approved.txt")
            await console.screenshot("approval-pending")
            assert not (workdir / "approved.txt").exists()
            await console.click("#approvals button.allow")
            await wait_until((workdir / "approved.txt").exists, 60)
            await console.wait_for('#run-status[data-status="completed"]')
            await console.wait_for("#events .tool-call", "touch approved.txt")
            result = await console.wait_for("#events .tool-result")
            await console.wait_for("#events .event-approval_answered", "allow")
            await console.screenshot("approval-allowed")
            assert await console.find_all("#approvals .approval") == []
            tool_use_id = await console.call(result.get_attribute, "data-tool-use-id")
            calls = await console.find_all(f'.tool-call[data-tool-use-id="{tool_use_id}"]')
            assert len(calls) == 1


class TestCancel:
    async def test_cancel_shows_cancelled_and_leaves_no_process(
        self, browser: webdriver.Chrome, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """Cancel on a long run shows cancelled, and the run's CLI is gone."""
        async with served(make_settings(), fake_environ) as gw:
            process_id = await start_detached(gw.client, chat_body("hang", workdir))
            pid = (await started_run(gw.client))["pid"]
            console = Console(browser, gw.url)
            await console.sign_in_admin(USER, PASSWORD)
            await console.click(f'a.run-row[data-process-id="{process_id}"]')
            await console.wait_for('#run-status[data-status="running"]')
            await console.wait_for("#events .event-message", str(pid))
            await console.screenshot("cancel-before")
            await console.click("#cancel")
            await console.wait_for('#run-status[data-status="cancelled"]')
            await console.wait_for("#events .event-done", "cancelled")
            await console.screenshot("cancel-after")
            assert not alive(pid)
            await console.go("#/runs")
            await console.wait_for(
                f'a.run-row[data-process-id="{process_id}"] .status', "cancelled"
            )


class TestLongRuns:
    async def test_a_long_run_keeps_only_its_newest_events_on_the_page(
        self, browser: webdriver.Chrome, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """A run of 2,500 lines leaves the newest 2,000 events on the page and says so."""
        async with served(make_settings(), fake_environ) as gw:
            process_id = await start_detached(gw.client, chat_body("lines 2500", workdir))
            console = Console(browser, gw.url)
            await console.sign_in_admin(USER, PASSWORD)
            await console.go(f"#/run/{process_id}")
            await console.wait_for("#events .event-done", "completed")
            # 2,504 events: process, the CLI's init, 2,500 lines, result, done.
            assert await console.event_ids() == list(range(505, 2505))
            await console.wait_for('#events-elided[data-count="504"]')


class TestKeys:
    async def test_a_key_sees_only_its_own_runs(
        self, browser: webdriver.Chrome, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """Signed in with one key, the console lists its runs and never another key's."""
        async with served(make_settings(), fake_environ) as gw:
            alice, bob = await make_key(gw.client, "alice"), await make_key(gw.client, "bob")
            async with as_key(gw.url, alice) as a, as_key(gw.url, bob) as b:
                _, alices = await post_chat(a, chat_body("echo from alice", workdir))
                _, bobs = await post_chat(b, chat_body("echo from bob", workdir))
            mine, theirs = alices[0].json()["process_id"], bobs[0].json()["process_id"]
            console = Console(browser, gw.url)
            await console.sign_in_key(alice)
            await console.wait_for(f'a.run-row[data-process-id="{mine}"]')
            await console.screenshot("key-runs")
            listed = await console.script(
                "return [...document.querySelectorAll('.run-row')].map(r => r.dataset.processId);"
            )
            assert listed == [mine]
            await console.go(f"#/run/{theirs}")
            await console.wait_for("#run-info", "process_not_found")
            assert await console.event_ids() == []
            assert "from bob" not in await console.call(lambda: browser.page_source)


class TestReattach:
    async def test_a_dropped_stream_reattaches_and_shows_each_event_once(
        self, browser: webdriver.Chrome, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """A network drop mid-run: the live view reattaches and shows every event once, in order."""
        async with served(make_settings(), fake_environ) as gw, trio.open_nursery() as nursery:
            proxy = CuttingProxy(target_port=urlsplit(gw.url).port or 0)
            await nursery.start(proxy.serve)
            process_id = await start_detached(
                gw.client, chat_body("ask ls", workdir, approval="http")
            )
            console = Console(browser, proxy.url)
            await console.sign_in_admin(USER, PASSWORD)
            await console.go(f"#/run/{process_id}")
            await console.wait_for("#approvals .approval", "ls")
            await console.wait_until(
                "document.getElementById('connection').dataset.state === 'live'"
            )
            proxy.cut()
            await console.wait_until(
                "Number(document.getElementById('connection').dataset.reconnects) >= 1"
            )
            (approval,) = (await gw.client.get(f"/chat/{process_id}/approvals")).json()["approvals"]
            answer = {"behavior": "allow"}
            path = f"/chat/{process_id}/approvals/{approval['approval_id']}"
            assert (await gw.client.post(path, json=answer)).status_code == 200
            await console.wait_for('#run-status[data-status="completed"]')
            await console.screenshot("reattached")
            shown = await console.event_ids()
            expected = await event_ids(gw.client, process_id)
            nursery.cancel_scope.cancel()
        assert proxy.cut_count >= 1
        assert shown == expected
        assert shown == list(range(1, len(shown) + 1))
        assert shown[-1] >= 6  # process, messages, approval, answer, result, done


class TestSmallScreens:
    async def test_every_view_fits_375_pixels(
        self, browser: webdriver.Chrome, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """At 375 px wide no view is wider than the screen, long unbroken output included."""
        long_word = "y" * 600
        saved_session(Path(fake_environ["HOME"]), workdir, prompt=f"fix {long_word}")
        async with served(make_settings(), fake_environ) as gw:
            _, events = await post_chat(
                gw.client, chat_body(f"echo {long_word}", workdir, detach=True)
            )
            process_id = events[0].json()["process_id"]
            console = Console(browser, gw.url)
            await console.open()
            await console.width(375)
            await console.wait_for("#sign-in")
            assert await console.overflow() == 0
            await console.screenshot("375-sign-in")
            await console.sign_in_admin(USER, PASSWORD)
            views = {
                "runs": ("#/runs", f'a.run-row[data-process-id="{process_id}"]'),
                "run": (f"#/run/{process_id}", "#events .event-done"),
                "sessions": ("#/sessions", ".session-row"),
                "session": (None, "#transcript .event"),
                "usage": ("#/usage", ".usage-row"),
            }
            for name, (fragment, ready) in views.items():
                if fragment is None:
                    await console.click(".session-row")
                else:
                    await console.go(fragment)
                await console.wait_for(ready)
                await console.screenshot(f"375-{name}")
                assert await console.overflow() == 0, name


class TestHostileContent:
    async def test_markup_in_prompts_paths_and_transcripts_is_shown_as_text(
        self, browser: webdriver.Chrome, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """A run's output, a folder's name and a session's prompt holding HTML show as text."""
        hostile_dir = workdir / HOSTILE.replace('"', "")
        hostile_dir.mkdir()
        saved_session(Path(fake_environ["HOME"]), hostile_dir, prompt=HOSTILE)
        async with served(make_settings(), fake_environ) as gw:
            _, events = await post_chat(
                gw.client, chat_body(f"echo {HOSTILE}", hostile_dir, detach=True)
            )
            process_id = events[0].json()["process_id"]
            console = Console(browser, gw.url)
            await console.sign_in_admin(USER, PASSWORD)
            await console.wait_for(f'a.run-row[data-process-id="{process_id}"] .cwd', "<img")
            await console.go(f"#/run/{process_id}")
            await console.wait_for("#events .result-text", HOSTILE)
            await console.screenshot("hostile-run")
            assert await console.find_all("#main img") == []
            await console.go("#/sessions")
            await console.wait_for(".session-row .preview", HOSTILE)
            await console.click(".session-row")
            await console.wait_for("#transcript .user-text", HOSTILE)
            assert await console.find_all("#main img") == []
            assert await console.script("return window.__pwned === undefined;")


class TestDeny:
    async def test_deny_in_the_console_tells_the_cli_no(
        self, browser: webdriver.Chrome, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """Deny on a pending approval reaches the CLI as a denial, and the view shows it."""
        async with served(make_settings(), fake_environ) as gw:
            body = chat_body("ask rm -rf x", workdir, approval="http")
            process_id = await start_detached(gw.client, body)
            console = Console(browser, gw.url)
            await console.sign_in_admin(USER, PASSWORD)
            await console.go(f"#/run/{process_id}")
            await console.wait_for("#approvals .approval-input", "rm -rf x")
            await console.type("#approvals .deny-message", "not that folder")
            await console.click("#approvals button.deny")
            decision = await console.wait_for("#events .event-message", '"decision"')
            await console.wait_for("#events .event-approval_answered", "deny")
            await console.wait_for('#run-status[data-status="completed"]')
            await console.screenshot("approval-denied")
            shown = await console.call(lambda: decision.text)
            assert await console.find_all("#approvals .approval") == []
        assert '"behavior": "deny"' in shown
        assert "not that folder" in shown


class TestInterrupt:
    async def test_interrupt_in_the_console_ends_the_run_as_interrupted(
        self, browser: webdriver.Chrome, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """Interrupt on a running run ends it as interrupted, in the view and in its record."""
        async with served(make_settings(), fake_environ) as gw:
            body = chat_body("interruptible 0.2", workdir)
            process_id = await start_detached(gw.client, body)
            console = Console(browser, gw.url)
            await console.sign_in_admin(USER, PASSWORD)
            await console.go(f"#/run/{process_id}")
            await console.wait_for('#run-status[data-status="running"]')
            await console.wait_for("#events .event-message", '"n": 1')
            await console.click("#interrupt")
            await console.wait_for('#run-status[data-status="interrupted"]')
            await console.wait_for("#events .event-done", "interrupted")
            await console.wait_for("#run-notice", "Interrupt: interrupted")
            await console.screenshot("interrupted")
            record = (await gw.client.get(f"/runs/{process_id}")).json()
        assert record["status"] == "interrupted"


class TestFollowUp:
    async def test_a_follow_up_from_the_text_box_is_answered_in_the_run(
        self,
        browser: webdriver.Chrome,
        real_claude: Path,
        real_environ: dict[str, str],
        workdir: Path,
    ) -> None:
        """A follow-up typed in the run's box reaches the real CLI and its answer shows."""
        settings = make_settings(
            claude_path=real_claude, kill_grace_seconds=3.0, followup_grace_seconds=120
        )
        async with served(settings, real_environ) as gw:
            process_id = await start_detached(gw.client, chat_body("first", workdir))
            console = Console(browser, gw.url)
            await console.sign_in_admin(USER, PASSWORD)
            await console.go(f"#/run/{process_id}")
            await console.wait_for("#events .result-text", "echo: first")
            await console.type("#follow-up", "second")
            await console.click("#send")
            await console.wait_for("#run-notice", "Sent")
            await console.wait_for("#events .result-text", "echo: second")
            await console.screenshot("follow-up-answered")
            assert await console.script("return document.getElementById('follow-up').value;") == ""
            await gw.client.delete(f"/chat/{process_id}")


STORED = "return sessionStorage.length;"


class TestSignIn:
    async def test_a_wrong_sign_in_says_so_and_keeps_nothing(
        self, browser: webdriver.Chrome, gw: Shared
    ) -> None:
        """A refused key or password shows an error and leaves sessionStorage empty."""
        console = Console(browser, gw.url)
        await console.open()
        await console.type("#token", "cc2_not-a-key")
        await console.click("#sign-in")
        await console.wait_for("#sign-in-message", "Those credentials were refused.")
        assert await console.script(STORED) == 0
        await console.script(
            "const k = document.getElementById('kind'); k.value = 'admin';"
            "k.dispatchEvent(new Event('change'));"
        )
        await console.type("#user", USER)
        await console.type("#password", PASSWORD + "-wrong")
        await console.script("document.getElementById('sign-in-message').textContent = '';")
        await console.click("#sign-in")
        await console.wait_for("#sign-in-message", "Those credentials were refused.")
        await console.screenshot("sign-in-refused")
        assert await console.script(STORED) == 0
        assert await console.find_all("#runs") == []

    async def test_sign_out_forgets_the_credential(
        self, browser: webdriver.Chrome, gw: Shared
    ) -> None:
        """Signing out empties sessionStorage, and a reload then asks to sign in again."""
        console = Console(browser, gw.url)
        await console.sign_in_admin(USER, PASSWORD)
        assert await console.script(STORED) == 1
        await console.click("#sign-out")
        await console.wait_for("#sign-in")
        assert await console.script(STORED) == 0
        await console.call(browser.refresh)
        await console.wait_for("#sign-in")
        assert await console.find_all("#runs") == []


class TestUsage:
    async def test_usage_shows_the_day_of_a_finished_run(
        self, browser: webdriver.Chrome, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """After a run completed, the usage view has its day's row with one run in it."""
        async with served(make_settings(), fake_environ) as gw:
            _, events = await post_chat(gw.client, chat_body("echo counted", workdir))
            assert events[-1].json()["status"] == "completed"
            (group,) = (await gw.client.get("/usage", params={"group_by": "day"})).json()["groups"]
            console = Console(browser, gw.url)
            await console.sign_in_admin(USER, PASSWORD)
            await console.go("#/usage")
            row = await console.wait_for(f'.usage-row[data-day="{group["group"]}"]')
            await console.screenshot("usage")
            shown = await console.call(lambda: row.text)
        assert group["runs"] == 1
        assert "1 (1 completed, 0 failed, 0 cancelled)" in shown


class TestRefresh:
    async def test_a_refresh_keeps_the_filter_the_scroll_and_typed_text(
        self, browser: webdriver.Chrome, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """A refresh of the runs list keeps its filter, scroll, rows and a half-typed reason."""
        async with served(make_settings(), fake_environ) as gw:
            for n in range(12):
                await post_chat(gw.client, chat_body(f"echo {n}", workdir))
            await start_detached(gw.client, chat_body("ask ls", workdir, approval="http"))
            console = Console(browser, gw.url)
            await console.open()
            await console.width(1200, 400)
            await console.sign_in_admin(USER, PASSWORD)
            await console.go("#/runs?status=completed")
            await console.wait_until("document.querySelectorAll('#runs .run-row').length === 12")
            await console.type("#pending-approvals .deny-message", "half a rea")
            await console.script(
                "document.querySelectorAll('#runs .run-row').forEach(r => { r.__kept = true; });"
                "window.scrollTo(0, document.body.scrollHeight);"
            )
            scrolled = await console.script("return window.scrollY;")
            assert scrolled > 0
            seen = int(
                await console.wait_until("document.getElementById('runs').dataset.refreshes")
            )
            await console.wait_until(
                f"Number(document.getElementById('runs').dataset.refreshes) >= {seen + 2}"
            )
            state = await console.script(
                "return {filter: document.getElementById('status-filter').value,"
                " scroll: window.scrollY,"
                " kept: [...document.querySelectorAll('#runs .run-row')].every(r => r.__kept),"
                " rows: document.querySelectorAll('#runs .run-row').length,"
                " reason: document.querySelector('#pending-approvals .deny-message').value};"
            )
        assert state == {
            "filter": "completed",
            "scroll": scrolled,
            "kept": True,
            "rows": 12,
            "reason": "half a rea",
        }

    async def test_a_hidden_tab_stops_refreshing_until_shown(
        self, browser: webdriver.Chrome, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """While the tab is hidden the runs list asks the server nothing; shown, it refreshes."""
        async with served(make_settings(), fake_environ) as gw:
            console = Console(browser, gw.url)
            await console.sign_in_admin(USER, PASSWORD)
            await console.wait_until("document.getElementById('runs').dataset.refreshes")
            await console.script(
                "window.__asked = []; window.__seen = [];"
                "document.addEventListener('visibilitychange',"
                " () => __seen.push(document.visibilityState));"
                "const original = window.fetch;"
                "window.fetch = (...args) => {"
                " __asked.push(document.visibilityState); return original(...args); };"
            )
            await console.wait_until("window.__asked.length >= 2")  # it polls while shown
            console_tab = browser.current_window_handle
            await console.call(browser.switch_to.new_window, "tab")
            # Hidden for three refresh periods, measured by the browser's clock.
            await console.script("window.__from = Date.now();")
            await console.wait_until("Date.now() - window.__from > 9000")
            await console.call(browser.switch_to.window, console_tab)
            asked = len(await console.script("return window.__asked;"))
            await console.wait_until(f"window.__asked.length > {asked}")  # shown: it goes on
            seen, hidden_asks = await console.script(
                "return [__seen, __asked.filter(v => v === 'hidden').length];"
            )
        assert seen[:1] == ["hidden"]
        assert hidden_asks == 0
