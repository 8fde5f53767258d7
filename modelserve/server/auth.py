"""API key authentication and the two roles, ``infer`` and ``admin`` (issue #12).

With ``auth`` on, every REST route and gRPC method needs a key except the public ones (liveness
and readiness; ``/metrics`` too when ``auth_metrics`` is off). A key is sent as
``Authorization: Bearer <token>`` or ``X-API-Key: <token>`` (gRPC: metadata ``authorization`` or
``x-api-key``). No key, or an unknown, malformed or revoked one: Unauthenticated (401 with
``WWW-Authenticate: Bearer``, gRPC UNAUTHENTICATED). A valid key whose role is too low: Forbidden
(403, PERMISSION_DENIED). ``admin`` may do everything ``infer`` may.

Cost on the hot path: keys are read from the store at most every ``refresh_s`` seconds (a
revoked key stops working within that; in the server, in a background thread), and a verified
token is remembered until the next refresh, so a request with a known token costs a dict lookup,
not a hash. An unknown token costs a dict lookup of its key id, then one HMAC. If the store
cannot be read, the keys read last stay in force (none before the first successful read: every
request is refused), and the error is logged.

Keys come from the registry, a keys file (``config/keysfile.py``), or both (``merged``); the file
is reread in the same refresh, only when it changed. A key with a rate limit gets a token bucket
(``server/ratelimit.py``): over it, RateLimited (429 with ``Retry-After``, gRPC
RESOURCE_EXHAUSTED). Every authenticated request counts, whatever it asks for.

``check_key`` serves the dashboard's login sessions (``dashboard/sessions.py``): a session holds a
key id, never the token, and is checked against the keys read last, so revoking the key ends it
within ``refresh_s``.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from modelserve.config import apikeys
from modelserve.errors import Forbidden, RateLimited, Unauthenticated
from modelserve.server.ratelimit import RateLimiter

log = logging.getLogger(__name__)

PUBLIC = "public"  # a route anyone may call
INFER = "infer"
ADMIN = "admin"
_RANK = {PUBLIC: 0, INFER: 1, ADMIN: 2}
IDENTITY = "modelserve.identity"  # the ASGI scope key of the authenticated Identity
_MAX_VERIFIED = 10_000  # the verified-token cache is cleared when it grows past this


class StoredKey(Protocol):
    """What the authenticator reads of a key (the registry's KeyRecord)."""

    @property
    def key_id(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def role(self) -> str: ...
    @property
    def salt(self) -> str: ...
    @property
    def hash(self) -> str: ...
    @property
    def revoked_at(self) -> datetime | None: ...
    @property
    def rate_limit(self) -> float | None: ...
    @property
    def burst(self) -> int | None: ...


@dataclass(frozen=True, slots=True)
class Identity:
    """Who called: the key's id, name (the audit log's actor) and role."""

    key_id: str
    name: str
    role: str


class Authenticator:
    """Checks tokens against the keys ``read_keys`` returns (every key, revoked ones included)."""

    def __init__(
        self,
        read_keys: Callable[[], Sequence[StoredKey]],
        *,
        refresh_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        background: bool = False,
    ) -> None:
        """``background``: rereads (all but the first) run in a thread, so that a request never
        waits for the store (the server's choice; tests read synchronously)."""
        self._background = background
        self._reading = False
        self._read_keys = read_keys
        self._refresh_s = refresh_s
        self._clock = clock
        self._keys: dict[str, StoredKey] = {}
        self._verified: dict[str, Identity] = {}
        self._read_at: float | None = None
        self._limiter = RateLimiter(clock)

    def identify(self, token: str | None) -> Identity:
        """The identity of ``token``. Raises Unauthenticated. May block on a store read every
        ``refresh_s`` seconds."""
        self._refresh()
        if not token:
            raise Unauthenticated("this server needs an API key: send Authorization: Bearer <token>")
        known = self._verified.get(token)
        if known is not None:
            return known
        parts = apikeys.split(token)
        key = None if parts is None else self._keys.get(parts[0])
        if (
            parts is None
            or key is None
            or key.revoked_at is not None
            or not apikeys.matches(parts[1], key.salt, key.hash)
        ):
            raise Unauthenticated("the API key is not valid (unknown, malformed or revoked)")
        if len(self._verified) >= _MAX_VERIFIED:
            self._verified.clear()
        identity = self._verified[token] = Identity(key.key_id, key.name, key.role)
        return identity

    def check(self, token: str | None, needed: str) -> Identity | None:
        """The caller's identity if it may call something that needs role ``needed`` (None for a
        public one). Raises Unauthenticated or Forbidden."""
        if needed == PUBLIC:
            return None
        return self._allow(self.identify(token), needed)

    def check_key(self, key_id: str, needed: str) -> Identity:
        """``check`` for a caller known by key id (a dashboard session): the key must still exist
        and not be revoked. Raises Unauthenticated, Forbidden or RateLimited."""
        self._refresh()
        key = self._keys.get(key_id)
        if key is None or key.revoked_at is not None:
            raise Unauthenticated(f"API key {key_id} was revoked or removed: log in again")
        return self._allow(Identity(key.key_id, key.name, key.role), needed)

    def _allow(self, identity: Identity, needed: str) -> Identity:
        """``identity`` if it is under its rate limit and its role suffices."""
        wait = self._limiter.admit(identity.key_id)
        if wait > 0.0:
            rate, burst = self._limiter.limit(identity.key_id) or (0.0, 0)
            seconds = max(1, math.ceil(wait))
            raise RateLimited(
                f"API key {identity.key_id} ({identity.name!r}) is over its rate limit of {rate:g} requests/s "
                f"(burst {burst}); retry in {seconds} s",
                seconds,
            )
        if _RANK.get(identity.role, 0) < _RANK.get(needed, _RANK[ADMIN]):
            raise Forbidden(
                f"API key {identity.key_id} ({identity.name!r}) has role {identity.role}; this needs {needed}"
            )
        return identity

    def check_http(self, scope: dict[str, Any], needed: str) -> None:
        """``check`` for an ASGI request; records the identity in ``scope[IDENTITY]``."""
        scope[IDENTITY] = self.check(token_from(_pairs(scope["headers"])), needed)

    def _refresh(self) -> None:
        now = self._clock()
        if self._read_at is not None and now - self._read_at < self._refresh_s:
            return
        first = self._read_at is None
        self._read_at = now
        if self._background and not first:
            if not self._reading:  # one reread at a time; requests meanwhile use the keys read last
                self._reading = True
                threading.Thread(target=self._reread, name="modelserve-auth-keys", daemon=True).start()
            return
        self._read()

    def _reread(self) -> None:
        try:
            self._read()
        finally:
            self._reading = False

    def _read(self) -> None:
        """Replace the keys with the store's (both dicts swapped whole: readers need no lock)."""
        try:
            keys = {key.key_id: key for key in self._read_keys()}
            limits = {
                key.key_id: (key.rate_limit, apikeys.burst_of(key.rate_limit, key.burst))
                for key in keys.values()
                if key.rate_limit is not None and key.revoked_at is None
            }
        except Exception:
            log.exception("cannot read the API keys; the keys read before stay in force")
            return
        self._limiter.configure(limits)
        self._keys = keys
        self._verified = {}  # a revoked key must not outlive this refresh


def merged(*sources: Callable[[], Sequence[StoredKey]]) -> Callable[[], list[StoredKey]]:
    """One ``read_keys`` over several stores (the registry, a keys file). A key id found in two
    is taken from the first, and the clash is logged; any store failing fails the read (the keys
    read before stay in force)."""

    def read() -> list[StoredKey]:
        found: dict[str, StoredKey] = {}
        for source in sources:
            for key in source():
                if key.key_id in found:
                    log.warning("API key %s is defined twice (registry and keys file); the first is used", key.key_id)
                    continue
                found[key.key_id] = key
        return list(found.values())

    return read


def token_from(headers: Iterable[tuple[str, str]]) -> str | None:
    """The token of ``Authorization: Bearer`` or ``X-API-Key`` (names lower case)."""
    for name, value in headers:
        if name == "authorization":
            scheme, _, credentials = value.strip().partition(" ")
            if scheme.lower() == "bearer" and credentials.strip():
                return credentials.strip()
        elif name == "x-api-key" and value.strip():
            return value.strip()
    return None


def identity_of(scope: Mapping[str, Any]) -> Identity | None:
    """The identity ``check_http`` recorded for a request, None without auth or on a public route."""
    found = scope.get(IDENTITY)
    return found if isinstance(found, Identity) else None


def _pairs(headers: Iterable[tuple[bytes, bytes]]) -> Iterable[tuple[str, str]]:
    return ((k.decode("latin-1"), v.decode("latin-1")) for k, v in headers)
