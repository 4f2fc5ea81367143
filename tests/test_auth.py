"""Basic auth: only the exact credentials pass, whatever arrives."""

from __future__ import annotations

import base64

import pytest

from cc2api.auth import BasicAuth
from cc2api.errors import Unauthorized

AUTH = BasicAuth("admin", "s3cret:with:colons")


def basic(raw: bytes) -> str:
    return "Basic " + base64.b64encode(raw).decode()


class TestBasicAuth:
    def test_accepts_right_credentials(self) -> None:
        """The configured user and password pass, colons in the password included."""
        AUTH.check(basic(b"admin:s3cret:with:colons"))

    def test_scheme_is_case_insensitive(self) -> None:
        """'basic' in any case is the Basic scheme."""
        AUTH.check(basic(b"admin:s3cret:with:colons").replace("Basic", "bAsIc"))

    @pytest.mark.parametrize(
        "header",
        [
            None,
            "",
            "Basic",
            "Basic !!!notbase64",
            basic(b"admin"),
            basic(b"admin:wrong"),
            basic(b"root:s3cret:with:colons"),
            basic(b"\xff\xfe:\xff"),
            "Bearer abc",
            "Basic " + base64.b64encode(b"admin:s3cret:with:colons").decode()[:-2],
        ],
    )
    def test_refuses_anything_else(self, header: str | None) -> None:
        """Missing, malformed, other-scheme and wrong credentials all get 401."""
        with pytest.raises(Unauthorized) as caught:
            AUTH.check(header)
        assert caught.value.status == 401
        assert "s3cret" not in caught.value.detail
