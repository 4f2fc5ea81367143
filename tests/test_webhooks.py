"""Webhooks at the edges: validation and refusals at POST /chat, SSRF rules, key secrets, the
records route's isolation, and API.md's verify snippet against a real signed delivery."""

from __future__ import annotations

import ipaddress
import json
import re
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import trio

from cc2api.key_store import MemoryKeys, SqliteKeys
from cc2api.key_wire import KeyPolicy
from cc2api.keys import hash_token, new_key, new_token
from cc2api.store_files import DB_NAME
from cc2api.store_schema import migrate
from cc2api.webhook_hosts import AllowedHost, HostList, WebhookForbidden, check_url
from cc2api.webhook_sign import signature_header, verify

from .helpers import REPO, chat_body, make_settings, post_chat, served
from .test_keys import as_key
from .webhook_receiver import ON, SECRET, delivered, receiver

pytestmark = pytest.mark.timeout(90)


class TestRefusals:
    @pytest.mark.parametrize(
        "url",
        ["ftp://127.0.0.1/x", "http://user:pw@127.0.0.1/x", "not a url", "http:///x", "/x"],
    )
    async def test_a_malformed_url_is_a_validation_error(
        self, fake_environ: dict[str, str], workdir: Path, url: str
    ) -> None:
        """A webhook_url that is not an http(s) URL with a host, or holds credentials, is 422."""
        async with served(make_settings(**ON), fake_environ) as gw:
            response, _ = await post_chat(gw.client, chat_body("hi", workdir, webhook_url=url))
        assert response.status_code == 422, response.text

    async def test_webhooks_are_off_unless_hosts_are_listed(
        self, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """With no WEBHOOK_ALLOWED_HOSTS every webhook_url is refused with webhook_forbidden."""
        settings = make_settings(webhook_secret=SECRET)
        async with served(settings, fake_environ) as gw:
            body = chat_body("hi", workdir, webhook_url="http://127.0.0.1:9/x")
            response, _ = await post_chat(gw.client, body)
        assert response.status_code == 400
        assert response.json()["code"] == "webhook_forbidden"

    async def test_a_host_not_listed_is_refused(
        self, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """A URL whose host is not among WEBHOOK_ALLOWED_HOSTS is 400 webhook_forbidden."""
        async with served(make_settings(**ON), fake_environ) as gw:
            body = chat_body("hi", workdir, webhook_url="http://127.0.0.2:9/x")
            response, _ = await post_chat(gw.client, body)
        assert response.status_code == 400
        assert response.json()["code"] == "webhook_forbidden"

    async def test_a_listed_name_resolving_to_loopback_is_refused(
        self, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """Listing localhost does not allow the loopback address it resolves to."""
        settings = make_settings(**{**ON, "webhook_allowed_hosts": ["localhost"]})
        async with served(settings, fake_environ) as gw:
            body = chat_body("hi", workdir, webhook_url="http://localhost:9/x")
            response, _ = await post_chat(gw.client, body)
        assert response.status_code == 400
        assert response.json()["code"] == "webhook_forbidden"
        assert "loopback" in response.json()["detail"]

    async def test_the_admin_needs_a_webhook_secret(
        self, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """The admin's webhook_url without WEBHOOK_SECRET is 400 webhook_secret_missing."""
        settings = make_settings(webhook_allowed_hosts=["127.0.0.1"])
        async with served(settings, fake_environ) as gw:
            body = chat_body("hi", workdir, webhook_url="http://127.0.0.1:9/x")
            response, _ = await post_chat(gw.client, body)
        assert response.status_code == 400
        assert response.json()["code"] == "webhook_secret_missing"

    def test_a_short_webhook_secret_is_refused(self) -> None:
        """WEBHOOK_SECRET under 16 characters stops the start, naming the setting."""
        with pytest.raises(ValueError, match="WEBHOOK_SECRET must be at least 16"):
            make_settings(webhook_secret="short")


def _allows(address: str, entries: list[str], port: int = 443) -> bool:
    return HostList(entries).allows_address(ipaddress.ip_address(address), port)


class TestAddresses:
    @pytest.mark.parametrize(
        "address",
        [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.0.1",
            "169.254.169.254",
            "::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "0.0.0.0",  # noqa: S104 (an address refused, not bound)
            "100.64.0.1",
            "224.0.0.1",
            "240.0.0.1",
        ],
    )
    def test_addresses_that_are_not_public_are_refused(self, address: str) -> None:
        """Loopback, private, link-local, shared, multicast and reserved addresses are refused."""
        assert not _allows(address, ["hooks.example.com"])

    @pytest.mark.parametrize(
        "address",
        [
            "64:ff9b::a00:1",  # NAT64 to 10.0.0.1
            "64:ff9b::7f00:1",  # NAT64 to 127.0.0.1
            "64:ff9b:1::a9fe:a9fe",  # local-use NAT64 to 169.254.169.254
            "64:ff9b:1:a00:1::",  # local-use NAT64 in another layout
            "2002:a00:1::1",  # 6to4 of 10.0.0.1
            "2002:7f00:1::",  # 6to4 of 127.0.0.1
            "::a00:1",  # IPv4-compatible 10.0.0.1
            "::7f00:1",  # IPv4-compatible 127.0.0.1
            "::ffff:a00:1",  # IPv4-mapped 10.0.0.1
            "fec0::1",  # site-local
        ],
    )
    def test_ipv6_addresses_embedding_private_ipv4_are_refused(self, address: str) -> None:
        """IPv6 forms (NAT64, 6to4, compatible, mapped) of private IPv4, and site-local: refused."""
        assert not _allows(address, ["hooks.example.com"])

    @pytest.mark.parametrize("address", ["64:ff9b::808:808", "2002:808:808::1", "::808:808"])
    def test_ipv6_addresses_embedding_public_ipv4_are_allowed(self, address: str) -> None:
        """An IPv6 form of a public IPv4 address is checked as that address: allowed."""
        assert _allows(address, ["hooks.example.com"])

    def test_a_listed_address_is_allowed(self) -> None:
        """An address listed itself is allowed, IPv4-mapped or not."""
        assert _allows("127.0.0.1", ["127.0.0.1"])
        assert _allows("::ffff:127.0.0.1", ["127.0.0.1"])

    def test_a_public_address_is_allowed(self) -> None:
        """A public address is allowed behind a listed host."""
        assert _allows("93.184.215.14", ["example.com"])


class TestPorts:
    def test_an_entry_with_a_port_allows_only_that_port(self) -> None:
        """127.0.0.1:8080 allows loopback on 8080 and no other port; [::1]:8080 the same."""
        assert _allows("127.0.0.1", ["127.0.0.1:8080"], 8080)
        assert not _allows("127.0.0.1", ["127.0.0.1:8080"], 8081)
        assert _allows("::1", ["[::1]:8080"], 8080)
        assert not _allows("::1", ["[::1]:8080"], 22)

    def test_an_entry_without_a_port_allows_any_port(self) -> None:
        """127.0.0.1 and ::1 without a port allow every port on them."""
        assert _allows("127.0.0.1", ["127.0.0.1"], 22)
        assert _allows("::1", ["::1"], 22)

    def test_a_url_on_another_port_than_listed_is_refused(self) -> None:
        """hooks.example.com:443 allows https://hooks.example.com/, not :8443."""
        hosts = HostList(["hooks.example.com:443"])
        assert check_url("https://hooks.example.com/x", hosts).port == 443
        with pytest.raises(WebhookForbidden, match="port 8443"):
            check_url("https://hooks.example.com:8443/x", hosts)

    @pytest.mark.parametrize(
        ("entry", "normal"),
        [
            ("Hooks.Example.COM.", "hooks.example.com"),
            ("HOOKS.example.com:8443", "hooks.example.com:8443"),
            ("[::1]", "::1"),
            ("[0:0::1]:80", "[::1]:80"),
            ("::1", "::1"),
            ("Bücher.example", "xn--bcher-kva.example"),
        ],
    )
    def test_entries_are_normalised(self, entry: str, normal: str) -> None:
        """Entries compare lower-case, IDNA-encoded, addresses in their own text."""
        assert str(AllowedHost.parse(entry)) == normal
        assert make_settings(webhook_allowed_hosts=entry).webhook_allowed_hosts == [normal]

    @pytest.mark.parametrize("entry", ["host:0", "host:99999", "host:http", "[::1]x", ":80"])
    def test_a_bad_entry_stops_the_start(self, entry: str) -> None:
        """An entry with a bad port or no host is refused at startup."""
        with pytest.raises(ValueError, match=r"port|host"):
            make_settings(webhook_allowed_hosts=entry)

    async def test_a_port_entry_refuses_another_port_at_post_chat(
        self, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """Listing 127.0.0.1:<port> makes a webhook_url on another port 400 webhook_forbidden."""
        settings = make_settings(**{**ON, "webhook_allowed_hosts": ["127.0.0.1:9"]})
        async with served(settings, fake_environ) as gw:
            body = chat_body("hi", workdir, webhook_url="http://127.0.0.1:10/x")
            response, _ = await post_chat(gw.client, body)
        assert response.status_code == 400
        assert response.json()["code"] == "webhook_forbidden"


class TestUnicodeHosts:
    def test_a_unicode_host_is_sent_in_ascii(self) -> None:
        """A listed Unicode name matches its URL, and the Host header and TLS name are IDNA."""
        target = check_url("https://Bücher.example/hook", HostList(["bücher.example"]))
        _, headers, extensions = target.pinned("93.184.215.14")
        assert headers == {"Host": "xn--bcher-kva.example"}
        assert extensions == {"sni_hostname": "xn--bcher-kva.example"}
        headers["Host"].encode("ascii")


class TestSignature:
    def test_a_signature_verifies_and_a_changed_body_does_not(self) -> None:
        """The header signs the timestamp and the body: another body or an old time fails."""
        now = int(time.time())
        header = signature_header(SECRET, now, b'{"a":1}')
        assert verify(SECRET, header, b'{"a":1}', now)
        assert not verify(SECRET, header, b'{"a":2}', now)
        assert not verify("another-secret-entirely", header, b'{"a":1}', now)
        assert not verify(SECRET, header, b'{"a":1}', now + 3600)

    def test_a_non_ascii_signature_is_refused(self) -> None:
        """A v1= that is not ASCII is a mismatch, not an error."""
        now = int(time.time())
        assert not verify(SECRET, f"t={now},v1=é", b"{}", now)

    def test_any_of_several_signatures_may_match(self) -> None:
        """A header with an unknown v1= and the right one verifies (a rotation's two)."""
        now = int(time.time())
        good = signature_header(SECRET, now, b"{}").split(",")[1]
        assert verify(SECRET, f"t={now},v1={'0' * 64},{good}", b"{}", now)
        assert not verify(SECRET, f"t={now},v1={'0' * 64}", b"{}", now)


async def _make_key(client: Any, name: str, **policy: Any) -> dict[str, Any]:
    response = await client.post("/admin/keys", json={"name": name, "policy": policy})
    assert response.status_code == 201, response.text
    made: dict[str, Any] = response.json()
    return made


class TestKeySecrets:
    async def test_a_key_secret_is_shown_once_and_rotated(
        self, fake_environ: dict[str, str]
    ) -> None:
        """Creation shows whsec_..., GET never does, PATCH rotate gives a new one once."""
        async with served(make_settings(**ON), fake_environ) as gw:
            made = await _make_key(gw.client, "alice")
            assert re.fullmatch(r"whsec_[A-Za-z0-9_-]{43}", made["webhook_secret"])
            shown = (await gw.client.get("/admin/keys/alice")).json()
            assert "webhook_secret" not in shown
            assert made["webhook_secret"] not in json.dumps(
                (await gw.client.get("/admin/keys")).json()
            )
            rotated = await gw.client.patch(
                "/admin/keys/alice", json={"rotate_webhook_secret": True}
            )
            assert rotated.status_code == 200, rotated.text
            new = rotated.json()["webhook_secret"]
            assert new.startswith("whsec_")
            assert new != made["webhook_secret"]
            plain = await gw.client.patch("/admin/keys/alice", json={"policy": {}})
            assert plain.json()["webhook_secret"] is None

    async def test_a_rotated_secret_signs_the_keys_next_runs(
        self, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """After rotation, the key's default webhook_url gets deliveries signed with the new one."""
        with receiver() as hook:
            async with served(make_settings(**ON), fake_environ) as gw:
                made = await _make_key(gw.client, "alice", webhook_url=hook.url)
                rotated = await gw.client.patch(
                    "/admin/keys/alice", json={"rotate_webhook_secret": True}
                )
                secret = rotated.json()["webhook_secret"]
                async with as_key(gw.url, made["token"]) as alice:
                    _, events = await post_chat(alice, chat_body("hi", workdir))
                assert events[-1].event == "done"
                await delivered(hook)
        got = hook.received[0]
        header = got.headers["X-Cc2api-Signature"]
        assert verify(secret, header, got.body, int(time.time()))
        assert not verify(made["webhook_secret"], header, got.body, int(time.time()))


class TestKeyStore:
    @pytest.mark.parametrize("kind", ["sqlite", "memory"])
    async def test_a_stale_write_keeps_the_rotated_secret(self, tmp_path: Path, kind: str) -> None:
        """Writing back a copy read before a rotation does not restore the old secret."""
        db = tmp_path / DB_NAME
        conn = sqlite3.connect(db, isolation_level=None)
        migrate(conn)
        conn.close()
        store = SqliteKeys(db) if kind == "sqlite" else MemoryKeys()
        now = datetime.now(UTC)
        key, _ = new_key("alice", KeyPolicy(), now)
        await store.save(key)
        rotated = key.with_new_webhook_secret(now)
        await store.save(rotated, new_webhook_secret=True)
        await store.save(key.with_policy(KeyPolicy(max_runs=3), now))  # the stale copy
        (kept,) = await store.load()
        assert kept.webhook_secret == rotated.webhook_secret != key.webhook_secret
        assert kept.policy.max_runs == 3


class TestMigration:
    async def test_a_key_from_before_webhooks_needs_a_rotation(
        self, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """A key kept at schema v3 gets 400 webhook_secret_missing for a webhook_url until
        its secret is rotated; then its runs' webhooks are delivered."""
        settings = make_settings(**ON)
        conn = sqlite3.connect(settings.data_dir / DB_NAME, isolation_level=None)
        assert migrate(conn, upto=3) == 3
        token = new_token()
        conn.execute(
            "INSERT INTO api_keys (key_id, name, token_sha256, created_us, updated_us, policy) "
            "VALUES ('k-old', 'old', ?, 0, 0, '{}')",
            (hash_token(token),),
        )
        conn.close()
        with receiver() as hook:
            async with served(settings, fake_environ) as gw:
                async with as_key(gw.url, token) as old:
                    body = chat_body("hi", workdir, webhook_url=hook.url)
                    refused, _ = await post_chat(old, body)
                    rotated = await gw.client.patch(
                        "/admin/keys/old", json={"rotate_webhook_secret": True}
                    )
                    secret = rotated.json()["webhook_secret"]
                    _, events = await post_chat(old, body)
                    await delivered(hook)
        assert refused.status_code == 400
        assert refused.json()["code"] == "webhook_secret_missing"
        assert "rotate_webhook_secret" in refused.json()["detail"]
        assert events[-1].event == "done"
        header = hook.received[0].headers["X-Cc2api-Signature"]
        assert verify(secret, header, hook.received[0].body, int(time.time()))


class TestRecords:
    async def test_another_key_gets_404_for_a_runs_webhooks(
        self, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """GET /runs/{id}/webhooks shows the key's own run's attempts; another key gets 404."""
        with receiver() as hook:
            async with served(make_settings(**ON), fake_environ) as gw:
                alice = await _make_key(gw.client, "alice")
                bob = await _make_key(gw.client, "bob")
                async with as_key(gw.url, alice["token"]) as a, as_key(gw.url, bob["token"]) as b:
                    body = chat_body("hi", workdir, webhook_url=hook.url)
                    response, _ = await post_chat(a, body)
                    run_id = response.headers["X-Process-ID"]
                    await delivered(hook)
                    with trio.fail_after(30):
                        while not (await a.get(f"/runs/{run_id}/webhooks")).json()["count"]:
                            await trio.sleep(0.05)
                    mine = (await a.get(f"/runs/{run_id}/webhooks")).json()
                    theirs = await b.get(f"/runs/{run_id}/webhooks")
                    admins = await gw.client.get(f"/runs/{run_id}/webhooks")
        assert mine["attempts"][0]["outcome"] == "delivered"
        assert mine["attempts"][0]["status_code"] == 200
        assert theirs.status_code == 404
        assert theirs.json()["code"] == "process_not_found"
        assert admins.status_code == 200


def api_md_snippet() -> str:
    """Return the Python block of API.md's Webhooks section."""
    text = (REPO / "API.md").read_text()
    section = text[text.index("\n## Webhooks") :]
    found = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert found is not None
    return found.group(1)


class TestApiMd:
    async def test_the_verify_snippet_verifies_a_real_delivery(
        self, fake_environ: dict[str, str], workdir: Path
    ) -> None:
        """API.md's verify function accepts a real delivery and refuses a tampered body."""
        namespace: dict[str, Any] = {}
        exec(api_md_snippet(), namespace)  # noqa: S102 (the document's own example)
        with receiver() as hook:
            async with served(make_settings(**ON), fake_environ) as gw:
                body = chat_body("hi", workdir, webhook_url=hook.url)
                await post_chat(gw.client, body)
                await delivered(hook)
        got = hook.received[0]
        header = got.headers["X-Cc2api-Signature"]
        assert namespace["verify"](SECRET, header, got.body) is True
        assert namespace["verify"](SECRET, header, got.body + b" ") is False

    def test_the_verify_snippet_refuses_a_non_ascii_signature(self) -> None:
        """API.md's verify answers False, not TypeError, for a v1= that is not ASCII."""
        namespace: dict[str, Any] = {}
        exec(api_md_snippet(), namespace)  # noqa: S102 (the document's own example)
        header = f"t={int(time.time())},v1=ünicode"
        assert namespace["verify"](SECRET, header, b"{}") is False
        good = signature_header(SECRET, int(time.time()), b"{}")
        assert namespace["verify"](SECRET, f"{good},v1=ß", b"{}") is True
