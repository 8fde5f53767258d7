"""API key tokens: their format and their stored hash (issue #12).

A leaf because two layers need it: the registry stores keys (``repository``) and the server
verifies them (``server``), which may not import each other.

A token is ``ms_<key id>_<secret>``: the key id (12 hex digits) is public and names the key in
``modelserve auth list`` and in lookups; the secret is ``secrets.token_urlsafe(32)`` (256 random
bits). What is stored is HMAC-SHA256(salt, secret) with a random 16-byte salt per key. A slow KDF
(scrypt, PBKDF2) protects guessable passwords; a 256-bit random secret cannot be guessed, so a
fast hash is as safe here and keeps a cache miss on the request path cheap. Comparison is
``hmac.compare_digest`` (constant time).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

PREFIX = "ms_"
ROLES = ("infer", "admin")
_TOKEN = re.compile(r"ms_([0-9a-f]{12})_([A-Za-z0-9_-]{16,128})")


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
