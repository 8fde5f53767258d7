"""The runtime interface.

A runtime knows one ML library and nothing about versions, queues or HTTP. Its constructor is
cheap; heavy libraries are imported inside :meth:`Runtime.load`, and a missing optional extra
raises :class:`~modelserve.errors.LoadError` naming the extra to install.

Threads: a runtime sets its library's thread count from ``config.threads`` (default 1) and never
leaves it at the library's default of "every core": the server runs several models, and
requests, side by side, so parallelism comes from the server's inference threads.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from modelserve.config.model import ModelConfig
from modelserve.errors import LoadError
from modelserve.types import Signature


class Runtime(Protocol):
    platform: str  # reported in model metadata, e.g. "onnxruntime_onnx"
    model: Any  # the library's own model object once loaded; None before load and after unload

    def load(self, artifact: Path, config: ModelConfig) -> Signature:
        """Load the file ``artifact``; return the native signature. Raises LoadError. Blocks."""
        ...

    def predict(self, inputs: Mapping[str, np.ndarray], outputs: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Run the model. ``inputs`` match the signature's names and datatypes (the core checked).

        ``outputs`` names the outputs wanted (None: all); a runtime may return more. BYTES outputs
        may be returned as str or bytes arrays. Thread-safe: may be called from several threads.
        """
        ...

    def unload(self) -> None:
        """Release the model's memory. Called once, after the last predict has returned."""
        ...


def missing_extra(library: str, extra: str) -> LoadError:
    return LoadError(f"{library} is not installed; install it with: pip install 'modelserve[{extra}]'")
