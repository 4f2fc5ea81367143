"""The global failed-login budget: rotating source addresses does not buy more guesses."""

from __future__ import annotations

import re

import httpx
import pytest

from cc2api.auth import MAX_TRACKED_ADDRESSES, LoginThrottle
from cc2api.errors import TooManyFailedLogins

from .helpers import AUTH, make_settings, served

pytestmark = pytest.mark.timeout(90)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def throttle(clock: Clock, *, per_address: int = 10, global_: int = 5) -> LoginThrottle:
    return LoginThrottle(
        per_address, window=60, lockout=300, clock=clock, max_failures_global=global_
    )


def refusal(login: LoginThrottle, address: str) -> TooManyFailedLogins:
    with pytest.raises(TooManyFailedLogins) as raised:
        login.check(address)
    return raised.value


class TestGlobalBudget:
    def test_failures_from_many_addresses_lock_out_new_ones(self) -> None:
        """Failures spread over addresses, each under its own limit, add up to a lockout."""
        clock = Clock()
        login = throttle(clock)
        for i in range(4):
            login.check(f"127.0.0.{i + 2}")
            login.failed(f"127.0.0.{i + 2}")
        login.check("127.0.0.99")  # four failures: under the budget
        login.failed("127.0.0.6")
        error = refusal(login, "127.0.0.99")
        assert error.headers() == {"Retry-After": "300"}
        assert "127.0.0.99" not in error.detail
        assert "on this server" in error.detail
        refusal(login, "127.0.0.2")

    def test_recently_successful_addresses_keep_working(self) -> None:
        """An address that logged in within the lockout period is not locked out globally."""
        clock = Clock()
        login = throttle(clock)
        login.succeeded("10.0.0.1")
        clock.now = 200
        for i in range(5):
            login.failed(f"127.0.1.{i}")
        login.check("10.0.0.1")
        clock.now = 299.9
        login.check("10.0.0.1")
        clock.now = 300  # its success is now a whole lockout period old
        refusal(login, "10.0.0.1")

    def test_lockout_ends_after_the_lockout_period(self) -> None:
        """The global lockout lasts AUTH_LOCKOUT_SECONDS, then everyone may try again."""
        clock = Clock()
        login = throttle(clock)
        clock.now = 10
        for i in range(5):
            login.failed(f"127.0.1.{i}")
        clock.now = 309.5
        assert refusal(login, "127.0.0.99").headers() == {"Retry-After": "1"}
        clock.now = 310
        login.check("127.0.0.99")

    def test_only_failures_in_the_window_count(self) -> None:
        """Failures older than AUTH_FAILURE_WINDOW_SECONDS do not count toward the budget."""
        clock = Clock()
        login = throttle(clock)
        for moment in (0, 20, 40, 60, 80, 100):  # never five within 60 s
            clock.now = moment
            login.failed(f"127.0.2.{moment}")
            login.check("127.0.0.99")
        for moment in (101, 102):
            clock.now = moment
            login.failed(f"127.0.2.{moment}")  # 60, 80, 100, 101, 102
        refusal(login, "127.0.0.99")

    def test_zero_turns_it_off(self) -> None:
        """AUTH_MAX_FAILURES_GLOBAL=0 leaves only the per-address lockout."""
        clock = Clock()
        login = throttle(clock, global_=0)
        for i in range(1000):
            login.failed(f"127.0.{i // 250}.{i % 250}")
        login.check("127.0.0.99")

    def test_remembered_successes_are_bounded(self) -> None:
        """At most MAX_TRACKED_ADDRESSES successful addresses are remembered; the oldest go."""
        clock = Clock()
        login = throttle(clock)
        for i in range(MAX_TRACKED_ADDRESSES + 1):
            login.succeeded(f"a{i}")
        for i in range(5):
            login.failed(f"b{i}")
        login.check(f"a{MAX_TRACKED_ADDRESSES}")
        login.check("a1")
        refusal(login, "a0")


def from_address(address: str, auth: tuple[str, str]) -> httpx.AsyncClient:
    """A client whose connections leave from ``address`` (any of 127.0.0.0/8 is loopback)."""
    transport = httpx.AsyncHTTPTransport(local_address=address)
    return httpx.AsyncClient(transport=transport, auth=auth, timeout=60)


class TestOverHTTP:
    async def test_rotating_addresses_are_stopped_while_known_clients_get_in(
        self, fake_environ: dict[str, str]
    ) -> None:
        """Wrong passwords from many loopback addresses lock out all but a recent client."""
        settings = make_settings(
            auth_max_failures=3, auth_max_failures_global=6, auth_lockout_seconds=300
        )
        async with served(settings, fake_environ) as gw:
            url = f"{gw.url}/processes"
            async with from_address("127.0.0.1", AUTH) as known:
                assert (await known.get(url)).status_code == 200
                codes = []
                for i in range(2, 8):  # one guess each: every address stays under 3
                    async with from_address(f"127.0.0.{i}", ("admin", "wrong")) as guesser:
                        codes.append((await guesser.get(url)).status_code)
                async with from_address("127.0.0.8", ("admin", "wrong")) as guesser:
                    guessing = await guesser.get(url)
                async with from_address("127.0.0.9", AUTH) as newcomer:
                    right_but_new = await newcomer.get(url)
                still_in = await known.get(url)
        assert codes == [401] * 6
        for locked in (guessing, right_but_new):
            assert locked.status_code == 429
            assert locked.json()["code"] == "too_many_failed_logins"
            assert 299 <= int(locked.headers["retry-after"]) <= 300
        # A guess and the right password from a new address get the same answer.
        same = [re.sub(r"\d+", "N", r.json()["detail"]) for r in (guessing, right_but_new)]
        assert same[0] == same[1]
        assert still_in.status_code == 200
