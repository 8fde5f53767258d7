"""Errors shared by every layer.

Each error carries a protocol-neutral :class:`ErrorCode`; ``protocol/status.py`` maps the code to an
HTTP status (and, later, a gRPC status) at the edge. Core and runtime code never import a web
framework: they raise one of these, with a message that names the thing, the value and what was
expected.
"""

from __future__ import annotations

import enum
from typing import ClassVar


class ErrorCode(enum.Enum):
    INVALID_ARGUMENT = "invalid_argument"  # the client sent something wrong
    NOT_FOUND = "not_found"  # unknown model or version
    UNAVAILABLE = "unavailable"  # known, but not READY (loading, failed, unloading)
    PAYLOAD_TOO_LARGE = "payload_too_large"  # request body or message over the limit
    RESOURCE_EXHAUSTED = "resource_exhausted"  # queue full, too many requests
    UNIMPLEMENTED = "unimplemented"  # valid, but a feature we do not offer
    GONE = "gone"  # a version that was retired on purpose (archived in the registry)
    DEADLINE_EXCEEDED = "deadline_exceeded"  # the client's deadline passed before the work ran
    PERMISSION_DENIED = "permission_denied"  # an operation this server is configured to refuse
    UNAUTHENTICATED = "unauthenticated"  # no valid credentials (auth on, no key or a bad one)
    INTERNAL = "internal"  # our bug or a runtime exception


class ModelServeError(Exception):
    """Base of every error modelserve raises on purpose."""

    code: ErrorCode = ErrorCode.INTERNAL

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else type(self).__name__


class InvalidInput(ModelServeError, ValueError):
    code = ErrorCode.INVALID_ARGUMENT


class ModelNotFound(ModelServeError, LookupError):
    code = ErrorCode.NOT_FOUND


class VersionNotFound(ModelNotFound):
    pass


class VersionGone(ModelNotFound):
    """A retired version: the message names the one that replaced it."""

    code = ErrorCode.GONE


class NotFound(ModelServeError, LookupError):
    """Something else a request names does not exist (a request id awaiting feedback)."""

    code = ErrorCode.NOT_FOUND


class Unavailable(ModelServeError):
    """A service the request needs is not available (the registry database)."""

    code = ErrorCode.UNAVAILABLE


class ModelNotReady(ModelServeError):
    code = ErrorCode.UNAVAILABLE


class RequestTooLarge(ModelServeError):
    code = ErrorCode.PAYLOAD_TOO_LARGE


class Unsupported(ModelServeError):
    code = ErrorCode.UNIMPLEMENTED


class DeadlineExceeded(ModelServeError):
    code = ErrorCode.DEADLINE_EXCEEDED


class Forbidden(ModelServeError):
    code = ErrorCode.PERMISSION_DENIED


class Unauthenticated(ModelServeError):
    """No API key, or one that is unknown, malformed or revoked (REST 401, gRPC UNAUTHENTICATED)."""

    code = ErrorCode.UNAUTHENTICATED
    response_headers: ClassVar[list[tuple[str, str]]] = [("www-authenticate", 'Bearer realm="modelserve"')]


class RateLimited(ModelServeError):
    """A caller over its rate limit (REST 429 with ``Retry-After``, gRPC RESOURCE_EXHAUSTED)."""

    code = ErrorCode.RESOURCE_EXHAUSTED

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = max(1, retry_after_s)
        self.response_headers = [("retry-after", str(self.retry_after_s))]


class ConfigError(ModelServeError, ValueError):
    """A configuration file or option is invalid; the message quotes the file and the value."""

    code = ErrorCode.INVALID_ARGUMENT


class LoadError(ModelServeError):
    """A model version could not be loaded; the version goes to FAILED with this message."""


class RuntimeFailure(ModelServeError):
    """A runtime raised while predicting. Clients see only 'internal error' and a request id."""


class ModelLoadFailed(ModelServeError):
    """A load asked for through the repository API failed; the message gives each version's reason."""

    code = ErrorCode.INVALID_ARGUMENT
