"""Inference graphs: ``REPO_DIR/<graph>/graph.yaml`` composes served models, transformers and
combiners, and is served as a model named ``<graph>`` (version 1) on every protocol.

The format (every key is checked; unknown ones are errors)::

    inputs:                       # the graph's own inputs (v2 datatypes; -1 = any size)
      - {name: x, datatype: FP32, shape: [-1, 4]}
    outputs:                      # each exposes a node output (node.output) or a graph input
      - {name: probabilities, from: vote.probabilities}
      - {name: label, from: pick.label}
    nodes:                        # in any order; dependencies are read from the sources
      - name: scale               # [A-Za-z_][A-Za-z0-9_-]*, no dots, unique, not a graph input's name
        kind: transformer
        transform: standardize    # y = (x - mean) / std along the last axis
        mean: [5.8, 3.0, 3.7, 1.2]  # or stats: stats.json, holding {"mean": [...], "std": [...]}
        std: [0.8, 0.4, 1.7, 0.7]
        inputs: {x: x}            # node input name: source (a graph input, or node.output)
      - name: a
        kind: model
        model: iris-skops         # any served model; optional version: N or label: L
        inputs: {input: scale.y}  # every input of the model, by the model's input names
      - name: b
        kind: model
        model: iris
        inputs: {input: scale.y}
        outputs: {p: probabilities}   # optional on every node: exposed name: produced name
      - name: vote
        kind: combiner
        combine: mean             # mean | weighted_mean (weights: [..]) | majority_vote | custom
        inputs: [a.probabilities, b.p]
      - name: pick
        kind: router              # one route per request, at random in proportion to weight
        routes: [{model: iris, weight: 3}, {model: iris-skops, version: 1, weight: 1}]
        inputs: {input: x}

Node kinds and what they produce (output names, statically known datatype and shape):

- ``transformer`` with ``transform:``
  ``standardize`` (one input of rank >= 1; ``mean``/``std`` lists as long as its last axis, std > 0;
  ``stats:`` a JSON file in the graph directory instead; other keys there are ignored): ``y``, of
  the input's floating datatype (FP64 for integers), same shape.
  ``select`` (one 2-D input; ``columns: [indices]``): ``y`` = those columns, in that order.
  ``cast`` (one input; ``datatype: FP64``): ``y``; numbers convert into each other, BYTES does not.
  ``rename`` (any inputs): each input, passed on under its node input name.
- ``transformer`` with ``code: transform.py`` and ``class: Name`` (needs ``--trust-code``): the
  file (inside the graph directory, a single module) is imported and ``Name(**options)`` is
  called once; per request ``instance(inputs: dict[str, ndarray]) -> dict[str, ndarray]`` with
  the node's input names. ``produces: [{name, datatype, shape}, ...]`` (required) declares its
  outputs; each is cast to its datatype and a shape that does not fit is an error.
- ``model``: the model's outputs by its output names. The node must feed every model input, each
  with a compatible spec: the datatype the model takes (or ``accepts``, which the model converts),
  the same rank, and no known size that differs. Only the outputs the graph uses are asked for.
- ``router``: like ``model``, for each of its ``routes`` ({model, version | label, weight > 0,
  default 1}); its outputs are the ones every route has (datatypes promoted, differing sizes -1).
- ``combiner`` (a list of at least two sources): ``mean`` and ``weighted_mean`` (``weights``, one
  per input, >= 0, normalised) element-wise, in the inputs' promoted floating datatype;
  ``majority_vote`` per row over class labels ([N], integers or BYTES) or class scores ([N, C],
  floating: each row's argmax is its vote), output ``label``, ties to the smallest label;
  ``custom`` (``code``/``class``/``options``, needs ``--trust-code``): ``instance(inputs:
  list[ndarray]) -> ndarray``, of the inputs' merged spec unless ``produces: {datatype, shape}``.
  mean/weighted_mean/custom name their output after the output name the sources share
  (``probabilities``), else ``y``.

Load-time checks (each a LoadError naming graph.yaml and the node, so the graph is FAILED with
the reason): keys, kinds, names, references, cycles (named ``a -> b -> a``), nodes that feed no
graph output and graph inputs nothing reads (errors: a node that never runs is a mistake), the
called models (missing, not READY, unknown version or label; all of them listed at once), and the
spec of every edge. A graph calling another graph works only if that one is READY first: graphs
load concurrently, after the plain models.

Execution: every node needed for the requested outputs runs in its own task as soon as its
sources are done, so independent branches overlap (two model nodes wait on the pool together).
Transformers and combiners run on the event loop. A node's error names it and keeps its code (a
400 stays a 400, a 503 a 503); a called model that has gone away is a 503, not a 404, as the graph
itself exists. Calls to models are counted in their own statistics under protocol ``graph``.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from modelserve.core.manager import ModelManager
from modelserve.core.stats import LATENCY_BUCKETS, Histogram
from modelserve.errors import LoadError, ModelNotFound, ModelNotReady, ModelServeError, RuntimeFailure
from modelserve.routing.graph_spec import Binding, Code, GraphOutput, GraphSpec, Node, Ref, Route, parse_graph
from modelserve.routing.nodes import ModelCall, Step, datatype_of_dtype, load_code, make_step, show
from modelserve.types import DATATYPES, Signature, TensorSpec

PLATFORM = "modelserve_graph"

# (node, time.perf_counter() at its start, at its end) for each node that ran in the current
# predict call; predict sets a fresh list in its caller's context, so a transport can read it
node_timings: ContextVar[list[tuple[str, float, float]] | None] = ContextVar("node_timings", default=None)

Arrays = dict[str, np.ndarray]
_MAX_PLANS = 64  # distinct requested-output sets whose execution plans are kept


class GraphComposer:
    """The manager's :data:`~modelserve.core.composite.Composer` for graph.yaml directories."""

    def __init__(self, manager: ModelManager, trust_code: bool = False) -> None:
        self._manager = manager
        self._trust_code = trust_code  # allow code: nodes, which run arbitrary Python

    async def __call__(self, name: str, directory: Path) -> Graph:
        """Parse, check against the served models, and build. Raises LoadError with the reason."""
        spec = await asyncio.to_thread(parse_graph, directory)
        code = [n for n in spec.nodes if isinstance(n.op, Code)]
        if code and not self._trust_code:
            node = code[0]
            assert isinstance(node.op, Code)
            raise LoadError(
                f"{spec.where}: node {node.name!r} runs code from {node.op.path.name}, which needs --trust-code "
                f"(it runs arbitrary Python in the server)"
            )
        signatures = await self._signatures(name, spec)
        loaded: dict[str, tuple[object, str]] = {}
        try:
            for node in code:
                assert isinstance(node.op, Code)
                loaded[node.name] = await asyncio.to_thread(load_code, node.op, f"{spec.where}: node {node.name!r}")
            return _build(name, spec, signatures, self._manager, loaded)
        except BaseException:
            _forget(module for _, module in loaded.values())
            raise

    async def _signatures(self, name: str, spec: GraphSpec) -> dict[Route, Signature]:
        """Each route's model signature; LoadError listing every model that cannot be called."""
        found: dict[Route, Signature] = {}
        problems = []
        for node in spec.nodes:
            for route in node.routes:
                if route.model == name:
                    problems.append(f"node {node.name!r} calls this graph itself")
                    continue
                try:
                    with await self._manager.checkout(route.model, route.version, route.label) as handle:
                        found[route] = handle.metadata.signature
                except ModelNotFound as exc:  # the model, or the version or label asked for
                    why = "not in the repository" if type(exc) is ModelNotFound else f"not served: {exc.message}"
                    problems.append(f"node {node.name!r} calls {route}, which is {why}")
                except ModelNotReady as exc:
                    problems.append(f"node {node.name!r} calls {route}, which is not READY: {exc.message}")
        if problems:
            raise LoadError(f"{spec.where}: " + "; ".join(problems))
        return found


@dataclass(frozen=True, slots=True, eq=False)
class _Node:
    name: str
    inputs: tuple[Binding, ...]
    deps: tuple[str, ...]
    exposed: Mapping[str, str]  # exposed output name -> produced name
    step: Step | None  # transformers, combiners
    call: ModelCall | None  # model nodes, routers


@dataclass(frozen=True, slots=True)
class _Plan:
    """What one set of requested outputs needs: the nodes (dependencies first), and per model
    node the produced outputs to ask for."""

    nodes: tuple[_Node, ...]
    wanted: Mapping[str, tuple[str, ...]]
    outputs: tuple[GraphOutput, ...]


class Graph:
    """A loaded graph (a :class:`~modelserve.core.composite.Composite`)."""

    platform = PLATFORM

    def __init__(
        self,
        name: str,
        nodes: Sequence[_Node],
        signature: Signature,
        outputs: Sequence[GraphOutput],
        modules: list[str],
    ) -> None:
        self.name = name
        self.signature = signature
        self._seconds = {n.name: Histogram(LATENCY_BUCKETS) for n in nodes}
        # typed as the Composite protocol has it (a dict attribute would not match it: invariance)
        self.node_seconds: Mapping[str, Histogram] = self._seconds
        self._nodes = tuple(nodes)
        self._outputs = tuple(outputs)
        self._modules = modules
        self._plans: dict[frozenset[str] | None, _Plan] = {}

    async def predict(self, feeds: Arrays, requested: list[str] | None) -> Arrays:
        """The requested outputs (all if None), computing only the nodes they need. Raises the
        nodes' ModelServeErrors with the node named; anything else becomes RuntimeFailure."""
        timings: list[tuple[str, float, float]] = []
        node_timings.set(timings)
        plan = self._plan(requested)
        tasks: dict[str, asyncio.Task[Arrays]] = {}
        for node in plan.nodes:  # dependencies first: each task finds its sources' tasks made
            wanted = plan.wanted.get(node.name, ())
            tasks[node.name] = asyncio.create_task(self._run(node, tasks, feeds, wanted, timings))
        try:
            await asyncio.gather(*tasks.values())
        except BaseException:
            for task in tasks.values():
                task.cancel()
            await asyncio.gather(*tasks.values(), return_exceptions=True)
            raise
        return {o.name: _value(o.ref, feeds, tasks) for o in plan.outputs}

    def close(self) -> None:
        _forget(self._modules)
        self._modules = []

    async def _run(
        self,
        node: _Node,
        tasks: Mapping[str, asyncio.Task[Arrays]],
        feeds: Arrays,
        wanted: tuple[str, ...],
        timings: list[tuple[str, float, float]],
    ) -> Arrays:
        for dep in node.deps:
            await tasks[dep]  # a failed source fails this node with the source's own error
        inputs = {b.name: _value(b.ref, feeds, tasks) for b in node.inputs}
        started = time.perf_counter()
        try:
            if node.call is not None:
                produced = await node.call(inputs, wanted)
            else:
                assert node.step is not None
                produced = node.step(inputs)
        except ModelServeError as exc:
            self._timed(node.name, started, timings)
            blamed = _blame(exc, self.name, node.name)
            if blamed is exc:
                raise
            raise blamed from exc
        except Exception as exc:
            self._timed(node.name, started, timings)
            raise RuntimeFailure(
                f"node {node.name!r} of graph {self.name!r} raised {type(exc).__name__}: {exc}"
            ) from exc
        self._timed(node.name, started, timings)
        return {exposed: produced[name] for exposed, name in node.exposed.items() if name in produced}

    def _timed(self, node: str, started: float, timings: list[tuple[str, float, float]]) -> None:
        finished = time.perf_counter()
        timings.append((node, started, finished))
        self._seconds[node].observe(finished - started)

    def _plan(self, requested: list[str] | None) -> _Plan:
        key = None if requested is None else frozenset(requested)
        plan = self._plans.get(key)
        if plan is not None:
            return plan
        outputs = self._outputs if key is None else tuple(o for o in self._outputs if o.name in key)
        need: dict[str, set[str]] = {}  # node -> its exposed outputs that are read
        for output in outputs:
            if output.ref.node is not None:
                need.setdefault(output.ref.node, set()).add(output.ref.output)
        for node in reversed(self._nodes):  # consumers before their sources
            if node.name in need:
                for b in node.inputs:
                    if b.ref.node is not None:
                        need.setdefault(b.ref.node, set()).add(b.ref.output)
        nodes = tuple(n for n in self._nodes if n.name in need)
        wanted = {n.name: tuple(sorted({n.exposed[e] for e in need[n.name]})) for n in nodes if n.call is not None}
        plan = _Plan(nodes, wanted, outputs)
        if len(self._plans) < _MAX_PLANS:
            self._plans[key] = plan
        return plan


def _value(ref: Ref, feeds: Arrays, tasks: Mapping[str, asyncio.Task[Arrays]]) -> np.ndarray:
    return feeds[ref.output] if ref.node is None else tasks[ref.node].result()[ref.output]


def _blame(exc: ModelServeError, graph: str, node: str) -> ModelServeError:
    """The same kind of error, its message prefixed with the node (a missing model: 503)."""
    message = f"node {node!r} of graph {graph!r}: {exc.message}"
    if isinstance(exc, ModelNotFound):  # the graph exists; what it calls is unavailable
        return ModelNotReady(message)
    try:
        return type(exc)(message)
    except Exception:  # a subclass with another constructor: keep it as it is
        return exc


def _forget(modules: Iterable[str]) -> None:
    for module in list(modules):
        sys.modules.pop(module, None)


def _build(
    name: str,
    spec: GraphSpec,
    signatures: Mapping[Route, Signature],
    manager: ModelManager,
    loaded: Mapping[str, tuple[object, str]],
) -> Graph:
    """Infer every node's output specs in order, checking each edge; raises LoadError."""
    given = {t.name: t for t in spec.inputs}
    exposed: dict[str, dict[str, TensorSpec]] = {}

    def source(ref: Ref, what: str) -> TensorSpec:
        if ref.node is None:
            return replace(given[ref.output], accepts=frozenset())
        outputs = exposed[ref.node]
        if ref.output not in outputs:
            raise LoadError(
                f"{spec.where}: {what} reads {ref}, but node {ref.node!r} has no output {ref.output!r}; "
                f"its outputs are {sorted(outputs)}"
            )
        return replace(outputs[ref.output], name=str(ref))

    nodes = []
    for node in spec.nodes:
        where = f"{spec.where}: node {node.name!r}"
        bound = {b.name: source(b.ref, f"node {node.name!r} input {b.name!r}") for b in node.inputs}
        step, call = None, None
        if node.routes:
            produced, casts = _routed(node, bound, signatures, where)
            call = ModelCall(manager, node.routes, casts)
        else:
            assert node.op is not None
            step = make_step(node.op, bound, where, loaded[node.name][0] if node.name in loaded else None)
            produced = {s.name: s for s in step.outputs}
        renames = node.outputs if node.outputs is not None else {n: n for n in produced}
        unknown = {new: old for new, old in renames.items() if old not in produced}
        if unknown:
            raise LoadError(f"{where}: outputs renames {unknown}, but the node produces {sorted(produced)}")
        exposed[node.name] = {new: replace(produced[old], name=new) for new, old in renames.items()}
        nodes.append(_Node(node.name, node.inputs, node.deps, renames, step, call))
    outputs = tuple(replace(source(o.ref, f"graph output {o.name!r}"), name=o.name) for o in spec.outputs)
    signature = Signature(inputs=spec.inputs, outputs=outputs)
    return Graph(name, nodes, signature, spec.outputs, [module for _, module in loaded.values()])


def _routed(
    node: Node, bound: Mapping[str, TensorSpec], signatures: Mapping[Route, Signature], where: str
) -> tuple[dict[str, TensorSpec], dict[str, str]]:
    """A model or router node's outputs (what every route gives) and the casts that make the
    routes agree; raises LoadError when an input does not fit a route's model."""
    per_route: list[dict[str, TensorSpec]] = []
    for i, route in enumerate(node.routes):
        signature = signatures[route]
        which = f" ({route})" if len(node.routes) == 1 else f" (route {i}: {route})"
        takes = {t.name: t for t in signature.inputs}
        extra = [n for n in bound if n not in takes]
        if extra:
            raise LoadError(f"{where} feeds input(s) {extra}, but {route} has inputs {list(takes)}")
        missing = [n for n in takes if n not in bound]
        if missing:
            raise LoadError(f"{where} does not feed input(s) {missing} of {route}")
        for input_name, want in takes.items():
            got = bound[input_name]
            if not _fits(got, want):
                raise LoadError(
                    f"{where} input {input_name!r} expects {show(want)} but {got.name} gives {show(got)}{which}"
                )
        per_route.append({t.name: t for t in signature.outputs})
    common = [n for n in per_route[0] if all(n in outputs for outputs in per_route)]
    if not common:
        raise LoadError(f"{where}: its routes have no output name in common: {[list(o) for o in per_route]}")
    produced, casts = {}, {}
    for output in common:
        specs = [outputs[output] for outputs in per_route]
        merged = _merge(specs, f"{where}: output {output!r} differs between routes")
        produced[output] = merged
        if any(s.datatype != merged.datatype for s in specs):
            casts[output] = merged.datatype
    return produced, casts


def _fits(got: TensorSpec, want: TensorSpec) -> bool:
    datatype = got.datatype == want.datatype or got.datatype in want.accepts
    rank = len(got.shape) == len(want.shape)
    return datatype and rank and all(g == -1 or w == -1 or g == w for g, w in zip(got.shape, want.shape, strict=False))


def _merge(specs: Sequence[TensorSpec], what: str) -> TensorSpec:
    """One spec for what several routes give: datatypes promoted, sizes that differ become -1."""
    first = specs[0]
    if len({s.datatype == "BYTES" for s in specs}) > 1 or len({len(s.shape) for s in specs}) > 1:
        raise LoadError(f"{what}: {[show(s) for s in specs]}")
    dtype = np.result_type(*(DATATYPES[s.datatype] for s in specs))
    datatype = datatype_of_dtype(dtype)
    shape = tuple(d if all(s.shape[i] == d for s in specs) else -1 for i, d in enumerate(first.shape))
    return TensorSpec(first.name, datatype, shape)
