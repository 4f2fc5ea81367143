"""The history API: GET /runs (filters, cursor pages) and GET /runs/{id}, over the real store."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from cc2api.app import gateway_of

from .helpers import chat_body, collect, make_settings, post_chat, served, started_run


async def run(client: httpx.AsyncClient, prompt: str, cwd: Path, **fields: Any) -> str:
    """Run a prompt to its end and return its process id."""
    response, events = await post_chat(client, chat_body(prompt, cwd, **fields))
    assert events[-1].event == "done"
    return response.headers["X-Process-ID"]


async def listed(client: httpx.AsyncClient, **params: str) -> dict[str, Any]:
    """Return GET /runs' answer for these parameters."""
    response = await client.get("/runs", params=params)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def ids_of(answer: dict[str, Any]) -> list[str]:
    """Return the process ids of a GET /runs answer, in order."""
    return [found["process_id"] for found in answer["runs"]]


class TestListing:
    async def test_runs_come_newest_first(
        self, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """GET /runs lists runs newest first."""
        async with served(make_settings(), fake_environ) as gw:
            made = [await run(gw.client, "echo hi", workdir) for _ in range(3)]
            assert ids_of(await listed(gw.client)) == made[::-1]

    async def test_pages_give_every_run_once(
        self, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """Walking the cursor pages gives each run exactly once, even with runs added meanwhile."""
        async with served(make_settings(), fake_environ) as gw:
            made = [await run(gw.client, "echo hi", workdir) for _ in range(7)]
            page = await listed(gw.client, limit="3")
            walked = ids_of(page)
            await run(gw.client, "echo later", workdir)  # newer than the cursor: not in later pages
            while page["next_cursor"] is not None:
                page = await listed(gw.client, limit="3", cursor=page["next_cursor"])
                walked += ids_of(page)
            assert walked == made[::-1]
            assert page["count"] == 1

    async def test_status_filters_take_any_of_several(
        self, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """status= keeps the runs with one of the statuses named (repeated or comma-joined)."""
        async with served(make_settings(), fake_environ) as gw:
            good = await run(gw.client, "echo hi", workdir)
            bad = await run(gw.client, "crash", workdir)
            assert ids_of(await listed(gw.client, status="failed")) == [bad]
            assert ids_of(await listed(gw.client, status="completed,failed")) == [bad, good]
            answer = await gw.client.get(
                "/runs", params=[("status", "completed"), ("status", "failed")]
            )
            assert ids_of(answer.json()) == [bad, good]

    async def test_cwd_takes_a_folder_and_what_is_below_it(
        self, fake_environ: dict[str, str], tmp_path: Path
    ) -> None:
        """cwd= keeps runs in that folder and below it, not in a folder that merely starts alike."""
        top, below, alike = tmp_path / "a", tmp_path / "a" / "b", tmp_path / "ab"
        for folder in (below, alike):
            folder.mkdir(parents=True)
        async with served(make_settings(), fake_environ) as gw:
            in_top = await run(gw.client, "echo hi", top)
            in_below = await run(gw.client, "echo hi", below)
            await run(gw.client, "echo hi", alike)
            assert ids_of(await listed(gw.client, cwd=str(top))) == [in_below, in_top]

    async def test_session_id_finds_the_runs_that_used_it(
        self, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """session_id= keeps the runs that used that session."""
        async with served(make_settings(), fake_environ) as gw:
            response, events = await post_chat(gw.client, chat_body("echo hi", workdir))
            await run(gw.client, "echo other", workdir)
            session = events[-1].json()["session_id"]
            found = await listed(gw.client, session_id=session)
            assert ids_of(found) == [response.headers["X-Process-ID"]]
            assert found["runs"][0]["sessions"] == [session]

    async def test_since_and_until_bound_when_runs_were_accepted(
        self, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """since= and until= keep the runs accepted in that window."""
        async with served(make_settings(), fake_environ) as gw:
            early = await run(gw.client, "echo hi", workdir)
            await trio.sleep(0.05)
            middle = datetime.now(UTC).isoformat()  # with its time zone: +00:00
            late = await run(gw.client, "echo hi", workdir)
            assert ids_of(await listed(gw.client, since=middle)) == [late]
            assert ids_of(await listed(gw.client, until=middle)) == [early]

    async def test_a_live_run_is_listed_as_it_stands(
        self, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """A running run is listed, and GET /runs/{id} says it is running with its start time."""
        async with served(make_settings(), fake_environ) as gw:
            async with gw.client.stream(
                "POST", "/chat", json=chat_body("hang", workdir)
            ) as response:
                run_id = response.headers["X-Process-ID"]
                await started_run(gw.client)
                record = (await gw.client.get(f"/runs/{run_id}")).json()
                assert record["status"] == "running"
                assert record["started_at"] is not None
                assert ids_of(await listed(gw.client, status="running")) == [run_id]


class TestRefusals:
    @pytest.mark.parametrize(
        ("name", "value"),
        [
            ("limit", "0"),
            ("limit", "501"),
            ("limit", "ten"),
            ("cursor", "not-a-cursor"),
            ("since", "yesterday"),
            ("until", "2026-13-01"),
            ("status", "sleeping"),
            ("cwd", "relative/path"),
            ("since", "2026-12-01T09:30:00"),
            ("state", "failed"),
        ],
    )
    async def test_a_malformed_parameter_is_named(self, gw: Any, name: str, value: str) -> None:
        """A malformed or unknown query parameter gets 422 validation_error naming it."""
        response = await gw.client.get("/runs", params={name: value})
        assert response.status_code == 422
        assert response.json()["code"] == "validation_error"
        assert name in response.json()["detail"]

    async def test_an_unknown_run_is_404(self, gw: Any) -> None:
        """GET /runs/{id} of a run nobody started answers 404 process_not_found."""
        response = await gw.client.get("/runs/00000000-0000-4000-8000-000000000000")
        assert response.status_code == 404
        assert response.json()["code"] == "process_not_found"


class TestReplayFromTheStore:
    async def test_a_replay_past_memory_comes_from_the_store_without_a_gap(
        self, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """A run that outgrew RUN_BUFFER_BYTES replays whole from its first event: no dropped."""
        settings = make_settings(run_buffer_bytes=64 * 1024)
        async with served(settings, fake_environ) as gw:
            body = chat_body("lines 2000 200", workdir, detach=True)
            response, streamed = await post_chat(gw.client, body)
            run_id = response.headers["X-Process-ID"]
            await gateway_of(gw.app).registry.store.flush()
            async with gw.client.stream("GET", f"/chat/{run_id}/events") as replay:
                replayed = await collect(replay)
        assert [e.id for e in replayed] == [e.id for e in streamed]
        assert [e.data for e in replayed] == [e.data for e in streamed]

    async def test_a_run_memory_let_go_replays_from_the_store(
        self, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """A detached run past DETACHED_TTL_SECONDS, gone from /processes, still replays whole."""
        settings = make_settings(detached_ttl_seconds=0.2)
        async with served(settings, fake_environ) as gw:
            body = chat_body("lines 20", workdir, detach=True)
            response, streamed = await post_chat(gw.client, body)
            run_id = response.headers["X-Process-ID"]
            with trio.fail_after(10):
                while (await gw.client.get("/processes")).json()["count"]:
                    await trio.sleep(0.05)
            async with gw.client.stream("GET", f"/chat/{run_id}/events") as replay:
                replayed = await collect(replay)
        assert [(e.id, e.data) for e in replayed] == [(e.id, e.data) for e in streamed]

    async def test_without_a_store_the_replay_says_what_memory_dropped(
        self, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """With STORE=memory a replay past RUN_BUFFER_BYTES starts with dropped, as before."""
        settings = make_settings(run_buffer_bytes=64 * 1024, store="memory")
        async with served(settings, fake_environ) as gw:
            body = chat_body("lines 2000 200", workdir, detach=True)
            response, _ = await post_chat(gw.client, body)
            run_id = response.headers["X-Process-ID"]
            async with gw.client.stream("GET", f"/chat/{run_id}/events") as replay:
                replayed = await collect(replay)
        assert replayed[0].event == "dropped"
        assert replayed[-1].event == "done"
