"""The public signature of a model: the runtime's, with the config's overrides applied by position.

An :class:`Adapter` renames tensors between public and native names and casts inputs whose public
datatype differs from the native one. When nothing is overridden it is the identity and costs
nothing per request.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from modelserve.config.model import SignatureOverride, TensorOverride
from modelserve.errors import LoadError
from modelserve.types import Signature, TensorSpec


@dataclass(frozen=True, slots=True)
class Adapter:
    public: Signature
    native: Signature
    input_names: dict[str, str] = field(default_factory=dict)  # public -> native, renamed only
    output_names: dict[str, str] = field(default_factory=dict)  # native -> public, renamed only

    @property
    def identity(self) -> bool:
        return not self.input_names and not self.output_names


def adapt(native: Signature, override: SignatureOverride | None) -> Adapter:
    """Apply ``override``; raises LoadError when it lists more tensors than the model has."""
    if override is None:
        return Adapter(public=native, native=native)
    inputs = _apply(native.inputs, override.inputs, "inputs")
    outputs = _apply(native.outputs, override.outputs, "outputs")
    for kind, specs in (("inputs", inputs), ("outputs", outputs)):
        names = [s.name for s in specs]
        if len(set(names)) != len(names):
            raise LoadError(f"config.yaml: signature.{kind} gives duplicate names {names}")
    return Adapter(
        public=Signature(inputs=inputs, outputs=outputs),
        native=native,
        input_names={p.name: n.name for p, n in zip(inputs, native.inputs, strict=True) if p.name != n.name},
        output_names={n.name: p.name for p, n in zip(outputs, native.outputs, strict=True) if p.name != n.name},
    )


def _apply(native: Sequence[TensorSpec], overrides: Sequence[TensorOverride], kind: str) -> tuple[TensorSpec, ...]:
    if len(overrides) > len(native):
        raise LoadError(
            f"config.yaml: signature.{kind} lists {len(overrides)} tensors but the model has "
            f"{len(native)}: {[t.name for t in native]}"
        )
    result = list(native)
    for i, o in enumerate(overrides):
        spec = native[i]
        shape = o.shape if o.shape is not None else spec.shape
        if o.shape is not None and not _compatible(o.shape, spec.shape):
            raise LoadError(
                f"config.yaml: signature.{kind}[{i}] shape {list(o.shape)} does not fit the model's "
                f"{list(spec.shape)} for {spec.name!r}"
            )
        datatype = o.datatype or spec.datatype
        if datatype != spec.datatype and "BYTES" in (datatype, spec.datatype):
            raise LoadError(
                f"config.yaml: signature.{kind}[{i}] datatype {datatype} cannot stand for the model's "
                f"{spec.datatype} ({spec.name!r}): only numeric datatypes convert into each other"
            )
        accepts = spec.accepts | {spec.datatype} - {datatype} if o.datatype else spec.accepts
        result[i] = replace(spec, name=o.name, datatype=datatype, shape=shape, accepts=frozenset(accepts))
    return tuple(result)


def _compatible(declared: Sequence[int], native: Sequence[int]) -> bool:
    if not native:  # unknown rank in the model
        return True
    return len(declared) == len(native) and all(n in (-1, d) for d, n in zip(declared, native, strict=True))
