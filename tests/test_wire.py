"""The wire models: what they send, and that API.md's tables say the same."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

import pydantic
import pytest

from cc2api import errors
from cc2api.openapi import openapi_document
from cc2api.wire import (
    EVENTS,
    FINAL_STATUSES,
    RUN_ERROR_CODES,
    Approval,
    Document,
    DoneEvent,
    ErrorCode,
    ErrorEvent,
    Health,
    PoolHealth,
    Process,
    RunFailure,
    Status,
    StoreHealth,
    as_final,
)

from .helpers import REPO

API_MD = (REPO / "API.md").read_text()


def tables(text: str) -> list[list[list[str]]]:
    """Return every Markdown table in ``text``: rows of cells, the header row first."""
    found: list[list[list[str]]] = []
    current: list[list[str]] = []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            if not all(re.fullmatch(r"-+", cell) for cell in cells):
                current.append(cells)
        elif current:
            found.append(current)
            current = []
    return found


def table(header: list[str]) -> list[list[str]]:
    """Return the rows of API.md's first table whose header is ``header``."""
    for rows in tables(API_MD):
        if rows[0] == header:
            return rows[1:]
    raise AssertionError(f"API.md has no table headed {header}")


def ticked(cell: str) -> str:
    """Return the one backticked word a cell holds."""
    found = re.fullmatch(r"`([^`]+)`", cell)
    assert found, cell
    return found.group(1)


def paragraph(starting: str) -> str:
    """Return API.md's paragraph that starts with ``starting``."""
    for block in API_MD.split("\n\n"):
        if block.startswith(starting):
            return block
    raise AssertionError(f"API.md has no paragraph starting {starting!r}")


def plain_wire(value: Any) -> None:
    """Fail unless ``value`` holds only JSON's own Python types (no enum members)."""
    assert value is None or type(value) in (str, int, float, bool, list, dict), value
    if isinstance(value, dict):
        for item in value.values():
            plain_wire(item)
    if isinstance(value, list):
        for item in value:
            plain_wire(item)


NOW = datetime(2026, 11, 27, 14, 12, 48, 926131, tzinfo=UTC)


class TestApiMdTables:
    def test_events_table_lists_every_event_and_its_fields(self) -> None:
        """API.md's event table names every event in order, each with its model's fields."""
        rows = table(["Event", "Data", "When"])
        assert [ticked(row[0]) for row in rows] == list(EVENTS)
        for row in rows:
            model = EVENTS[ticked(row[0])]
            if model is not None:
                assert re.findall(r'"(\w+)"', row[1]) == list(model.model_fields), row[0]

    def test_error_event_codes_table_matches_the_run_error_codes(self) -> None:
        """API.md's table of `error` event codes lists exactly the codes a run fails with."""
        rows = table(["code", "meaning"])
        codes = [ticked(row[0]) for row in rows]
        assert len(codes) == len(set(codes))
        assert set(codes) == {str(code) for code in RUN_ERROR_CODES}

    def test_refusal_table_names_error_codes_with_their_classes_status(self) -> None:
        """Each code in API.md's refusal table is an ErrorCode, at its class's HTTP status."""
        defaults = {cls.code: cls.status for cls in _api_errors()}
        for status, code, _ in table(["Status", "code", "when"]):
            assert ticked(code) in set(ErrorCode), code
            if ErrorCode(ticked(code)) in defaults:
                assert int(status) == defaults[ErrorCode(ticked(code))], code

    def test_status_table_lists_every_status_and_whether_it_is_final(self) -> None:
        """API.md's status table names every Status, in order, each final exactly when it is."""
        rows = [(ticked(name), final) for name, final, _ in table(["status", "final", "meaning"])]
        assert [name for name, _ in rows] == [str(status) for status in Status]
        for name, final in rows:
            assert (final == "yes") is Status(name).final, name

    def test_final_statuses_are_the_ones_done_describes(self) -> None:
        """API.md's account of `done` names each final status, and no other."""
        text = paragraph("`status` in `done` is")
        described = set(re.findall(r"`(\w+)` \(", text))
        assert described == {str(status) for status in FINAL_STATUSES}

    def test_live_statuses_are_the_ones_processes_describes(self) -> None:
        """API.md's account of GET /processes names each status a live run can have."""
        text = paragraph("`status` is `queued`").removeprefix("`status` is").split(", or,")[0]
        described = set(re.findall(r"`(\w+)`", re.sub(r"\([^)]*\)", "", text)))
        assert described == {str(status) for status in Status if not status.final}


def _api_errors() -> list[type[errors.ApiError]]:
    found: list[type[errors.ApiError]] = []
    todo: list[type[errors.ApiError]] = [errors.ApiError]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return found


class TestModels:
    def test_done_event_sends_plain_json_values(self) -> None:
        """A done event's dict has its five keys and plain str values, no enum members."""
        done = DoneEvent(
            process_id="p", status=Status.COMPLETED, exit_code=0, session_id=None, duration_ms=7
        ).wire()
        assert done == {
            "process_id": "p",
            "status": "completed",
            "exit_code": 0,
            "session_id": None,
            "duration_ms": 7,
        }
        plain_wire(done)

    def test_done_event_refuses_a_live_status(self) -> None:
        """A done event cannot carry a status that is not final."""
        with pytest.raises(pydantic.ValidationError):
            DoneEvent(
                process_id="p",
                status=Status.RUNNING,  # type: ignore[arg-type]
                exit_code=0,
                session_id=None,
                duration_ms=7,
            )

    def test_health_leaves_out_an_unset_reason(self) -> None:
        """Health says `reason` only when there is one."""
        fields: dict[str, Any] = {
            "claude_version": "2.1.197",
            "active_processes": 0,
            "running": 0,
            "queued": 0,
            "version": "0.1.0",
            "store": StoreHealth(kind="sqlite", backlog_bytes=0, backlog_peak_bytes=0),
            "pool": PoolHealth(
                size=0,
                idle=0,
                starting=0,
                profiles=0,
                hits=0,
                misses=0,
                spawned=0,
                retired={},
                rss_bytes=0,
                max_rss_bytes=0,
            ),
        }
        assert "reason" not in Health(status="ok", **fields).wire()
        degraded = Health(status="degraded", reason="no CLI", **fields).wire()
        assert degraded["reason"] == "no CLI"

    def test_document_leaves_out_unset_error_fields(self) -> None:
        """A document has detail, code and error only when they are given; null fields stay."""
        fields: dict[str, Any] = {
            "process_id": "p",
            "session_id": None,
            "exit_code": None,
            "result": None,
            "messages": [],
        }
        assert set(Document(status=Status.COMPLETED, **fields).wire()) == set(fields) | {"status"}
        error = RunFailure(ErrorCode.TIMEOUT, "too slow").event(None, "")
        failed = Document(
            status=Status.TIMEOUT, detail="too slow", code=ErrorCode.TIMEOUT, error=error, **fields
        ).wire()
        assert failed["error"] == {
            "code": "timeout",
            "message": "too slow",
            "exit_code": None,
            "stderr_tail": "",
        }
        plain_wire(failed)

    def test_error_event_refuses_a_code_runs_do_not_fail_with(self) -> None:
        """An error event's code is one a run fails with, not any error code."""
        with pytest.raises(pydantic.ValidationError):
            ErrorEvent(
                code=ErrorCode.QUEUE_FULL,  # type: ignore[arg-type]
                message="m",
                exit_code=1,
                stderr_tail="",
            )

    def test_process_writes_times_in_utc_with_z(self) -> None:
        """A listed run's times are ISO 8601 with Z, and an unfinished one's end is null."""
        listed = Process(
            process_id="p",
            pid=None,
            cwd="/",
            model=None,
            session_id=None,
            started_at=NOW,
            status=Status.QUEUED,
            queue_position=1,
            detached=False,
            finished_at=None,
            last_event_id=1,
            pending_approvals=0,
        ).wire()
        assert listed["started_at"] == "2026-11-27T14:12:48.926131Z"
        assert listed["finished_at"] is None
        assert listed["status"] == "queued"

    def test_approval_passes_the_cli_input_on_as_it_came(self) -> None:
        """An approval's input reaches json.dumps unchanged: NaN and lone surrogates too."""
        tool_input = {"\udc00": [float("nan"), 10**30], "x": "\ud800"}
        sent = Approval(
            approval_id="a", tool_name="Bash", input=tool_input, suggestions=[], requested_at=NOW
        ).wire()
        assert json.dumps(sent["input"]) == json.dumps(tool_input)
        assert sent["refused"] is None
        assert list(sent) == list(Approval.model_fields)

    def test_models_are_frozen(self) -> None:
        """A wire model cannot be changed once built."""
        error = RunFailure(ErrorCode.CLI_FAILED, "exit 1").event(1, "tail")
        with pytest.raises(pydantic.ValidationError):
            error.message = "other"

    def test_final_statuses(self) -> None:
        """Exactly completed, failed, cancelled, timeout, interrupted and lost are final."""
        assert {s for s in Status if s.final} == {
            Status.COMPLETED,
            Status.FAILED,
            Status.CANCELLED,
            Status.TIMEOUT,
            Status.INTERRUPTED,
            Status.LOST,
        }


class TestErrorCodes:
    def test_every_api_error_has_an_error_code(self) -> None:
        """Each ApiError class's default code is an ErrorCode member."""
        for cls in _api_errors():
            assert isinstance(cls.code, ErrorCode), cls

    def test_an_unlisted_code_is_refused(self) -> None:
        """An ApiError cannot carry a code the enum does not list."""
        with pytest.raises(ValueError, match="not_a_code"):
            errors.NotFound("gone", code="not_a_code")  # type: ignore[arg-type]

    def test_only_a_final_status_is_typed_final(self) -> None:
        """as_final gives back a final status as it is and refuses a live one."""
        assert as_final(Status.CANCELLED) is Status.CANCELLED
        with pytest.raises(ValueError, match="cancelling"):
            as_final(Status.CANCELLING)

    def test_error_body_is_plain_json(self) -> None:
        """An error's body is detail and code, the code as a plain str."""
        body = errors.Forbidden("no", code=ErrorCode.CWD_FORBIDDEN).body()
        assert body == {"detail": "no", "code": "cwd_forbidden"}
        plain_wire(body)


class TestOpenApiComponents:
    def test_every_reference_resolves(self) -> None:
        """Every $ref in the OpenAPI document names one of its component schemas."""
        document = openapi_document()
        names = set(document["components"]["schemas"])
        refs = re.findall(r'"\$ref": "#/components/schemas/([^"]+)"', json.dumps(document))
        assert refs
        assert set(refs) <= names

    def test_every_event_model_is_a_component(self) -> None:
        """Each SSE event's data schema is generated from its model into the components."""
        schemas = openapi_document()["components"]["schemas"]
        for model in EVENTS.values():
            if model is not None:
                assert schemas[model.__name__]["required"] == [
                    name for name, field in model.model_fields.items() if field.is_required()
                ]
