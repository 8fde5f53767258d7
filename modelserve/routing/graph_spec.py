"""``graph.yaml`` parsed and checked for structure: names, keys, references, cycles, dead nodes.

The format is documented in :mod:`modelserve.routing.graph`. Longer than the ~400-line guide:
it is the one parser of one file format, whose rules read best in one place. This module knows nothing about the
served models: what a model node's inputs and outputs are, and whether the datatypes and shapes
fit, is checked by the composer once the models can be asked. Everything here raises LoadError
with a message that starts with the path of the graph.yaml and names the node and key.

:func:`parse_graph` blocks (it reads graph.yaml and any ``stats:`` files): call it in a thread.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from modelserve.errors import LoadError
from modelserve.types import DATATYPES, VERSION_LABEL, TensorSpec

GRAPH_FILE = "graph.yaml"  # repository.layout.GRAPH_FILE: routing does not import the repository layer
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]{0,63}")  # nodes and graph inputs: no dots ("node.output")
MAX_RANK = 32
KINDS = ("transformer", "model", "combiner", "router")
TRANSFORMS = ("standardize", "select", "cast", "rename")
COMBINES = ("mean", "weighted_mean", "majority_vote", "custom")
_COMMON = {"name", "kind", "inputs", "outputs"}
_CODE = {"code", "class", "options", "produces"}
_KEYS: Mapping[str, set[str]] = {
    "standardize": {"transform", "mean", "std", "stats"},
    "select": {"transform", "columns"},
    "cast": {"transform", "datatype"},
    "rename": {"transform"},
    "code": _CODE,
    "mean": {"combine"},
    "weighted_mean": {"combine", "weights"},
    "majority_vote": {"combine"},
    "custom": {"combine"} | _CODE,
    "model": {"model", "version", "label"},
    "router": {"routes"},
}


@dataclass(frozen=True, slots=True)
class Ref:
    """Where a tensor comes from: graph input ``output`` (``node`` None), or node ``node``'s output."""

    node: str | None
    output: str

    def __str__(self) -> str:
        return self.output if self.node is None else f"{self.node}.{self.output}"


@dataclass(frozen=True, slots=True)
class Binding:
    """A node input: its name (a combiner's are "0", "1"...) and its source."""

    name: str
    ref: Ref


@dataclass(frozen=True, slots=True)
class Standardize:
    mean: tuple[float, ...]
    std: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class Select:
    columns: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Cast:
    datatype: str


@dataclass(frozen=True, slots=True)
class Rename:
    pass


@dataclass(frozen=True, slots=True)
class Combine:
    how: str  # mean | weighted_mean | majority_vote
    weights: tuple[float, ...] = ()


@dataclass(frozen=True, slots=True)
class Code:
    """Trusted Python: ``class_name`` from the file ``path`` (inside the graph directory)."""

    path: Path
    class_name: str
    options: Mapping[str, Any]  # keyword arguments of the class
    combiner: bool  # a combiner's: __call__(list of arrays) -> array; a transformer's: dict -> dict
    # what it produces: a transformer's named outputs (required); a combiner's one tensor (optional)
    produces: tuple[TensorSpec, ...]


Op = Standardize | Select | Cast | Rename | Combine | Code


@dataclass(frozen=True, slots=True)
class Route:
    model: str
    version: int | None = None
    label: str | None = None
    weight: float = 1.0

    def __str__(self) -> str:
        pinned = f" version {self.version}" if self.version else f" label {self.label!r}" if self.label else ""
        return f"model {self.model!r}{pinned}"


@dataclass(frozen=True, slots=True)
class Node:
    name: str
    kind: str  # one of KINDS
    inputs: tuple[Binding, ...]
    outputs: Mapping[str, str] | None  # exposed name -> produced name; None: every output as produced
    op: Op | None = None  # transformers and combiners
    routes: tuple[Route, ...] = ()  # model nodes (one route) and routers

    @property
    def deps(self) -> tuple[str, ...]:
        """The nodes it reads from, each once, in binding order."""
        return tuple(dict.fromkeys(b.ref.node for b in self.inputs if b.ref.node is not None))


@dataclass(frozen=True, slots=True)
class GraphOutput:
    name: str
    ref: Ref


@dataclass(frozen=True, slots=True)
class GraphSpec:
    path: Path  # the graph.yaml
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[GraphOutput, ...]
    nodes: tuple[Node, ...]  # dependencies first
    where: str  # the path, for messages

    def node(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)


def parse_graph(directory: Path) -> GraphSpec:
    """Read and check ``directory/graph.yaml``. Blocks. Raises LoadError."""
    path = directory / GRAPH_FILE
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as exc:
        raise LoadError(f"{path}: cannot read it as YAML: {exc}") from None
    return check_graph(raw, directory)


def check_graph(raw: object, directory: Path) -> GraphSpec:
    """The graph ``raw`` (graph.yaml's document) describes; ``directory`` holds the files it names."""
    where = str(directory / GRAPH_FILE)
    doc = _mapping(raw, where, "the document")
    _known(doc, {"inputs", "outputs", "nodes"}, where, "the document")
    inputs = tuple(_tensor(t, where, f"inputs[{i}]", named=True) for i, t in enumerate(_list(doc, "inputs", where)))
    _unique([t.name for t in inputs], where, "graph input")
    for t in inputs:
        if not NAME.fullmatch(t.name):
            raise LoadError(f"{where}: graph input name {t.name!r} must match {NAME.pattern} (no dots)")
    raw_nodes = _list(doc, "nodes", where)
    names = [_node_name(n, where, i) for i, n in enumerate(raw_nodes)]
    _unique(names, where, "node")
    clash = sorted(set(names) & {t.name for t in inputs})
    if clash:
        raise LoadError(f"{where}: {clash} name both a graph input and a node; names must be distinct")
    sources = _Sources(where, {t.name for t in inputs}, set(names))
    nodes = [_node(n, name, directory, sources) for n, name in zip(raw_nodes, names, strict=True)]
    outputs = tuple(_output(o, where, i, sources) for i, o in enumerate(_list(doc, "outputs", where)))
    _unique([o.name for o in outputs], where, "graph output")
    ordered = _order(nodes, where)
    _check_used(ordered, inputs, outputs, where)
    return GraphSpec(directory / GRAPH_FILE, inputs, outputs, ordered, where)


@dataclass(frozen=True, slots=True)
class _Sources:
    where: str
    inputs: set[str]
    nodes: set[str]

    def ref(self, value: object, what: str) -> Ref:
        """``x`` (a graph input) or ``node.output``."""
        if not isinstance(value, str) or not value:
            raise LoadError(f"{self.where}: {what} must be a graph input name or node.output, got {value!r}")
        if value in self.inputs:
            return Ref(None, value)
        node, dot, output = value.partition(".")
        if not dot:
            raise LoadError(
                f"{self.where}: {what} names {value!r}, which is not a graph input (they are "
                f"{sorted(self.inputs)}); a node's output is written node.output"
            )
        if node not in self.nodes:
            raise LoadError(f"{self.where}: {what} reads {value!r}, but there is no node {node!r}")
        if not output:
            raise LoadError(f"{self.where}: {what} reads {value!r}: the output name after the dot is missing")
        return Ref(node, output)


def _node_name(raw: object, where: str, i: int) -> str:
    doc = _mapping(raw, where, f"nodes[{i}]")
    name = doc.get("name")
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise LoadError(f"{where}: nodes[{i}].name must match {NAME.pattern} (no dots), got {name!r}")
    return name


def _node(value: object, name: str, directory: Path, sources: _Sources) -> Node:
    where = f"{sources.where}: node {name!r}"
    raw = _mapping(value, where, "the node")
    kind = raw.get("kind")
    if kind not in KINDS:
        raise LoadError(f"{where}: kind must be one of {list(KINDS)}, got {kind!r}")
    variant = _variant(raw, kind, where)
    _known(raw, _COMMON | _KEYS[variant], sources.where, f"node {name!r} ({kind} {variant})")
    if "inputs" not in raw:
        raise LoadError(f"{where}: inputs is missing")
    read = _positional if kind == "combiner" else _named
    inputs = read(raw["inputs"], where, sources)
    outputs = None
    if "outputs" in raw:
        renames = _mapping(raw["outputs"], where, "outputs (exposed name: produced name)")
        if not renames or not all(isinstance(v, str) and v for v in renames.values()):
            raise LoadError(f"{where}: outputs must map exposed names to produced output names, got {renames!r}")
        outputs = dict(renames)
    if kind == "model":
        return Node(name, kind, inputs, outputs, routes=(_route(raw, where, routed=False),))
    if kind == "router":
        routes = raw.get("routes")
        if not isinstance(routes, list) or not routes:
            raise LoadError(f"{where}: routes must be a non-empty list of {{model, version|label, weight}}")
        each = tuple(_route(r, f"{where} routes[{i}]") for i, r in enumerate(routes))
        return Node(name, kind, inputs, outputs, routes=each)
    return Node(name, kind, inputs, outputs, op=_op(raw, variant, directory, where, len(inputs)))


def _variant(raw: Mapping[str, Any], kind: str, where: str) -> str:
    """Which key set applies: the transform, the combine, or the kind itself."""
    if kind == "transformer":
        if ("transform" in raw) == ("code" in raw):
            raise LoadError(
                f"{where}: a transformer needs exactly one of transform: {list(TRANSFORMS)} or code: file.py"
            )
        if "code" in raw:
            return "code"
        if raw["transform"] not in TRANSFORMS:
            raise LoadError(f"{where}: transform must be one of {list(TRANSFORMS)}, got {raw['transform']!r}")
        return str(raw["transform"])
    if kind == "combiner":
        if raw.get("combine") not in COMBINES:
            raise LoadError(f"{where}: combine must be one of {list(COMBINES)}, got {raw.get('combine')!r}")
        return str(raw["combine"])
    return kind


def _op(raw: Mapping[str, Any], variant: str, directory: Path, where: str, n_inputs: int) -> Op:
    if variant in ("code", "custom"):
        return _code(raw, directory, where, combiner=variant == "custom")
    if variant in ("standardize", "select", "cast") and n_inputs != 1:
        raise LoadError(f"{where}: transform {variant} takes exactly one input, got {n_inputs}")
    if variant == "standardize":
        return _standardize(raw, directory, where)
    if variant == "select":
        columns = raw.get("columns")
        if not isinstance(columns, list) or not columns or not all(_is_int(c) and c >= 0 for c in columns):
            raise LoadError(f"{where}: columns must be a non-empty list of column indices >= 0, got {columns!r}")
        return Select(tuple(columns))
    if variant == "cast":
        if raw.get("datatype") not in DATATYPES:
            raise LoadError(f"{where}: datatype must be one of {sorted(DATATYPES)}, got {raw.get('datatype')!r}")
        return Cast(str(raw["datatype"]))
    if variant == "rename":
        return Rename()
    if n_inputs < 2:
        raise LoadError(f"{where}: a combiner needs at least two inputs, got {n_inputs}")
    if variant == "weighted_mean":
        weights = raw.get("weights")
        if not isinstance(weights, list) or not all(_is_number(w) and w >= 0 for w in weights) or not sum(weights):
            raise LoadError(f"{where}: weights must be a list of numbers >= 0 with a positive sum, got {weights!r}")
        if len(weights) != n_inputs:
            raise LoadError(f"{where}: {len(weights)} weights for {n_inputs} inputs; give one weight per input")
        return Combine(variant, tuple(float(w) for w in weights))
    return Combine(variant)


def _standardize(raw: Mapping[str, Any], directory: Path, where: str) -> Standardize:
    doc: Mapping[str, Any] = raw
    if "stats" in raw:
        if "mean" in raw or "std" in raw:
            raise LoadError(f"{where}: give either stats: file.json or mean and std, not both")
        path = _confined(directory, raw["stats"], where, "stats")
        try:
            doc = _mapping(json.loads(path.read_text(encoding="utf-8")), f"{where}: {path}", "the document")
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise LoadError(f"{where}: stats file {path} is not readable JSON: {exc}") from None
        where = f"{where} (stats file {path})"
    values = {}
    for key in ("mean", "std"):
        value = doc.get(key)
        if not isinstance(value, list) or not value or not all(_is_number(v) and math.isfinite(v) for v in value):
            raise LoadError(f"{where}: {key} must be a non-empty list of finite numbers, got {value!r}")
        values[key] = tuple(float(v) for v in value)
    if len(values["mean"]) != len(values["std"]):
        raise LoadError(f"{where}: mean has {len(values['mean'])} values but std has {len(values['std'])}")
    if any(s <= 0 for s in values["std"]):
        raise LoadError(f"{where}: std values must be > 0, got {list(values['std'])}")
    return Standardize(values["mean"], values["std"])


def _code(raw: Mapping[str, Any], directory: Path, where: str, combiner: bool) -> Code:
    path = _confined(directory, raw.get("code"), where, "code")
    if path.suffix != ".py":
        raise LoadError(f"{where}: code must name a .py file, got {raw.get('code')!r}")
    class_name = raw.get("class")
    if not isinstance(class_name, str) or not class_name.isidentifier():
        raise LoadError(f"{where}: class must name a Python class in {path.name}, got {class_name!r}")
    options = dict(_mapping(raw.get("options", {}), where, "options"))
    produces: tuple[TensorSpec, ...]
    if combiner:
        produces = (_tensor(raw["produces"], where, "produces", named=False),) if "produces" in raw else ()
    else:
        if not isinstance(raw.get("produces"), list) or not raw["produces"]:
            raise LoadError(f"{where}: produces must list the outputs of the code: [{{name, datatype, shape}}, ...]")
        produces = tuple(_tensor(t, where, f"produces[{i}]", named=True) for i, t in enumerate(raw["produces"]))
        _unique([t.name for t in produces], where, "produced output")
    return Code(path, class_name, options, combiner, produces)


def _route(raw: object, where: str, routed: bool = True) -> Route:
    doc = _mapping(raw, where, "a route")
    if routed:
        _known(doc, {"model", "version", "label", "weight"}, where, "a route")
    model = doc.get("model")
    if not isinstance(model, str) or not model:
        raise LoadError(f"{where}: model must name a served model, got {model!r}")
    version, label = doc.get("version"), doc.get("label")
    if version is not None and not (_is_int(version) and version >= 1):
        raise LoadError(f"{where}: version must be an integer >= 1, got {version!r}")
    if label is not None and not (isinstance(label, str) and VERSION_LABEL.fullmatch(label)):
        raise LoadError(f"{where}: label must be a version label such as 'stable', got {label!r}")
    if version is not None and label is not None:
        raise LoadError(f"{where}: give version or label, not both")
    weight = doc.get("weight", 1)
    if not (_is_number(weight) and weight > 0 and math.isfinite(weight)):
        raise LoadError(f"{where}: weight must be a number > 0, got {weight!r}")
    return Route(model, version, label, float(weight))


def _named(raw: object, where: str, sources: _Sources) -> tuple[Binding, ...]:
    doc = _mapping(raw, where, "inputs (input name: source)")
    if not doc:
        raise LoadError(f"{where}: inputs must map at least one input name to a source")
    return tuple(Binding(k, sources.ref(v, f"node input {k!r}")) for k, v in doc.items())


def _positional(raw: object, where: str, sources: _Sources) -> tuple[Binding, ...]:
    if not isinstance(raw, list):
        raise LoadError(f"{where}: a combiner's inputs must be a list of sources, got {raw!r}")
    return tuple(Binding(str(i), sources.ref(v, f"inputs[{i}]")) for i, v in enumerate(raw))


def _output(raw: object, where: str, i: int, sources: _Sources) -> GraphOutput:
    doc = _mapping(raw, where, f"outputs[{i}]")
    _known(doc, {"name", "from"}, where, f"outputs[{i}]")
    name = doc.get("name")
    if not isinstance(name, str) or not name:
        raise LoadError(f"{where}: outputs[{i}].name must be a non-empty string, got {name!r}")
    return GraphOutput(name, sources.ref(doc.get("from"), f"graph output {name!r} (from)"))


def _order(nodes: Sequence[Node], where: str) -> tuple[Node, ...]:
    """Dependencies first (depth-first); raises LoadError naming a cycle."""
    by_name = {n.name: n for n in nodes}
    done: dict[str, Node] = {}
    path: list[str] = []

    def visit(name: str) -> None:
        if name in done:
            return
        if name in path:
            cycle = [*path[path.index(name) :], name]
            raise LoadError(f"{where}: nodes form a cycle: {' -> '.join(cycle)} (each reads the next one's output)")
        path.append(name)
        for dep in by_name[name].deps:
            visit(dep)
        path.pop()
        done[name] = by_name[name]

    for node in nodes:
        visit(node.name)
    return tuple(done.values())


def _check_used(
    nodes: Sequence[Node], inputs: Sequence[TensorSpec], outputs: Sequence[GraphOutput], where: str
) -> None:
    """Every node feeds a graph output (else it would never run) and every graph input is read."""
    by_name = {n.name: n for n in nodes}
    needed: set[str] = set()
    stack = [o.ref.node for o in outputs if o.ref.node is not None]
    while stack:
        name = stack.pop()
        if name not in needed:
            needed.add(name)
            stack.extend(by_name[name].deps)
    idle = [n.name for n in nodes if n.name not in needed]
    if idle:
        raise LoadError(f"{where}: node(s) {idle} feed no graph output; remove them or expose one of their outputs")
    read = {b.ref.output for n in nodes for b in n.inputs if b.ref.node is None}
    read |= {o.ref.output for o in outputs if o.ref.node is None}
    unread = [t.name for t in inputs if t.name not in read]
    if unread:
        raise LoadError(f"{where}: graph input(s) {unread} are read by no node or output; remove them")


def _tensor(raw: object, where: str, what: str, named: bool) -> TensorSpec:
    doc = _mapping(raw, where, what)
    keys = {"name", "datatype", "shape"} if named else {"datatype", "shape"}
    _known(doc, keys, where, what)
    name = doc.get("name", "")
    if named and (not isinstance(name, str) or not name):
        raise LoadError(f"{where}: {what}.name must be a non-empty string, got {name!r}")
    datatype = doc.get("datatype")
    if datatype not in DATATYPES:
        raise LoadError(f"{where}: {what}.datatype must be one of {sorted(DATATYPES)}, got {datatype!r}")
    shape = doc.get("shape")
    if (
        not isinstance(shape, list)
        or len(shape) > MAX_RANK
        or not all(_is_int(d) and (d == -1 or d >= 1) for d in shape)
    ):
        sizes = f"a list of at most {MAX_RANK} sizes >= 1 or -1 (any)"
        raise LoadError(f"{where}: {what}.shape must be {sizes}, got {shape!r}")
    return TensorSpec(str(name), str(datatype), tuple(shape))


def _confined(directory: Path, value: object, where: str, key: str) -> Path:
    """``directory/value``, which must be a file inside ``directory`` (symbolic links resolved)."""
    if not isinstance(value, str) or not value:
        raise LoadError(f"{where}: {key} must be a file name relative to the graph directory, got {value!r}")
    root = directory.resolve()
    path = (root / value).resolve()
    if not path.is_relative_to(root):
        raise LoadError(f"{where}: {key}: {value!r} is outside the graph directory {root}")
    if not path.is_file():
        raise LoadError(f"{where}: {key}: {value!r} is not a file in {root}")
    return path


def _mapping(value: object, where: str, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise LoadError(f"{where}: {what} must be a mapping with string keys, got {value!r}")
    return value


def _list(doc: Mapping[str, Any], key: str, where: str) -> list[Any]:
    value = doc.get(key)
    if not isinstance(value, list) or not value:
        raise LoadError(f"{where}: {key} must be a non-empty list, got {value!r}")
    return value


def _known(doc: Mapping[str, Any], allowed: set[str], where: str, what: str) -> None:
    unknown = sorted(set(doc) - allowed)
    if unknown:
        raise LoadError(f"{where}: {what} has unknown key(s) {unknown}; allowed: {sorted(allowed)}")


def _unique(names: Sequence[str], where: str, what: str) -> None:
    twice = sorted(name for name, n in Counter(names).items() if n > 1)
    if twice:
        raise LoadError(f"{where}: duplicate {what} name(s) {twice}")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
