"""Models made of other models (inference graphs): the contract between the core and routing.

A composite version is served like any other version (metadata, readiness, validation against its
signature, statistics, the response cache), but it computes on the event loop by calling other
models, not in the inference pool: a graph that held a pool thread while it waited for its nodes'
models, which need pool threads too, could deadlock the pool.

The core does not know how a composite is built (that is routing's business, which imports the
core): the manager is handed a :data:`Composer` at construction and calls it to load a directory
that holds a ``graph.yaml``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Protocol

import numpy as np

from modelserve.core.stats import Histogram
from modelserve.types import Signature


class Composite(Protocol):
    """A loaded graph. ``predict`` gets the validated inputs by name and returns every output."""

    platform: str
    signature: Signature
    node_seconds: Mapping[str, Histogram]  # per node: how long it took, for metrics (seconds)

    async def predict(self, feeds: dict[str, np.ndarray], requested: list[str] | None) -> dict[str, np.ndarray]:
        """Raises ModelServeError subclasses (InvalidInput, ModelNotReady, RuntimeFailure...), whose
        code the transports map; anything else is an internal error."""
        ...

    def close(self) -> None:
        """Release what the graph holds (it is being unloaded or replaced). Must not block."""
        ...


# (model name, its directory) -> a loaded Composite; raises LoadError with the reason it cannot serve
Composer = Callable[[str, Path], Awaitable[Composite]]
