"""The model manager: loads the versions the repository announces, tracks their states, and hands
out :class:`Handle` objects that pin one READY version for one request.

All state lives on the event loop thread, so counters and dicts need no locks; blocking work
(imports, loading, predicting, unloading) goes through :class:`~modelserve.core.pool.Pool`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from modelserve.config.model import ModelConfig, load_model_config
from modelserve.core.policy import select_versions
from modelserve.core.pool import Pool
from modelserve.core.signature import adapt
from modelserve.core.validation import Plan
from modelserve.errors import (
    LoadError,
    ModelNotFound,
    ModelNotReady,
    ModelServeError,
    RuntimeFailure,
    VersionNotFound,
)
from modelserve.repository.layout import ModelSource, scan
from modelserve.runtimes.base import Runtime
from modelserve.runtimes.registry import resolve
from modelserve.types import InferRequest, InferResponse, ModelMetadata, ModelState, VersionStatus

log = logging.getLogger(__name__)


@dataclass(eq=False, slots=True)
class ModelVersion:
    model: str
    version: int
    path: Path
    state: ModelState = ModelState.LOADING
    reason: str = ""
    runtime: Runtime | None = None
    plan: Plan | None = None
    metadata: ModelMetadata | None = None
    inflight: int = 0
    drained: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def label(self) -> str:
        return f"{self.model!r} version {self.version}"


@dataclass(eq=False, slots=True)
class Model:
    name: str
    config: ModelConfig
    versions: dict[int, ModelVersion] = field(default_factory=dict)
    error: str = ""  # why no version can be served at all (bad config, no version directories)

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

    __slots__ = ("_mv", "_pool", "_released")

    def __init__(self, mv: ModelVersion, pool: Pool) -> None:
        self._mv = mv
        self._pool = pool
        self._released = False
        mv.inflight += 1

    @property
    def version(self) -> int:
        return self._mv.version

    @property
    def metadata(self) -> ModelMetadata:
        assert self._mv.metadata is not None
        return self._mv.metadata

    async def infer(self, request: InferRequest) -> InferResponse:
        """Validate, run in the pool, shape the response. Raises InvalidInput or RuntimeFailure."""
        mv = self._mv
        plan, runtime = mv.plan, mv.runtime
        assert plan is not None and runtime is not None
        feeds = plan.inputs(request)
        requested = plan.requested(request)
        try:
            raw = await self._pool.run(runtime.predict, feeds, requested)
        except ModelServeError:
            raise
        except Exception as exc:
            raise RuntimeFailure(f"runtime of {mv.label} raised {type(exc).__name__}: {exc}") from exc
        return InferResponse(mv.model, str(mv.version), plan.outputs(raw, requested), id=request.id)

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._mv.inflight -= 1
            if self._mv.inflight == 0:
                self._mv.drained.set()

    def __enter__(self) -> Handle:
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.release()


class ModelManager:
    def __init__(self, pool: Pool) -> None:
        self._pool = pool
        self._models: dict[str, Model] = {}
        self.ready = False  # True once the first repository load has settled

    # -- queries ---------------------------------------------------------------------------

    def model(self, name: str) -> Model:
        model = self._models.get(name)
        if model is None:
            raise ModelNotFound(f"model {name!r} is not in the repository")
        return model

    def acquire(self, name: str, version: int | None = None) -> Handle:
        """Handle to a READY version (the default one if None). Unload waits for its release.

        Raises ModelNotFound, VersionNotFound, or ModelNotReady naming the state and reason.
        """
        model = self.model(name)
        if version is None:
            return Handle(model.default_version(), self._pool)
        mv = model.versions.get(version)
        if mv is None:
            raise VersionNotFound(f"model {name!r} has no version {version}; it has {sorted(model.versions)}")
        if mv.state is not ModelState.READY:
            reason = f": {mv.reason}" if mv.reason else ""
            raise ModelNotReady(f"model {mv.label} is {mv.state.value}{reason}")
        return Handle(mv, self._pool)

    def statuses(self, name: str) -> list[VersionStatus]:
        model = self.model(name)
        return [VersionStatus(v.version, v.state, v.reason) for v in model.versions.values()]

    def metadata(self, name: str, version: int | None = None) -> ModelMetadata:
        """Metadata of one version (default one if None); ``versions`` lists every READY version."""
        with self.acquire(name, version) as handle:
            meta = handle.metadata
        ready = tuple(v.version for v in self._models[name].versions.values() if v.state is ModelState.READY)
        return ModelMetadata(meta.name, ready, meta.platform, meta.signature, meta.metadata)

    # -- lifecycle -------------------------------------------------------------------------

    @staticmethod
    def discover(repository: Path) -> list[ModelSource]:
        """The models under ``repository``. Raises ConfigError if it is not a directory."""
        return scan(repository)

    async def load_repository(self, sources: Iterable[ModelSource]) -> None:
        """Load what each source's policy selects, concurrently. Returns when every load settled."""
        loads = []
        for source in sources:
            model, selected = self._declare(source)
            self._models[source.name] = model
            for version in selected:
                mv = ModelVersion(source.name, version, source.versions[version])
                model.versions[version] = mv
                if model.error:
                    self._fail(mv, model.error)
                else:
                    loads.append(self._load(mv, model.config))
        await asyncio.gather(*loads)
        self.ready = True

    async def unload(self, name: str, version: int, timeout: float | None = None) -> None:
        """Refuse new requests to the version, wait for in-flight ones (up to ``timeout`` s), unload."""
        mv = self.model(name).versions.get(version)
        if mv is None:
            raise VersionNotFound(f"model {name!r} has no version {version}")
        mv.state = ModelState.UNLOADING  # acquire() refuses it from now on; pinned handles still run
        if mv.inflight:
            mv.drained.clear()
            try:
                await asyncio.wait_for(mv.drained.wait(), timeout)
            except TimeoutError:
                log.warning("unloading %s with %d request(s) still running", mv.label, mv.inflight)
        runtime, mv.runtime = mv.runtime, None
        if runtime is not None:
            await self._pool.run(runtime.unload)
        mv.state = ModelState.UNLOADED
        del self._models[name].versions[version]
        log.info("unloaded model %s", mv.label)

    async def shutdown(self, timeout: float = 30.0) -> None:
        """Unload every version, letting in-flight requests finish (up to ``timeout`` s each)."""
        await asyncio.gather(
            *(self.unload(m.name, v, timeout) for m in list(self._models.values()) for v in list(m.versions))
        )

    def _declare(self, source: ModelSource) -> tuple[Model, list[int]]:
        try:
            config = load_model_config(source.config_path)
        except Exception as exc:  # one bad config must not stop the other models loading
            message = exc.message if isinstance(exc, ModelServeError) else f"cannot read config.yaml: {exc!r}"
            log.error("model %r: %s", source.name, message)
            return Model(source.name, ModelConfig(), error=message), list(source.versions)[-1:]
        model = Model(source.name, config)
        selected = select_versions(source.versions, config.version_policy)
        if not source.versions:
            model.error = f"{source.path} has no version directories (expected {source.path}/<version>/)"
            log.error("model %r: %s", source.name, model.error)
        elif not selected:
            model.error = f"version_policy selects none of the versions {list(source.versions)}"
            log.error("model %r: %s", source.name, model.error)
        return model, selected

    async def _load(self, mv: ModelVersion, config: ModelConfig) -> None:
        started = time.perf_counter()
        try:
            runtime, metadata, plan = await self._pool.run(_load_blocking, mv, config)
        except LoadError as exc:
            self._fail(mv, exc.message)
            return
        except Exception as exc:
            log.exception("model %s failed to load", mv.label)
            self._fail(mv, f"unexpected {type(exc).__name__} while loading: {exc}")
            return
        mv.runtime, mv.metadata, mv.plan = runtime, metadata, plan
        mv.state = ModelState.READY
        log.info("model %s READY (%s) in %.2f s", mv.label, metadata.platform, time.perf_counter() - started)

    @staticmethod
    def _fail(mv: ModelVersion, reason: str) -> None:
        mv.state, mv.reason = ModelState.FAILED, reason
        log.error("model %s FAILED: %s", mv.label, reason)


def _load_blocking(mv: ModelVersion, config: ModelConfig) -> tuple[Runtime, ModelMetadata, Plan]:
    factory, artifact = resolve(mv.path, config)
    runtime = factory()
    native = runtime.load(artifact, config)
    adapter = adapt(native, config.signature)
    metadata = ModelMetadata(mv.model, (mv.version,), runtime.platform, adapter.public, config.metadata)
    return runtime, metadata, Plan(f"{mv.label}", adapter)
