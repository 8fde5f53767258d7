"""Progressive delivery: the candidate's share of traffic grows step by step while it stays as good
as the stable version, and drops to 0 the moment it is not.

Pure: no I/O, no tasks. The routing layer calls :meth:`CanaryJudge.observe` as requests finish and
:meth:`CanaryJudge.evaluate` now and then (every second or so: more often than ``window_s``, or a
gap breaks the run of healthy verdicts); the clock is injected so that tests need no sleeps.

Judging, over the requests of the last ``window_s`` seconds (or the last 50 000 per arm, whichever
is fewer):

* nothing until the candidate has ``min_requests`` in the window;
* roll back when the candidate's error rate exceeds the stable one's by more than
  ``max_error_rate_increase`` (the stable rate counts as 0 until it has ``min_requests`` too: a
  candidate that fails is not excused by a lack of stable traffic);
* roll back when both arms have ``min_requests`` and the candidate's p99 latency is above
  ``max_p99_ratio`` times the stable p99 and above ``min_p99_s``. Latency is over every request,
  failed ones included: it is what clients waited;
* otherwise the candidate is healthy. Once it has been judged healthy without a break for
  ``promote_after_s`` since its current step began, it moves to the next step, and after the last
  one it is promoted. A verdict without enough requests breaks the run: promotion needs evidence.

The windows are kept across a step, on purpose. Error rate and latency are per request, so the
older requests measure the same candidate fairly; dropping them would give a candidate that just
failed a fresh start at a larger share, and would leave too few requests to judge right after each
step. Promotion still rests on the current step alone whenever ``promote_after_s >= window_s``
(the defaults: 300 s and 60 s), since the last verdict before a step then sees only its requests.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelserve.config.traffic import Canary

ARMS = ("stable", "candidate")
STATUSES = ("running", "rolled_back", "promoted")
MAX_ENTRIES = 50_000  # per arm; config/traffic.py caps min_requests at this
_EPS = 1e-12  # so that exactly the allowed increase (0.10 - 0.05) is not a rollback by rounding


@dataclass(frozen=True, slots=True)
class Verdict:
    kind: str  # "rollback" | "step" | "promoted"
    share: float  # the candidate's share from now on
    reason: str


class _Window:
    """One arm's recent requests: (time, ok, seconds), oldest first, with a running error count."""

    __slots__ = ("entries", "errors")

    def __init__(self) -> None:
        self.entries: deque[tuple[float, bool, float]] = deque()
        self.errors = 0

    def add(self, at: float, ok: bool, seconds: float) -> None:
        if len(self.entries) >= MAX_ENTRIES:
            self._drop()
        self.entries.append((at, ok, seconds))
        self.errors += not ok

    def prune(self, before: float) -> None:
        while self.entries and self.entries[0][0] < before:
            self._drop()

    def _drop(self) -> None:
        _, ok, _ = self.entries.popleft()
        self.errors -= not ok

    @property
    def requests(self) -> int:
        return len(self.entries)

    def error_rate(self) -> float:
        return self.errors / len(self.entries) if self.entries else 0.0

    def p99(self) -> float:
        if not self.entries:
            return 0.0
        seconds = np.fromiter((s for _, _, s in self.entries), dtype=np.float64, count=len(self.entries))
        return float(np.percentile(seconds, 99))


class CanaryJudge:
    """Decides one canary's candidate share from the outcomes of its two arms (see the module doc).

    ``status`` is "running", "rolled_back" or "promoted"; ``step`` indexes ``rules.steps``; ``share``
    is the candidate's share of traffic (``steps[step]`` while running, 0.0 once rolled back,
    ``steps[-1]`` once promoted); ``reason`` says why the last verdict was given. Not thread-safe.
    """

    def __init__(self, rules: Canary, clock: Callable[[], float] = time.monotonic) -> None:
        self.rules = rules
        self._clock = clock
        self._windows = {arm: _Window() for arm in ARMS}
        self.status = "running"
        self.step = 0
        self.share = rules.steps[0]
        self.reason = f"started at step 1 of {len(rules.steps)} (candidate share {self.share:g})"
        self._healthy_since: float | None = None  # start of the current run of healthy verdicts
        self._last_healthy = -math.inf

    def observe(self, arm: str, ok: bool, seconds: float) -> None:
        """Record one finished request of ``arm`` ("stable" or "candidate"): ``ok`` false for a
        server-side failure; ``seconds`` how long it took. O(1). Raises ValueError for another arm."""
        window = self._windows.get(arm)
        if window is None:
            raise ValueError(f"canary arm must be 'stable' or 'candidate', got {arm!r}")
        window.add(self._clock(), ok, seconds)

    def evaluate(self) -> Verdict | None:
        """Judge the current window; a verdict (already applied to share/status/step) or None."""
        now = self._prune()
        if self.status != "running":
            return None
        stable, candidate, rules = self._windows["stable"], self._windows["candidate"], self.rules
        if candidate.requests < rules.min_requests:
            self._healthy_since = None
            return None
        failure = self._failure(stable, candidate)
        if failure is not None:
            return self._apply(Verdict("rollback", 0.0, failure), "rolled_back")
        if self._healthy_since is None or now - self._last_healthy > rules.window_s:
            self._healthy_since = now
        self._last_healthy = now
        if rules.promote_after_s <= 0 or now - self._healthy_since < rules.promote_after_s:
            return None
        held = f"healthy for {now - self._healthy_since:g} s at share {self.share:g} ({self._figures()})"
        if self.step + 1 >= len(rules.steps):
            return self._apply(Verdict("promoted", self.share, f"promoted: {held}"), "promoted")
        self.step += 1
        self._healthy_since = now  # the step's clock starts; the verdict that stepped was a healthy one
        return self._apply(Verdict("step", rules.steps[self.step], f"step {self.step + 1}: {held}"), "running")

    def window(self) -> dict[str, dict[str, float | int]]:
        """Per arm: ``requests``, ``errors``, ``error_rate`` and ``p99_s`` in the current window."""
        self._prune()
        return {
            arm: {"requests": w.requests, "errors": w.errors, "error_rate": w.error_rate(), "p99_s": w.p99()}
            for arm, w in self._windows.items()
        }

    def state(self) -> dict[str, Any]:
        """Progress as JSON-able data (not the windows: requests before a restart are not judged)."""
        return {"status": self.status, "step": self.step, "share": self.share, "reason": self.reason}

    def restore(self, state: Mapping[str, Any]) -> bool:
        """Take back :meth:`state`; False, changing nothing, when it is malformed or does not fit
        these rules (other steps). Never raises. The current step's clock starts again."""
        if not isinstance(state, Mapping):
            return False
        status, step, share, reason = (state.get(k) for k in ("status", "step", "share", "reason"))
        steps = self.rules.steps
        if status not in STATUSES or isinstance(step, bool) or not isinstance(step, int) or not isinstance(reason, str):
            return False
        if not 0 <= step < len(steps) or isinstance(share, bool) or not isinstance(share, int | float):
            return False
        expected = {"running": steps[step], "rolled_back": 0.0, "promoted": steps[-1]}[str(status)]
        if share != expected or (status == "promoted" and step != len(steps) - 1):
            return False
        self.status, self.step, self.share, self.reason = str(status), step, float(share), reason
        self._healthy_since = None
        return True

    def _prune(self) -> float:
        now = self._clock()
        for window in self._windows.values():
            window.prune(now - self.rules.window_s)
        return now

    def _failure(self, stable: _Window, candidate: _Window) -> str | None:
        """Why the candidate fails the rules, or None."""
        rules = self.rules
        enough = stable.requests >= rules.min_requests
        stable_rate = stable.error_rate() if enough else 0.0
        candidate_rate = candidate.error_rate()
        if candidate_rate - stable_rate > rules.max_error_rate_increase + _EPS:
            return (
                f"candidate error rate {candidate_rate:.2f} vs stable {stable_rate:.2f} over the last "
                f"{rules.window_s:g} s (max increase {rules.max_error_rate_increase:g})"
            )
        if enough:
            stable_p99, candidate_p99 = stable.p99(), candidate.p99()
            if candidate_p99 > rules.max_p99_ratio * stable_p99 and candidate_p99 > rules.min_p99_s:
                return (
                    f"candidate p99 {candidate_p99:.4f} s vs stable {stable_p99:.4f} s over the last "
                    f"{rules.window_s:g} s (max ratio {rules.max_p99_ratio:g})"
                )
        return None

    def _figures(self) -> str:
        stable, candidate = self._windows["stable"], self._windows["candidate"]
        return (
            f"error rate {candidate.error_rate():.2f} vs {stable.error_rate():.2f}, "
            f"{candidate.requests} vs {stable.requests} requests"
        )

    def _apply(self, verdict: Verdict, status: str) -> Verdict:
        self.status, self.share, self.reason = status, verdict.share, verdict.reason
        return verdict
