"""Errors of the model registry.

:class:`RegistryError` is a database problem (locked, full, unreachable, a schema newer than this
code): the message names the operation and the database's own words, and the registry is left as it
was before the operation. :class:`RegistryConflict` is a request the registry's state refuses (a
version already registered, an illegal stage change, nothing to roll back to). Missing models and
versions raise :class:`~modelserve.errors.ModelNotFound` / :class:`~modelserve.errors.VersionNotFound`,
and malformed arguments :class:`~modelserve.errors.InvalidInput`, as everywhere else.
"""

from __future__ import annotations

from modelserve.errors import ErrorCode, ModelServeError


class RegistryError(ModelServeError):
    """The registry database failed; nothing was changed. The message says what and why."""

    code = ErrorCode.INTERNAL


class RegistryConflict(RegistryError):
    """The request contradicts the registry's state; nothing was changed. The message says how."""

    code = ErrorCode.INVALID_ARGUMENT
