"""Live monitoring: every answered request of a profiled version feeds its drift detector.

The request path pays for one dictionary lookup and, for a monitored version, one append of
references to the request's and response's arrays to a bounded deque: no copy, no lock, no
statistics. A daemon thread wakes every :data:`DRAIN_S` seconds, takes everything queued, joins
each version's rows into one batch for its :class:`~modelserve.monitoring.drift.DriftDetector`
(outliers are counted there) and runs its check when due, at most one per ``min_interval_s`` (a
check costs milliseconds: at thousands of requests a second, checking every ``check_every`` rows
would cost more than serving). When the deque is full (the thread is behind), entries are dropped
and counted, never queued without bound. A check whose verdict changes
(drift starts or ends) writes a structured log event (``drift_detected`` / ``drift_resolved``).

Which versions are watched: those READY with a reference profile in the registry database
(``modelserve monitor profile``) and ``monitoring`` not off in config.yaml. The profiles are read
at start and every :data:`POLL_S` seconds, so a profile stored while the server runs, or a version
loaded later, starts being watched within that time.

A client that sends the request parameter ``outlier_score: true`` gets, in the response
parameters, ``outlier_score`` (the largest Mahalanobis distance of its rows from the reference) and
``outlier`` (whether any row is beyond the configured quantile of the reference): computed on the
request path, a few microseconds, only when asked.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import numpy as np

from modelserve.config.model import ModelConfig
from modelserve.core.manager import ModelManager
from modelserve.errors import ModelServeError
from modelserve.telemetry.logs import FIELDS
from modelserve.types import InferRequest, InferResponse, ModelState

log = logging.getLogger(__name__)

POLL_S = 5.0
DRAIN_S = 0.05
QUEUE_SIZE = 10_000
OUTLIER_PARAMETER = "outlier_score"

Key = tuple[str, int]  # (model, version)


class ProfileStore(Protocol):
    """Where reference profiles are kept (the registry's RegistryStore)."""

    def profiled(self) -> dict[tuple[str, int], datetime]: ...

    def profile(self, name: str, version: int) -> Any: ...

    def close(self) -> None: ...


@dataclass(eq=False)
class Watch:
    """One monitored version: its detector (used by the monitoring thread only) and what it said."""

    model: str
    version: int
    detector: Any  # monitoring.drift.DriftDetector
    scorer: Any  # monitoring.outliers.OutlierScorer; None without numeric features
    threshold: float  # the outlier distance: the reference rows' own at the configured quantile
    min_interval_s: float  # between two checks
    written: datetime  # when its profile was stored: a newer one replaces this watch
    report: dict[str, Any] | None = None  # the last check's DriftReport.to_dict()
    checked_at: float = 0.0  # time.time() of the last check
    drifting: bool = False
    errors: int = 0  # rows the detector could not take (a malformed batch)
    last_error: str = ""
    checks: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


class Monitoring:
    def __init__(
        self, manager: ModelManager, store: Callable[[bool], ProfileStore | None] | None, queue_size: int = QUEUE_SIZE
    ) -> None:
        """``store(create)``: the profile store, opened in a thread when first needed (None: none)."""
        self._manager = manager
        self._open_store = store
        self._store: ProfileStore | None = None
        self._watches: dict[Key, Watch] = {}  # replaced whole, never mutated: read without a lock
        self._queue: deque[tuple[Key, dict[str, np.ndarray], dict[str, np.ndarray]]] = deque()
        self._queue_size = queue_size
        self.dropped = 0  # entries the queue had no room for
        self._busy = False  # the monitoring thread is working on what it took
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._task: asyncio.Task[None] | None = None

    # -- the request path ------------------------------------------------------------------

    def observe(self, model: str, version: int, request: InferRequest, response: InferResponse) -> None:
        """Hand an answered request to its version's detector, if watched. Never blocks or raises."""
        watch = self._watches.get((model, version))
        if watch is None:
            return
        if request.parameters and request.parameters.get(OUTLIER_PARAMETER) is True:
            self._score(watch, request, response)
        if len(self._queue) >= self._queue_size:
            self.dropped += 1
            return
        inputs = {t.name: t.data for t in request.inputs}
        outputs = {t.name: t.data for t in response.outputs}
        self._queue.append(((model, version), inputs, outputs))  # deque.append: atomic, no lock

    @staticmethod
    def _score(watch: Watch, request: InferRequest, response: InferResponse) -> None:
        if watch.scorer is None:
            response.parameters["outlier_error"] = "the profile has no numeric features to score"
            return
        try:
            scores = watch.scorer.scores({t.name: t.data for t in request.inputs})
        except ModelServeError as exc:  # the request's inputs do not fit the profile: say so, do not fail
            response.parameters["outlier_error"] = exc.message
            return
        if len(scores):
            top = float(np.max(scores))
            response.parameters[OUTLIER_PARAMETER] = top
            response.parameters["outlier"] = bool(top > watch.threshold)

    # -- status ----------------------------------------------------------------------------

    def status(self, model: str, version: int | None = None) -> dict[str, Any]:
        """The monitoring of ``model``'s versions (or one): rows seen, outliers, the last report."""
        self._manager.model(model)  # ModelNotFound for an unknown name
        watches = [w for (m, v), w in sorted(self._watches.items()) if m == model and version in (None, v)]
        return {"model": model, "versions": [self._describe(w) for w in watches], "dropped": self.dropped}

    @staticmethod
    def _describe(watch: Watch) -> dict[str, Any]:
        detector = watch.detector
        return {
            "version": watch.version,
            "rows": int(detector.rows),
            "outliers": int(detector.outliers),
            "checks": watch.checks,
            "drift": watch.drifting,
            "checked_at": watch.checked_at or None,
            "profile_stored_at": watch.written.isoformat(),
            "errors": watch.errors,
            "last_error": watch.last_error,
            "report": watch.report,
        }

    def background(self, model: str, version: int) -> np.ndarray | None:
        """The version's reference rows, as its one 2-D input takes them: the background of
        model-agnostic explanations (monitoring/explain.py). None without a stored profile, or when
        the profile cannot give whole rows (several inputs, or a column profiled as categorical).
        Blocks (reads the registry database): call it from a worker thread."""
        from modelserve.monitoring.profile import Profile

        store = self._store
        if store is None and self._open_store is not None:
            store = self._store = self._open_store(False)
        record = None if store is None else store.profile(model, version)
        if record is None:
            return None
        profile = Profile.from_dict(record.profile)
        features = profile.inputs
        whole = (
            profile.multivariate is not None
            and len(profile.input_names) == 1
            and all(f.kind == "numeric" for f in features)
            and [f.column for f in features] == list(range(len(features)))
        )
        return np.asarray(profile.multivariate.reference, dtype=np.float64) if whole else None  # type: ignore[union-attr]

    def snapshot(self) -> list[Watch]:
        """The watched versions, for metrics."""
        return list(self._watches.values())

    # -- background ------------------------------------------------------------------------

    async def start(self) -> None:
        """Read the profiles of the loaded versions, then keep them in step every POLL_S seconds."""
        await self.sync(create=False)
        if self._thread is None:
            self._thread = threading.Thread(target=self._drain, name="modelserve-monitoring", daemon=True)
            self._thread.start()
        if self._task is None:
            self._task = asyncio.create_task(self._poll())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._thread is not None:
            self._stopping.set()
            await asyncio.to_thread(self._thread.join, 5.0)
            self._thread = None
        if self._store is not None:
            await asyncio.to_thread(self._store.close)

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(POLL_S)
            try:
                await self.sync(create=False)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("reading the reference profiles failed; trying again in %s s", POLL_S)

    async def sync(self, create: bool = False) -> None:
        """Watch exactly the READY versions that have a profile and monitoring on."""
        store = await self._profile_store(create)
        if store is None:
            return
        stored = await asyncio.to_thread(store.profiled)
        configs = self._manager.configs()
        ready = {(name, mv.version) for name, mv in self._manager.versions() if mv.state is ModelState.READY}
        watches: dict[Key, Watch] = {}
        for key in sorted(ready & set(stored)):
            config = configs.get(key[0])
            if config is None or not config.monitoring.enabled:
                continue
            current = self._watches.get(key)
            if current is not None and current.written == stored[key] and current.extra.get("config") == config:
                watches[key] = current
                continue
            built = await asyncio.to_thread(self._build, store, key, config, stored[key])
            if built is not None:
                watches[key] = built
        self._watches = watches

    def _build(self, store: ProfileStore, key: Key, config: ModelConfig, written: datetime) -> Watch | None:
        from modelserve.monitoring.drift import DriftDetector, DriftSettings, preload
        from modelserve.monitoring.outliers import OutlierScorer
        from modelserve.monitoring.profile import Profile

        model, version = key
        try:
            preload()  # scipy and scikit-learn now, not in the first check under traffic
            record = store.profile(model, version)
            if record is None:
                return None
            profile = Profile.from_dict(record.profile)
            settings = DriftSettings(
                window=config.monitoring.window,
                min_rows=config.monitoring.min_rows,
                check_every=config.monitoring.check_every,
                p_value=config.monitoring.p_value,
                psi_threshold=config.monitoring.psi_threshold,
                multivariate=config.monitoring.multivariate,
                outlier_quantile=config.monitoring.outlier_quantile,
            )
            detector = DriftDetector(profile, settings)
            scorer = OutlierScorer(profile) if profile.numeric_names else None  # none for categorical-only
        except Exception as exc:
            message = exc.message if isinstance(exc, ModelServeError) else repr(exc)
            log.error("model %r version %s: cannot monitor it with its stored profile: %s", model, version, message)
            return None
        log.info("monitoring model %r version %s against its reference profile (%s)", model, version, record.source)
        monitoring = config.monitoring
        threshold = scorer.threshold(monitoring.outlier_quantile) if scorer is not None else float("inf")
        watch = Watch(model, version, detector, scorer, threshold, monitoring.min_interval_s, written)
        watch.extra["config"] = config
        return watch

    async def _profile_store(self, create: bool) -> ProfileStore | None:
        if self._store is None and self._open_store is not None:
            try:
                self._store = await asyncio.to_thread(self._open_store, create)
            except Exception as exc:
                message = exc.message if isinstance(exc, ModelServeError) else repr(exc)
                log.error("cannot open the registry database for reference profiles: %s", message)
                self._open_store = None
        return self._store

    # -- the monitoring thread -------------------------------------------------------------

    def _drain(self) -> None:
        while not self._stopping.wait(DRAIN_S):
            self._busy = True
            try:
                taken: dict[Key, list[tuple[dict[str, np.ndarray], dict[str, np.ndarray]]]] = {}
                while self._queue:
                    key, inputs, outputs = self._queue.popleft()
                    taken.setdefault(key, []).append((inputs, outputs))
                for key, batches in taken.items():
                    self._take(key, batches)
            finally:
                self._busy = False

    def _take(self, key: Key, batches: list[tuple[dict[str, np.ndarray], dict[str, np.ndarray]]]) -> None:
        """Feed a version's queued requests to its detector as one batch; check when due."""
        watch = self._watches.get(key)
        if watch is None:
            return
        try:
            watch.detector.add(_joined([i for i, _ in batches]), _joined([o for _, o in batches]))
            if watch.detector.due() and time.time() - watch.checked_at >= watch.min_interval_s:
                self._check(watch)
        except Exception as exc:
            watch.errors += 1
            watch.last_error = exc.message if isinstance(exc, ModelServeError) else repr(exc)
            if watch.errors == 1:
                log.warning("monitoring of model %r version %s: %s", watch.model, watch.version, watch.last_error)

    def _check(self, watch: Watch) -> None:
        started = time.perf_counter()
        report = watch.detector.check()
        watch.report = {**report.to_dict(), "distributions": watch.detector.distributions()}
        watch.checked_at = time.time()
        watch.checks += 1
        if bool(report.drift) != watch.drifting:
            watch.drifting = bool(report.drift)
            event = {
                "event": "drift_detected" if watch.drifting else "drift_resolved",
                "model": watch.model,
                "version": watch.version,
                "features": list(report.drifted_features),
                "outputs": list(report.drifted_outputs),
            }
            level = logging.WARNING if watch.drifting else logging.INFO
            what = ", ".join([*report.drifted_features, *report.drifted_outputs]) or "the joint distribution"
            log.log(level, "model %r version %s: %s (%s)", watch.model, watch.version,
                    "input drift detected" if watch.drifting else "drift resolved", what,
                    extra={FIELDS: event})  # fmt: skip
        log.debug("drift check of %r version %s took %.1f ms", watch.model, watch.version,
                  (time.perf_counter() - started) * 1000)  # fmt: skip

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until what was queued has been taken in (tests, benchmarks); False on timeout."""
        deadline = time.monotonic() + timeout
        time.sleep(DRAIN_S)  # what was appended just now may not have been seen by the thread yet
        while (self._queue or self._busy) and time.monotonic() < deadline:
            time.sleep(0.01)
        return not (self._queue or self._busy)


def _joined(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Requests' tensors joined along the rows (axis 0); a tensor whose shapes do not join (a
    malformed request slipped through, or a scalar) raises, and the batch is counted as an error."""
    if len(parts) == 1:
        return parts[0]
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}
