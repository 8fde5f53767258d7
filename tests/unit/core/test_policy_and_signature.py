from __future__ import annotations

import pytest

from modelserve.config.model import SignatureOverride, TensorOverride, VersionPolicy
from modelserve.core.policy import select_versions
from modelserve.core.signature import adapt
from modelserve.errors import LoadError
from modelserve.types import Signature, TensorSpec


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        (VersionPolicy(), [5]),
        (VersionPolicy(kind="latest", latest=2), [3, 5]),
        (VersionPolicy(kind="latest", latest=10), [1, 3, 5]),
        (VersionPolicy(kind="all"), [1, 3, 5]),
        (VersionPolicy(kind="specific", specific=(1, 4)), [1]),
    ],
)
def test_select_versions(policy: VersionPolicy, expected: list[int]) -> None:
    assert select_versions([5, 1, 3], policy) == expected
    assert select_versions([], policy) == []


NATIVE = Signature(
    inputs=(TensorSpec("float_input", "FP32", (-1, -1)),),
    outputs=(TensorSpec("output_label", "INT64", (-1,)), TensorSpec("output_probability", "FP32", (-1, 3))),
)


def test_no_override_is_identity() -> None:
    adapter = adapt(NATIVE, None)
    assert adapter.identity and adapter.public == NATIVE


def test_override_renames_by_position_and_tightens_shape() -> None:
    override = SignatureOverride(
        inputs=(TensorOverride("features", "FP64", (-1, 4)),), outputs=(TensorOverride("label"),)
    )
    adapter = adapt(NATIVE, override)
    assert adapter.public.inputs == (TensorSpec("features", "FP64", (-1, 4), accepts=frozenset({"FP32"})),)
    assert [o.name for o in adapter.public.outputs] == ["label", "output_probability"]
    assert adapter.input_names == {"features": "float_input"}
    assert adapter.output_names == {"output_label": "label"}


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (SignatureOverride(inputs=(TensorOverride("a"), TensorOverride("b"))), "lists 2 tensors but the model has 1"),
        (SignatureOverride(outputs=(TensorOverride("p", shape=(-1, 4)),)), "does not fit"),
        (SignatureOverride(outputs=(TensorOverride("x"), TensorOverride("x"))), "duplicate names"),
    ],
)
def test_bad_overrides_fail_the_load(override: SignatureOverride, message: str) -> None:
    with pytest.raises(LoadError, match=message):
        adapt(NATIVE, override)
