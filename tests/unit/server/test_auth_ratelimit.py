"""Per-key rate limits without sockets: the token bucket's accuracy against the configured rate,
429's Retry-After and message, keys without a limit, limits that change on refresh, and the
merged registry + file key source and session checks (check_key)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime

import pytest

from modelserve.config import apikeys
from modelserve.errors import ErrorCode, Forbidden, RateLimited, Unauthenticated
from modelserve.server.auth import ADMIN, INFER, Authenticator, merged
from modelserve.server.ratelimit import RateLimiter


@dataclass(frozen=True)
class Key:
    key_id: str
    name: str
    role: str
    salt: str
    hash: str
    revoked_at: datetime | None = None
    rate_limit: float | None = None
    burst: int | None = None


def _key(name: str, rate_limit: float | None = None, burst: int | None = None) -> tuple[Key, str]:
    key_id, token = apikeys.new_token()
    _, salt, hashed = apikeys.hash_token(token)
    return Key(key_id, name, "infer", salt, hashed, None, rate_limit, burst), token


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(("rate", "burst"), [(50.0, 100), (7.0, 1), (0.5, 1), (400.0, 800)])
def test_admitted_requests_match_the_rate(rate: float, burst: int) -> None:
    """Offered far more than the rate for 60 s (one request every 1 ms): admitted = burst + rate x 60."""
    clock = Clock()
    limiter = RateLimiter(clock)
    limiter.configure({"k": (rate, burst)})
    admitted, seconds, step = 0, 60.0, 0.001
    for i in range(int(seconds / step)):
        clock.now = 100.0 + i * step
        admitted += limiter.admit("k") == 0.0
    expected = burst + rate * (seconds - step)
    assert abs(admitted - expected) <= 1, (admitted, expected)


def test_wait_is_the_time_to_the_next_token_and_unlimited_keys_pass() -> None:
    clock = Clock()
    limiter = RateLimiter(clock)
    limiter.configure({"k": (2.0, 1)})
    assert limiter.admit("k") == 0.0
    assert limiter.admit("k") == pytest.approx(0.5)
    clock.now += 0.5
    assert limiter.admit("k") == 0.0
    assert all(limiter.admit("other") == 0.0 for _ in range(10_000))
    limiter.configure({"k": (2.0, 1)})  # unchanged: the spent bucket is kept
    assert limiter.admit("k") > 0.0
    limiter.configure({"k": (10.0, 5)})  # changed: a new, full bucket
    assert sum(limiter.admit("k") == 0.0 for _ in range(10)) == 5
    limiter.configure({})
    assert limiter.admit("k") == 0.0 and limiter.limit("k") is None


def test_over_the_limit_is_429_with_retry_after_and_names_the_key() -> None:
    clock = Clock()
    key, token = _key("scorer", rate_limit=0.25)  # burst: 2 x 0.25 -> at least 1
    auth = Authenticator(lambda: [key], clock=clock, refresh_s=1e9)
    auth.check(token, INFER)
    with pytest.raises(RateLimited) as raised:
        auth.check(token, INFER)
    error = raised.value
    assert error.code is ErrorCode.RESOURCE_EXHAUSTED
    assert error.response_headers == [("retry-after", "4")] and error.retry_after_s == 4
    assert f"API key {key.key_id} ('scorer')" in error.message and "0.25 requests/s (burst 1)" in error.message
    clock.now += 4
    assert auth.check(token, INFER) is not None
    with pytest.raises(RateLimited):  # a request for too high a role spends a token as well
        auth.check(token, ADMIN)


def test_retry_after_is_at_least_one_second() -> None:
    key, token = _key("fast", rate_limit=100, burst=1)
    auth = Authenticator(lambda: [key], clock=Clock())
    auth.check(token, INFER)
    with pytest.raises(RateLimited) as raised:
        auth.check(token, INFER)
    assert raised.value.response_headers == [("retry-after", "1")]


def test_a_refresh_applies_new_limits() -> None:
    clock = Clock()
    key, token = _key("ci")
    keys = [key]
    auth = Authenticator(lambda: keys, clock=clock, refresh_s=2.0)
    for _ in range(1000):
        auth.check(token, INFER)
    keys = [replace(key, rate_limit=1.0, burst=1)]
    clock.now += 2.5
    auth.check(token, INFER)
    with pytest.raises(RateLimited):
        auth.check(token, INFER)


def test_merged_sources_and_check_key() -> None:
    (from_db, db_token), (from_file, file_token) = _key("db"), _key("file")
    clash = replace(from_file, name="clash")
    keys_in_file = [from_file]
    auth = Authenticator(merged(lambda: [from_db, clash], lambda: keys_in_file), clock=Clock(), refresh_s=0.0)
    assert auth.check(db_token, INFER) is not None
    assert auth.check_key(from_file.key_id, INFER).name == "clash"  # the first source wins a clash
    auth = Authenticator(merged(lambda: [from_db], lambda: keys_in_file), clock=Clock(), refresh_s=0.0)
    assert auth.check(file_token, INFER) is not None and auth.check_key(from_file.key_id, INFER).name == "file"
    with pytest.raises(Forbidden):
        auth.check_key(from_file.key_id, ADMIN)
    keys_in_file = [replace(from_file, revoked_at=datetime.now(UTC))]
    with pytest.raises(Unauthenticated, match="log in again"):
        auth.check_key(from_file.key_id, INFER)
    with pytest.raises(Unauthenticated):
        auth.check(file_token, INFER)
    with pytest.raises(Unauthenticated):
        auth.check_key("ffffffffffff", INFER)
