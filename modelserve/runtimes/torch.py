"""TorchScript models (``*.pt`` saved by ``torch.jit.save``) on PyTorch, CPU only.

Platform ``pytorch_libtorch``: Triton's name for the same artifact, as ``onnxruntime_onnx`` is for
ONNX, so clients and dashboards that know Triton's platforms recognise it.

Signature: a TorchScript file names ``forward``'s arguments but gives no dtypes or shapes, and its
outputs have no names at all, so the signature is declared in config.yaml (:data:`HOW`) and
``load`` returns it as the native one. Every tensor needs a name, datatype and shape. Inputs go to
``forward`` positionally, in the declared order. ``forward`` may return a tensor (one declared
output), a tuple or list of tensors (matched by position) or a dict of tensors (matched by name);
anything else raises :class:`~modelserve.errors.RuntimeFailure` naming what came back.

Threads: ``torch.set_num_threads`` is process-wide, not per model. Each load sets it to the largest
``threads`` any TorchScript model has asked for in this process, and logs a warning when models
disagree. Inter-op threads are set to 1 once, before the first model runs (PyTorch refuses to
change them later): the server's inference threads already run requests side by side.

PyTorch marks ``torch.jit.load`` deprecated in favour of ``torch.export``; loading existing
TorchScript files is this runtime's purpose, so that one warning is silenced around the call.
"""

from __future__ import annotations

import logging
import threading
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from modelserve.config.model import ModelConfig, cuda_index
from modelserve.errors import LoadError, RuntimeFailure
from modelserve.runtimes.base import declared_signature, missing_extra
from modelserve.types import Signature

log = logging.getLogger(__name__)

HOW = """declare one in the model's config.yaml, e.g.:
signature:
  inputs:                # in the order forward() takes them
    - {name: input, datatype: FP32, shape: [-1, 4]}
  outputs:               # in the order forward() returns them, or by key if it returns a dict
    - {name: probabilities, datatype: FP32, shape: [-1, 3]}"""

# process-wide torch settings: the largest intra-op thread count asked for, and whether the
# inter-op pool was sized (possible only once, before any parallel work)
_threads_lock = threading.Lock()
_threads: int | None = None
_interop_set = False
# warnings.catch_warnings swaps the process-wide filter list: one load at a time in here
_load_lock = threading.Lock()


class TorchScriptRuntime:
    platform = "pytorch_libtorch"

    def __init__(self) -> None:
        self.model: Any = None
        self._inputs: tuple[str, ...] = ()
        self._outputs: tuple[str, ...] = ()
        self._device: Any = None  # torch.device, set by load

    def load(self, artifact: Path, config: ModelConfig) -> Signature:
        try:
            import torch
        except ImportError:
            raise missing_extra("torch", "torch") from None
        signature = declared_signature(config.signature, f"{artifact.name}: TorchScript models", HOW)
        bytes_tensors = [t.name for t in (*signature.inputs, *signature.outputs) if t.datatype == "BYTES"]
        if bytes_tensors:
            raise LoadError(f"config.yaml: tensors {bytes_tensors} are BYTES, which TorchScript tensors cannot hold")
        _set_threads(torch, config.threads, artifact)
        if config.device != "cpu" and not torch.cuda.is_available():
            raise LoadError(
                f"config.yaml asks for device {config.device!r}, but torch sees no CUDA device "
                f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'no'})"
            )
        self._device = torch.device("cpu" if config.device == "cpu" else f"cuda:{cuda_index(config.device)}")
        try:
            with _load_lock, warnings.catch_warnings():
                warnings.filterwarnings("ignore", r"`torch\.jit\.load` is", DeprecationWarning)
                # torch.jit.load has no annotations
                model = torch.jit.load(str(artifact), map_location=self._device)  # type: ignore[no-untyped-call]
        except Exception as exc:  # torch raises RuntimeError/ValueError for files it cannot read
            raise LoadError(f"{artifact.name}: torch.jit.load cannot load it: {_first_line(exc)}") from None
        _check_arity(model, len(signature.inputs), artifact.name)
        self.model = model.eval()
        self._inputs = tuple(t.name for t in signature.inputs)
        self._outputs = tuple(t.name for t in signature.outputs)
        return signature

    def predict(self, inputs: Mapping[str, np.ndarray], outputs: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        import torch

        # torch.from_numpy shares memory; it warns on read-only arrays and refuses negative strides
        args = [torch.from_numpy(np.require(inputs[name], requirements=("C", "W"))) for name in self._inputs]
        if self._device.type != "cpu":
            args = [arg.to(self._device, non_blocking=True) for arg in args]
        with torch.inference_mode():
            result = self.model(*args)
        return self._outputs_of(result)

    def unload(self) -> None:
        self.model = None

    def _outputs_of(self, result: object) -> dict[str, np.ndarray]:
        import torch

        declared = self._outputs
        items: Mapping[str, object] = {}
        if isinstance(result, torch.Tensor) and len(declared) == 1:
            items = {declared[0]: result}
        elif isinstance(result, tuple | list) and len(result) == len(declared):
            items = dict(zip(declared, result, strict=True))
        elif isinstance(result, dict):
            items = {name: result[name] for name in declared if name in result}
        tensors = {name: value for name, value in items.items() if isinstance(value, torch.Tensor)}
        if len(tensors) != len(declared):
            raise RuntimeFailure(
                f"TorchScript forward() returned {_describe(result)}; config.yaml declares the outputs "
                f"{list(declared)}: return one tensor per output, in that order or in a dict by name"
            )
        return {name: value.cpu().numpy() for name, value in tensors.items()}


def _set_threads(torch: Any, threads: int, artifact: Path) -> None:
    global _threads, _interop_set
    with _threads_lock:
        if not _interop_set:
            _interop_set = True
            try:
                torch.set_num_interop_threads(1)
            except RuntimeError:  # something in this process already ran parallel work
                log.info("PyTorch inter-op threads already fixed at %d", torch.get_num_interop_threads())
        if _threads is not None and threads != _threads:
            log.warning(
                "%s asks for threads: %d but torch's thread count is process-wide and another TorchScript "
                "model asked for %d; every TorchScript model now uses %d",
                artifact, threads, _threads, max(threads, _threads),
            )  # fmt: skip
        _threads = max(threads, _threads or 0)
        torch.set_num_threads(_threads)


def _check_arity(model: Any, declared: int, name: str) -> None:
    """Compare the declared inputs with forward()'s parameters, where the schema tells them."""
    forward = getattr(model, "forward", None)
    if forward is None:
        raise LoadError(f"{name}: the TorchScript module has no forward() method")
    schema = getattr(forward, "schema", None)
    if schema is None:
        return
    params = list(schema.arguments)[1:]  # without self
    required = sum(1 for a in params if not a.has_default_value())
    if not required <= declared <= len(params):
        names = [a.name for a in params]
        raise LoadError(
            f"{name}: forward() takes {names} ({required} required) but config.yaml declares {declared} input(s)"
        )


def _describe(value: Any) -> str:
    if isinstance(value, tuple | list):
        return f"a {type(value).__name__} of {len(value)} ({', '.join(type(v).__name__ for v in value)})"
    if isinstance(value, dict):
        return f"a dict with keys {sorted(map(str, value))}"
    return f"a {type(value).__name__}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"
