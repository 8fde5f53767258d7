"""The runtime interface.

A runtime knows one ML library and nothing about versions, queues or HTTP. Its constructor is
cheap; heavy libraries are imported inside :meth:`Runtime.load`, and a missing optional extra
raises :class:`~modelserve.errors.LoadError` naming the extra to install.

Signatures: a runtime serves one signature, the one :meth:`Runtime.load` returns. A runtime whose
models hold several (a TensorFlow SavedModel) also implements :class:`MultiSignatureRuntime`; the
core then accepts the request parameter ``signature_name`` and passes it to ``predict``. Runtimes
with one signature implement nothing more and pay nothing per request.

Threads: a runtime sets its library's thread count from ``config.threads`` (default 1) and never
leaves it at the library's default of "every core": the server runs several models, and
requests, side by side, so parallelism comes from the server's inference threads.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from modelserve.config.model import ModelConfig, SignatureOverride
from modelserve.errors import LoadError
from modelserve.types import Signature, TensorSpec


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


# the name of the signature that load() returns (TF Serving's default; "" in a request means it too)
DEFAULT_SIGNATURE = "serving_default"


@runtime_checkable
class MultiSignatureRuntime(Runtime, Protocol):
    """Optional capability: a model with several named signatures (checked once, at load)."""

    def signatures(self) -> Mapping[str, Signature]:
        """After load: every signature by name, the default (the one load returned) first."""
        ...

    def predict(
        self, inputs: Mapping[str, np.ndarray], outputs: Sequence[str] | None = None, signature: str | None = None
    ) -> dict[str, np.ndarray]:
        """As :meth:`Runtime.predict`, for the signature named (None: the default)."""
        ...


def missing_extra(library: str, extra: str) -> LoadError:
    return LoadError(f"{library} is not installed; install it with: pip install 'modelserve[{extra}]'")


def declared_signature(override: SignatureOverride | None, what: str, how: str) -> Signature:
    """The complete signature ``override`` declares. Raises LoadError, ending with ``how`` to
    declare one, if it is absent, has no input or output, or leaves out a datatype or shape."""
    if override is None or not override.inputs or not override.outputs:
        raise LoadError(f"{what} need a signature (inputs and outputs); {how}")
    incomplete = [t.name for t in (*override.inputs, *override.outputs) if t.datatype is None or t.shape is None]
    if incomplete:
        raise LoadError(f"{what} need a datatype and a shape for every tensor; {incomplete} lack one; {how}")
    return Signature(
        inputs=tuple(TensorSpec(t.name, t.datatype or "", t.shape or ()) for t in override.inputs),
        outputs=tuple(TensorSpec(t.name, t.datatype or "", t.shape or ()) for t in override.outputs),
    )
