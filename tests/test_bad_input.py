"""Malformed requests: each gets a 4xx JSON answer naming the problem, and the server stays up.

tests/test_api.py holds hand-picked cases; the tables here are generated from
``ChatRequest`` (its fields and their JSON schema), so a new field is covered the
day it is added. The session's one gateway (a real Hypercorn serving ``create_app``,
the fake CLI behind it, from a thread of its own: conftest's ``shared_server``) serves
the whole module, so that every case also checks that the cases before it left the
server healthy.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import h11
import httpx
import pytest
import trio

from cc2api.jsonbody import MAX_STRINGS
from cc2api.models import ChatRequest

from .helpers import AUTH, SharedServer, collect

pytestmark = pytest.mark.timeout(60)

# A request that has not been answered after this long counts as a hang.
ANSWER_SECONDS = 5
MAX_BODY_BYTES = 10 * 1024 * 1024  # the default of MAX_BODY_BYTES

SCHEMA: dict[str, Any] = ChatRequest.model_json_schema()
PROPERTIES: dict[str, dict[str, Any]] = SCHEMA["properties"]
REQUIRED = frozenset(SCHEMA["required"])
FIELDS = sorted(ChatRequest.model_fields)
# Fields that never reach argv (stdin, or a private file): a value that looks like a
# flag is just text there.
NOT_IN_ARGV = frozenset({"prompt", "system_prompt", "append_system_prompt"})
# Fields where an empty string means something (an empty system prompt).
EMPTY_ALLOWED = frozenset({"system_prompt", "append_system_prompt"})
# A JSON value of each type, to send where the schema takes another.
SAMPLES: dict[str, Any] = {
    "string": "text",
    "integer": 7,
    "number": 2.5,
    "boolean": True,
    "array": ["text"],
    "object": {"key": "text"},
}
FLAG = "--x-injected-flag"
# The gateway speaks plain HTTP: no CA bundle to load (40 ms a client otherwise).
PLAIN_HTTP = False


# -- the shared gateway ------------------------------------------------------------


@pytest.fixture(name="gateway")
def _gateway(shared_server: SharedServer) -> SharedServer:
    """The session's gateway (conftest's ``shared_server``), which serves this module."""
    return shared_server


@pytest.fixture(name="client")
async def _client(gateway: SharedServer) -> AsyncIterator[httpx.AsyncClient]:
    """A fresh client with the right credentials."""
    async with httpx.AsyncClient(
        base_url=gateway.url, auth=AUTH, timeout=60, verify=PLAIN_HTTP
    ) as client:
        yield client


# -- helpers -------------------------------------------------------------------------


def body_of(gateway: SharedServer, **fields: Any) -> dict[str, Any]:
    """Return a valid body (echo prompt, real cwd) with ``fields`` set or replaced."""
    return {"prompt": "echo", "cwd": str(gateway.workdir), **fields}


async def post_raw(
    client: httpx.AsyncClient, content: Any, headers: dict[str, str] | None = None
) -> tuple[httpx.Response, list[Any]]:
    """POST /chat with ``content`` as is; read a 200 stream to its end (as events)."""
    with trio.fail_after(ANSWER_SECONDS):
        async with client.stream("POST", "/chat", content=content, headers=headers) as response:
            if response.status_code != 200:
                await response.aread()
                return response, []
            return response, await collect(response)


async def post_json(client: httpx.AsyncClient, body: Any) -> tuple[httpx.Response, list[Any]]:
    """POST /chat with ``body`` as JSON (lone surrogates travel as escapes)."""
    return await post_raw(client, json.dumps(body), {"Content-Type": "application/json"})


def shown(response: httpx.Response) -> str:
    """Return what to show of an answer in a failed assertion."""
    if response.status_code == 200 and "event-stream" in response.headers["content-type"]:
        return "a 200 event stream (the request was accepted)"
    return f"{response.status_code} {response.headers.get('content-type')} {response.text[:2000]!r}"


def assert_refused(response: httpx.Response, status: int, *names: str) -> dict[str, str]:
    """Assert a JSON {detail, code} answer with ``status`` whose detail holds each name."""
    assert response.status_code == status, shown(response)
    assert response.headers.get("content-type", "").startswith("application/json"), shown(response)
    body: dict[str, str] = response.json()
    assert set(body) == {"detail", "code"}, body
    assert isinstance(body["detail"], str)
    assert isinstance(body["code"], str)
    assert body["code"]
    for name in names:
        assert name in body["detail"], (name, body)
    return body


def assert_completed(response: httpx.Response, events: list[Any]) -> None:
    """Assert a 200 stream that ended with done, completed."""
    assert response.status_code == 200, shown(response)
    assert events, "no events"
    assert events[-1].event == "done"
    assert events[-1].json()["status"] == "completed", events[-1].data


async def assert_healthy(gateway: SharedServer) -> None:
    """Assert GET /health answers 200 ``ok`` on a new connection, and no run is left."""
    async with httpx.AsyncClient(
        base_url=gateway.url, timeout=ANSWER_SECONDS, verify=PLAIN_HTTP
    ) as anonymous:
        with trio.fail_after(ANSWER_SECONDS):
            health = await anonymous.get("/health")
            while health.json()["active_processes"]:
                await trio.sleep(0.05)
                health = await anonymous.get("/health")
    assert health.status_code == 200
    assert health.json()["status"] == "ok", health.json()


def branches(field: str) -> list[dict[str, Any]]:
    """Return the alternatives of a field's schema (``anyOf``), or the schema itself."""
    schema = PROPERTIES[field]
    alternatives: list[dict[str, Any]] = schema.get("anyOf", [schema])
    return alternatives


def json_types(field: str) -> set[str]:
    """Return the JSON types a field's schema accepts."""
    found = set()
    for branch in branches(field):
        if "$ref" in branch:
            found.add("object")
        elif "type" in branch:
            found.add(branch["type"])
    return found


def takes(field: str, kind: str) -> bool:
    """Return whether a field takes a JSON value of ``kind`` (numbers take integers)."""
    types = json_types(field)
    return kind in types or (kind == "integer" and "number" in types)


def item_types(field: str) -> set[str]:
    """Return the JSON types of a list field's items (empty for other fields)."""
    return {
        branch["items"]["type"]
        for branch in branches(field)
        if branch.get("type") == "array" and "type" in branch.get("items", {})
    }


def string_fields() -> list[str]:
    """Return the fields that take a string, directly or as list items."""
    return [f for f in FIELDS if takes(f, "string") or "string" in item_types(f)]


def stringy(field: str, text: str) -> Any:
    """Return ``text`` as the field takes it: itself, or the only item of a list."""
    return text if takes(field, "string") else [text]


def where(field: str) -> str:
    """Return how the detail names the field when a string of it is wrong."""
    return field if takes(field, "string") else f"{field}.0"


def camel(name: str) -> str:
    """Return a snake_case name in camelCase."""
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


# -- tables generated from ChatRequest --------------------------------------------------

MISSING = [pytest.param(f, id=f) for f in FIELDS if f in REQUIRED]
NULL = [pytest.param(f, id=f) for f in FIELDS if not takes(f, "null")]
WRONG_TYPE = [
    pytest.param(f, value, f, id=f"{f}={kind}")
    for f in FIELDS
    for kind, value in SAMPLES.items()
    if not takes(f, kind)
] + [
    pytest.param(f, [value], f"{f}.0", id=f"{f}[{kind}]")
    for f in FIELDS
    if item_types(f)
    for kind, value in SAMPLES.items()
    if kind not in item_types(f)
]
EMPTY = [pytest.param(f, id=f) for f in string_fields()]
NUL = [pytest.param(f, id=f) for f in string_fields()]
FLAG_LIKE = [pytest.param(f, id=f) for f in string_fields()]
UNKNOWN = [pytest.param(camel(f), id=camel(f)) for f in FIELDS if camel(f) != f] + [
    pytest.param(name, id=repr(name))
    for name in [
        "PROMPT",
        "prompt ",
        " cwd",
        "Prompt",
        "dangerously_skip_permissions",
        "resume",
        "continue",
        "print",
        "__proto__",
        "constructor",
        "x\u0000y",
        "x" * 200,
    ]
]


def out_of_range() -> list[Any]:
    """Return a value just past each numeric bound, item count and enum of the schema."""
    cases = []
    for f in FIELDS:
        for branch in branches(f):
            if "maximum" in branch:
                cases.append(pytest.param(f, branch["maximum"] + 1, f, id=f"{f}>max"))
            if "minimum" in branch:
                cases.append(pytest.param(f, branch["minimum"] - 1, f, id=f"{f}<min"))
            if "exclusiveMinimum" in branch:
                cases.append(pytest.param(f, branch["exclusiveMinimum"], f, id=f"{f}=xmin"))
                cases.append(pytest.param(f, -1, f, id=f"{f}=-1"))
            if "maxItems" in branch:
                items = ["user"] * (branch["maxItems"] + 1)
                cases.append(pytest.param(f, items, f, id=f"{f}>maxItems"))
            if "enum" in branch:
                cases.append(pytest.param(f, "bogus", f, id=f"{f}=bogus"))
                cases.append(pytest.param(f, branch["enum"][0].upper(), f, id=f"{f}=UPPER"))
            if "enum" in branch.get("items", {}):
                cases.append(pytest.param(f, ["bogus"], f"{f}.0", id=f"{f}[bogus]"))
    return cases


def test_tables_cover_every_field() -> None:
    """Every field of ChatRequest is in the schema the tables are generated from."""
    assert set(PROPERTIES) == set(FIELDS)
    required = {f for f, info in ChatRequest.model_fields.items() if info.is_required()}
    assert required == REQUIRED
    assert all(json_types(f) for f in FIELDS), {f: PROPERTIES[f] for f in FIELDS}
    assert set(FIELDS) >= NOT_IN_ARGV | EMPTY_ALLOWED


def basic(user: str | bytes, password: str | bytes) -> str:
    """Return a Basic Authorization header value."""
    raw = (user if isinstance(user, bytes) else user.encode()) + b":"
    raw += password if isinstance(password, bytes) else password.encode()
    return "Basic " + base64.b64encode(raw).decode()


GOOD = basic(*AUTH)
# -- bodies that are not a JSON object -----------------------------------------------


class TestBodyShape:
    @pytest.mark.parametrize(
        ("content", "fragment"),
        [
            pytest.param(b"", "not valid JSON", id="empty"),
            pytest.param(b" \r\n\t ", "not valid JSON", id="whitespace"),
            pytest.param(b"{", "not valid JSON", id="unterminated"),
            pytest.param(b"{'prompt': 'x'}", "not valid JSON", id="single-quotes"),
            pytest.param(b'{"prompt": "x",}', "not valid JSON", id="trailing-comma"),
            pytest.param(b'{"prompt":"x","cwd":"/"} {}', "not valid JSON", id="two-values"),
            pytest.param(b'{"prompt":"x"} trailing', "not valid JSON", id="trailing-junk"),
            pytest.param(b"prompt=x&cwd=/tmp", "not valid JSON", id="form-encoded"),
            pytest.param(b"\x00\x00\x00\x00", "not valid", id="nul-bytes"),
            pytest.param(b'{"max_turns": 1' + b"0" * 5000 + b"}", "not valid JSON", id="huge-int"),
            pytest.param(b"[]", "JSON object", id="array"),
            pytest.param(b'[{"prompt":"x","cwd":"/"}]', "JSON object", id="array-of-body"),
            pytest.param(b'"{\\"prompt\\":\\"x\\"}"', "JSON object", id="string"),
            pytest.param(b"42", "JSON object", id="number"),
            pytest.param(b"-0.5e3", "JSON object", id="float"),
            pytest.param(b"null", "JSON object", id="null"),
            pytest.param(b"true", "JSON object", id="true"),
            pytest.param(b'{"prompt":"caf\xe9","cwd":"/"}', "UTF-8", id="latin-1"),
            pytest.param(b'{"prompt":"\xc0\xaf","cwd":"/"}', "UTF-8", id="overlong"),
            pytest.param(b'{"prompt":"\xe2\x82","cwd":"/"}', "UTF-8", id="truncated-char"),
            pytest.param(b'{"prompt":"\xff\xfe","cwd":"/"}', "UTF-8", id="ff-fe-inside"),
            pytest.param(
                '{"prompt":"echo","cwd":"/tmp"}'.encode("utf-16"), "not valid", id="utf-16-with-bom"
            ),
            pytest.param(
                '{"prompt":"echo","cwd":"/tmp"}'.encode("utf-16-le"), "not valid", id="utf-16-le"
            ),
            pytest.param(
                '{"prompt":"echo","cwd":"/tmp"}'.encode("utf-32"), "not valid", id="utf-32-with-bom"
            ),
        ],
    )
    async def test_not_a_json_object_is_400(
        self, gateway: SharedServer, client: httpx.AsyncClient, content: bytes, fragment: str
    ) -> None:
        """A body that is not a UTF-8 JSON object gets 400 invalid_json saying what it is."""
        response, _ = await post_raw(client, content)
        assert assert_refused(response, 400, fragment)["code"] == "invalid_json"
        await assert_healthy(gateway)

    async def test_utf8_encoded_surrogate_is_refused(
        self, gateway: SharedServer, client: httpx.AsyncClient
    ) -> None:
        """A surrogate encoded in UTF-8 bytes (not valid UTF-8) gets a 4xx naming the field."""
        content = b'{"prompt":"\xed\xa0\x80","cwd":"%s"}' % str(gateway.workdir).encode()
        response, _ = await post_raw(client, content)
        if response.status_code == 400:
            assert_refused(response, 400, "UTF-8")
        else:
            assert_refused(response, 422, "prompt", "Unicode")
        await assert_healthy(gateway)

    @pytest.mark.parametrize(
        "template",
        [
            pytest.param('{"prompt":"echo","cwd":"%s","max_turns":NaN}', id="NaN"),
            pytest.param('{"prompt":"echo","cwd":"%s","json_schema":{"x":NaN}}', id="NaN-free"),
            pytest.param('{"prompt":"echo","cwd":"%s","json_schema":{"x":Infinity}}', id="inf"),
            pytest.param('{"prompt":"echo","cwd":"%s","json_schema":{"x":-Infinity}}', id="-inf"),
        ],
    )
    async def test_non_json_numbers_are_refused(
        self, gateway: SharedServer, client: httpx.AsyncClient, template: str
    ) -> None:
        """NaN and Infinity are not JSON: refused, never passed on to the CLI as its input."""
        response, _ = await post_raw(client, template % gateway.workdir)
        assert response.status_code in (400, 422), response.text[:500]
        body = assert_refused(response, response.status_code)
        assert re.search("NaN|Infinity|JSON|finite|max_turns", body["detail"]), body
        await assert_healthy(gateway)

    @pytest.mark.parametrize(
        "content_type",
        ["application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "text/plain"],
    )
    async def test_form_bodies_are_not_parsed_as_forms(
        self, gateway: SharedServer, client: httpx.AsyncClient, content_type: str
    ) -> None:
        """A form-encoded body gets 400 invalid_json whatever Content-Type claims."""
        content = b"--x\r\nContent-Disposition: form-data; name=prompt\r\n\r\nhi\r\n--x--\r\n"
        response, _ = await post_raw(client, content, {"Content-Type": content_type})
        assert assert_refused(response, 400, "not valid JSON")["code"] == "invalid_json"
        await assert_healthy(gateway)


# -- size ------------------------------------------------------------------------------


def oversized(gateway: SharedServer) -> bytes:
    """Return a valid body one byte over the limit."""
    head = json.dumps(body_of(gateway, prompt="")).encode()
    # '{"prompt": "", ...}' with the prompt filled to reach the limit plus one byte.
    pad = MAX_BODY_BYTES + 1 - len(head)
    return head.replace(b'"prompt": ""', b'"prompt": "' + b"x" * pad + b'"', 1)


async def chunks_of(data: bytes, size: int = 65536) -> AsyncIterator[bytes]:
    """Yield ``data`` in pieces: httpx then sends it chunked, without Content-Length."""
    for start in range(0, len(data), size):
        yield data[start : start + size]


class TestSize:
    @pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
    async def test_one_byte_over_the_limit_is_413(
        self, gateway: SharedServer, client: httpx.AsyncClient, chunked: bool
    ) -> None:
        """A body one byte over 10 MiB gets 413 JSON, with or without Content-Length."""
        data = oversized(gateway)
        assert len(data) == MAX_BODY_BYTES + 1
        response, _ = await post_raw(client, chunks_of(data) if chunked else data)
        body = assert_refused(response, 413, str(MAX_BODY_BYTES))
        assert body["code"] == "request_entity_too_large"
        await assert_healthy(gateway)

    async def test_a_body_of_a_million_keys_is_refused_before_parsing(
        self, gateway: SharedServer, client: httpx.AsyncClient
    ) -> None:
        """10 MiB of 880,000 unknown keys gets a short 413 body_too_complex, unparsed."""
        keys = ",".join(f'"k{i}":1' for i in range(880_000))
        content = '{"prompt":"x","cwd":' + json.dumps(str(gateway.workdir)) + "," + keys + "}"
        assert len(content) < MAX_BODY_BYTES
        with trio.fail_after(ANSWER_SECONDS):
            response = await client.post("/chat", content=content)
        body = assert_refused(response, 413, "strings and keys")
        assert body["code"] == "body_too_complex"
        assert len(response.content) < 300
        await assert_healthy(gateway)

    async def test_many_problems_are_reported_briefly(
        self, gateway: SharedServer, client: httpx.AsyncClient
    ) -> None:
        """A body with 5,000 unknown fields gets a 422 naming five of them and counting the rest."""
        extra = {f"unknown_{i}": 1 for i in range(5_000)}
        response, _ = await post_json(client, body_of(gateway, **extra))
        body = assert_refused(response, 422, "unknown_0: unknown field", "and 4995 more problems")
        assert len(body["detail"]) < 500
        await assert_healthy(gateway)

    async def test_declared_length_over_the_limit_is_413_at_once(
        self, gateway: SharedServer
    ) -> None:
        """A Content-Length over the limit gets 413 JSON before any of the body is sent."""
        head = (
            "POST /chat HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            f"Authorization: {basic(AUTH[0], AUTH[1])}\r\n"
            f"Content-Length: {20 * MAX_BODY_BYTES}\r\n\r\n"
        )
        status, headers, content = await exchange(gateway, head.encode())
        assert status == 413
        assert headers.get(b"content-type", b"").startswith(b"application/json")
        assert json.loads(content)["code"] == "request_entity_too_large"
        await assert_healthy(gateway)

    @pytest.mark.parametrize(
        "refusal",
        [
            pytest.param(("POST", "/chat", basic("admin", "wrong"), 2 * 2**20, 401), id="401"),
            pytest.param(("POST", "/nope", GOOD, 2 * 2**20, 404), id="404"),
            pytest.param(("PUT", "/chat", GOOD, 2 * 2**20, 405), id="405"),
            pytest.param(("POST", "/chat", GOOD, MAX_BODY_BYTES + 1, 413), id="413"),
        ],
    )
    async def test_refusal_before_the_body_leaves_the_connection_usable(
        self, gateway: SharedServer, refusal: tuple[str, str, str, int, int]
    ) -> None:
        """A refusal sent before the body was read closes the connection or answers the next."""
        method, path, authorization, length, status = refusal
        host, port = gateway.url.removeprefix("http://").rsplit(":", 1)
        client = h11.Connection(h11.CLIENT)
        head = h11.Request(
            method=method,
            target=path,
            headers=[
                ("Host", "test"),
                ("Authorization", authorization),
                ("Content-Length", str(length)),
            ],
        )
        first = b"{" + b" " * 1023
        stream = await trio.open_tcp_stream(host, int(port))
        async with stream:
            with trio.fail_after(ANSWER_SECONDS):
                await stream.send_all(client.send(head) + client.send(h11.Data(data=first)))
                answer, content = await read_answer(stream, client)
            assert answer.status_code == status, content
            assert json.loads(content)["code"]
            if (b"connection", b"close") in answer.headers:
                return  # the client knows to open a new connection
            try:
                with trio.fail_after(ANSWER_SECONDS):
                    rest = b" " * (length - len(first) - 1) + b"}"
                    for start in range(0, len(rest), 65536):
                        await stream.send_all(
                            client.send(h11.Data(data=rest[start : start + 65536]))
                        )
                    await stream.send_all(client.send(h11.EndOfMessage()))
                    client.start_next_cycle()
                    await stream.send_all(
                        client.send(
                            h11.Request(method="GET", target="/health", headers=[("Host", "t")])
                        )
                        + client.send(h11.EndOfMessage())
                    )
                    second, _ = await read_answer(stream, client)
            except trio.TooSlowError:
                raise AssertionError(
                    f"after the {status} (kept alive) the next request on the connection got "
                    f"no answer in {ANSWER_SECONDS} s, and the connection was not closed"
                ) from None
            except (trio.BrokenResourceError, h11.RemoteProtocolError):
                return  # closed after the answer: the client opens a new connection
            assert second.status_code == 200
        await assert_healthy(gateway)


async def read_answer(
    stream: trio.SocketStream, client: h11.Connection
) -> tuple[h11.Response, bytes]:
    """Read one answer from ``stream`` with the h11 ``client``; its response and body."""
    response: h11.Response | None = None
    content = b""
    while True:
        event = client.next_event()
        if event is h11.NEED_DATA:
            client.receive_data(await stream.receive_some(65536))
        elif isinstance(event, h11.Response):
            response = event
        elif isinstance(event, h11.Data):
            content += event.data
        elif isinstance(event, h11.EndOfMessage) and response is not None:
            return response, content
        elif isinstance(event, h11.ConnectionClosed):
            raise h11.RemoteProtocolError("closed before an answer")


# -- nesting -----------------------------------------------------------------------------


def nested(depth: int) -> str:
    """Return JSON text nesting ``depth`` arrays, objects inside: [{"a":[{"a":...}]}]."""
    opening, closing = '[{"a":', "}]"
    half = depth // 2
    return opening * half + ("[]" if depth % 2 == 0 else "[[]]") + closing * half


NEST_PLACES = {
    # place: (template around the nested value, the field the detail names)
    "unknown": ('{"prompt":"echo","cwd":"%(cwd)s","deep":%(value)s}', "deep"),
    "json_schema": (
        '{"prompt":"echo","cwd":"%(cwd)s","json_schema":{"a":%(value)s}}',
        "json_schema",
    ),
    "agents": (
        '{"prompt":"echo","cwd":"%(cwd)s","agents":{"a":'
        '{"description":"d","prompt":"p","extra":%(value)s}}}',
        "agents",
    ),
    "settings": ('{"prompt":"echo","cwd":"%(cwd)s","settings":%(text)s}', "settings"),
    "max_turns": ('{"prompt":"echo","cwd":"%(cwd)s","max_turns":%(value)s}', "max_turns"),
    "prompt": ('{"prompt":%(value)s,"cwd":"%(cwd)s"}', "prompt"),
}


class TestNesting:
    @pytest.mark.parametrize("depth", [100, 600, 1000, 100_000])
    @pytest.mark.parametrize("place", list(NEST_PLACES))
    async def test_deep_nesting_is_refused_or_run(
        self, gateway: SharedServer, client: httpx.AsyncClient, place: str, depth: int
    ) -> None:
        """Deep nesting gets a 4xx naming the field, the nesting or the key count (or runs)."""
        template, field = NEST_PLACES[place]
        value = nested(depth)
        text = json.dumps('{"a":' + value + "}")
        content = template % {"cwd": gateway.workdir, "value": value, "text": text}
        response, events = await post_raw(client, content)
        if response.status_code == 200 and place in ("json_schema", "agents", "settings"):
            assert_completed(response, events)  # free-form JSON: passing it on is fine
        elif response.status_code == 400:
            assert assert_refused(response, 400, "nested too deeply")["code"] == "invalid_json"
        elif response.status_code == 413:  # a key per level: more than any request holds
            assert depth > MAX_STRINGS
            assert assert_refused(response, 413, "strings and keys")["code"] == "body_too_complex"
        else:
            assert_refused(response, 422, field)
        await assert_healthy(gateway)


# -- one field at a time -------------------------------------------------------------------


class TestFields:
    @pytest.mark.parametrize("field", MISSING)
    async def test_missing_required_field_is_422(
        self, gateway: SharedServer, client: httpx.AsyncClient, field: str
    ) -> None:
        """A body without a required field gets 422 naming it as required."""
        body = body_of(gateway)
        del body[field]
        response, _ = await post_json(client, body)
        assert_refused(response, 422, f"{field}: field required")
        await assert_healthy(gateway)

    @pytest.mark.parametrize("field", NULL)
    async def test_null_where_not_nullable_is_422(
        self, gateway: SharedServer, client: httpx.AsyncClient, field: str
    ) -> None:
        """null for a field that does not take null gets 422 naming the field."""
        response, _ = await post_json(client, body_of(gateway, **{field: None}))
        assert_refused(response, 422, field)
        await assert_healthy(gateway)

    @pytest.mark.parametrize(("field", "value", "named"), WRONG_TYPE)
    async def test_wrong_type_is_422(
        self, gateway: SharedServer, client: httpx.AsyncClient, field: str, value: Any, named: str
    ) -> None:
        """A value of a JSON type the field does not take gets 422 naming the field."""
        response, _ = await post_json(client, body_of(gateway, **{field: value}))
        assert_refused(response, 422, named)
        await assert_healthy(gateway)

    @pytest.mark.parametrize("field", EMPTY)
    async def test_empty_string(
        self, gateway: SharedServer, client: httpx.AsyncClient, field: str
    ) -> None:
        """An empty string gets 422 naming the field, unless the field gives it a meaning."""
        response, events = await post_json(client, body_of(gateway, **{field: stringy(field, "")}))
        if field in EMPTY_ALLOWED:
            assert_completed(response, events)
        else:
            assert_refused(response, 422, where(field))
        await assert_healthy(gateway)

    @pytest.mark.parametrize("field", NUL)
    async def test_nul_byte_is_422(
        self, gateway: SharedServer, client: httpx.AsyncClient, field: str
    ) -> None:
        """A string holding a NUL byte (which argv and paths cannot carry) gets 422 naming it."""
        text = f"{gateway.workdir}\x00x" if field == "cwd" else "a\x00b"
        response, _ = await post_json(client, body_of(gateway, **{field: stringy(field, text)}))
        assert_refused(response, 422, where(field))
        await assert_healthy(gateway)

    @pytest.mark.parametrize("field", FLAG_LIKE)
    async def test_flag_like_value(
        self, gateway: SharedServer, client: httpx.AsyncClient, field: str
    ) -> None:
        """A value that looks like a CLI flag is refused naming the field, or never hits argv."""
        fields = {field: stringy(field, FLAG)}
        if field in NOT_IN_ARGV and field != "prompt":
            fields["prompt"] = "argv"  # the fake CLI then reports its argv
        response, events = await post_json(client, body_of(gateway, **fields))
        if field in NOT_IN_ARGV:
            assert_completed(response, events)
            for event in events:
                if event.event == "message" and "argv" in event.json():
                    assert not any(FLAG in arg for arg in event.json()["argv"])
        elif field == "cwd":
            assert assert_refused(response, 400, "cwd", "absolute")["code"] == "invalid_cwd"
        else:
            assert_refused(response, 422, where(field))
        await assert_healthy(gateway)

    @pytest.mark.parametrize(("field", "value", "named"), out_of_range())
    async def test_out_of_range_is_422(
        self, gateway: SharedServer, client: httpx.AsyncClient, field: str, value: Any, named: str
    ) -> None:
        """A value past a bound, item count or enum of the schema gets 422 naming the field."""
        response, _ = await post_json(client, body_of(gateway, **{field: value}))
        assert_refused(response, 422, named)
        await assert_healthy(gateway)

    @pytest.mark.parametrize("name", UNKNOWN)
    async def test_unknown_field_is_422(
        self, gateway: SharedServer, client: httpx.AsyncClient, name: str
    ) -> None:
        """An unknown field (camelCase typos of real ones included) gets 422 naming it."""
        response, _ = await post_json(client, body_of(gateway, **{name: ["Read"]}))
        assert_refused(response, 422, f"{name}: unknown field")
        await assert_healthy(gateway)

    async def test_every_unknown_field_is_named(
        self, gateway: SharedServer, client: httpx.AsyncClient
    ) -> None:
        """Several unknown fields get one 422 that names each of them."""
        response, _ = await post_json(
            client, body_of(gateway, allowedTools=["Read"], sessionId="x", permissionMode="plan")
        )
        assert_refused(response, 422, "allowedTools", "sessionId", "permissionMode")
        await assert_healthy(gateway)

    @pytest.mark.parametrize(
        ("fields", "named"),
        [
            pytest.param({"model": "m" * (16 * 1024 + 1)}, "model", id="word-over-16KiB"),
            pytest.param({"json_schema": {"a": "x" * 70_000}}, "json_schema", id="schema-64KiB"),
            pytest.param({"settings": json.dumps({"a": "x" * 70_000})}, "settings", id="settings"),
            pytest.param({"mcp_config": ["{" + " " * 70_000 + "}"]}, "mcp_config", id="mcp-64KiB"),
            pytest.param({"tools": ["t" * 16_000] * 80}, "command line", id="argv-over-1MiB"),
            pytest.param({"settings": '{"env": {"X": "1"}}'}, "env", id="settings-env"),
            pytest.param({"settings": "[1]"}, "settings", id="settings-not-object"),
            pytest.param({"settings": "relative.json"}, "settings", id="settings-relative"),
            pytest.param({"mcp_config": ["{}"]}, "mcpServers", id="mcp-without-servers"),
            pytest.param({"mcp_config": ["{oops"]}, "mcp_config", id="mcp-not-json"),
            pytest.param({"add_dir": ["relative"]}, "add_dir.0", id="add-dir-relative"),
            pytest.param({"add_dir": ["/no/such/dir"]}, "add_dir.0", id="add-dir-missing"),
            pytest.param({"plugin_dir": ["/no/such/dir"]}, "plugin_dir.0", id="plugin-missing"),
            pytest.param({"session_id": "4a0c7d0e"}, "session_id", id="short-uuid"),
            pytest.param({"new_session_id": "x" * 36}, "new_session_id", id="36-char-non-uuid"),
            pytest.param({"agents": {"a": {"prompt": "p"}}}, "agents", id="agent-no-description"),
            pytest.param(
                {"agents": {"a": {"description": " ", "prompt": "p"}}}, "agents", id="blank"
            ),
            pytest.param({"agents": {"a": "prompt"}}, "agents", id="agent-not-object"),
            pytest.param({"agents": {"-a": {"description": "d", "prompt": "p"}}}, "agents", id="k"),
            pytest.param(
                {"agents": {"a\x00": {"description": "d", "prompt": "p"}}}, "agents", id="nul"
            ),
            pytest.param(
                {"agents": {"a": {"description": "d", "prompt": "p", "permissionMode": "x"}}},
                "agents",
                id="agent-mode",
            ),
            pytest.param({"json_schema": {"a": "\ud800"}}, "json_schema", id="schema-surrogate"),
            pytest.param({"max_turns": 1.5}, "max_turns", id="fractional-turns"),
            pytest.param({"max_turns": True}, "max_turns", id="bool-as-int"),
            pytest.param({"max_budget_usd": "1"}, "max_budget_usd", id="number-as-string"),
            pytest.param({"debug": 1}, "debug", id="debug-int"),
        ],
    )
    async def test_bad_value_is_422(
        self, gateway: SharedServer, client: httpx.AsyncClient, fields: dict[str, Any], named: str
    ) -> None:
        """A value over a byte limit, of the wrong form or naming nothing gets 422 saying so."""
        response, _ = await post_json(client, body_of(gateway, **fields))
        assert_refused(response, 422, named)
        await assert_healthy(gateway)

    @pytest.mark.parametrize(
        ("fields", "named"),
        [
            pytest.param(
                {"session_id": str(uuid.uuid4()), "continue_conversation": True},
                "session_id and continue_conversation",
                id="resume-and-continue",
            ),
            pytest.param({"fork_session": True}, "fork_session", id="fork-alone"),
            pytest.param(
                {"session_id": str(uuid.uuid4()), "new_session_id": str(uuid.uuid4())},
                "new_session_id",
                id="new-id-without-fork",
            ),
        ],
    )
    async def test_contradictory_fields_are_422(
        self, gateway: SharedServer, client: httpx.AsyncClient, fields: dict[str, Any], named: str
    ) -> None:
        """Fields that contradict each other get 422 naming them."""
        response, _ = await post_json(client, body_of(gateway, **fields))
        assert_refused(response, 422, named)
        await assert_healthy(gateway)


# -- credentials -----------------------------------------------------------------------------


BAD_AUTHORIZATION = [
    pytest.param(b"Basic !!!!", "malformed", id="bad-base64"),
    pytest.param(b"Basic " + GOOD[6:-2].encode(), "malformed", id="bad-padding"),
    pytest.param(b"Basic " + base64.b64encode(b"adminpassword"), "malformed", id="no-colon"),
    pytest.param(b"Basic", "Basic", id="basic-alone"),
    pytest.param(b"Basic\t" + GOOD[6:].encode(), "Basic", id="tab-separator"),
    pytest.param(b"Bearer " + GOOD[6:].encode(), "invalid", id="bearer"),
    pytest.param(b"Digest username=admin", "Basic", id="digest"),
    pytest.param(GOOD[6:].encode(), "Basic", id="no-scheme"),
    pytest.param(b"", "required", id="empty"),
    pytest.param(basic(AUTH[0], b"\xff\xfe").encode(), "invalid", id="non-utf8-password"),
    pytest.param(basic(b"\xc3\x28", AUTH[1]).encode(), "invalid", id="non-utf8-user"),
    pytest.param(b"Basic \xe9\xe9\xe9\xe9", "malformed", id="non-ascii-header"),
    pytest.param(basic(AUTH[0] + "\x00", AUTH[1]).encode(), "invalid", id="nul-in-user"),
    pytest.param(basic(AUTH[0], AUTH[1] + "x").encode(), "invalid", id="password-plus-one"),
    pytest.param(basic(AUTH[0].upper(), AUTH[1]).encode(), "invalid", id="user-upper-case"),
    pytest.param(basic(":", ":").encode(), "invalid", id="colons"),
    pytest.param(b"Basic " + b"A" * 8192, "malformed", id="8KiB"),
    pytest.param(basic(AUTH[0], "p" * 6_000).encode(), "invalid", id="8KiB-password"),
]
AUTHENTICATED = [
    ("GET", "/processes"),
    ("POST", "/chat"),
    ("DELETE", f"/chat/{uuid.UUID(int=1)}"),
]


class TestAuthorization:
    @pytest.mark.parametrize(("method", "path"), AUTHENTICATED, ids=str)
    @pytest.mark.parametrize(("header", "fragment"), BAD_AUTHORIZATION)
    async def test_bad_authorization_is_401(
        self, gateway: SharedServer, header: bytes, fragment: str, method: str, path: str
    ) -> None:
        """A malformed or wrong Authorization header gets 401 JSON with the Basic challenge."""
        async with httpx.AsyncClient(base_url=gateway.url, verify=PLAIN_HTTP) as anonymous:
            with trio.fail_after(ANSWER_SECONDS):
                response = await anonymous.request(
                    method, path, headers={b"Authorization": header}, content=b"{}"
                )
        body = assert_refused(response, 401, fragment)
        assert body["code"] == "unauthorized"
        assert response.headers["www-authenticate"] == 'Basic realm="cc2api"'
        assert AUTH[1] not in response.text
        await assert_healthy(gateway)

    async def test_header_too_large_for_the_server_is_431(self, gateway: SharedServer) -> None:
        """An Authorization header of 1 MiB gets Hypercorn's 431 (before the app, so no JSON)."""
        async with httpx.AsyncClient(base_url=gateway.url, verify=PLAIN_HTTP) as anonymous:
            with trio.fail_after(ANSWER_SECONDS):
                response = await anonymous.get(
                    "/processes", headers={"Authorization": "Basic " + "A" * (1024 * 1024)}
                )
        assert response.status_code == 431
        await assert_healthy(gateway)


# -- paths and methods ---------------------------------------------------------------------------


class TestRoutes:
    @pytest.mark.parametrize(
        ("method", "path"),
        [
            ("GET", "/chat"),
            ("PATCH", "/chat"),
            ("DELETE", "/chat"),
            ("POST", "/health"),
            ("DELETE", "/health"),
            ("POST", "/processes"),
            ("PUT", "/processes"),
            ("DELETE", "/processes"),
            ("GET", f"/chat/{uuid.UUID(int=1)}"),
            ("POST", f"/chat/{uuid.UUID(int=1)}"),
            ("PUT", f"/chat/{uuid.UUID(int=1)}"),
            ("POST", "/openapi.json"),
            ("TRACE", "/chat"),
        ],
    )
    async def test_wrong_method_is_405(
        self, gateway: SharedServer, client: httpx.AsyncClient, method: str, path: str
    ) -> None:
        """A method a path does not take gets 405 JSON naming the method and the path."""
        with trio.fail_after(ANSWER_SECONDS):
            response = await client.request(method, path)
        body = assert_refused(response, 405, method, path)
        assert body["code"] == "method_not_allowed"
        await assert_healthy(gateway)

    @pytest.mark.parametrize(
        "path",
        [
            "/",
            "/chat/",
            "/chat/a/b",
            "/processes/",
            "/health/",
            "/CHAT",
            "/chat.json",
            "/openapi.json/x",
            "/" + "x" * 4000,
            "/%ff",
            "/..%2f..%2fetc%2fpasswd",
        ],
    )
    async def test_unknown_path_is_404(
        self, gateway: SharedServer, client: httpx.AsyncClient, path: str
    ) -> None:
        """A path the API does not have gets 404 JSON naming the method."""
        with trio.fail_after(ANSWER_SECONDS):
            response = await client.post(path, json={})
        assert assert_refused(response, 404, "POST")["code"] == "not_found"
        await assert_healthy(gateway)

    @pytest.mark.parametrize(
        ("process_id", "fragment"),
        [
            ("-x", "not a process id"),
            ("--help", "not a process id"),
            ("%00", "not a process id"),
            ("%ff", "not a process id"),
            ("%20", "not a process id"),
            ("...", "not a process id"),
            ("4a0c7d0e-0000-4000-8000", "not a process id"),
            ("4a0c7d0e-0000-4000-8000-0000000000000", "not a process id"),
            ("g" * 36, "not a process id"),
            ("x" * 5000, "not a process id"),
            ("{00000000-0000-4000-8000-000000000001}", "no active process"),
            ("urn:uuid:00000000-0000-4000-8000-000000000001", "no active process"),
            ("00000000000040008000000000000001", "no active process"),
            (str(uuid.UUID(int=0)), "no active process"),
        ],
    )
    async def test_unknown_process_id_is_404(
        self, gateway: SharedServer, client: httpx.AsyncClient, process_id: str, fragment: str
    ) -> None:
        """DELETE /chat/{id} with an id that names no run gets 404 process_not_found."""
        with trio.fail_after(ANSWER_SECONDS):
            response = await client.delete(f"/chat/{process_id}")
        assert assert_refused(response, 404, fragment)["code"] == "process_not_found"
        await assert_healthy(gateway)


# -- raw HTTP ------------------------------------------------------------------------------------


async def exchange(gateway: SharedServer, request: bytes) -> tuple[int, dict[bytes, bytes], bytes]:
    """Send raw bytes, return the first answer's status, headers and body (h11 parses it)."""
    host, port = gateway.url.removeprefix("http://").rsplit(":", 1)
    connection = h11.Connection(h11.CLIENT)
    status, headers, content = 0, {}, b""
    with trio.fail_after(ANSWER_SECONDS):
        stream = await trio.open_tcp_stream(host, int(port))
        async with stream:
            await stream.send_all(request)
            while True:
                event = connection.next_event()
                if event is h11.NEED_DATA:
                    connection.receive_data(await stream.receive_some(65536))
                elif isinstance(event, h11.Response):
                    status, headers = event.status_code, dict(event.headers)
                elif isinstance(event, h11.Data):
                    content += event.data
                elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                    return status, headers, content
