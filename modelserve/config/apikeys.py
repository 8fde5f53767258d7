"""API key tokens: their format and their stored hash (issue #12).

A leaf because two layers need it: the registry stores keys (``repository``) and the server
verifies them (``server``), which may not import each other.

A token is ``ms_<key id>_<secret>``: the key id (12 hex digits) is public and names the key in
``modelserve auth list`` and in lookups; the secret is ``secrets.token_urlsafe(32)`` (256 random
bits). What is stored is HMAC-SHA256(salt, secret) with a random 16-byte salt per key. A slow KDF
(scrypt, PBKDF2) protects guessable passwords; a 256-bit random secret cannot be guessed, so a
fast hash is as safe here and keeps a cache miss on the request path cheap. Comparison is
``hmac.compare_digest`` (constant time).

A key may carry a rate limit: ``rate_limit`` requests per second on average, in bursts of up to
``burst`` requests (default twice the rate, at least 1). ``check_limit`` is the one rule, for the
registry, the keys file and the CLI alike.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import secrets

PREFIX = "ms_"
ROLES = ("infer", "admin")
KEY_ID = re.compile(r"[0-9a-f]{12}")
_TOKEN = re.compile(r"ms_([0-9a-f]{12})_([A-Za-z0-9_-]{16,128})")
MAX_RATE = 1e6  # requests/s; more is no limit at all


def new_token() -> tuple[str, str]:
    """A fresh (key id, token)."""
    key_id = secrets.token_hex(6)
    return key_id, f"{PREFIX}{key_id}_{secrets.token_urlsafe(32)}"


def split(token: str) -> tuple[str, str] | None:
    """(key id, secret) of a well-formed token, None otherwise."""
    match = _TOKEN.fullmatch(token)
    return None if match is None else (match.group(1), match.group(2))


def digest(salt: str, secret: str) -> str:
    """The stored hash of ``secret``: hex HMAC-SHA256 keyed by the hex ``salt``."""
    return hmac.new(bytes.fromhex(salt), secret.encode(), hashlib.sha256).hexdigest()


def hash_token(token: str) -> tuple[str, str, str]:
    """(key id, salt, hash) to store for ``token``. Raises ValueError for a malformed token."""
    parts = split(token)
    if parts is None:
        raise ValueError("malformed API key token")
    salt = secrets.token_hex(16)
    return parts[0], salt, digest(salt, parts[1])


def matches(token_secret: str, salt: str, stored: str) -> bool:
    """Whether ``token_secret`` hashes to ``stored`` (constant-time comparison)."""
    return hmac.compare_digest(digest(salt, token_secret), stored)


def check_limit(rate_limit: float | None, burst: int | None) -> tuple[float | None, int | None]:
    """``(rate_limit, burst)`` checked: a rate in requests/s, 0 < rate <= 1e6, and a burst (an
    integer >= 1) only with a rate. Raises ValueError saying what is wrong."""
    if rate_limit is None:
        if burst is not None:
            raise ValueError(f"burst {burst!r} needs a rate_limit")
        return None, None
    if isinstance(rate_limit, bool) or not isinstance(rate_limit, int | float):
        raise ValueError(f"rate_limit must be a number of requests per second, got {rate_limit!r}")
    if not (math.isfinite(rate_limit) and 0 < rate_limit <= MAX_RATE):
        raise ValueError(f"rate_limit must be > 0 and <= {MAX_RATE:g} requests per second, got {rate_limit!r}")
    if burst is not None and (isinstance(burst, bool) or not isinstance(burst, int) or burst < 1):
        raise ValueError(f"burst must be an integer >= 1, got {burst!r}")
    return float(rate_limit), burst


def burst_of(rate_limit: float, burst: int | None) -> int:
    """The bucket size of a key: ``burst``, else twice the rate (at least 1 request)."""
    return burst if burst is not None else max(1, math.ceil(2 * rate_limit))
