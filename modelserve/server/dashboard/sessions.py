"""Dashboard login sessions: an opaque random id, kept by the browser in a cookie, mapped here to
the id of the API key that logged in, until it expires.

The session id is ``secrets.token_urlsafe(32)`` (256 random bits) and is stored only as its
SHA-256, so the table (a dict in this process) holds nothing a reader could send back. A session
never holds the token: each request checks the key id against the keys the Authenticator read
last (``Authenticator.check_key``), so a revoked or removed key ends its sessions within the
refresh interval. Sessions live in one process: a restart, or another worker of ``--workers N``,
asks for a new login.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections.abc import Callable

TTL_S = 8 * 3600.0  # a login lasts a working day
MAX_SESSIONS = 10_000  # past this, the oldest session is dropped to make room


class Sessions:
    def __init__(
        self, ttl_s: float = TTL_S, clock: Callable[[], float] = time.monotonic, max_sessions: int = MAX_SESSIONS
    ) -> None:
        self.ttl_s = ttl_s
        self._clock = clock
        self._max = max_sessions
        self._lock = threading.Lock()
        self._sessions: dict[str, tuple[str, float]] = {}  # sha256(session id) -> (key id, expiry)

    def start(self, key_id: str) -> str:
        """A new session of key ``key_id``; returns its id (for the cookie, shown only now)."""
        session_id = secrets.token_urlsafe(32)
        now = self._clock()
        with self._lock:
            if len(self._sessions) >= self._max:
                self._prune(now)
            while len(self._sessions) >= self._max:  # insertion order: the oldest first
                del self._sessions[next(iter(self._sessions))]
            self._sessions[_digest(session_id)] = (key_id, now + self.ttl_s)
        return session_id

    def key_id(self, session_id: str) -> str | None:
        """The key id of a live session, None for an unknown or expired one (which is forgotten)."""
        digest = _digest(session_id)
        found = self._sessions.get(digest)
        if found is None:
            return None
        key_id, expires = found
        if self._clock() >= expires:
            self.end(session_id)
            return None
        return key_id

    def end(self, session_id: str) -> None:
        with self._lock:
            self._sessions.pop(_digest(session_id), None)

    def __len__(self) -> int:
        return len(self._sessions)

    def _prune(self, now: float) -> None:
        for digest in [d for d, (_, expires) in self._sessions.items() if expires <= now]:
            del self._sessions[digest]


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("utf-8", "replace")).hexdigest()
