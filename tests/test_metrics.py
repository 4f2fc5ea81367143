"""GET /metrics: the Prometheus text format, who may read it, and what it counts."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
from contextlib import aclosing
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from cc2api.metrics import MAX_MODELS, OTHER_MODEL, Metrics, bearer_matches
from cc2api.settings import Settings

from .helpers import chat_body, make_settings, post_chat, served, sse_events
from .test_keys import as_key, make_key

pytestmark = pytest.mark.timeout(90)

TOKEN = "metrics-token-for-the-tests-0123"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Return every sample of an exposition, by name and sorted labels."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def total(text: str, name: str, **labels: str) -> float:
    """Return the sum of the samples named ``name`` whose labels include ``labels``."""
    return sum(
        value
        for (sample, sample_labels), value in samples(text).items()
        if sample == name and set(labels.items()) <= set(sample_labels)
    )


class TestBearer:
    def test_right_token_matches(self) -> None:
        """A Bearer header with the token matches, whatever the scheme's case."""
        assert bearer_matches(f"Bearer {TOKEN}", TOKEN)
        assert bearer_matches(f"bearer {TOKEN}", TOKEN)

    def test_wrong_or_missing_token_does_not(self) -> None:
        """A wrong token, another scheme, no header or no token set never match."""
        assert not bearer_matches("Bearer nope", TOKEN)
        assert not bearer_matches(f"Basic {TOKEN}", TOKEN)
        assert not bearer_matches(None, TOKEN)
        assert not bearer_matches(f"Bearer {TOKEN}", None)


class TestSettings:
    def test_short_token_refused(self) -> None:
        """A METRICS_TOKEN under 16 characters stops the start, naming the setting."""
        with pytest.raises(ValueError, match="METRICS_TOKEN must be at least 16"):
            make_settings(metrics_token="short")

    def test_token_from_file(self, tmp_path: Path) -> None:
        """METRICS_TOKEN_FILE's content is the token."""
        path = tmp_path / "token"
        path.write_text(TOKEN + "\n")
        settings = make_settings(metrics_token_file=path)
        assert settings.metrics_token is not None
        assert settings.metrics_token.get_secret_value() == TOKEN

    def test_token_and_file_together_refused(self, tmp_path: Path) -> None:
        """METRICS_TOKEN next to METRICS_TOKEN_FILE is refused."""
        path = tmp_path / "token"
        path.write_text(TOKEN)
        with pytest.raises(ValueError, match="METRICS_TOKEN is set and so is"):
            make_settings(metrics_token=TOKEN, metrics_token_file=path)


class TestModels:
    def test_models_capped(self) -> None:
        """Past MAX_MODELS distinct models, any new one is labelled ``other``."""
        metrics = Metrics()
        labels = {metrics.model_label(f"model-{n}") for n in range(MAX_MODELS + 10)}
        assert len(labels) == MAX_MODELS + 1
        assert OTHER_MODEL in labels
        assert metrics.model_label("model-0") == "model-0"

    def test_registries_are_apart(self) -> None:
        """Two Metrics count apart: nothing is in the default registry."""
        first, second = Metrics(), Metrics()
        first.request("/health", 200)
        assert total(second.exposition().decode(), "cc2api_http_requests_total") == 0
        assert total(first.exposition().decode(), "cc2api_http_requests_total") == 1


def _settings() -> Settings:
    return make_settings(metrics_token=TOKEN, auth_max_failures=3)


class TestAccess:
    async def test_refused_without_credentials(self, fake_environ: dict[str, str]) -> None:
        """Without credentials /metrics answers 401."""
        async with served(_settings(), fake_environ) as gw:
            response = await gw.client.get("/metrics", auth=None)
        assert response.status_code == 401

    async def test_wrong_bearer_refused_and_counted(self, fake_environ: dict[str, str]) -> None:
        """A wrong bearer token gets 401 and counts as a failed login (the lockout follows)."""
        async with served(_settings(), fake_environ) as gw:
            wrong = {"Authorization": "Bearer not-the-token-at-all-000"}
            statuses = [
                (await gw.client.get("/metrics", auth=None, headers=wrong)).status_code
                for _ in range(4)
            ]
        assert statuses == [401, 401, 401, 429]

    async def test_token_only_for_metrics(self, fake_environ: dict[str, str]) -> None:
        """The metrics token opens /metrics and nothing else."""
        async with served(_settings(), fake_environ) as gw:
            bearer = {"Authorization": f"Bearer {TOKEN}"}
            scraped = await gw.client.get("/metrics", auth=None, headers=bearer)
            listing = await gw.client.get("/processes", auth=None, headers=bearer)
        assert scraped.status_code == 200
        assert scraped.headers["content-type"].startswith("text/plain; version=")
        assert "cc2api_runs_running" in scraped.text
        assert listing.status_code == 401

    async def test_served_to_the_admin(self, fake_environ: dict[str, str]) -> None:
        """The admin's Basic credential opens /metrics, with no token set."""
        async with served(make_settings(), fake_environ) as gw:
            response = await gw.client.get("/metrics")
        assert response.status_code == 200
        assert "cc2api_runs_queued" in response.text


class TestCounts:
    async def test_runs_requests_and_bytes(
        self, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """After two runs: started and finished by key and status, requests, SSE bytes, gauges."""
        async with served(make_settings(), fake_environ) as gw:
            ids = []
            for _ in range(2):
                response, events = await post_chat(gw.client, chat_body("echo hi", workdir))
                assert events[-1].json()["status"] == "completed"
                ids.append(response.headers["X-Process-ID"])
            await gw.client.get(f"/chat/{ids[0]}/events")
            await gw.client.get("/no/such/route")
            text = (await gw.client.get("/metrics")).text
        assert total(text, "cc2api_runs_started_total", key="admin") == 2
        assert total(text, "cc2api_runs_finished_total", key="admin", status="completed") == 2
        assert total(text, "cc2api_run_duration_seconds_count", status="completed") == 2
        assert total(text, "cc2api_queue_wait_seconds_count") == 2
        assert total(text, "cc2api_teardown_seconds_count") == 2
        assert total(text, "cc2api_teardown_survivors_total") == 0
        assert total(text, "cc2api_http_requests_total", route="/chat", status="200") == 2
        events_route = "/chat/<process_id>/events"
        assert total(text, "cc2api_http_requests_total", route=events_route, status="200") == 1
        assert total(text, "cc2api_http_requests_total", route="unmatched", status="404") == 1
        assert total(text, "cc2api_sse_bytes_total") > 0
        assert total(text, "cc2api_store_write_seconds_count") > 0
        assert total(text, "cc2api_runs_running") == 0
        assert total(text, "cc2api_runs_queued") == 0
        assert not any(run_id in text for run_id in ids)

    async def test_running_gauge(self, fake_environ: dict[str, str], workdir: Path) -> None:
        """A run under way is counted in cc2api_runs_running at the scrape."""
        async with served(make_settings(), fake_environ) as gw:
            body = chat_body("sleep 30", workdir)
            async with gw.client.stream("POST", "/chat", json=body) as response:
                async with aclosing(sse_events(response)) as events:
                    async for event in events:
                        if event.event == "message":
                            break
                text = (await gw.client.get("/metrics")).text
                await gw.client.delete(f"/chat/{response.headers['X-Process-ID']}")
        assert total(text, "cc2api_runs_running") == 1

    async def test_token_never_reaches_the_cli(
        self, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """METRICS_TOKEN in the server's environment is withheld from the CLI's."""
        environ = {**fake_environ, "METRICS_TOKEN": TOKEN}
        async with served(_settings(), environ) as gw:
            async with gw.client.stream("POST", "/chat", json=chat_body("argv", workdir)) as r:
                events = [e async for e in sse_events(r) if e.event == "message"]
        seen = events[1].json()
        assert seen["leaked"] == []
        assert TOKEN not in json.dumps(seen)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def _query(client: httpx.AsyncClient, query: str) -> list[dict[str, Any]]:
    try:
        response = await client.get("/api/v1/query", params={"query": query})
    except httpx.TransportError:  # not listening yet
        return []
    if response.status_code != 200:
        return []
    result: list[dict[str, Any]] = response.json()["data"]["result"]
    return result


class TestPrometheus:
    async def test_real_prometheus_scrapes_with_the_token(
        self, tmp_path: Path, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """A real Prometheus scrapes /metrics with the bearer token and sees three runs end."""
        prometheus = shutil.which("prometheus")
        assert prometheus is not None, "install Debian's prometheus (scripts/_setup.sh)"
        async with served(_settings(), fake_environ) as gw:
            target = gw.url.removeprefix("http://").rstrip("/")
            config = tmp_path / "prometheus.yml"
            config.write_text(
                "global: {scrape_interval: 1s}\n"
                "scrape_configs:\n"
                "  - job_name: cc2api\n"
                f"    authorization: {{type: Bearer, credentials: {TOKEN}}}\n"
                f"    static_configs: [{{targets: ['{target}']}}]\n"
            )
            port = _free_port()
            log = (tmp_path / "prometheus.log").open("wb")
            proc = await trio.lowlevel.open_process(
                [
                    prometheus,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            try:
                for _ in range(3):
                    _, events = await post_chat(gw.client, chat_body("echo hi", workdir))
                    assert events[-1].json()["status"] == "completed"
                api = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10)
                async with api:
                    finished = 0.0
                    with trio.move_on_after(30):
                        while finished < 3:
                            await trio.sleep(0.5)
                            result = await _query(api, "sum(cc2api_runs_finished_total)")
                            finished = float(result[0]["value"][1]) if result else 0.0
                    up = await _query(api, 'up{job="cc2api"}')
                    started = await _query(api, "cc2api_runs_started_total")
            finally:
                proc.kill()
                with trio.CancelScope(shield=True):
                    await proc.wait()
                log.close()
        assert finished == 3, (tmp_path / "prometheus.log").read_text()[-2000:]
        assert [float(r["value"][1]) for r in up] == [1]
        assert [(r["metric"]["key"], float(r["value"][1])) for r in started] == [("admin", 3)]


class TestKeys:
    async def test_a_keys_runs_cost_and_tokens_carry_its_name(
        self, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """A key's run is counted under its name, its cost and tokens by key and model."""
        async with served(make_settings(), fake_environ) as gw:
            token = await make_key(gw.client, "bot")
            async with as_key(gw.url, token) as client:
                await post_chat(client, chat_body("spend 0.25", workdir))
                refused = await client.get("/metrics")
            text = (await gw.client.get("/metrics")).text
        assert total(text, "cc2api_runs_started_total", key="bot") == 1
        assert total(text, "cc2api_runs_finished_total", key="bot", status="completed") == 1
        assert total(text, "cc2api_cost_usd_total", key="bot", model="fake-model") == 0.25
        assert total(text, "cc2api_tokens_total", key="bot", model="fake-model") == 1010
        assert refused.status_code == 403
