"""Per-version admission (core/admission.py): bounded in-progress count, Retry-After, deadlines."""

from __future__ import annotations

import time

import pytest

from modelserve.config.model import Limits
from modelserve.core.admission import Admission, Overloaded


def test_admits_max_queue_plus_instances_then_refuses_with_retry_after() -> None:
    admission = Admission("'m' version 1", Limits(max_queue=2, timeout_s=0), instances=3)
    for _ in range(5):
        admission.admit(None)
    with pytest.raises(Overloaded) as refused:
        admission.admit(None)
    assert refused.value.retry_after >= 1
    assert ("retry-after", str(refused.value.retry_after)) in refused.value.response_headers
    assert "5 requests in progress, the limit is 5" in refused.value.message
    assert "limits.max_queue = 2" in refused.value.message
    assert admission.refused == 1
    admission.done(0.01)
    admission.admit(None)  # room again


def test_retry_after_follows_the_latency_of_admitted_requests() -> None:
    admission = Admission("m", Limits(max_queue=0, timeout_s=0), instances=1)
    for _ in range(60):
        admission.admit(None)
        admission.done(4.2)  # slow requests: the running average approaches 4.2 s
    admission.admit(None)
    with pytest.raises(Overloaded) as refused:
        admission.admit(None)
    assert refused.value.retry_after == 5


def test_the_earlier_of_client_deadline_and_timeout_wins() -> None:
    admission = Admission("m", Limits(max_queue=10, timeout_s=2.0), instances=1)
    now = time.monotonic()
    assert admission.admit(now + 1) == now + 1
    own = admission.admit(now + 60)
    assert own is not None and now + 1.9 < own < now + 2.5
    assert Admission("m", Limits(timeout_s=0), 1).admit(None) is None


def test_expired_says_whose_deadline_and_whether_it_ran() -> None:
    admission = Admission("'m' version 1", Limits(timeout_s=2.0), instances=1)
    mine = admission.expired(10.0, None, started=True)
    assert "within its timeout of 2 s" in mine.message and "abandoned" in mine.message
    theirs = admission.expired(10.0, 10.0, started=False)
    assert "client's deadline passed" in theirs.message and "it was not run" in theirs.message
    assert admission.timed_out == 2
