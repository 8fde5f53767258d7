"""The model manager: loads the versions the repository announces, tracks their states, and hands
out :class:`Handle` objects that pin one READY version for one request.

All state lives on the event loop thread, so counters and dicts need no locks; blocking work
(imports, loading, predicting, unloading) goes through :class:`~modelserve.core.pool.Pool`.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any, cast

import numpy as np

from modelserve.config.model import DEFAULT as DEFAULT_CONFIG
from modelserve.config.model import ModelConfig, PayloadLog, load_model_config
from modelserve.core import residency, warmup
from modelserve.core.admission import HUNG_GRACE_S, Admission, set_call_deadline
from modelserve.core.batching import Batcher, BatchPolicy, call_started, phases
from modelserve.core.cache import ResponseCache
from modelserve.core.catalog import Catalog, Decision, PolicyCatalog
from modelserve.core.composite import Composer, Composite
from modelserve.core.loading import load_version
from modelserve.core.pool import Pool
from modelserve.core.processes import ProcessRuntime
from modelserve.core.residency import Residency
from modelserve.core.signature import adapt
from modelserve.core.stats import ServerStats, VersionStats
from modelserve.core.validation import Plan
from modelserve.errors import (
    ConfigError,
    DeadlineExceeded,
    InvalidInput,
    LoadError,
    ModelLoadFailed,
    ModelNotFound,
    ModelNotReady,
    ModelServeError,
    RequestTooLarge,
    RuntimeFailure,
    VersionGone,
    VersionNotFound,
)
from modelserve.repository.layout import GRAPH_FILE, Fingerprint, ModelSource, fingerprint, scan, scan_one
from modelserve.runtimes.base import DEFAULT_SIGNATURE, MultiSignatureRuntime, Runtime
from modelserve.types import (
    IndexEntry,
    InferRequest,
    InferResponse,
    ModelMetadata,
    ModelState,
    Signature,
    VersionStatus,
)

log = logging.getLogger(__name__)

ASLEEP = "not loaded: loads on its next request"

Raw = dict[str, np.ndarray]


@dataclass(eq=False, slots=True)
class ModelVersion:
    model: str
    version: int
    path: Path
    files: Fingerprint = ()  # the version directory's files when it was loaded: a reload keeps it only if unchanged
    checksums: Mapping[str, str] | None = None  # what the registry recorded; verified before loading
    state: ModelState = ModelState.LOADING
    reason: str = ""
    runtime: Runtime | None = None
    plan: Plan | None = None  # the default signature's
    # every signature by name, the default first (only a MultiSignatureRuntime has more than one)
    plans: Mapping[str, Plan] = field(default_factory=dict)
    signatures: Mapping[str, Signature] = field(default_factory=dict)  # their public signatures
    metadata: ModelMetadata | None = None
    inflight: int = 0
    drained: asyncio.Event = field(default_factory=asyncio.Event)
    batcher: Batcher | None = None  # merges concurrent requests (None: batching off or impossible)
    batchable: frozenset[str] = frozenset()  # the signatures whose every input and output is batched
    cache: ResponseCache | None = None  # this version's answers (config.yaml cache: on); dies with it
    stats: VersionStats | None = None  # serving figures, kept by the manager across reloads
    last_used: float = 0.0  # time.monotonic() of the last request that pinned it
    memory: int = 0  # bytes it is estimated to hold while loaded (core/residency.py)
    asleep: bool = False  # unloaded to save memory (lazy, idle, evicted): the next request loads it
    graph: bool = False  # an inference graph (graph.yaml): computes through ``composite``, not a runtime
    composite: Composite | None = None
    admission: Admission | None = None  # its queue bound and timeout (config.yaml limits); None: a graph
    # a runtime call ran past its deadline: the manager replaces its thread and recycles the runtime
    on_hung: Callable[[Future[Any]], None] | None = None
    recycling: bool = False  # a fresh runtime of it is loading (after a hung call)

    def pin(self) -> None:
        self.inflight += 1

    def unpin(self) -> None:
        self.inflight -= 1
        if self.inflight == 0:
            self.drained.set()

    @property
    def label(self) -> str:
        return f"{self.model!r} version {self.version}"

    def select(self, name: object) -> tuple[Plan, str | None]:
        """The plan for the request parameter ``signature_name``, and the name to pass to predict
        (None: the default). ``""`` means the default, as in TF Serving. Raises InvalidInput."""
        if not isinstance(name, str):
            raise InvalidInput(f"parameter signature_name must be a string, got {name!r}")
        plan = self.plans.get(name) if name else self.plan
        if plan is None:
            raise InvalidInput(f"signature_name {name!r} not found; model {self.label} has {list(self.plans)}")
        return plan, (None if plan is self.plan else name)


@dataclass(eq=False, slots=True)
class Model:
    name: str
    config: ModelConfig
    versions: dict[int, ModelVersion] = field(default_factory=dict)
    error: str = ""  # why no version can be served at all (bad config, no version directories)
    # why the last reload failed while this model kept serving; cleared by a successful reload
    reload_error: str = ""
    labels: Mapping[str, int] = field(default_factory=dict)  # version labels (config.yaml, registry stages)
    retired: Mapping[int, int | None] = field(default_factory=dict)  # archived version -> its replacement
    # versions scheduled for retirement: (deprecated since, retires at)
    sunset: Mapping[int, tuple[datetime, datetime]] = field(default_factory=dict)
    unserved: Mapping[int, str] = field(default_factory=dict)  # other known versions: why they do not serve

    def labelled(self, label: str) -> int:
        """The version ``label`` names (config.yaml's version_labels, the registry's stage).
        Raises VersionNotFound, or ModelNotReady when that version is not loaded."""
        version = self.labels.get(label)
        if version is None:
            known = sorted(self.labels)
            raise VersionNotFound(f"model {self.name!r} has no version label {label!r}; its labels are {known}")
        if version not in self.versions:
            raise ModelNotReady(
                f"version label {label!r} of model {self.name!r} names version {version}, which is not loaded "
                f"(the version policy selects {sorted(self.versions)})"
            )
        return version

    def missing(self, version: int) -> ModelServeError:
        """The error for a request naming a version that does not serve: 410 for a retired one."""
        if version in self.retired:
            replaced_by = self.retired[version]
            successor = f"; version {replaced_by} replaced it" if replaced_by else ""
            return VersionGone(f"model {self.name!r} version {version} is archived{successor}")
        why = self.unserved.get(version)
        if why is not None:
            return VersionNotFound(f"model {self.name!r} version {version} is {why}")
        return VersionNotFound(f"model {self.name!r} has no version {version}; it has {sorted(self.versions)}")

    def default_version(self) -> ModelVersion:
        """The version an unversioned request gets. Raises ModelNotReady with the states seen."""
        wanted = self.config.default_version
        if wanted is not None and wanted in self.versions:
            candidates = [self.versions[wanted]]
        else:
            candidates = sorted(self.versions.values(), key=lambda v: v.version, reverse=True)
        for mv in candidates:
            if mv.state is ModelState.READY:
                return mv
        if not candidates:
            raise ModelNotReady(f"model {self.name!r} has no version to serve: {self.error or 'none loaded'}")
        states = ", ".join(
            f"version {v.version} is {v.state.value}" + (f" ({v.reason})" if v.reason else "") for v in candidates
        )
        raise ModelNotReady(f"model {self.name!r} is not ready: {states}")


class Handle:
    """One READY version pinned for one request: ``with manager.acquire(m) as h: await h.infer(r)``."""

    __slots__ = ("_job", "_max_elements", "_model", "_mv", "_pool", "_released")

    def __init__(self, model: Model, mv: ModelVersion, pool: Pool, max_elements: int = 0) -> None:
        self._model = model
        self._mv = mv
        self._pool = pool
        self._max_elements = max_elements
        self._released = False
        self._job: Future[Any] | None = None
        mv.pin()
        mv.last_used = time.monotonic()

    @property
    def version(self) -> int:
        return self._mv.version

    @property
    def stats(self) -> VersionStats | None:
        """The version's serving figures (None when the server keeps none)."""
        return self._mv.stats

    @property
    def payload_log(self) -> PayloadLog:
        """The model's payload logging settings (config.yaml ``payload_log``)."""
        return self._model.config.payload_log

    @property
    def sunset(self) -> tuple[datetime, datetime] | None:
        """(deprecated since, retires at) when this version is scheduled for retirement, else None."""
        return self._model.sunset.get(self._mv.version) if self._model.sunset else None

    @property
    def metadata(self) -> ModelMetadata:
        assert self._mv.metadata is not None
        return self._mv.metadata

    @property
    def signatures(self) -> Mapping[str, Signature]:
        """Every public signature by name, the default (``metadata.signature``) first."""
        return self._mv.signatures

    def feeds(self, request: InferRequest) -> dict[str, np.ndarray]:
        """The request's inputs checked as :meth:`infer` checks them (against the signature that
        the parameter ``signature_name`` picks), native-named and cast for the runtime; nothing
        runs. Raises InvalidInput naming the input and the problem."""
        mv = self._mv
        plan = mv.plan
        if request.parameters and "signature_name" in request.parameters:
            plan, _ = mv.select(request.parameters["signature_name"])
        assert plan is not None
        return plan.inputs(request)

    def native_model(self) -> Any:
        """The ML library's own model behind this version, for tools that read its structure
        (shap's TreeExplainer walks a tree ensemble); None when the runtime offers none.

        ``native_model()`` is an optional runtime method (the scikit-learn, XGBoost and LightGBM
        runtimes have it; ONNX, code and graph versions do not). What it returns may be the object
        that serves, so treat it as read-only; a runtime whose model is unsafe to use from another
        thread returns a private copy, so this may block while it copies."""
        native = getattr(self._mv.runtime, "native_model", None)
        return native() if callable(native) else None

    async def infer(self, request: InferRequest, deadline: float | None = None) -> InferResponse:
        """Validate, run in the pool, shape the response.

        ``deadline`` (``time.monotonic()`` seconds) is checked when a pool thread picks the request
        up: a request whose client has given up is not run. Raises InvalidInput, DeadlineExceeded
        or RuntimeFailure. If the caller is cancelled while the runtime computes, the version stays
        pinned until the computation ends, so an unload never pulls a runtime from under it.
        The request parameter ``signature_name`` picks one of :attr:`signatures` (default: the first).
        """
        mv = self._mv
        if self._max_elements:
            _check_elements(request, self._max_elements)
        plan, signature = mv.plan, None
        if request.parameters and "signature_name" in request.parameters:
            plan, signature = mv.select(request.parameters["signature_name"])
        assert plan is not None
        feeds = plan.inputs(request)
        requested = plan.requested(request)
        cache, key = mv.cache, b""
        if cache is not None:
            key = cache.key(feeds, requested, signature)
            hit = cache.get(key)
            if mv.stats is not None:
                if hit is None:
                    mv.stats.cache_misses += 1
                else:
                    mv.stats.cache_hits += 1
            if hit is not None:
                return InferResponse(mv.model, str(mv.version), plan.outputs(hit, requested), id=request.id)
        raw = await self._compute(mv, feeds, requested, deadline, signature)
        if cache is not None:
            cache.put(key, raw)
        return InferResponse(mv.model, str(mv.version), plan.outputs(raw, requested), id=request.id)

    async def _compute(
        self,
        mv: ModelVersion,
        feeds: dict[str, np.ndarray],
        requested: list[str] | None,
        deadline: float | None,
        signature: str | None,
    ) -> Raw:
        """The runtime's outputs: through the batcher when the version has one, else one pool call;
        a graph's from its nodes, on the event loop."""
        if mv.composite is not None:
            return await mv.composite.predict(feeds, requested)
        admission = mv.admission
        if admission is None:
            return await self._run(mv, feeds, requested, deadline, signature)
        own = admission.admit(deadline)  # raises Overloaded when the queue is full
        admitted = time.monotonic()
        try:
            if own is None:
                return await self._run(mv, feeds, requested, own, signature)
            try:
                async with asyncio.timeout(own - admitted) as within:
                    return await self._run(mv, feeds, requested, own, signature)
            except TimeoutError:
                if within.expired():
                    raise admission.expired(own, deadline, call_started.get()) from None
                raise
        finally:
            admission.done(time.monotonic() - admitted)

    async def _run(
        self,
        mv: ModelVersion,
        feeds: dict[str, np.ndarray],
        requested: list[str] | None,
        deadline: float | None,
        signature: str | None,
    ) -> Raw:
        runtime = mv.runtime
        assert runtime is not None
        batcher = mv.batcher
        if batcher is not None and (signature or DEFAULT_SIGNATURE) in mv.batchable:
            # the batcher pins the version itself while a call runs: a cancelled caller may go
            try:
                return await batcher.predict(feeds, requested, deadline, signature)
            except ModelServeError:
                raise
            except Exception as exc:
                raise RuntimeFailure(f"runtime of {mv.label} raised {type(exc).__name__}: {exc}") from exc
        submitted = time.perf_counter()
        self._job = job = self._pool.submit(_timed_predict, runtime, feeds, requested, deadline, signature)
        try:
            raw, started, finished = await asyncio.wrap_future(job)
            phases.set((submitted, started, finished))
            if mv.stats is not None:
                mv.stats.queue.observe(started - submitted)
                mv.stats.compute.observe(finished - started)
            return raw
        except asyncio.CancelledError:
            call_started.set(not job.cancel())  # still queued: it will never run
            if deadline is not None and not job.done() and time.monotonic() >= deadline - 0.01:
                self._watch(job, mv)  # cancelled by its deadline while computing: it may be hung
            raise
        except ModelServeError:
            raise
        except Exception as exc:
            raise RuntimeFailure(f"runtime of {mv.label} raised {type(exc).__name__}: {exc}") from exc

    def _watch(self, job: Future[Any], mv: ModelVersion) -> None:
        def check() -> None:
            if not job.done() and mv.on_hung is not None:
                mv.on_hung(job)

        asyncio.get_running_loop().call_later(HUNG_GRACE_S, check)

    def release(self) -> None:
        """Unpin (once); deferred until a computation abandoned by a cancelled caller ends."""
        if self._released:
            return
        self._released = True
        job = self._job
        if job is not None and not job.done():
            loop = asyncio.get_running_loop()
            job.add_done_callback(lambda _: loop.call_soon_threadsafe(self._unpin))
        else:
            self._unpin()

    def _unpin(self) -> None:
        self._mv.unpin()

    def __enter__(self) -> Handle:
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.release()


def _check_elements(request: InferRequest, limit: int) -> None:
    total = sum(tensor.data.size for tensor in request.inputs)
    if total > limit:
        shapes = ", ".join(f"{tensor.name!r} {list(tensor.shape)}" for tensor in request.inputs)
        raise RequestTooLarge(
            f"the request's inputs hold {total} elements ({shapes}); the limit is {limit} (max_tensor_elements)"
        )


def _timed_predict(
    runtime: Runtime,
    feeds: dict[str, np.ndarray],
    requested: list[str] | None,
    deadline: float | None,
    signature: str | None,
) -> tuple[dict[str, np.ndarray], float, float]:
    """:func:`_predict`, with when (``time.perf_counter()``) it started and finished."""
    started = time.perf_counter()
    raw = _predict(runtime, feeds, requested, deadline, signature)
    return raw, started, time.perf_counter()


def _predict(
    runtime: Runtime,
    feeds: dict[str, np.ndarray],
    requested: list[str] | None,
    deadline: float | None,
    signature: str | None,
) -> dict[str, np.ndarray]:
    if deadline is not None and time.monotonic() >= deadline:
        raise DeadlineExceeded("the request's deadline passed while it waited for a worker; it was not run")
    set_call_deadline(deadline)
    if signature is None:
        return runtime.predict(feeds, requested)
    # only a MultiSignatureRuntime has plans for other signatures (see _load_blocking)
    return cast(MultiSignatureRuntime, runtime).predict(feeds, requested, signature=signature)


class ModelManager:
    def __init__(
        self,
        pool: Pool,
        repository: Path,
        trust_code: bool = False,
        decode_sample: warmup.SampleDecoder | None = None,
        catalog: Catalog | None = None,
        residency: Residency | None = None,
        record_stats: bool = True,
        composer: Composer | None = None,
    ) -> None:
        """``decode_sample`` turns a warmup file (``<version>/warmup/*.json``) into a request; without
        one, a version that ships warmup files fails to load rather than skip them silently.
        ``composer`` loads inference graphs (directories with a ``graph.yaml``); without one they fail."""
        self._pool = pool
        self.repository = repository
        self._trust_code = trust_code  # load model-as-code (model.py), which runs arbitrary Python
        self._decode_sample = decode_sample
        self.catalog: Catalog = catalog if catalog is not None else PolicyCatalog()
        self.residency = residency if residency is not None else Residency()
        self.stats = ServerStats()
        self._record_stats = record_stats  # off: no per-request figures (benchmarks measure the cost)
        self.composer = composer  # settable: a graph composer needs the manager it calls
        self._waking: dict[str, asyncio.Task[None]] = {}  # asleep models being loaded for a request
        self._recycles: set[asyncio.Task[None]] = set()  # fresh runtimes loading after a hung call
        self._models: dict[str, Model] = {}
        self._locks: dict[str, asyncio.Lock] = {}  # one load/unload at a time per model name
        self.ready = False  # True once the first repository load has settled
        # tensor elements one request may send, all inputs together (RequestTooLarge); 0: no limit
        self.max_request_elements = 0

    # -- queries ---------------------------------------------------------------------------

    def model(self, name: str) -> Model:
        model = self._models.get(name)
        if model is None:
            raise ModelNotFound(f"model {name!r} is not in the repository")
        return model

    def acquire(self, name: str, version: int | None = None, label: str | None = None) -> Handle:
        """Handle to a READY version: ``version``, else the one ``label`` names, else the default.
        Unload waits for its release.

        Raises ModelNotFound, VersionNotFound (an unknown version or label), or ModelNotReady
        naming the state and reason.
        """
        model = self.model(name)
        if version is None and label is not None:
            version = model.labelled(label)
        if version is None:
            return Handle(model, model.default_version(), self._pool, self.max_request_elements)
        mv = model.versions.get(version)
        if mv is None:
            raise model.missing(version)
        if mv.state is not ModelState.READY:
            reason = f": {mv.reason}" if mv.reason else ""
            raise ModelNotReady(f"model {mv.label} is {mv.state.value}{reason}")
        return Handle(model, mv, self._pool, self.max_request_elements)

    async def checkout(self, name: str, version: int | None = None, label: str | None = None) -> Handle:
        """:meth:`acquire`, but a model that is asleep (not loaded yet, idle, evicted) is loaded
        first; the caller waits for it (at most ``residency.load_wait_s``). Raises as acquire does."""
        try:
            return self.acquire(name, version, label)
        except ModelNotReady:
            model = self._models.get(name)
            waking = name in self._waking
            if model is None or not (waking or any(mv.asleep for mv in model.versions.values())):
                raise
        task = self._waking.get(name)
        if task is None:
            task = self._waking[name] = asyncio.create_task(self._wake(name))
            task.add_done_callback(lambda _: self._waking.pop(name, None))
        try:  # shielded: a caller that gives up does not cancel the load for the others
            await asyncio.wait_for(asyncio.shield(task), self.residency.load_wait_s)
        except TimeoutError:
            raise ModelNotReady(
                f"model {name!r} is loading and was not ready within {self.residency.load_wait_s:g} s; retry"
            ) from None
        return self.acquire(name, version, label)

    async def _wake(self, name: str) -> None:
        async with self._locks.setdefault(name, asyncio.Lock()):
            model = self._models.get(name)
            if model is None:
                return
            sleepers = [mv for mv in model.versions.values() if mv.asleep]
            log.info("model %r was asleep; loading it for a request", name)
            for mv in sleepers:
                mv.asleep, mv.state, mv.reason = False, ModelState.LOADING, ""
            await asyncio.gather(*(self._load(mv, model.config) for mv in sleepers))

    def record_request(self, name: str, version: int | None, protocol: str, outcome: str, seconds: float) -> None:
        """Count one inference request of model ``name`` (a name the repository does not know is
        not counted per model: clients must not be able to create metric labels at will)."""
        if not self._record_stats or name not in self._models:
            return
        self.stats.version(name, "" if version is None else str(version)).request(protocol, outcome, seconds)

    def configs(self) -> dict[str, ModelConfig]:
        """Each known model's config.yaml as last loaded (routing reads its traffic policies)."""
        return {name: model.config for name, model in self._models.items()}

    def versions(self) -> list[tuple[str, ModelVersion]]:
        """Every known version of every model: for statistics and metrics."""
        return [(name, mv) for name, model in self._models.items() for mv in model.versions.values()]

    def statuses(self, name: str) -> list[VersionStatus]:
        model = self.model(name)
        return [VersionStatus(v.version, v.state, _reason(model, v)) for v in model.versions.values()]

    async def metadata(self, name: str, version: int | None = None, label: str | None = None) -> ModelMetadata:
        """Metadata of one version (chosen as :meth:`checkout` does); ``versions`` lists every READY one."""
        with await self.checkout(name, version, label) as handle:
            meta = handle.metadata
        ready = tuple(v.version for v in self._models[name].versions.values() if v.state is ModelState.READY)
        return ModelMetadata(meta.name, ready, meta.platform, meta.signature, meta.metadata)

    def index(self, ready_only: bool = False) -> list[IndexEntry]:
        """Every model in the repository directory or in memory, one entry per known version.

        A model that was never loaded has an entry with its name only. ``ready_only`` keeps READY
        versions. Reads the repository directory (blocking, but cheap: one listing per model).
        """
        try:
            names = {source.name for source in scan(self.repository)}
        except ConfigError:
            log.warning("repository %s is gone; indexing the models in memory only", self.repository)
            names = set()
        entries: list[IndexEntry] = []
        for name in sorted(names | set(self._models)):
            model = self._models.get(name)
            if model is None or not model.versions:
                entries.append(IndexEntry(name, reason=model.error if model is not None else ""))
                continue
            entries.extend(IndexEntry(name, mv.version, mv.state, _reason(model, mv)) for mv in model.versions.values())
        if ready_only:
            return [e for e in entries if e.state is ModelState.READY]
        return entries

    # -- lifecycle -------------------------------------------------------------------------

    def discover(self) -> list[ModelSource]:
        """The models under the repository. Raises ConfigError if it is not a directory.

        A catalog that keeps the bytes elsewhere (an artifact store) lays out its model directories
        first; their versions are fetched as they load (``decide``), once the server is listening."""
        self.catalog.sync(self.repository, fetch=False)
        return scan(self.repository)

    async def load_repository(self, sources: Iterable[ModelSource]) -> None:
        """Load what the catalog selects of each source, concurrently. Returns when every load settled."""
        sources = list(sources)
        # graphs last: loading one checks the models it calls, which must have settled first
        for group in ([s for s in sources if not s.graph], [s for s in sources if s.graph]):
            loads: list[Awaitable[None]] = []
            for source in group:
                model, decision = await asyncio.to_thread(self._declare, source)
                self._models[source.name] = model
                _, fresh = self._plan_reload(None, model, source, decision)
                model.versions = {mv.version: mv for mv in fresh}
                lazy = self.residency.lazy and not source.graph  # a graph holds no memory of its own
                loads.extend(self._start(mv, model, decision, lazy) for mv in fresh)
            await asyncio.gather(*loads)
        self.ready = True

    async def load_model(self, name: str, wake: bool = True) -> None:
        """Load, or reload, one model from the repository directory, without dropping requests.

        Versions the catalog selects load beside the serving ones; then the model switches over
        at once and retired versions drain and unload. A READY version whose files, checksums and
        config are unchanged is kept as is. If any selected version fails, a model that was
        serving keeps serving exactly as before. ``name`` must already be checked
        (protocol.names). Raises ModelNotFound (no such directory) or ModelLoadFailed (with each
        failure's reason).
        """
        source = scan_one(self.repository, name)
        if source is None:
            raise ModelNotFound(f"model {name!r} is not in the repository")
        async with self._locks.setdefault(name, asyncio.Lock()):
            old = self._models.get(name)
            new, decision = await asyncio.to_thread(self._declare, source)
            keep, fresh = self._plan_reload(old, new, source, decision)
            # a model that sleeps (lazy, idle, evicted) stays asleep through a change on disk
            asleep = not wake and old is not None and any(mv.asleep for mv in old.versions.values())
            asleep = (
                asleep and old is not None and not any(mv.state is ModelState.READY for mv in old.versions.values())
            )
            await asyncio.gather(*(self._start(mv, new, decision, asleep) for mv in fresh))
            failed = [mv for mv in fresh if mv.state is ModelState.FAILED]
            broken = bool(failed) or (bool(new.error) and decision.mistake)
            serving = old is not None and any(mv.state is ModelState.READY for mv in old.versions.values())
            if broken and serving:
                assert old is not None
                await asyncio.gather(*(self._retire(mv) for mv in fresh if mv.state is ModelState.READY))
                message = _load_failure(name, new, failed)
                self._keep_serving(old, failed, message)
                raise ModelLoadFailed(message + "; the versions already serving stay")
            new.versions = dict(sorted({**keep, **{mv.version: mv for mv in fresh}}.items()))
            self._models[name] = new
            if old is not None:
                kept = set(map(id, keep.values()))
                await asyncio.gather(*(self._retire(mv) for mv in old.versions.values() if id(mv) not in kept))
            if broken or (not new.versions and decision.mistake):
                raise ModelLoadFailed(_load_failure(name, new, failed))

    async def _start(self, mv: ModelVersion, model: Model, decision: Decision, lazy: bool = False) -> None:
        """Load ``mv`` (or with ``lazy``, leave it asleep until a request wants it), or fail it at
        once when the model or the catalog says it cannot serve."""
        refused = decision.refused.get(mv.version)
        if model.error or refused:
            self._fail(mv, model.error or refused or "")
            await self._record("load_failed", mv)
            return
        if lazy:
            mv.asleep, mv.state, mv.reason = True, ModelState.UNLOADED, ASLEEP
            return
        await self._load(mv, model.config)

    @staticmethod
    def _keep_serving(old: Model, failed: list[ModelVersion], message: str) -> None:
        """Leave ``old`` serving, with the failure on record where the index and status show it.

        A failed version with a new number is listed as FAILED beside the serving ones (the
        default version stays the newest READY one); a serving version whose files were replaced
        by broken ones keeps serving the files it loaded, and says so."""
        old.reload_error = message
        for mv in failed:
            current = old.versions.get(mv.version)
            if current is None or current.state is not ModelState.READY:
                old.versions[mv.version] = mv
        old.versions = dict(sorted(old.versions.items()))

    @staticmethod
    def _plan_reload(
        old: Model | None, new: Model, source: ModelSource, decision: Decision
    ) -> tuple[dict[int, ModelVersion], list[ModelVersion]]:
        """Which serving versions stay as they are, and which versions must load afresh."""
        keep: dict[int, ModelVersion] = {}
        fresh = []
        for version in decision.selected:
            current = old.versions.get(version) if old is not None else None
            path = source.versions.get(version, source.path / str(version))
            files = fingerprint(path)
            checksums = decision.checksums.get(version)
            if (
                current is not None
                and old is not None
                and current.state is ModelState.READY
                and current.path == path
                and current.files == files
                and current.checksums == checksums
                and version not in decision.refused
                and _same_load_config(old.config, new.config)
            ):
                keep[version] = current
            else:
                fresh.append(ModelVersion(source.name, version, path, files, checksums, graph=source.graph))
        return keep, fresh

    async def unload_model(self, name: str, timeout: float | None = 30.0) -> None:
        """Unload every version of a model, letting in-flight requests finish (``timeout`` s each).

        The versions stay listed as UNLOADED until the next load. Raises ModelNotFound for a name
        that is neither loaded nor in the repository; unloading an unloaded model does nothing.
        """
        if name not in self._models:
            if scan_one(self.repository, name) is None:
                raise ModelNotFound(f"model {name!r} is not in the repository")
            return
        async with self._locks.setdefault(name, asyncio.Lock()):
            model = self._models[name]
            await asyncio.gather(*(self._retire(mv, timeout) for mv in model.versions.values()))

    async def unload(self, name: str, version: int, timeout: float | None = None) -> None:
        """Refuse new requests to the version, wait for in-flight ones (up to ``timeout`` s), unload."""
        mv = self.model(name).versions.get(version)
        if mv is None:
            raise VersionNotFound(f"model {name!r} has no version {version}")
        await self._retire(mv, timeout)

    async def shutdown(self, timeout: float = 30.0) -> None:
        """Unload every version, letting in-flight requests finish (up to ``timeout`` s each)."""
        await asyncio.gather(
            *(
                self._retire(mv, timeout, collect=False)
                for m in list(self._models.values())
                for mv in m.versions.values()
            )
        )

    async def _retire(self, mv: ModelVersion, timeout: float | None = 30.0, collect: bool = True) -> None:
        """Stop ``mv`` taking requests, wait for its in-flight ones, unload it. ``collect``: free
        its reference cycles now (pointless when the process is exiting)."""
        if mv.state in (ModelState.UNLOADING, ModelState.UNLOADED):
            return
        if mv.state is not ModelState.READY:  # FAILED or LOADING: nothing runs on it
            mv.state, mv.reason = ModelState.UNLOADED, "unloaded"
            return
        mv.state = ModelState.UNLOADING  # acquire() refuses it from now on; pinned handles still run
        if mv.inflight:
            mv.drained.clear()
            try:
                await asyncio.wait_for(mv.drained.wait(), timeout)
            except TimeoutError:
                log.warning("unloading %s with %d request(s) still running", mv.label, mv.inflight)
        runtime, mv.runtime = mv.runtime, None
        composite, mv.composite = mv.composite, None
        if composite is not None:
            composite.close()
        if runtime is not None:
            await self._pool.load(_unload_blocking, runtime, collect)
        mv.state, mv.reason = ModelState.UNLOADED, "unloaded"
        log.info("unloaded model %s", mv.label)
        if collect:  # not at shutdown: the process is going, and so may the registry's connections
            await self._record("unload", mv)

    def _declare(self, source: ModelSource) -> tuple[Model, Decision]:
        """The model as config.yaml and the catalog describe it, without versions yet. Blocks."""
        try:
            config = load_model_config(source.config_path)
        except Exception as exc:  # one bad config must not stop the other models loading
            message = exc.message if isinstance(exc, ModelServeError) else f"cannot read config.yaml: {exc!r}"
            log.error("model %r: %s", source.name, message)
            return Model(source.name, ModelConfig(), error=message), Decision(list(source.versions)[-1:])
        if source.graph:  # graphs are not registered artifacts: the catalog has no say; version 1 serves
            return Model(source.name, config), Decision([1])
        try:
            decision = self.catalog.decide(source, config)
        except ModelServeError as exc:
            log.error("model %r: the catalog cannot say what to serve: %s", source.name, exc.message)
            return Model(source.name, config, error=exc.message), Decision([])
        model = Model(
            source.name,
            config,
            error=decision.error,
            labels=decision.labels,
            retired=decision.retired,
            sunset=decision.sunset,
            unserved=decision.unserved,
        )
        if decision.error:
            log.log(logging.ERROR if decision.mistake else logging.INFO, "model %r: %s", source.name, decision.error)
        for label, version in decision.labels.items():
            if version not in decision.selected:
                log.warning(
                    "model %r: version label %r names version %s, which is not selected to serve %s; "
                    "requests for the label get 503",
                    source.name, label, version, decision.selected,
                )  # fmt: skip
        return model, decision

    async def _load(self, mv: ModelVersion, config: ModelConfig) -> None:
        if mv.graph:
            await self._load_graph(mv, config)
            return
        started = time.perf_counter()
        files = sum(size for _, size, _ in mv.files)
        await self._make_room(mv, max(mv.memory, files))
        before = residency.resident_bytes()
        try:
            runtime, metadata, plans = await self._load_within(mv, config)
        except Exception as exc:
            await self._load_failed(mv, started, exc)
            return
        self.stats.loaded(mv.model, time.perf_counter() - started, ok=True)
        mv.stats = self.stats.version(mv.model, str(mv.version)) if self._record_stats else None
        mv.runtime, mv.metadata, mv.plans = runtime, metadata, plans
        mv.plan = next(iter(plans.values()))
        mv.signatures = {name: plan.signature for name, plan in plans.items()}
        self._batch(mv, runtime, config)
        if config.cache.enabled:
            mv.cache = ResponseCache(config.cache.max_entries, config.cache.max_bytes)
        mv.memory = max(files, residency.resident_bytes() - before)
        mv.last_used = time.monotonic()
        mv.state = ModelState.READY
        log.info("model %s READY (%s) in %.2f s", mv.label, metadata.platform, time.perf_counter() - started)
        await self._make_room(mv, mv.memory)  # its real size is known now: others may have to make way
        await self._record("load", mv)

    async def _load_within(
        self, mv: ModelVersion, config: ModelConfig
    ) -> tuple[Runtime, ModelMetadata, dict[str, Plan]]:
        """``_load_blocking`` on a loader thread, given up after ``limits.load_timeout_s``: the
        version fails, the thread is replaced, and a runtime that loads after all is unloaded."""
        job = self._pool.submit_load(_load_blocking, mv, config, self._trust_code, self._decode_sample)
        limit = config.limits.load_timeout_s or None
        try:
            return await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(job)), limit)
        except TimeoutError:
            if job.done():
                return job.result()
            self._pool.abandon_load(job)

            def late(done: Future[tuple[Runtime, ModelMetadata, dict[str, Plan]]]) -> None:
                if not done.cancelled() and done.exception() is None:
                    _unload_blocking(done.result()[0], collect=False)

            job.add_done_callback(late)
            raise LoadError(
                f"model {mv.label} did not load within {limit:g} s (config.yaml limits.load_timeout_s); "
                "the load was abandoned"
            ) from None

    async def _load_graph(self, mv: ModelVersion, config: ModelConfig) -> None:
        """Build the graph in ``mv.path`` with the composer; it computes on the event loop."""
        started = time.perf_counter()
        try:
            if self.composer is None:
                raise LoadError(f"{mv.path / GRAPH_FILE}: this server does not serve inference graphs")
            composite = await self.composer(mv.model, mv.path)
            plan = Plan(mv.label, adapt(composite.signature, config.signature))
        except Exception as exc:
            await self._load_failed(mv, started, exc)
            return
        self.stats.loaded(mv.model, time.perf_counter() - started, ok=True)
        mv.stats = self.stats.version(mv.model, str(mv.version)) if self._record_stats else None
        mv.composite, mv.plan = composite, plan
        mv.plans = {DEFAULT_SIGNATURE: plan}
        mv.signatures = {DEFAULT_SIGNATURE: plan.signature}
        mv.metadata = ModelMetadata(mv.model, (mv.version,), composite.platform, plan.signature, config.metadata)
        if config.cache.enabled:
            mv.cache = ResponseCache(config.cache.max_entries, config.cache.max_bytes)
        mv.last_used = time.monotonic()
        mv.state = ModelState.READY
        log.info("graph %s READY in %.3f s", mv.label, time.perf_counter() - started)
        await self._record("load", mv)

    async def _load_failed(self, mv: ModelVersion, started: float, exc: Exception) -> None:
        """``mv`` did not load: FAILED with the reason (a LoadError's message; anything else is our
        bug, logged with its traceback), counted, and told to the catalog."""
        if isinstance(exc, LoadError):
            reason = exc.message
        else:
            log.error("model %s failed to load", mv.label, exc_info=exc)
            reason = f"unexpected {type(exc).__name__} while loading: {exc}"
        self._fail(mv, reason)
        self.stats.loaded(mv.model, time.perf_counter() - started, ok=False)
        await self._record("load_failed", mv)

    async def _make_room(self, incoming: ModelVersion, needed: int) -> None:
        """Put least recently used versions of other models to sleep until ``needed`` more bytes
        fit in the memory budget (as far as versions not serving a request allow)."""
        budget = self.residency.memory_budget_bytes
        if not budget:
            return
        loaded = [
            mv
            for m in self._models.values()
            for mv in m.versions.values()
            if mv.state is ModelState.READY and mv.model != incoming.model
        ]
        for mv in residency.evictions(loaded, needed, budget):
            log.info("evicting model %s (%d MiB) to stay within the memory budget", mv.label, mv.memory >> 20)
            await self._sleep(mv, "evicted to stay within the memory budget")

    async def sleep_idle(self) -> None:
        """Put to sleep every version unused for ``residency.idle_unload_s`` (called periodically)."""
        if not self.residency.idle_unload_s:
            return
        loaded = [mv for m in self._models.values() for mv in m.versions.values() if mv.state is ModelState.READY]
        for mv in residency.idle(loaded, time.monotonic(), self.residency.idle_unload_s):
            await self._sleep(mv, f"idle for {self.residency.idle_unload_s:g} s")

    async def _sleep(self, mv: ModelVersion, why: str) -> None:
        async with self._locks.setdefault(mv.model, asyncio.Lock()):
            if mv.state is not ModelState.READY or mv.inflight:
                return  # in use again, or already going
            await self._retire(mv)
            mv.asleep, mv.reason = True, f"{why}; {ASLEEP}"

    def _batch(self, mv: ModelVersion, runtime: Runtime, config: ModelConfig) -> None:
        """Give ``mv`` a batcher when config allows and a signature has a batch dimension."""
        mv.batchable = frozenset(name for name, signature in mv.signatures.items() if _batchable(signature))
        instances = config.instances or config.processes or self._pool.threads
        if mv.admission is None:  # kept when the runtime is recycled: it counts the requests in flight
            mv.admission = Admission(mv.label, config.limits, instances)
        mv.on_hung = partial(self._hung, mv)
        mv.batcher = None
        if not config.batching.enabled or not mv.batchable:
            return
        policy = BatchPolicy(
            max_batch_size=config.batching.max_batch_size,
            max_delay_ms=config.batching.max_delay_ms,
            preferred_batch_sizes=config.batching.preferred_batch_sizes,
            instances=instances,
        )

        def predict(feeds: dict[str, np.ndarray], requested: list[str] | None, signature: str | None) -> Raw:
            return _predict(runtime, feeds, requested, None, signature)

        mv.batcher = Batcher(
            self._pool,
            predict,
            policy,
            mv.label,
            pin=mv.pin,
            unpin=mv.unpin,
            observe=mv.stats,
            on_hung=mv.on_hung,
        )

    def _hung(self, mv: ModelVersion, job: Future[Any]) -> None:
        """A call of ``mv`` runs past its deadline: its thread is replaced, and an in-process runtime
        is recycled (a fresh one loads and takes over), since the hung call may hold what the next
        ones need (a model's lock). A worker-process runtime stops its hung calls itself."""
        log.warning("a runtime call of model %s is hung past its deadline; its thread is replaced", mv.label)
        self._pool.abandon(job)
        if mv.recycling or isinstance(mv.runtime, ProcessRuntime) or mv.state is not ModelState.READY:
            return
        mv.recycling = True
        task = asyncio.get_running_loop().create_task(self._recycle(mv, job))
        self._recycles.add(task)
        task.add_done_callback(self._recycles.discard)

    async def _recycle(self, mv: ModelVersion, hung: Future[Any]) -> None:
        model = self._models.get(mv.model)
        try:
            if model is None:
                return
            runtime, _, _ = await self._load_within(mv, model.config)
        except Exception as exc:
            log.error("model %s: a fresh runtime to replace the hung one did not load: %s", mv.label, exc)
            return
        finally:
            mv.recycling = False
        if mv.state is not ModelState.READY or mv.runtime is None:
            await self._pool.load(_unload_blocking, runtime, True)
            return
        old, mv.runtime = mv.runtime, runtime
        self._batch(mv, runtime, model.config)  # new requests go to the fresh runtime from now on
        log.info("model %s: runtime recycled after a hung call; the old one unloads when that call returns", mv.label)
        loader = self._pool
        hung.add_done_callback(lambda _: loader.submit_load(_unload_blocking, old, True))

    async def _record(self, action: str, mv: ModelVersion) -> None:
        """Tell the catalog (the registry's audit log, when serving from one); never fails the caller."""
        try:
            await asyncio.to_thread(self.catalog.record, action, mv.model, mv.version, mv.reason)
        except Exception:
            log.exception("could not record %s of model %s", action, mv.label)

    @staticmethod
    def _fail(mv: ModelVersion, reason: str) -> None:
        mv.state, mv.reason = ModelState.FAILED, reason
        log.error("model %s FAILED: %s", mv.label, reason)


def _batchable(signature: Signature) -> bool:
    """Every input and output has a variable first (batch) dimension."""
    tensors = (*signature.inputs, *signature.outputs)
    return bool(signature.inputs) and all(len(t.shape) >= 1 and t.shape[0] == -1 for t in tensors)


def _same_load_config(a: ModelConfig, b: ModelConfig) -> bool:
    """Whether a version loaded under config ``a`` can serve under ``b``: labels and traffic only
    route, and monitoring only watches."""

    def loaded(config: ModelConfig) -> ModelConfig:
        return replace(config, version_labels={}, traffic=None, monitoring=DEFAULT_CONFIG.monitoring)

    return loaded(a) == loaded(b)


def _reason(model: Model, mv: ModelVersion) -> str:
    """What the index and status endpoints say about a version: a READY version of a model whose
    last reload failed carries that failure (it serves what was loaded before)."""
    if mv.state is ModelState.READY and model.reload_error:
        return f"serving; the last reload failed, so this version stays: {model.reload_error}"
    return mv.reason


def _unload_blocking(runtime: Runtime, collect: bool) -> None:
    runtime.unload()
    if not collect:
        return
    # The server freezes its objects after the initial load (gc.freeze) to spare the collector;
    # a model's reference cycles (TensorFlow's function graphs, say) would then never be freed.
    # Unfreeze, collect and refreeze: one full collection per unload, not per request.
    if gc.get_freeze_count():
        gc.unfreeze()
        gc.collect()
        gc.freeze()


def _load_failure(name: str, model: Model, failed: list[ModelVersion]) -> str:
    if model.error:
        return f"model {name!r} failed to load: {model.error}"
    if not failed:
        return f"model {name!r} failed to load: its version policy selects no version"
    reasons = "; ".join(f"version {mv.version}: {mv.reason}" for mv in failed)
    return f"model {name!r} failed to load: {reasons}"


def _load_blocking(
    mv: ModelVersion, config: ModelConfig, trust_code: bool, decode_sample: warmup.SampleDecoder | None
) -> tuple[Runtime, ModelMetadata, dict[str, Plan]]:
    loaded = load_version(
        mv.path, mv.label, config, trust_code=trust_code, decode_sample=decode_sample, checksums=mv.checksums
    )
    metadata = ModelMetadata(mv.model, (mv.version,), loaded.runtime.platform, loaded.signature, config.metadata)
    return loaded.runtime, metadata, loaded.plans
