"""The traffic router: which model version answers a request, by each model's traffic policy.

Every inference request from every transport goes through :meth:`Router.infer`. A model without
a policy costs one dictionary lookup; a request that names a version or a label explicitly is
never re-routed (the caller knows what it wants). With a policy:

- **split** (A/B): weighted, sticky by a request key (header or parameter) so a user keeps a variant;
- **epsilon_greedy** / **thompson** (bandits): learn from ``POST /v2/models/{m}/feedback``; the
  response carries an ``id`` (made up when the request had none) for the feedback to name;
- **canary**: the candidate gets its current share; a background task compares its error rate and
  p99 with the stable version's over a sliding window every :data:`CHECK_INTERVAL_S`, rolls it
  back (share 0) when a threshold is crossed and steps it up when it stays healthy;
- **shadow** (with any of the above, or alone): a share of requests is mirrored to a candidate
  after the caller's answer is ready, at most ``max_shadows`` at a time (more are dropped and
  counted: mirrors must not take the inference threads the callers need), and the two answers are
  compared.

The chosen variant is returned in the response parameters (``variant``). Policies come from
config.yaml's ``traffic:`` unless an override was set through the admin API; overrides, the
bandits' learning and the canaries' progress are kept in the registry database (when the server
has one) and survive a restart. Routing state is per server process: with ``serve --workers N``
each worker routes, learns and judges its own share of the traffic.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import numpy as np

from modelserve.config.traffic import TrafficPolicy
from modelserve.core.manager import Handle, ModelManager
from modelserve.errors import InvalidInput, ModelNotFound, ModelServeError, NotFound, Unavailable
from modelserve.protocol.status import http_status
from modelserve.routing.canary import Verdict
from modelserve.routing.routes import CANDIDATE, HeaderLookup, Route
from modelserve.routing.shadow import outputs_agree
from modelserve.telemetry.logs import FIELDS
from modelserve.types import InferRequest, InferResponse

log = logging.getLogger(__name__)

CHECK_INTERVAL_S = 0.5  # how often canaries are judged and config.yaml policies picked up
SAVE_INTERVAL_S = 2.0  # how often learnt state is written to the registry database
VARIANT_PARAMETER = "variant"

Decoder = Callable[[Handle], InferRequest]


class Watch(Protocol):
    """What the transport wants to know about the version that answers (server/observe.py)."""

    def pin(self, handle: Handle) -> None: ...

    def payload(self, handle: Handle, request: InferRequest, response: InferResponse) -> None: ...


class StateStore(Protocol):
    """Where overrides, learnt state and routing events are kept (the registry's RegistryStore)."""

    def routings(self) -> list[Any]: ...

    def set_traffic(self, name: str, policy: dict[str, Any] | None, *, actor: str, reason: str = "") -> Any: ...

    def save_routing_state(self, name: str, state: dict[str, Any]) -> None: ...

    def close(self) -> None: ...

    def record(
        self,
        action: Any,
        name: str,
        version: int | None,
        *,
        actor: str,
        reason: str = "",
        details: dict[str, Any] | None = None,
    ) -> Any: ...


@dataclass(frozen=True, slots=True)
class Answer:
    response: InferResponse
    sunset: tuple[datetime, datetime] | None  # the answering version's retirement, if scheduled
    variant: str | None  # the variant chosen by a traffic policy, None without one


class Router:
    def __init__(
        self, manager: ModelManager, store: Callable[[bool], StateStore | None] | None = None, max_shadows: int = 1
    ) -> None:
        """``store(create)`` opens the state store (in a thread) when first needed, creating its
        database only when ``create`` (None: there is none yet); None: nothing persists.
        ``max_shadows``: mirrored requests in flight at once, all models together."""
        self._max_shadows = max_shadows
        self._manager = manager
        self._open_store = store
        self._store: StateStore | None = None
        self._routes: dict[str, Route] = {}
        self._overrides: dict[str, TrafficPolicy] = {}
        self._stored: dict[str, Mapping[str, Any]] = {}  # state read at start, restored once per route
        self._dirty: set[str] = set()
        self._shadows: set[asyncio.Task[None]] = set()
        self._task: asyncio.Task[None] | None = None

    # -- the request path ------------------------------------------------------------------

    async def infer(
        self,
        name: str,
        version: int | None,
        label: str | None,
        request: InferRequest | Decoder,
        header: HeaderLookup,
        watch: Watch,
        deadline: float | None = None,
    ) -> Answer:
        """Answer ``request`` for model ``name``; ``version``/``label`` as the client named them.

        ``request`` may be a function that decodes it against the chosen version (TF Serving's
        REST API needs the signature to decode); its sticky key then comes from headers only.
        ``deadline``: as :meth:`Handle.infer` takes it. Raises what the version raises."""
        route = self._routes.get(name)
        if route is None or version is not None or label is not None:
            with await self._manager.checkout(name, version, label) as handle:
                watch.pin(handle)
                decoded = request(handle) if callable(request) else request
                response = await handle.infer(decoded, deadline)
                watch.payload(handle, decoded, response)
                return Answer(response, handle.sunset, None)
        return await self._routed(route, request, header, watch, deadline)

    async def _routed(
        self, route: Route, request: InferRequest | Decoder, header: HeaderLookup, watch: Watch, deadline: float | None
    ) -> Answer:
        parameters = {} if callable(request) else request.parameters
        arm = route.choose(route.sticky_key(parameters, header))
        variant = route.variants[arm]
        target = variant.target
        started = time.perf_counter()
        try:
            with await self._manager.checkout(target.model or route.name, target.version, target.label) as handle:
                watch.pin(handle)
                request = request(handle) if callable(request) else request
                response = await handle.infer(request, deadline)
                watch.payload(handle, request, response)
                sunset = handle.sunset
        except Exception as exc:
            route.finished(arm, _server_error(exc), time.perf_counter() - started)
            raise
        route.finished(arm, False, time.perf_counter() - started)
        if route.policy.kind != "none":
            response.parameters[VARIANT_PARAMETER] = variant.name
        if route.ledger is not None:
            if not response.id:
                response.id = uuid.uuid4().hex
            route.ledger.remember(response.id, arm)
        shadow = route.policy.shadow
        if shadow is not None and route.shadow is not None and random.random() < shadow.share:
            self._mirror(route, request, response)
        return Answer(response, sunset, variant.name if route.policy.kind != "none" else None)

    def _mirror(self, route: Route, request: InferRequest, response: InferResponse) -> None:
        assert route.shadow is not None
        if len(self._shadows) >= self._max_shadows:
            route.shadow.dropped += 1
            return
        primary = {output.name: output.data for output in response.outputs}
        task = asyncio.create_task(self._shadow(route, request, primary))
        self._shadows.add(task)
        task.add_done_callback(self._shadows.discard)

    async def _shadow(self, route: Route, request: InferRequest, primary: dict[str, np.ndarray]) -> None:
        shadow, stats = route.policy.shadow, route.shadow
        assert shadow is not None and stats is not None
        stats.mirrored += 1
        target = shadow.target
        try:
            with await self._manager.checkout(target.model or route.name, target.version, target.label) as handle:
                answer = await handle.infer(request)
        except Exception as exc:  # the caller has its answer: a failing shadow is counted, not raised
            stats.errors += 1
            log.debug("shadow of model %r failed: %s", route.name, exc)
            return
        mirrored = {output.name: output.data for output in answer.outputs}
        if outputs_agree(primary, mirrored, shadow.rtol, shadow.atol):
            stats.agreed += 1
        else:
            stats.disagreed += 1

    # -- feedback --------------------------------------------------------------------------

    def feedback(self, name: str, request_id: object, reward: object) -> dict[str, Any]:
        """A reward for the variant that answered request ``request_id`` (bandit policies).
        Raises ModelNotFound, InvalidInput."""
        self._manager.model(name)  # ModelNotFound for a name the server does not know
        route = self._routes.get(name)
        if route is None or route.bandit is None or route.ledger is None:
            kind = "no traffic policy" if route is None else f"a {route.policy.kind} policy"
            raise InvalidInput(f"model {name!r} has {kind}; feedback is for epsilon_greedy and thompson policies")
        if not isinstance(request_id, str) or not request_id:
            raise InvalidInput(f"feedback 'id' must be the response id (a non-empty string), got {request_id!r}")
        if isinstance(reward, bool) or not isinstance(reward, int | float):
            raise InvalidInput(f"feedback 'reward' must be a number, got {reward!r}")
        arm = route.ledger.take(request_id)
        if arm is None:
            raise NotFound(
                f"no request {request_id!r} of model {name!r} is waiting for feedback "
                "(unknown, already rewarded, or older than the feedback window)"
            )
        try:
            route.bandit.reward(arm, float(reward))
        except InvalidInput:
            route.ledger.remember(request_id, arm)  # a bad reward does not use up the request
            raise
        self._dirty.add(name)
        return {"model": name, "id": request_id, "variant": route.variants[arm].name}

    # -- policies --------------------------------------------------------------------------

    def show(self, name: str) -> dict[str, Any]:
        """The policy serving ``name``, where it comes from, and its live figures."""
        self._manager.model(name)  # ModelNotFound for a name the server does not know
        route = self._routes.get(name)
        if route is None:
            return {"model": name, "source": "none", "policy": None, "state": {}}
        return {"model": name, "source": route.source, "policy": route.policy.to_dict(), "state": route.describe()}

    async def set_policy(self, name: str, policy: TrafficPolicy | None, actor: str, reason: str) -> dict[str, Any]:
        """Override ``name``'s config.yaml policy (None: go back to it). Audited in the registry
        database when there is one. Raises ModelNotFound, ServiceUnavailable (no database)."""
        self._manager.model(name)
        self._check_targets(name, policy)
        store = await self._state_store()
        if store is None:
            raise Unavailable(
                "traffic overrides need the registry database, which this server could not open; see its log"
            )
        await asyncio.to_thread(
            store.set_traffic, name, None if policy is None else policy.to_dict(), actor=actor, reason=reason
        )
        if policy is None:
            self._overrides.pop(name, None)
        else:
            self._overrides[name] = policy
        self._stored.pop(name, None)
        self._routes.pop(name, None)  # a changed policy starts afresh
        self.sync()
        log.info("traffic policy of model %r %s by %s: %s", name, "cleared" if policy is None else "set", actor, reason)
        return self.show(name)

    def _check_targets(self, name: str, policy: TrafficPolicy | None) -> None:
        """Every model a policy sends traffic to must be known (versions may load later)."""
        if policy is None:
            return
        targets = [v.target for v in policy.variants]
        if policy.canary is not None:
            targets += [policy.canary.stable, policy.canary.candidate]
        if policy.shadow is not None:
            targets.append(policy.shadow.target)
        for target in targets:
            if target.model is not None and target.model != name:
                try:
                    self._manager.model(target.model)
                except ModelNotFound:
                    raise InvalidInput(f"traffic policy of model {name!r} sends requests to unknown model "
                                       f"{target.model!r}") from None  # fmt: skip

    def sync(self) -> None:
        """Bring the routes in line with config.yaml's policies and the overrides."""
        configs = self._manager.configs()
        wanted: dict[str, tuple[TrafficPolicy, str]] = {}
        for name, config in configs.items():
            if name in self._overrides:
                wanted[name] = (self._overrides[name], "override")
            elif config.traffic is not None:
                wanted[name] = (config.traffic, "config")
        for name in list(self._routes):
            if name not in wanted:
                del self._routes[name]
        for name, (policy, source) in wanted.items():
            current = self._routes.get(name)
            if current is not None and current.policy == policy and current.source == source:
                continue
            route = Route(name, policy, source)
            stored = self._stored.pop(name, None)
            if stored is not None and route.restore(stored):
                log.info("traffic policy of model %r: learnt state restored from the registry database", name)
            self._routes[name] = route

    # -- background ------------------------------------------------------------------------

    async def start(self) -> None:
        """Read overrides and learnt state, build the routes, and start judging canaries."""
        store = await self._state_store(only_if_exists=True)
        if store is not None:
            records = await asyncio.to_thread(store.routings)
            for record in records:
                if record.policy is not None:
                    try:
                        self._overrides[record.model] = _parse(record.policy, f"registry override of {record.model!r}")
                    except ModelServeError as exc:
                        log.error("ignoring the stored traffic override of model %r: %s", record.model, exc.message)
                if record.state:
                    self._stored[record.model] = record.state
        self.sync()
        if self._task is None:
            self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for task in list(self._shadows):
            task.cancel()
        await self._save()
        if self._store is not None:
            await asyncio.to_thread(self._store.close)  # its connections (closing twice is harmless)

    async def _run(self) -> None:
        saved = time.monotonic()
        while True:
            await asyncio.sleep(CHECK_INTERVAL_S)
            try:
                self.sync()
                for route in list(self._routes.values()):
                    if route.judge is not None:
                        verdict = route.judge.evaluate()
                        if verdict is not None:
                            await self._act(route, verdict)
                if time.monotonic() - saved >= SAVE_INTERVAL_S:
                    saved = time.monotonic()
                    await self._save()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("routing upkeep failed; trying again in %s s", CHECK_INTERVAL_S)

    async def _act(self, route: Route, verdict: Verdict) -> None:
        """A canary verdict: the share has changed; say so in the log and the audit trail."""
        canary = route.policy.canary
        assert canary is not None
        candidate = canary.candidate
        event = {"event": f"canary_{verdict.kind}", "model": route.name, "share": verdict.share}
        if verdict.kind == "rollback":
            route.rollbacks += 1
            log.warning("canary of model %r rolled back: %s", route.name, verdict.reason, extra={FIELDS: event})
        else:
            done = "promoted" if verdict.kind == "promoted" else "stepped up"
            log.info("canary of model %r %s: candidate share now %g (%s)", route.name, done, verdict.share,
                     verdict.reason, extra={FIELDS: event})  # fmt: skip
        self._dirty.add(route.name)
        store = await self._state_store()
        if store is None:
            return
        action = "canary_rollback" if verdict.kind == "rollback" else "canary_step"
        details = {"share": verdict.share, "kind": verdict.kind, "candidate": _describe(candidate)}
        try:
            await asyncio.to_thread(
                store.record, action, route.name, candidate.version if candidate.model is None else None,
                actor="modelserve", reason=verdict.reason, details=details,
            )  # fmt: skip
        except Exception:
            log.exception("could not audit the canary %s of model %r", verdict.kind, route.name)

    async def _save(self) -> None:
        """Write the learnt state of the routes that changed since the last save."""
        dirty, self._dirty = self._dirty, set()
        states = {name: self._routes[name].state() for name in dirty if name in self._routes}
        if not states:
            return
        store = await self._state_store()
        if store is None:
            return
        for name, state in states.items():
            try:
                await asyncio.to_thread(store.save_routing_state, name, state)
            except Exception:
                log.exception("could not save the routing state of model %r", name)
                self._dirty.add(name)

    async def _state_store(self, only_if_exists: bool = False) -> StateStore | None:
        """The state store, opened on first use; None when there is none or it cannot be opened."""
        if self._store is None and self._open_store is not None:
            try:
                self._store = await asyncio.to_thread(self._open_store, not only_if_exists)
            except Exception as exc:
                message = exc.message if isinstance(exc, ModelServeError) else repr(exc)
                log.error("cannot open the registry database for routing state: %s", message)
                self._open_store = None
        return self._store

    def snapshot(self) -> list[Route]:
        """The live routes, for metrics (read on the event loop thread)."""
        return list(self._routes.values())


def _parse(raw: object, where: str) -> TrafficPolicy:
    from modelserve.config.traffic import parse_traffic

    return parse_traffic(raw, where)


def _server_error(exc: BaseException) -> bool | None:
    """True for a failure of the server or the model, None for the client's mistake."""
    if isinstance(exc, ModelServeError) and http_status(exc.code) < 500:
        return None
    if isinstance(exc, asyncio.CancelledError):
        return None
    return True


def _describe(target: Any) -> dict[str, Any]:
    return {k: getattr(target, k) for k in ("model", "version", "label") if getattr(target, k) is not None}


__all__ = ["CANDIDATE", "Answer", "Router", "StateStore", "Watch"]
