"""Webhook deliveries against a real receiver on 127.0.0.1: signatures, retries, a slow
receiver that never holds a run back, and approval.requested."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

import pytest
import trio

from cc2api.webhook_hosts import WebhookTarget
from cc2api.webhook_sign import verify
from cc2api.webhooks import MAX_RETRY_DELAY, retry_delay

from .helpers import chat_body, collect, make_settings, post_chat, served
from .webhook_receiver import ON, SECRET, delivered, receiver

pytestmark = pytest.mark.timeout(120)


async def _records(client: Any, run_id: str, last: str) -> list[dict[str, Any]]:
    """Wait until run ``run_id``'s last webhook attempt has outcome ``last``; return all."""
    with trio.fail_after(30):
        while True:
            attempts: list[dict[str, Any]] = (await client.get(f"/runs/{run_id}/webhooks")).json()[
                "attempts"
            ]
            if attempts and attempts[-1]["outcome"] == last:
                return attempts
            await trio.sleep(0.05)


class TestRetrySchedule:
    def test_delays_double_up_to_a_cap(self) -> None:
        """1, 2, 4 ... seconds, never over MAX_RETRY_DELAY, even after many attempts."""
        assert [retry_delay(1, n, 0) for n in (1, 2, 3)] == [1, 2, 4]
        assert retry_delay(1, 20, 0) == MAX_RETRY_DELAY
        assert retry_delay(1, 10_000, 0) == MAX_RETRY_DELAY
        assert retry_delay(600, 3, 0) == 600  # a longer base is its own cap

    def test_jitter_adds_at_most_a_tenth(self) -> None:
        """The random part lengthens a delay by 0 to 10 %."""
        assert retry_delay(2, 1, 1) == pytest.approx(2.2)
        assert retry_delay(2, 1, 0.5) == pytest.approx(2.1)


class TestDelivery:
    async def test_run_completed_is_signed_and_verifies(
        self, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """run.completed carries the done payload with usage, and its signature verifies."""
        with receiver() as hook:
            async with served(make_settings(**ON), fake_environ) as gw:
                body = chat_body("hi", workdir, webhook_url=hook.url)
                response, events = await post_chat(gw.client, body)
                await delivered(hook)
        got = hook.received[0]
        assert got.path == "/hook"
        assert got.headers["Host"] == hook.url.split("/")[2]
        assert verify(SECRET, got.headers["X-Cc2api-Signature"], got.body, int(time.time()))
        envelope = json.loads(got.body)
        assert envelope["type"] == "run.completed"
        assert envelope["process_id"] == response.headers["X-Process-ID"]
        assert envelope["id"] == got.headers["X-Cc2api-Delivery"]
        assert envelope["data"].items() >= events[-1].json().items()
        assert {"total_cost_usd", "usage", "num_turns"} <= envelope["data"].keys()

    async def test_500s_are_retried_up_to_max_attempts_with_records(
        self, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """A receiver answering 500 gets WEBHOOK_MAX_ATTEMPTS attempts, each recorded."""
        settings = make_settings(**ON, webhook_retry_seconds=0.05, webhook_max_attempts=3)
        with receiver(statuses=[500, 500, 500, 500]) as hook:
            async with served(settings, fake_environ) as gw:
                body = chat_body("hi", workdir, webhook_url=hook.url)
                response, _ = await post_chat(gw.client, body)
                run_id = response.headers["X-Process-ID"]
                await delivered(hook, 3)
                records = await _records(gw.client, run_id, "failed")
                metrics = (await gw.client.get("/metrics")).text
        assert [a["attempt"] for a in records] == [1, 2, 3]
        assert [a["outcome"] for a in records] == ["retrying", "retrying", "failed"]
        assert {a["status_code"] for a in records} == {500}
        assert len({a["delivery_id"] for a in records}) == 1
        assert len({r.body for r in hook.received}) == 1  # each attempt sends the same body
        assert 'cc2api_webhook_deliveries_total{outcome="failed"} 1.0' in metrics

    async def test_a_retry_after_a_500_delivers(
        self, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """One 500, then 200: the second attempt is recorded delivered."""
        settings = make_settings(**ON, webhook_retry_seconds=0.05)
        with receiver(statuses=[500]) as hook:
            async with served(settings, fake_environ) as gw:
                body = chat_body("hi", workdir, webhook_url=hook.url)
                response, _ = await post_chat(gw.client, body)
                run_id = response.headers["X-Process-ID"]
                records = await _records(gw.client, run_id, "delivered")
        assert [a["outcome"] for a in records] == ["retrying", "delivered"]

    async def test_a_4xx_is_not_retried(self, fake_environ: dict[str, str], workdir: Path) -> None:
        """A 404 fails the delivery at its first attempt; no second POST is sent."""
        settings = make_settings(**ON, webhook_retry_seconds=0.05, webhook_max_attempts=3)
        with receiver(statuses=[404, 404]) as hook:
            async with served(settings, fake_environ) as gw:
                body = chat_body("hi", workdir, webhook_url=hook.url)
                response, _ = await post_chat(gw.client, body)
                run_id = response.headers["X-Process-ID"]
                records = await _records(gw.client, run_id, "failed")
        assert [(a["attempt"], a["status_code"]) for a in records] == [(1, 404)]
        assert len(hook.received) == 1

    @pytest.mark.parametrize("status", [408, 425, 429])
    async def test_a_4xx_that_may_change_is_retried(
        self, fake_environ: dict[str, str], workdir: Path, status: int
    ) -> None:
        """408, 425 and 429 are tried again: the second attempt is delivered."""
        settings = make_settings(**ON, webhook_retry_seconds=0.05)
        with receiver(statuses=[status]) as hook:
            async with served(settings, fake_environ) as gw:
                body = chat_body("hi", workdir, webhook_url=hook.url)
                response, _ = await post_chat(gw.client, body)
                run_id = response.headers["X-Process-ID"]
                records = await _records(gw.client, run_id, "delivered")
        assert [a["outcome"] for a in records] == ["retrying", "delivered"]
        assert len(hook.received) == 2

    async def test_a_redirect_is_not_followed(
        self, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """A 302 to another path is recorded as the answer; no POST goes to its Location."""
        settings = make_settings(**ON, webhook_max_attempts=1)
        with receiver(statuses=[302]) as hook:
            async with served(settings, fake_environ) as gw:
                body = chat_body("hi", workdir, webhook_url=hook.url)
                response, _ = await post_chat(gw.client, body)
                run_id = response.headers["X-Process-ID"]
                records = await _records(gw.client, run_id, "failed")
        assert [(a["status_code"], a["outcome"]) for a in records] == [(302, "failed")]
        assert [got.path for got in hook.received] == ["/hook"]

    async def test_a_slow_receiver_never_delays_the_stream(
        self, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """With a receiver that sleeps 30 s, the run's done arrives while the POST still waits."""
        settings = make_settings(**ON, webhook_timeout_seconds=60, webhook_max_attempts=1)
        with receiver(delay=30) as hook:
            async with served(settings, fake_environ) as gw:
                body = chat_body("hi", workdir, webhook_url=hook.url)
                response, events = await post_chat(gw.client, body)
                assert events[-1].event == "done"
                await delivered(hook)
                # The stream ended before the receiver could answer, and a second run is
                # not held up by the first one's delivery either.
                response, events = await post_chat(gw.client, body)
                assert events[-1].event == "done"
                run_id = response.headers["X-Process-ID"]
                records = (await gw.client.get(f"/runs/{run_id}/webhooks")).json()
        assert records["count"] == 0  # still waiting for the slow answer

    async def test_approval_requested_is_delivered(
        self, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """A run with approval http sends approval.requested: the approval's id, tool, input."""
        with receiver() as hook:
            async with served(make_settings(**ON), fake_environ) as gw:
                body = chat_body(
                    "ask echo-hi", workdir, webhook_url=hook.url, approval="http", detach=True
                )
                async with gw.client.stream("POST", "/chat", json=body) as response:
                    run_id = response.headers["X-Process-ID"]
                await delivered(hook)
                envelope = json.loads(hook.received[0].body)
                assert envelope["type"] == "approval.requested"
                approval = envelope["data"]
                pending = (await gw.client.get(f"/chat/{run_id}/approvals")).json()
                assert pending["approvals"][0]["approval_id"] == approval["approval_id"]
                answered = await gw.client.post(
                    f"/chat/{run_id}/approvals/{approval['approval_id']}",
                    json={"behavior": "allow"},
                )
                assert answered.status_code == 200, answered.text
                async with gw.client.stream("GET", f"/chat/{run_id}/events") as events:
                    assert (await collect(events))[-1].event == "done"
                await delivered(hook, 2)
        assert approval["tool_name"] == "Bash"
        assert approval["input"] == {"command": "echo-hi"}
        assert json.loads(hook.received[1].body)["type"] == "run.completed"


class TestFaults:
    async def test_an_unexpected_error_fails_the_delivery_not_the_server(
        self, fake_environ: dict[str, str], workdir: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A delivery whose sending raises an unexpected error is recorded failed; runs go on."""

        def broken(self: WebhookTarget, address: str) -> Any:
            raise RuntimeError("a fault injected by the test")

        monkeypatch.setattr(WebhookTarget, "pinned", broken)
        settings = make_settings(**ON, webhook_max_attempts=1)
        with receiver() as hook:
            async with served(settings, fake_environ) as gw:
                body = chat_body("hi", workdir, webhook_url=hook.url)
                response, _ = await post_chat(gw.client, body)
                run_id = response.headers["X-Process-ID"]
                records = await _records(gw.client, run_id, "failed")
                _, events = await post_chat(gw.client, chat_body("again", workdir))
        assert records[0]["outcome"] == "failed"
        assert records[0]["error"] == "an unexpected RuntimeError"
        assert events[-1].event == "done"
        assert hook.received == []

    async def test_a_lookup_that_takes_too_long_is_refused(
        self, fake_environ: dict[str, str], workdir: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A webhook_url whose host does not resolve within WEBHOOK_TIMEOUT_SECONDS is 400."""
        real = socket.getaddrinfo

        def slow(host: Any, *args: Any, **kwargs: Any) -> Any:
            if host == "slow.example":
                time.sleep(3)
            return real(host, *args, **kwargs)

        monkeypatch.setattr(socket, "getaddrinfo", slow)
        settings = make_settings(
            **{**ON, "webhook_allowed_hosts": ["slow.example"]}, webhook_timeout_seconds=0.3
        )
        async with served(settings, fake_environ) as gw:
            body = chat_body("hi", workdir, webhook_url="http://slow.example/x")
            response, _ = await post_chat(gw.client, body)
        assert response.status_code == 400
        assert response.json()["code"] == "webhook_forbidden"
        assert "could not resolve slow.example in time" in response.json()["detail"]
