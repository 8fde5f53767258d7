"""Per-feature explanations (SHAP values) of one model version's answers, off the inference path.

:meth:`Explainer.explain` serves ``POST /v2/models/{m}/explain`` and ``/v1/models/{m}:explain``. It
checks the request as inference does (:meth:`Handle.feeds`), then computes in a thread of its own,
never the inference pool. Tabular models only: one numeric input ``[N, k]``, a feature per column.

Which explainer:

- **tree**: when the runtime hands over a tree ensemble shap can walk (:meth:`Handle.native_model`:
  scikit-learn forests and boosting, XGBoost, LightGBM), ``shap.TreeExplainer`` on it, path
  dependent, no background needed. Used only when its values add up to what the model *serves*
  (base + sum = the output, checked on the rows through the inference path): for boosted
  classifiers and log-link regressors shap's tree values are in margin units (log-odds), not the
  output's, so those go on to the model-agnostic explainers.
- **exact** (k <= 10 features) or **permutation** (more): shap's model-agnostic explainers of the
  served output, with the version's stored reference sample as background (``background(name,
  version)``): the interventional game v(S) = E_bg[f(x_S, bg_rest)]. Both are additive by
  construction (exact Shapley values; each antithetic permutation telescopes from the background
  to the row), seeded, and call the model in large batches; shap's own ``Explainer`` chooses the
  same way. Not KernelExplainer: for the same number of model calls it is slower (a weighted
  regression per row) and only approximately Shapley.

The model-agnostic explainers call the model through the server's inference path
(:meth:`Handle.infer` on the event loop, at most ``CHUNK_ROWS`` rows a call), so the runtime's
concurrency rules (its locks, batching, instances) hold and a live request waits for one chunk at
most. The version stays checked out until the explanation's thread is done with it.

Admission: one explanation runs at a time per server; up to ``max_waiting`` more wait their turn
and one more is refused with 429 (RESOURCE_EXHAUSTED) at once, rather than left to time out.
``timeout_s`` counts from arrival, waiting included; past it the client gets 504 and the work stops
at its next model call (a tree explanation, one call into shap's compiled code, runs to its end
first and holds the turn until then).

The first explanation in a process takes a few seconds more: shap is imported, and numba compiles
shap's maskers.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import threading
import time
from collections.abc import Callable, Coroutine, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modelserve.core.manager import Handle, ModelManager
from modelserve.errors import (
    ConfigError,
    DeadlineExceeded,
    ErrorCode,
    InvalidInput,
    ModelServeError,
    RuntimeFailure,
    Unsupported,
)
from modelserve.types import DATATYPES, InferInput, InferRequest, InferResponse, RequestedOutput, Signature, TensorSpec

log = logging.getLogger(__name__)

Background = Callable[[str, int], np.ndarray | None]  # (model, version) -> reference rows [n, k]
Decoder = Callable[[Handle], InferRequest]  # decodes a request against the version checked out

CHUNK_ROWS = 4096  # rows per inference call of a model-agnostic explainer
EXACT_MAX_FEATURES = 10  # exact Shapley values up to 2**10 coalitions a row; permutation sampling beyond
PERMUTATION_EVALS = 500  # model evaluations per row for the permutation explainer (shap's default)
BACKGROUND_ROWS = 100  # reference rows the background keeps (a seeded sample of larger ones)
PROFILE_COMMAND = "modelserve monitor profile --model {model} --data train.parquet"

_INPUT_KINDS = frozenset("biuf")  # numpy kinds of inputs that can be explained: bool, ints, floats
_OUTPUT_KINDS = frozenset("iuf")


class ExplainerBusy(ModelServeError):
    """Too many explanations are waiting already."""

    code = ErrorCode.RESOURCE_EXHAUSTED


class _Stopped(Exception):
    """The explanation was abandoned (timeout, client gone, server stopping)."""


@dataclass(frozen=True, slots=True)
class Explanation:
    """SHAP values of some rows for one output: for every row r and output column c,
    ``base_values[c] + sum(attributions[r][c]) == output[r][c]`` (to rounding)."""

    model_name: str
    model_version: str
    explainer: str  # "tree" | "exact" | "permutation"
    output: str
    features: tuple[str, ...]
    base_values: tuple[float, ...]  # one per output column
    attributions: np.ndarray  # FP64 [rows, columns, features]; [rows, features] for one column
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """The JSON document the REST endpoints answer."""
        return {
            "model_name": self.model_name,
            "model_version": self.model_version,
            "explainer": self.explainer,
            "output": self.output,
            "features": list(self.features),
            "base_values": list(self.base_values),
            "attributions": self.attributions,
            "seconds": self.seconds,
        }


class Explainer:
    def __init__(
        self,
        manager: ModelManager,
        background: Background | None = None,
        timeout_s: float = 30.0,
        max_rows: int = 100,
        max_waiting: int = 4,
    ) -> None:
        """``background(name, version)`` returns the version's reference sample (rows of its
        training data, ``[n, k]``) or None; it is called in the explainer's thread, so it may read
        files. ``timeout_s``: per request, waiting included. ``max_rows``: rows per request.
        ``max_waiting``: explanations that may wait while one runs. Raises ConfigError."""
        if timeout_s <= 0 or max_rows < 1 or max_waiting < 0:
            raise ConfigError(
                f"Explainer: timeout_s={timeout_s}, max_rows={max_rows}, max_waiting={max_waiting}; "
                "expected timeout_s > 0, max_rows >= 1, max_waiting >= 0"
            )
        self._manager = manager
        self.background = background
        self.timeout_s = timeout_s
        self.max_rows = max_rows
        self.max_waiting = max_waiting
        # its own thread: SHAP is slow, and inference must never queue behind it
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="modelserve-explain")
        self._turn = asyncio.Lock()  # held from submission until the thread is done, not until the caller gives up
        self._waiting = 0

    @property
    def busy(self) -> bool:
        """Whether an explanation holds the turn (computing, or a stopped one winding down)."""
        return self._turn.locked()

    async def explain(
        self, name: str, version: int | None, label: str | None, request: InferRequest | Decoder
    ) -> Explanation:
        """Explain the rows of ``request`` for the version ``version``/``label`` name (as
        :meth:`ModelManager.checkout` chooses). The request parameter ``output`` names the output
        to explain (default: the first FP output of shape [N, C] named like a probability, else
        the first FP one of that shape, else the first numeric one).

        Raises what checkout raises; InvalidInput (a bad input, too many rows, a model that is not
        tabular, no reference sample where one is needed); ExplainerBusy; DeadlineExceeded after
        ``timeout_s``; Unsupported when shap is not installed."""
        started = time.perf_counter()
        deadline = time.monotonic() + self.timeout_s
        handle = await self._manager.checkout(name, version, label)
        try:
            job = self._prepare(handle, request)
        except BaseException:
            handle.release()
            raise
        explainer, phi, base = await self._run(job, handle, deadline)
        seconds = time.perf_counter() - started
        log.info("explained %d row(s) of model %s with %s in %.3f s", len(phi), job.model_id, explainer, seconds)
        single = phi.shape[1] == 1
        return Explanation(
            model_name=name,
            model_version=str(handle.version),
            explainer=explainer,
            output=job.output.name,
            features=job.features,
            base_values=tuple(float(b) for b in base),
            attributions=np.ascontiguousarray(phi[:, 0, :] if single else phi),  # orjson wants C order
            seconds=seconds,
        )

    def _prepare(self, handle: Handle, request: InferRequest | Decoder) -> _Job:
        """Check the request on the event loop (cheap), before it takes a turn."""
        request = request if isinstance(request, InferRequest) else request(handle)
        meta = handle.metadata
        model_id = f"{meta.name!r} version {handle.version}"
        feeds = handle.feeds(request)
        signature_name = request.parameters.get("signature_name") or ""
        signature = handle.signatures[signature_name] if signature_name else meta.signature
        spec = _tabular_input(signature, model_id)
        (rows,) = feeds.values()
        if not 1 <= len(rows) <= self.max_rows:
            raise InvalidInput(
                f"input {spec.name!r} of model {model_id}: got {len(rows)} rows to explain, "
                f"expected 1 to {self.max_rows} (the explainer's max_rows)"
            )
        output = _pick_output(signature, request.parameters.get("output"), model_id)
        background = self.background

        def reference() -> np.ndarray | None:
            return background(meta.name, handle.version) if background is not None else None

        return _Job(
            handle=handle,
            loop=asyncio.get_running_loop(),
            model_id=model_id,
            model_name=meta.name,
            rows=rows,
            input=spec,
            output=output,
            parameters={"signature_name": signature_name} if signature_name else {},
            features=_feature_names(meta.metadata, spec, rows.shape[1], model_id),
            reference=reference,
        )

    async def _run(self, job: _Job, handle: Handle, deadline: float) -> tuple[str, np.ndarray, np.ndarray]:
        """Wait for the turn, run ``job`` in the explainer's thread; release ``handle`` (and the
        turn) once the thread is done with them, even when the caller gives up first."""
        loop = asyncio.get_running_loop()
        future: Future[tuple[str, np.ndarray, np.ndarray]] | None = None
        try:
            await self._take_turn(job.model_id, deadline)
            try:
                future = self._executor.submit(job.run)
            except BaseException:
                self._turn.release()
                raise
            future.add_done_callback(lambda _: _soon(loop, self._turn.release))
            try:
                return await asyncio.wait_for(asyncio.wrap_future(future), max(deadline - time.monotonic(), 0.0))
            except TimeoutError:
                raise DeadlineExceeded(
                    f"the explanation of model {job.model_id} did not finish within {self.timeout_s:g} s "
                    "(the explain timeout); it was stopped"
                ) from None
        finally:
            if future is None or future.done():
                handle.release()
            else:  # timed out or cancelled: stop at the next model call, then let the version go
                job.stop()
                future.add_done_callback(lambda _: _soon(loop, handle.release))

    async def _take_turn(self, model_id: str, deadline: float) -> None:
        if self._turn.locked() and self._waiting >= self.max_waiting:
            raise ExplainerBusy(
                f"{self._waiting} explanation(s) are already waiting for the one running (one runs at a time, "
                f"at most {self.max_waiting} wait); retry later"
            )
        self._waiting += 1
        try:
            await asyncio.wait_for(self._turn.acquire(), max(deadline - time.monotonic(), 0.0))
        except TimeoutError:
            raise DeadlineExceeded(
                f"the explanation of model {model_id} waited {self.timeout_s:g} s (the explain timeout) for "
                "earlier explanations to finish (one runs at a time) and did not start"
            ) from None
        finally:
            self._waiting -= 1


@dataclass(slots=True, eq=False)
class _Job:
    """One explanation, computed in the explainer's thread by :meth:`run`."""

    handle: Handle
    loop: asyncio.AbstractEventLoop
    model_id: str  # "'m' version 1", for messages
    model_name: str
    rows: np.ndarray  # as the runtime receives them, [N, k]
    input: TensorSpec
    output: TensorSpec
    parameters: dict[str, Any]  # of every inference call (signature_name)
    features: tuple[str, ...]
    reference: Callable[[], np.ndarray | None]
    why_not_tree: str = "its runtime exposes no tree ensemble"
    stopped: threading.Event = field(default_factory=threading.Event)

    def stop(self) -> None:
        self.stopped.set()

    def run(self) -> tuple[str, np.ndarray, np.ndarray]:
        """(explainer, attributions [N, columns, k], base values [columns]). Blocks."""
        shap = _import_shap()
        tree = self._tree(shap)
        if tree is not None:
            return ("tree", *tree)
        return self._agnostic(shap)

    def _tree(self, shap: Any) -> tuple[np.ndarray, np.ndarray] | None:
        native = self.handle.native_model()
        if native is None:
            return None
        kind = type(native).__name__
        try:
            result = shap.TreeExplainer(native)(self.rows, check_additivity=False)
        except Exception as exc:  # shap refuses what it cannot walk (InvalidModelError, and others)
            log.debug("model %s: TreeExplainer cannot explain its %s: %s", self.model_id, kind, exc)
            self.why_not_tree = f"shap's TreeExplainer cannot read its {kind}"
            return None
        phi, base = _normalize(result.values, result.base_values)
        if _adds_up(phi, base, self.predict(self.rows)):
            return phi, base
        self.why_not_tree = (
            f"shap's TreeExplainer explains its {kind} in margin units (such as log-odds), "
            f"not in its output {self.output.name!r}"
        )
        return None

    def _agnostic(self, shap: Any) -> tuple[str, np.ndarray, np.ndarray]:
        masker = shap.maskers.Independent(self._background(), max_samples=BACKGROUND_ROWS)
        x = np.asarray(self.rows, dtype=np.float64)
        k = x.shape[1]
        if k <= EXACT_MAX_FEATURES:
            result = shap.explainers.Exact(self.predict, masker)(x, silent=True)
            kind = "exact"
        else:
            explainer = shap.explainers.Permutation(self.predict, masker, seed=0)
            result = explainer(x, max_evals=max(PERMUTATION_EVALS, 2 * k + 1), silent=True)
            kind = "permutation"
        return (kind, *_normalize(result.values, result.base_values))

    def _background(self) -> np.ndarray:
        command = PROFILE_COMMAND.format(model=self.model_name)
        sample = self.reference()
        if sample is None:
            raise InvalidInput(
                f"model {self.model_id} cannot be explained without a reference sample of its training rows "
                f"({self.why_not_tree}), and it has no reference profile; create one with: {command}"
            )
        k = self.rows.shape[1]
        try:
            array = np.asarray(sample, dtype=np.float64)
        except (TypeError, ValueError):
            array = np.empty((0, 0))
        if array.ndim != 2 or array.shape[1] != k or len(array) == 0:
            raise InvalidInput(
                f"the reference sample of model {self.model_id} has shape {list(array.shape)} (numeric), but its "
                f"input {self.input.name!r} takes [-1, {k}]; rebuild its reference profile with: {command}"
            )
        return array

    def predict(self, x: np.ndarray) -> np.ndarray:
        """The explained output for rows ``x``, through the server's inference path, in chunks."""
        dtype = DATATYPES[self.input.datatype]
        parts = []
        for start in range(0, len(x), CHUNK_ROWS):
            chunk = np.ascontiguousarray(x[start : start + CHUNK_ROWS], dtype=dtype)
            request = InferRequest(
                inputs=[InferInput(self.input.name, self.input.datatype, chunk)],
                parameters=dict(self.parameters),
                outputs=[RequestedOutput(self.output.name)],
            )
            response = self._call(self.handle.infer, request)
            parts.append(np.asarray(response.outputs[0].data, dtype=np.float64))
        return np.concatenate(parts)

    def _call(
        self, infer: Callable[[InferRequest], Coroutine[Any, Any, InferResponse]], request: InferRequest
    ) -> InferResponse:
        """Run ``infer(request)`` on the event loop and wait, giving up when the job is stopped."""
        if self.stopped.is_set() or self.loop.is_closed():
            raise _Stopped
        future = asyncio.run_coroutine_threadsafe(infer(request), self.loop)
        while True:
            try:
                return future.result(timeout=0.05)
            except TimeoutError:
                if self.stopped.is_set() or self.loop.is_closed():
                    future.cancel()
                    raise _Stopped from None


def _import_shap() -> Any:
    try:
        return importlib.import_module("shap")
    except ImportError:
        raise Unsupported(
            "explanations need shap, which is not installed; install it with: pip install 'modelserve[explain]'"
        ) from None


def _soon(loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
    """``callback`` on ``loop``, from any thread; nothing once the loop is closed (shutdown)."""
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(callback)


def _tabular_input(signature: Signature, model_id: str) -> TensorSpec:
    """The model's one numeric 2-D input. Raises InvalidInput naming the limitation."""
    specs = signature.inputs
    if len(specs) == 1 and len(specs[0].shape) == 2 and DATATYPES[specs[0].datatype].kind in _INPUT_KINDS:
        return specs[0]
    shown = ", ".join(f"{s.name!r} {s.datatype} {list(s.shape)}" for s in specs)
    raise InvalidInput(
        f"explanations support tabular models only: one numeric input of shape [N, k] (a feature per column); "
        f"model {model_id} has inputs {shown}"
    )


def _pick_output(signature: Signature, wanted: object, model_id: str) -> TensorSpec:
    """The output the parameter ``output`` names, or the default one. Raises InvalidInput."""
    usable = [s for s in signature.outputs if DATATYPES[s.datatype].kind in _OUTPUT_KINDS and len(s.shape) in (1, 2)]
    if wanted is not None:
        if not isinstance(wanted, str):
            raise InvalidInput(f"parameter output must be the name of an output, got {wanted!r}")
        spec = next((s for s in signature.outputs if s.name == wanted), None)
        if spec is None:
            names = [s.name for s in signature.outputs]
            raise InvalidInput(f"model {model_id} has no output {wanted!r}; its outputs are {names}")
        if spec not in usable:
            raise InvalidInput(
                f"output {wanted!r} of model {model_id} is {spec.datatype} {list(spec.shape)}; only numeric "
                "outputs of shape [N] or [N, C] can be explained"
            )
        return spec
    matrices = [s for s in usable if len(s.shape) == 2 and DATATYPES[s.datatype].kind == "f"]
    probabilities = [s for s in matrices if "prob" in s.name.lower()]
    choice = next(iter(probabilities or matrices or usable), None)
    if choice is None:
        names = [f"{s.name} {s.datatype} {list(s.shape)}" for s in signature.outputs]
        raise InvalidInput(f"model {model_id} has no numeric output of shape [N] or [N, C] to explain: {names}")
    return choice


def _feature_names(metadata: Mapping[str, Any], spec: TensorSpec, k: int, model_id: str) -> tuple[str, ...]:
    """config.yaml's ``metadata: feature_names`` when it names the k columns, else ``input[i]``."""
    names = metadata.get("feature_names")
    if isinstance(names, list | tuple) and len(names) == k and all(isinstance(n, str) for n in names):
        return tuple(names)
    if names is not None:
        log.warning(
            "model %s: metadata feature_names is not a list of %d names (%r); naming its features %s[i]",
            model_id, k, names, spec.name,
        )  # fmt: skip
    return tuple(f"{spec.name}[{i}]" for i in range(k))


def _normalize(values: Any, base_values: Any) -> tuple[np.ndarray, np.ndarray]:
    """shap's values ([N, k] or [N, k, C]) and per-row base values ([N] or [N, C]) as
    attributions [N, C, k] and one base value per column [C] (the same for every row)."""
    phi = np.asarray(values, dtype=np.float64)
    phi = phi[:, None, :] if phi.ndim == 2 else phi.transpose(0, 2, 1)
    rows, columns = phi.shape[:2]
    base = np.asarray(base_values, dtype=np.float64).reshape(-1)
    if base.size == rows * columns:
        base = base.reshape(rows, columns)[0]
    elif base.size != columns:
        raise RuntimeFailure(f"shap returned {base.size} base values for {rows} row(s) of {columns} column(s)")
    return phi, base


def _adds_up(phi: np.ndarray, base: np.ndarray, served: np.ndarray) -> bool:
    """Whether base + sum of attributions is the served output, row by row (to float32 rounding)."""
    y = served.reshape(len(served), -1)
    if y.shape != phi.shape[:2]:
        return False
    scale = 1.0 + float(np.abs(y).max(initial=0.0))
    return bool(np.allclose(phi.sum(axis=2) + base, y, rtol=1e-4, atol=1e-4 * scale))
