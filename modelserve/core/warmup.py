"""Warmup: requests a version must answer before it is READY.

The first requests to a fresh runtime are slow (lazy allocations, JIT compilation, thread pools
starting), and a model that loads but cannot predict should never take traffic. So a version runs
its warmup requests in the loader thread, after loading and before it turns READY: first the
sample files shipped in ``<version>/warmup/*.json`` (v2 inference request bodies, the same JSON a
client posts to ``/v2/models/{m}/infer``), then ``warmup.generate`` requests made from the
signature (zeros, variable dimensions 1). A failing request fails the load with its file name and
reason. config.yaml ``warmup: off`` skips all of it.

Decoding the files is the protocol layer's job, so the manager is handed a decoder (bootstrap
passes the v2 REST one): the core never imports a protocol.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from modelserve.config.model import Warmup
from modelserve.core.validation import Plan
from modelserve.errors import LoadError, ModelServeError
from modelserve.repository.layout import WARMUP_DIR, warmup_files
from modelserve.runtimes.base import MultiSignatureRuntime, Runtime
from modelserve.types import DATATYPES, InferInput, InferRequest, Signature

SampleDecoder = Callable[[bytes], InferRequest]


def requests(
    version_dir: Path, warmup: Warmup, signature: Signature, decode: SampleDecoder | None
) -> list[tuple[str, InferRequest]]:
    """(name for messages, request) pairs to run, in order. Raises LoadError for an unreadable or
    invalid sample file, naming it."""
    found: list[tuple[str, InferRequest]] = []
    if warmup.samples:
        files = warmup_files(version_dir)
        if files and decode is None:
            raise LoadError(f"{version_dir / WARMUP_DIR} has warmup files, but this server has no decoder for them")
        for path in files:
            where = f"{WARMUP_DIR}/{path.name}"
            try:
                found.append((where, decode(path.read_bytes())))  # type: ignore[misc]  # checked above
            except ModelServeError as exc:
                raise LoadError(f"warmup request {where} is not a valid v2 inference request: {exc.message}") from None
            except OSError as exc:
                raise LoadError(f"cannot read warmup request {where}: {exc.strerror or exc}") from None
    found.extend((f"generated warmup request {i + 1}", generated(signature)) for i in range(warmup.generate))
    return found


def generated(signature: Signature) -> InferRequest:
    """One request of zeros (empty strings for BYTES), every variable dimension 1."""
    inputs = []
    for spec in signature.inputs:
        shape = tuple(1 if d < 0 else d for d in spec.shape)
        dtype = DATATYPES[spec.datatype]
        data = np.full(shape, b"", dtype=object) if spec.datatype == "BYTES" else np.zeros(shape, dtype=dtype)
        inputs.append(InferInput(spec.name, spec.datatype, data))
    return InferRequest(inputs)


def run(runtime: Runtime, plans: Mapping[str, Plan], todo: list[tuple[str, InferRequest]], label: str) -> None:
    """Run each request through validation, the runtime and output shaping, as a client's would be.
    Blocks (the loader thread). Raises LoadError naming the request that failed."""
    default = next(iter(plans.values()))
    for where, request in todo:
        try:
            name = request.parameters.get("signature_name") or None
            plan = default if name is None else plans.get(name)
            if plan is None:
                raise LoadError(f"signature_name {name!r} not found; the model has {list(plans)}")
            feeds, requested = plan.inputs(request), plan.requested(request)
            if plan is default:
                raw = runtime.predict(feeds, requested)
            else:
                assert isinstance(runtime, MultiSignatureRuntime)
                raw = runtime.predict(feeds, requested, signature=name)
            plan.outputs(raw, requested)
        except ModelServeError as exc:
            raise LoadError(f"{where} failed on {label}: {exc.message}") from None
        except Exception as exc:
            raise LoadError(f"{where} failed on {label}: the runtime raised {type(exc).__name__}: {exc}") from None
