"""Embedded use: a model version loaded into the caller's process, without a server.

``modelserve.load(ref)`` loads a version exactly as the server does (core/loading.py: checksums,
runtime resolution, --trust-code rule, config.yaml signature overrides, warmup), and
``predict`` applies the server's input validation (core/validation.py), so that the same inputs
give the same outputs and the same InvalidInput messages. What it leaves out: no thread pool, no
port, no batching across callers, no hot reload, no metrics, logs or monitoring.

Thread safety: one instance serialises its ``predict`` calls on a lock (runtimes are not all safe
to call concurrently); to score in parallel, load one instance per thread.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from modelserve.config.embedded import registry_url_from_env, repository_from_env
from modelserve.core.columns import column_map, gather
from modelserve.core.loading import Loaded, load_version
from modelserve.core.refs import Target, resolve_ref
from modelserve.errors import InvalidInput, ModelServeError
from modelserve.protocol.v2 import rest
from modelserve.types import DATATYPES, InferInput, InferRequest, RequestedOutput, Signature, datatype_of

__all__ = ["EmbeddedModel", "load"]


def load(
    ref: str | Path,
    *,
    version: int | None = None,
    trust_code: bool = False,
    repository: str | Path | None = None,
    registry_url: str | None = None,
) -> EmbeddedModel:
    """Load the version ``ref`` names: a model directory (its latest version, or ``version``), a
    version directory, or ``registry:NAME@STAGE`` (the repository is ``repository`` or
    ``MODELSERVE_REPOSITORY``; the registry is ``registry_url``, ``MODELSERVE_REGISTRY_URL`` or the
    repository's own). Blocks while loading and warming up. Raises ConfigError, LoadError."""
    repo = Path(repository) if repository is not None else repository_from_env()
    target = resolve_ref(ref, version=version, repository=repo, registry_url=registry_url or registry_url_from_env())
    loaded = load_version(
        target.path,
        target.label,
        target.config,
        trust_code=trust_code,
        decode_sample=_decode_sample,
        checksums=target.checksums,
    )
    return EmbeddedModel(target, loaded)


class EmbeddedModel:
    """A loaded model version. ``predict`` blocks; ``close`` (or leaving a ``with``) unloads it."""

    def __init__(self, target: Target, loaded: Loaded) -> None:
        self._target = target
        self._loaded: Loaded | None = loaded
        self._plan = next(iter(loaded.plans.values()))  # the default signature
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return self._target.name

    @property
    def version(self) -> int:
        return self._target.version

    @property
    def path(self) -> Path:
        return self._target.path

    @property
    def signature(self) -> Signature:
        """The public signature (after config.yaml's overrides), as the server's metadata shows it."""
        return self._plan.signature

    @property
    def metadata(self) -> dict[str, Any]:
        """Name, version, platform and signature, shaped like the v2 model metadata response."""
        loaded = self._live()
        platform = getattr(loaded.runtime, "platform", loaded.resolved.entry.name)

        def specs(tensors: Any) -> list[dict[str, Any]]:
            return [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape)} for t in tensors]

        return {
            "name": self.name,
            "versions": [str(self.version)],
            "platform": platform,
            "inputs": specs(self.signature.inputs),
            "outputs": specs(self.signature.outputs),
        }

    def predict(self, inputs: Any, outputs: list[str] | None = None) -> dict[str, np.ndarray]:
        """Outputs by name (every output, or ``outputs`` in that order) for ``inputs``: a dict of
        arrays by input name, one array (a model with one input), or a pandas DataFrame (columns
        become inputs as in batch scoring). Numeric arrays are cast to an input's numeric datatype
        (float64 -> FP32), as a JSON client's numbers are; other mismatches, and wrong shapes, raise
        InvalidInput naming the input, as the server answers 400."""
        request = InferRequest(
            self._tensors(inputs), outputs=None if outputs is None else [RequestedOutput(name) for name in outputs]
        )
        with self._lock:
            loaded = self._live()
            feeds = self._plan.inputs(request)
            requested = self._plan.requested(request)
            raw = loaded.runtime.predict(feeds, requested)
        return {out.name: out.data for out in self._plan.outputs(raw, requested)}

    def close(self) -> None:
        """Unload the version (its memory is freed); later ``predict`` calls raise. Idempotent."""
        with self._lock:
            loaded, self._loaded = self._loaded, None
        if loaded is not None:
            loaded.runtime.unload()

    def __enter__(self) -> EmbeddedModel:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<EmbeddedModel {self.name!r} version {self.version}{'' if self._loaded else ' (closed)'}>"

    def _live(self) -> Loaded:
        if self._loaded is None:
            raise ModelServeError(f"model {self._target.label} was closed")
        return self._loaded

    def _tensors(self, inputs: Any) -> list[InferInput]:
        if isinstance(inputs, Mapping):
            arrays = {str(k): np.asarray(v) for k, v in inputs.items()}
        elif isinstance(inputs, np.ndarray | list | tuple):
            specs = self.signature.inputs
            if len(specs) != 1:
                raise InvalidInput(
                    f"model {self._target.label} has inputs {[s.name for s in specs]}: pass a dict of arrays by name"
                )
            arrays = {specs[0].name: np.asarray(inputs)}
        elif hasattr(inputs, "columns") and hasattr(inputs, "to_numpy"):  # a pandas DataFrame
            mapping = column_map(self.signature, [str(c) for c in inputs.columns], None, self._target.label)
            arrays = gather(self.signature, mapping, lambda c: inputs[c].to_numpy())
        else:
            raise InvalidInput(f"inputs must be a dict of arrays, an array or a pandas DataFrame, not {type(inputs)}")
        return [InferInput(name, *self._typed(name, array)) for name, array in arrays.items()]

    def _typed(self, name: str, array: np.ndarray) -> tuple[str, np.ndarray]:
        try:
            datatype = datatype_of(array)
        except TypeError as exc:
            raise InvalidInput(f"input {name!r} of model {self._target.label}: {exc}") from None
        if array.dtype.kind in "SU":  # BYTES travel as an object array of bytes, as the codecs decode them
            array = np.vectorize(_utf8, otypes=[object])(array) if array.size else array.astype(object)
        spec = self.signature.input(name)
        if spec is None or datatype == spec.datatype or datatype in spec.accepts:
            return datatype, array
        want = DATATYPES[spec.datatype]
        if array.dtype.kind in "biuf" and want.kind in "biuf" and np.can_cast(array.dtype, want, "same_kind"):
            return spec.datatype, array.astype(want)
        return datatype, array  # the plan refuses it with the server's message


def _utf8(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("utf-8")


def _decode_sample(body: bytes) -> InferRequest:
    """Warmup files are v2 REST inference request bodies, as for the server (bootstrap.py)."""
    return rest.decode_infer_request(body, None)
