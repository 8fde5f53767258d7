"""A progress bar on stderr: rows, rows/s and (when the total is known) ETA. tqdm when it is
installed (it is not a dependency), else one line rewritten at most once a second."""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import Any

INTERVAL_S = 1.0


class Progress:
    def __init__(self, total: int | None, initial: int, enabled: bool) -> None:
        self._total, self._done, self._enabled = total, initial, enabled
        self._initial = initial
        self._bar: Any = None
        self._started = self._shown = time.perf_counter()
        if not enabled:
            return
        try:
            from tqdm import tqdm  # type: ignore[import-untyped]  # no stubs; optional
        except ImportError:
            return
        self._bar = tqdm(total=total, initial=initial, unit="rows", unit_scale=True, file=sys.stderr, smoothing=0.1)

    def update(self, rows: int) -> None:
        self._done += rows
        if self._bar is not None:
            self._bar.update(rows)
        elif self._enabled and time.perf_counter() - self._shown >= INTERVAL_S:
            self._shown = time.perf_counter()
            sys.stderr.write("\r" + self._line())
            sys.stderr.flush()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._bar is not None:
            self._bar.close()
        elif self._enabled:
            sys.stderr.write("\r" + self._line() + "\n")

    def _line(self) -> str:
        elapsed = max(time.perf_counter() - self._started, 1e-9)
        rate = (self._done - self._initial) / elapsed
        line = f"{self._done:,} rows" + (f" of {self._total:,}" if self._total else "") + f", {rate:,.0f} rows/s"
        if self._total and rate > 0:
            line += f", ETA {max(self._total - self._done, 0) / rate:,.0f} s"
        return line
