"""Dashboard login sessions: random ids stored hashed, expiry, ending, and a bounded table."""

from __future__ import annotations

from modelserve.server.dashboard.sessions import Sessions


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_session_maps_to_its_key_until_it_expires_or_ends() -> None:
    clock = Clock()
    sessions = Sessions(ttl_s=10, clock=clock)
    first, second = sessions.start("aaaaaaaaaaaa"), sessions.start("aaaaaaaaaaaa")
    assert first != second and len(first) >= 43  # 256 random bits, base64url
    assert first not in repr(sessions._sessions)  # only its hash is kept
    assert sessions.key_id(first) == "aaaaaaaaaaaa" and sessions.key_id("forged") is None
    sessions.end(first)
    assert sessions.key_id(first) is None and sessions.key_id(second) == "aaaaaaaaaaaa"
    clock.now = 10.0
    assert sessions.key_id(second) is None and len(sessions) == 0


def test_the_table_is_bounded() -> None:
    clock = Clock()
    sessions = Sessions(ttl_s=100, clock=clock, max_sessions=3)
    ids = [sessions.start(f"{i:012x}") for i in range(5)]
    assert len(sessions) == 3
    assert [sessions.key_id(i) for i in ids] == [None, None, f"{2:012x}", f"{3:012x}", f"{4:012x}"]
