"""TensorFlow SavedModels, laid out as TF Serving lays them out: ``<model>/<version>/saved_model.pb``
beside ``variables/`` (and ``assets/``). The registry hands over ``saved_model.pb``; its directory
is loaded with ``tf.saved_model.load``.

Signatures: every signature of the SavedModel is served (:class:`MultiSignatureRuntime`); the
default is ``serving_default`` (when a model has none, the first by name, with a warning). Inputs
and outputs are listed in name order, as TF Serving's maps are, so config.yaml's ``signature:``
overrides (which apply to the default signature only) match them by that position. A signature
with a dtype that has no protocol datatype (bfloat16, complex, resource...) is left out with a
warning; if that is the default one, the model fails to load, naming the tensor. An input of
unknown rank is reported with shape ``[]``: give its shape in config.yaml.

Assets: a SavedModel names each asset file by a string in ``saved_model.pb``, and TensorFlow
joins it to ``assets/`` with ``os.path.join``, so an absolute name (or ``..``) would read any file
the server can read, and a model could serve its contents. Before TensorFlow loads the model,
every asset name must lie inside ``assets/`` (:func:`~modelserve.runtimes._paths.confined`).

Threads: TensorFlow's intra-op and inter-op pools are process-wide and can be sized only before
TensorFlow initialises. The first TensorFlow model to load sizes both from its ``threads``
(default 1); a later model asking for another count runs on the same pools, with a warning. If
TensorFlow was initialised before (by other code in the process), the pools keep their sizes.

Log noise: ``TF_CPP_MIN_LOG_LEVEL`` is set to 2 (errors only) before TensorFlow is first imported,
unless the user set it. This breaks the rule that only ``config/`` touches the environment: the
variable is TensorFlow's own, read once by its C++ code at import, and no API reaches it.
"""

from __future__ import annotations

import gc
import importlib
import logging
import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from modelserve.config.model import ModelConfig
from modelserve.errors import LoadError
from modelserve.runtimes._paths import confined
from modelserve.runtimes.base import DEFAULT_SIGNATURE, missing_extra
from modelserve.types import Signature, TensorSpec

log = logging.getLogger(__name__)

# tf.DType.name -> protocol datatype
_TF_TYPES = {
    "bool": "BOOL",
    "uint8": "UINT8",
    "uint16": "UINT16",
    "uint32": "UINT32",
    "uint64": "UINT64",
    "int8": "INT8",
    "int16": "INT16",
    "int32": "INT32",
    "int64": "INT64",
    "float16": "FP16",
    "float32": "FP32",
    "float64": "FP64",
    "string": "BYTES",
}

_threads_lock = threading.Lock()
_threads: int | None = None  # the thread count TensorFlow's process-wide pools were sized for


class TensorFlowRuntime:
    platform = "tensorflow_savedmodel"

    def __init__(self) -> None:
        self.model: Any = None
        self._functions: dict[str, Any] = {}  # signature name -> concrete function, default first
        self._signatures: dict[str, Signature] = {}
        self._default = DEFAULT_SIGNATURE
        self._constant: Any = None  # tf.constant

    def load(self, artifact: Path, config: ModelConfig) -> Signature:
        tf = _import_tensorflow()
        directory = artifact.parent
        _size_thread_pools(tf, config.threads, directory)
        _check_assets(artifact)
        try:
            model = tf.saved_model.load(str(directory))
        except Exception as exc:  # TensorFlow raises OSError, DecodeError, ValueError... for bad files
            raise LoadError(f"{artifact.name}: TensorFlow cannot load the SavedModel: {_first_line(exc)}") from None
        functions = dict(model.signatures)
        if not functions:
            raise LoadError(
                f"{artifact.name}: the SavedModel has no signatures to serve; "
                "export it with tf.saved_model.save(..., signatures=...)"
            )
        default = DEFAULT_SIGNATURE if DEFAULT_SIGNATURE in functions else min(functions)
        if default != DEFAULT_SIGNATURE:
            log.warning("%s has no %r signature; serving %r as the default", directory, DEFAULT_SIGNATURE, default)
        signatures = {default: _signature(default, functions[default])}
        for name in sorted(functions.keys() - {default}):
            try:
                signatures[name] = _signature(name, functions[name])
            except LoadError as exc:
                log.warning("%s: signature %r is not served: %s", directory, name, exc.message)
        self.model, self._default, self._constant = model, default, tf.constant
        self._functions = {name: functions[name] for name in signatures}
        self._signatures = signatures
        return signatures[default]

    def signatures(self) -> Mapping[str, Signature]:
        return self._signatures

    def predict(
        self, inputs: Mapping[str, np.ndarray], outputs: Sequence[str] | None = None, signature: str | None = None
    ) -> dict[str, np.ndarray]:
        # a concrete function may be called from several threads at once (eager execution is
        # thread-safe and the function holds no per-call state)
        function = self._functions[signature or self._default]
        constant = self._constant
        results = function(**{name: constant(array) for name, array in inputs.items()})
        names = results.keys() if outputs is None else outputs
        return {name: results[name].numpy() for name in names}

    def unload(self) -> None:
        self.model, self._functions, self._constant = None, {}, None
        # the model object itself dies with the last reference, but its function graphs sit in
        # reference cycles: collect them now rather than at some later collection. (Objects that
        # the server froze with gc.freeze() after its initial load are beyond any collection.)
        gc.collect()


def _check_assets(artifact: Path) -> None:
    """Refuse a SavedModel that names an asset outside its ``assets/`` directory. Raises LoadError."""
    from google.protobuf.message import DecodeError

    # by import_module, as tensorflow itself is (no stubs; and this module is named tensorflow too)
    proto = importlib.import_module("tensorflow.core.protobuf.saved_model_pb2").SavedModel()
    try:
        proto.ParseFromString(artifact.read_bytes())
    except (OSError, DecodeError):  # tf.saved_model.load then reports the damaged file in its own words
        return
    for graph in proto.meta_graphs:
        for asset in graph.asset_file_def:
            what = f"{artifact.name}: asset {asset.tensor_info.name!r}"
            confined(artifact.parent / "assets", asset.filename, what=what)


def _import_tensorflow() -> Any:
    # quiet TensorFlow's C++ start-up log; read once, at its first import
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        # this module is itself named "tensorflow": import_module is absolute, so it gets the library
        return importlib.import_module("tensorflow")
    except ModuleNotFoundError as exc:
        if exc.name != "tensorflow":
            raise LoadError(f"tensorflow cannot be imported: {exc}") from None
        raise missing_extra("tensorflow", "tensorflow") from None


def _size_thread_pools(tf: Any, threads: int, directory: Path) -> None:
    global _threads
    with _threads_lock:
        if _threads is None:
            _threads = threads
            try:
                tf.config.threading.set_intra_op_parallelism_threads(threads)
                tf.config.threading.set_inter_op_parallelism_threads(threads)
            except RuntimeError:  # "cannot be modified after initialization"
                log.warning(
                    "TensorFlow was initialised in this process before modelserve loaded %s; its thread pools "
                    "keep their sizes (intra-op %d, inter-op %d; 0 = one thread per core), not threads: %d",
                    directory,
                    tf.config.threading.get_intra_op_parallelism_threads(),
                    tf.config.threading.get_inter_op_parallelism_threads(),
                    threads,
                )
        elif threads != _threads:
            log.warning(
                "%s asks for threads: %d, but TensorFlow's thread pools are process-wide and were sized for %d "
                "by the first TensorFlow model loaded; it runs on those",
                directory,
                threads,
                _threads,
            )


def _signature(name: str, function: Any) -> Signature:
    """The protocol signature of one signature function; raises LoadError for an unservable dtype."""
    _, kwargs = function.structured_input_signature
    inputs = tuple(_spec(name, "input", key, spec) for key, spec in sorted(kwargs.items()))
    outputs = tuple(_spec(name, "output", key, spec) for key, spec in sorted(function.structured_outputs.items()))
    return Signature(inputs=inputs, outputs=outputs)


def _spec(signature: str, kind: str, name: str, spec: Any) -> TensorSpec:
    datatype = _TF_TYPES.get(spec.dtype.name)
    if datatype is None:
        raise LoadError(
            f"signature {signature!r}: {kind} {name!r} has TensorFlow dtype {spec.dtype.name}, "
            f"which modelserve cannot serve (it serves {sorted(_TF_TYPES)})"
        )
    if spec.shape.rank is None:
        log.warning("signature %r: %s %r has unknown rank; reported as shape []", signature, kind, name)
        return TensorSpec(name, datatype, ())
    return TensorSpec(name, datatype, tuple(-1 if d is None else d for d in spec.shape.as_list()))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
