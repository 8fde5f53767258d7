"""Per-model ``config.yaml``: parsed and validated once, with messages that quote the file and value.

Every key is optional; a model with no config file gets :data:`DEFAULT`. Unknown keys are errors,
so a typo does not silently fall back to a default.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import yaml

from modelserve.config.monitoring import MonitoringConfig, parse_monitoring
from modelserve.config.traffic import TrafficPolicy, parse_traffic
from modelserve.errors import ConfigError
from modelserve.types import DATATYPES, VERSION_LABEL

MAX_RANK = 32


@dataclass(frozen=True, slots=True)
class VersionPolicy:
    """Which versions to serve: the ``latest`` N (default 1), ``all``, or ``specific`` ones."""

    kind: str = "latest"  # "latest" | "all" | "specific"
    latest: int = 1
    specific: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Warmup:
    """Requests a version must answer before it is READY: the sample files under its ``warmup/``
    directory (when ``samples``), then ``generate`` requests made from its signature."""

    samples: bool = True
    generate: int = 0


DEFAULT_MAX_BATCH_SIZE = 64


@dataclass(frozen=True, slots=True)
class Batching:
    """Adaptive batching (core/batching.py); on unless ``enabled`` is false."""

    enabled: bool = True
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE
    max_delay_ms: float = 0.0
    preferred_batch_sizes: tuple[int, ...] = ()


DEFAULT_CACHE_ENTRIES = 10_000
DEFAULT_CACHE_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Cache:
    """Response cache (core/cache.py); off unless ``enabled``."""

    enabled: bool = False
    max_entries: int = DEFAULT_CACHE_ENTRIES
    max_bytes: int = DEFAULT_CACHE_BYTES


DEFAULT_MAX_QUEUE = 512
DEFAULT_TIMEOUT_S = 60.0
DEFAULT_LOAD_TIMEOUT_S = 600.0


@dataclass(frozen=True, slots=True)
class Limits:
    """Backpressure and timeouts of one model (core/admission.py).

    ``max_queue``: requests of one version that may wait for a runtime call; one more gets 429
    (gRPC RESOURCE_EXHAUSTED) with ``Retry-After`` at once. ``timeout_s``: per request, queueing
    included; past it the client gets 504 (DEADLINE_EXCEEDED) and a call still running is abandoned
    and its instance recycled. ``load_timeout_s``: a load still running after it fails the version.
    0 turns a timeout off."""

    max_queue: int = DEFAULT_MAX_QUEUE
    timeout_s: float = DEFAULT_TIMEOUT_S
    load_timeout_s: float = DEFAULT_LOAD_TIMEOUT_S


@dataclass(frozen=True, slots=True)
class PayloadLog:
    """Payload logging of this model's requests (telemetry/payloads.py); off unless ``enabled``."""

    enabled: bool = False
    sample: float = 1.0  # fraction of requests logged
    redact: tuple[str, ...] = ()  # input names whose values are not written


@dataclass(frozen=True, slots=True)
class TensorOverride:
    """Replaces, by position, the name and optionally datatype/shape the runtime reports."""

    name: str
    datatype: str | None = None
    shape: tuple[int, ...] | None = None


@dataclass(frozen=True, slots=True)
class SignatureOverride:
    inputs: tuple[TensorOverride, ...] = ()
    outputs: tuple[TensorOverride, ...] = ()


@dataclass(frozen=True, slots=True)
class ModelConfig:
    runtime: str | None = None  # None: detected from the artifact's file name
    artifact: str | None = None  # file name inside the version directory
    signature: SignatureOverride | None = None
    default_version: int | None = None  # None: the latest READY version
    version_policy: VersionPolicy = VersionPolicy()
    # names for versions (stable: 3, canary: 4) that requests may use instead of a number
    version_labels: Mapping[str, int] = field(default_factory=dict)
    warmup: Warmup = Warmup()
    batching: Batching = Batching()
    cache: Cache = Cache()
    payload_log: PayloadLog = PayloadLog()
    limits: Limits = Limits()
    instances: int = 0  # runtime calls of one version that may run at once; 0: one per inference thread
    processes: int = 0  # run the model in this many worker processes (core/processes.py); 0: in the server
    trusted: bool = False  # allow pickle/joblib artifacts, which can run arbitrary code
    trusted_types: tuple[str, ...] = ()  # extra types skops may load
    threads: int = 1  # intra-op threads per runtime instance
    device: str = "cpu"  # "cpu", or "cuda" / "cuda:N" for the runtimes that can use a GPU (onnx, torch, xgboost)
    metadata: Mapping[str, Any] = field(default_factory=dict)
    parameters: Mapping[str, Any] = field(default_factory=dict)  # runtime-specific options
    # drift and outlier detection (config/monitoring.py); frozen, so one shared default is safe
    monitoring: MonitoringConfig = MonitoringConfig()  # noqa: RUF009
    traffic: TrafficPolicy | None = None  # A/B split, bandit, canary, shadow (config/traffic.py); None: no routing


DEFAULT = ModelConfig()

_KEYS = {
    "runtime", "artifact", "signature", "default_version", "version_policy", "version_labels", "warmup",
    "batching", "instances", "processes", "cache", "payload_log", "limits", "device", "trusted",
    "trusted_types", "threads", "metadata", "parameters", "traffic", "monitoring",
}  # fmt: skip


def load_model_config(path: Path) -> ModelConfig:
    """Parse ``path`` (YAML). A missing file gives the defaults. Raises ConfigError naming the file."""
    if not path.is_file():
        return DEFAULT
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    return parse_model_config(raw if raw is not None else {}, str(path))


def parse_model_config(raw: object, where: str) -> ModelConfig:
    doc = _mapping(raw, where, "the document")
    unknown = sorted(set(doc) - _KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; expected some of {sorted(_KEYS)}")
    return ModelConfig(
        runtime=_opt_str(doc, "runtime", where),
        artifact=_opt_str(doc, "artifact", where),
        signature=_signature(doc["signature"], where) if "signature" in doc else None,
        default_version=_opt_int(doc, "default_version", where, minimum=1),
        version_policy=_policy(doc.get("version_policy"), where),
        version_labels=_labels(doc.get("version_labels", {}), where),
        warmup=_warmup(doc.get("warmup"), where),
        batching=_batching(doc.get("batching"), where),
        cache=_cache(doc.get("cache"), where),
        payload_log=_payload_log(doc.get("payload_log"), where),
        limits=_limits(doc.get("limits"), where),
        instances=_opt_int(doc, "instances", where, minimum=1) or 0,
        processes=_opt_int(doc, "processes", where, minimum=1) or 0,
        trusted=_bool(doc, "trusted", where),
        trusted_types=tuple(_str_list(doc.get("trusted_types", []), where, "trusted_types")),
        threads=_opt_int(doc, "threads", where, minimum=1) or 1,
        device=_device(doc.get("device", "cpu"), where),
        metadata=_json_mapping(doc.get("metadata", {}), where, "metadata"),
        parameters=dict(_mapping(doc.get("parameters", {}), where, "parameters")),
        monitoring=parse_monitoring(doc.get("monitoring"), where),
        traffic=parse_traffic(doc["traffic"], where) if doc.get("traffic") is not None else None,
    )


def _mapping(value: object, where: str, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: {what} must be a mapping, got {value!r}")
    bad = [k for k in value if not isinstance(k, str)]
    if bad:
        raise ConfigError(f"{where}: keys of {what} must be strings, got {bad!r}")
    return value


def _json_mapping(value: object, where: str, what: str) -> dict[str, Any]:
    """A mapping that the metadata endpoints can send as JSON (no sets, dates as text...)."""
    mapping = dict(_mapping(value, where, what))
    try:
        orjson.dumps(mapping)
    except TypeError as exc:
        raise ConfigError(f"{where}: {what} must hold only JSON values: {exc}") from None
    return mapping


def _opt_str(doc: Mapping[str, Any], key: str, where: str) -> str | None:
    value = doc.get(key)
    if value is not None and not (isinstance(value, str) and value):
        raise ConfigError(f"{where}: {key} must be a non-empty string, got {value!r}")
    return value


def _opt_int(doc: Mapping[str, Any], key: str, where: str, *, minimum: int) -> int | None:
    value = doc.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{where}: {key} must be an integer >= {minimum}, got {value!r}")
    return value


def _bool(doc: Mapping[str, Any], key: str, where: str) -> bool:
    value = doc.get(key, False)
    if not isinstance(value, bool):
        raise ConfigError(f"{where}: {key} must be true or false, got {value!r}")
    return value


def _str_list(value: object, where: str, what: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: {what} must be a list of strings, got {value!r}")
    return value


def _policy(value: object, where: str) -> VersionPolicy:
    if value is None:
        return VersionPolicy()
    if value == "all" or value == {"all": None} or value == {"all": True}:
        return VersionPolicy(kind="all")
    policy = _mapping(value, where, "version_policy")
    if len(policy) == 1 and "latest" in policy:
        n = policy["latest"]
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError(f"{where}: version_policy.latest must be an integer >= 1, got {n!r}")
        return VersionPolicy(kind="latest", latest=n)
    if len(policy) == 1 and "specific" in policy:
        versions = policy["specific"]
        ok = isinstance(versions, list) and versions
        if not ok or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in versions):
            raise ConfigError(
                f"{where}: version_policy.specific must be a non-empty list of integers >= 1, got {versions!r}"
            )
        return VersionPolicy(kind="specific", specific=tuple(sorted(set(versions))))
    raise ConfigError(
        f"{where}: version_policy must be 'all', {{latest: N}} or {{specific: [versions]}}, got {value!r}"
    )


def _labels(value: object, where: str) -> dict[str, int]:
    labels = dict(_mapping(value, where, "version_labels"))
    for label, version in labels.items():
        if not VERSION_LABEL.fullmatch(label):
            raise ConfigError(
                f"{where}: version label {label!r} must be 1-64 letters, digits, '_', '.', '-' and not a number"
            )
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise ConfigError(f"{where}: version_labels.{label} must be a version number >= 1, got {version!r}")
    return labels


MAX_GENERATED_WARMUP = 1000


def _switch(value: object, where: str, what: str, keys: Sequence[str], on: bool) -> bool | Mapping[str, Any]:
    """A section that is ``on``/``off`` (true/false; absent means ``on`` when ``on``), or a mapping
    of ``keys``: the bool, or the mapping checked for unknown keys. Raises ConfigError."""
    if value is None:
        return on
    if value is True or value == "on":
        return True
    if value is False or value == "off":
        return False
    doc = _mapping(value, where, f"{what} (on, off, or a mapping of {', '.join(keys)})")
    unknown = sorted(set(doc) - set(keys))
    if unknown:
        raise ConfigError(f"{where}: {what} has unknown key(s) {unknown}; expected {', '.join(keys)}")
    return doc


def _warmup(value: object, where: str) -> Warmup:
    doc = _switch(value, where, "warmup", ("samples", "generate"), on=True)
    if isinstance(doc, bool):
        return Warmup(samples=doc)
    generate = _opt_int(doc, "generate", where, minimum=0) or 0
    if generate > MAX_GENERATED_WARMUP:
        raise ConfigError(f"{where}: warmup.generate must be at most {MAX_GENERATED_WARMUP}, got {generate}")
    return Warmup(samples=_bool({"samples": doc.get("samples", True)}, "samples", where), generate=generate)


MAX_BATCH_SIZE = 1 << 16


def _payload_log(value: object, where: str) -> PayloadLog:
    doc = _switch(value, where, "payload_log", ("sample", "redact"), on=False)
    if isinstance(doc, bool):
        return PayloadLog(enabled=doc)
    sample = doc.get("sample", 1.0)
    if isinstance(sample, bool) or not isinstance(sample, int | float) or not 0 <= sample <= 1:
        raise ConfigError(f"{where}: payload_log.sample must be a number from 0 to 1, got {sample!r}")
    redact = tuple(_str_list(doc.get("redact", []), where, "payload_log.redact"))
    return PayloadLog(enabled=True, sample=float(sample), redact=redact)


def _limits(value: object, where: str) -> Limits:
    if value is None:
        return Limits()
    doc = _mapping(value, where, "limits")
    keys = ("max_queue", "timeout_s", "load_timeout_s")
    unknown = sorted(set(doc) - set(keys))
    if unknown:
        raise ConfigError(f"{where}: limits has unknown key(s) {unknown}; expected {', '.join(keys)}")
    max_queue = doc.get("max_queue", DEFAULT_MAX_QUEUE)
    if isinstance(max_queue, bool) or not isinstance(max_queue, int) or max_queue < 0:
        raise ConfigError(f"{where}: limits.max_queue must be an integer >= 0, got {max_queue!r}")
    seconds = {}
    for key, default in (("timeout_s", DEFAULT_TIMEOUT_S), ("load_timeout_s", DEFAULT_LOAD_TIMEOUT_S)):
        value = doc.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ConfigError(f"{where}: limits.{key} must be a number of seconds >= 0 (0: none), got {value!r}")
        seconds[key] = float(value)
    return Limits(max_queue, seconds["timeout_s"], seconds["load_timeout_s"])


def _device(value: object, where: str) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"cpu|cuda(:[0-9]{1,2})?", value):
        raise ConfigError(f"{where}: device must be cpu, cuda or cuda:N (a GPU index), got {value!r}")
    return value


def cuda_index(device: str) -> int:
    """The GPU index of ``cuda`` / ``cuda:N`` (0 for ``cuda``)."""
    return int(device.partition(":")[2] or 0)


def _cache(value: object, where: str) -> Cache:
    doc = _switch(value, where, "cache", ("max_entries", "max_bytes"), on=False)
    if isinstance(doc, bool):
        return Cache(enabled=doc)
    return Cache(
        enabled=True,
        max_entries=_opt_int(doc, "max_entries", where, minimum=1) or DEFAULT_CACHE_ENTRIES,
        max_bytes=_opt_int(doc, "max_bytes", where, minimum=1) or DEFAULT_CACHE_BYTES,
    )


def _batching(value: object, where: str) -> Batching:
    doc = _switch(value, where, "batching", ("max_batch_size", "max_delay_ms", "preferred_batch_sizes"), on=True)
    if isinstance(doc, bool):
        return Batching(enabled=doc)
    size = _opt_int(doc, "max_batch_size", where, minimum=1) or DEFAULT_MAX_BATCH_SIZE
    if size > MAX_BATCH_SIZE:
        raise ConfigError(f"{where}: batching.max_batch_size must be at most {MAX_BATCH_SIZE}, got {size}")
    delay = doc.get("max_delay_ms", 0.0)
    if isinstance(delay, bool) or not isinstance(delay, int | float) or not 0 <= delay <= 10_000:
        raise ConfigError(f"{where}: batching.max_delay_ms must be a number from 0 to 10000, got {delay!r}")
    preferred = doc.get("preferred_batch_sizes", [])
    if not isinstance(preferred, list) or not all(
        isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= size for n in preferred
    ):
        raise ConfigError(
            f"{where}: batching.preferred_batch_sizes must be a list of integers from 1 to max_batch_size ({size}), "
            f"got {preferred!r}"
        )
    return Batching(True, size, float(delay), tuple(sorted(set(preferred))))


def _signature(value: object, where: str) -> SignatureOverride:
    doc = _mapping(value, where, "signature")
    unknown = sorted(set(doc) - {"inputs", "outputs"})
    if unknown:
        raise ConfigError(f"{where}: signature has unknown key(s) {unknown}; expected inputs, outputs")
    return SignatureOverride(
        inputs=_tensors(doc.get("inputs", []), where, "signature.inputs"),
        outputs=_tensors(doc.get("outputs", []), where, "signature.outputs"),
    )


def _tensors(value: object, where: str, what: str) -> tuple[TensorOverride, ...]:
    if not isinstance(value, list):
        raise ConfigError(f"{where}: {what} must be a list, got {value!r}")
    return tuple(_tensor(item, where, f"{what}[{i}]") for i, item in enumerate(value))


def _tensor(value: object, where: str, what: str) -> TensorOverride:
    doc = _mapping(value, where, what)
    unknown = sorted(set(doc) - {"name", "datatype", "shape"})
    if unknown:
        raise ConfigError(f"{where}: {what} has unknown key(s) {unknown}; expected name, datatype, shape")
    name = doc.get("name")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{where}: {what}.name must be a non-empty string, got {name!r}")
    datatype = doc.get("datatype")
    if datatype is not None and datatype not in DATATYPES:
        raise ConfigError(f"{where}: {what}.datatype {datatype!r} is not one of {sorted(DATATYPES)}")
    shape = doc.get("shape")
    if shape is not None:
        valid = isinstance(shape, list) and len(shape) <= MAX_RANK
        if not valid or not all(isinstance(d, int) and not isinstance(d, bool) and d >= -1 for d in shape):
            raise ConfigError(
                f"{where}: {what}.shape must be a list of at most {MAX_RANK} integers >= -1 (-1 = any), got {shape!r}"
            )
        shape = tuple(shape)
    return TensorOverride(name=name, datatype=datatype, shape=shape)
