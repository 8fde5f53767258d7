"""Shadow traffic: compare what the shadow target answered with what the client got.

Pure: no I/O. The routing layer mirrors requests, calls :func:`outputs_agree` on the two answers
and counts the outcome in :class:`ShadowStats`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np

_NUMBERS = "iufc"  # int, unsigned, float, complex: compared with tolerances, across kinds


def outputs_agree(
    primary: Mapping[str, np.ndarray], shadow: Mapping[str, np.ndarray], rtol: float, atol: float
) -> bool:
    """Whether two answers agree: the same output names, and per output the same shape and values.

    Numbers compare as ``|shadow - primary| <= atol + rtol * |primary|`` (the primary's answer is
    the reference), NaN equal to NaN, and an integer output may match a float one (a runtime that
    returns labels as float64). Booleans match booleans only, exactly. Anything else (BYTES as
    object, ``S`` or ``U`` arrays) compares element by element, exactly, with ``str`` taken as its
    UTF-8 bytes so that ``"a"`` and ``b"a"`` agree. Never raises for odd contents: they disagree.
    """
    if set(primary) != set(shadow):
        return False
    return all(_agree(np.asarray(primary[name]), np.asarray(shadow[name]), rtol, atol) for name in primary)


def _agree(primary: np.ndarray, shadow: np.ndarray, rtol: float, atol: float) -> bool:
    if primary.shape != shadow.shape:
        return False
    kinds = primary.dtype.kind + shadow.dtype.kind
    if all(k in _NUMBERS for k in kinds):
        with np.errstate(all="ignore"):  # inf - inf inside isclose; overflow of huge integers
            return bool(np.allclose(shadow, primary, rtol=rtol, atol=atol, equal_nan=True))
    if kinds == "bb":
        return bool(np.array_equal(primary, shadow))
    if any(k in _NUMBERS or k == "b" for k in kinds):
        return False  # a number against text or objects
    try:
        return [_exact(x) for x in primary.ravel().tolist()] == [_exact(x) for x in shadow.ravel().tolist()]
    except Exception:  # an object whose == raises (an array inside a BYTES tensor): not a match
        return False


def _exact(value: object) -> object:
    return value.encode("utf-8", "surrogatepass") if isinstance(value, str) else value


@dataclass(slots=True)
class ShadowStats:
    """Counts of one policy's mirrored requests (the routing layer increments them)."""

    mirrored: int = 0  # sent to the shadow target
    agreed: int = 0  # answered, the same as the primary
    disagreed: int = 0  # answered, differently
    errors: int = 0  # the shadow target failed
    dropped: int = 0  # not mirrored: the shadow queue was full or the target unavailable

    def to_dict(self) -> dict[str, int]:
        return asdict(self)
