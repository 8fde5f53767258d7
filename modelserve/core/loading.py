"""Loading one version directory into a runtime that is ready to serve: the steps every load takes,
whether the server loads a version or ``registry register`` validates one in a child process.

Order: verify checksums (when the registry or a manifest gives them), resolve the runtime, refuse
code unless trusted, load, apply config.yaml's signature overrides, build the validation plans,
run warmup. Anything that fails after the runtime loaded unloads it again. Blocks throughout: call
it from the loader thread.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from modelserve.config.model import ModelConfig
from modelserve.core import warmup
from modelserve.core.processes import ProcessRuntime
from modelserve.core.signature import Adapter, adapt
from modelserve.core.validation import Plan
from modelserve.errors import LoadError
from modelserve.repository.checksums import mismatch
from modelserve.runtimes.base import DEFAULT_SIGNATURE, MultiSignatureRuntime, Runtime
from modelserve.runtimes.registry import Resolved, resolve
from modelserve.types import InferRequest, Signature

log = logging.getLogger(__name__)

# runtimes that serve several signatures or share a process-wide engine: not in worker processes
IN_PROCESS_ONLY = frozenset({"tensorflow", "pmml"})


@dataclass(frozen=True, slots=True)
class Loaded:
    resolved: Resolved
    runtime: Runtime
    signature: Signature  # the public (default) signature, after config.yaml's overrides
    plans: dict[str, Plan]  # every signature by name, the default first
    warmed: int  # warmup requests answered


def load_version(
    path: Path,
    label: str,
    config: ModelConfig,
    *,
    trust_code: bool,
    decode_sample: warmup.SampleDecoder | None,
    checksums: Mapping[str, str] | None = None,
    extra_samples: list[tuple[str, InferRequest]] | None = None,
) -> Loaded:
    """Load ``path`` (``label`` names it in messages: "'iris' version 3"). Raises LoadError."""
    if checksums is not None:
        problem = mismatch(path, checksums)
        if problem is not None:
            raise LoadError(f"{problem}; the files differ from what was registered, so they are not served")
    resolved = resolve(path, config)
    if resolved.entry.runs_code and not trust_code:
        raise LoadError(
            f"{resolved.artifact.name} is Python code, which runs with the server's rights; it is loaded only "
            "when the server is started with --trust-code (or MODELSERVE_TRUST_CODE=on)"
        )
    if config.device != "cpu" and not resolved.entry.gpu:
        raise LoadError(
            f"config.yaml asks for device {config.device!r}, but the {resolved.entry.name} runtime runs on CPU only "
            "(onnx, torch and xgboost models can use a GPU)"
        )
    runtime: Runtime
    if config.processes:
        if resolved.entry.name in IN_PROCESS_ONLY:
            raise LoadError(
                f"config.yaml asks for processes: {config.processes}, but {resolved.entry.name} models run in the "
                "server process only (their libraries compute outside the GIL: use instances and threads)"
            )
        platform = getattr(resolved.runtime(), "platform", resolved.entry.name)
        runtime = ProcessRuntime(resolved.entry.factory, platform, config.processes)
    else:
        runtime = resolved.runtime()
    native = runtime.load(resolved.artifact, config)
    try:
        adapter = adapt(native, config.signature)
        plans = _plans(label, runtime, adapter)
        todo = warmup.requests(path, config.warmup, adapter.public, decode_sample) + (extra_samples or [])
        if todo:
            started = time.perf_counter()
            warmup.run(runtime, plans, todo, label)
            log.info("model %s warmed up with %d request(s) in %.0f ms", label, len(todo), _ms(started))
    except BaseException:
        runtime.unload()  # a version that will not serve must not hold its memory
        raise
    return Loaded(resolved, runtime, adapter.public, plans, len(todo))


def _plans(label: str, runtime: Runtime, adapter: Adapter) -> dict[str, Plan]:
    plan = Plan(label, adapter)
    if not isinstance(runtime, MultiSignatureRuntime):
        return {DEFAULT_SIGNATURE: plan}
    # config.yaml's signature overrides apply to the default signature only (the first); the
    # others keep the model's own names and datatypes
    default, *others = runtime.signatures().items()
    plans = {default[0]: plan}
    plans.update((name, Plan(f"{label} signature {name!r}", adapt(s, None))) for name, s in others)
    return plans


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000
