"""Checks shared by the REST and gRPC model control (load/unload) endpoints."""

from __future__ import annotations

from collections.abc import Iterable

from modelserve.errors import Forbidden, Unsupported
from modelserve.protocol.names import check_model_name
from modelserve.server.info import CONTROL_DISABLED

# Triton clients send this with every unload; modelserve has no dependent models, so it is moot.
_MOOT = frozenset({"unload_dependents"})


def checked_target(enabled: bool, name: str, parameters: Iterable[str]) -> str:
    """The model name of an allowed load/unload request.

    Raises Forbidden when the control API is off, InvalidInput for a name that could not be a
    model directory, and Unsupported for Triton's config and file overrides.
    """
    if not enabled:
        raise Forbidden(CONTROL_DISABLED)
    check_model_name(name)
    unsupported = sorted(set(parameters) - _MOOT)
    if unsupported:
        raise Unsupported(
            f"load/unload parameters {unsupported} are not supported; "
            "put the model's files and config.yaml in the repository directory instead"
        )
    return name
