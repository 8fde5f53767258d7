"""Log output: JSON lines for machines, a readable line for people, and the access log's record.

``configure(level, style)``: ``json`` writes one JSON object per record (``time``, ``level``,
``logger``, ``message``, and any structured fields the record carries, e.g. the access log's);
``console`` writes ``time LEVEL logger: message key=value ...``; ``auto`` (the default) picks
``console`` when stderr is a terminal and ``json`` otherwise (a container's log collector).

The access log (logger ``modelserve.access``, one INFO record per inference request) is off unless
asked for: formatting a record per request costs a noticeable share of a small model's request.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import orjson

ACCESS = logging.getLogger("modelserve.access")
FIELDS = "fields"  # the LogRecord attribute holding a record's structured fields


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": _iso(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, FIELDS, None)
        if fields:
            doc.update(fields)
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(doc, default=str).decode()


class ConsoleFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = getattr(record, FIELDS, None)
        if fields:
            line += " " + " ".join(f"{k}={v}" for k, v in fields.items() if v is not None and v != "")
        return line


def configure(level: str, style: str = "auto") -> None:
    """Root logging to stderr in ``style`` (``auto``, ``json`` or ``console``) at ``level``."""
    if style == "auto":
        style = "console" if sys.stderr.isatty() else "json"
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if style == "json" else ConsoleFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def access(fields: dict[str, Any]) -> None:
    """One access log record (``message`` "request") with ``fields``."""
    ACCESS.info("request", extra={FIELDS: fields})


def _iso(created: float) -> str:
    seconds = int(created)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{int((created - seconds) * 1000):03d}Z"
