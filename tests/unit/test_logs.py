"""Log formats: JSON lines carry the structured fields; the console line shows them as key=value."""

from __future__ import annotations

import json
import logging

from modelserve.telemetry.logs import FIELDS, ConsoleFormatter, JsonFormatter


def _record(message: str, fields: dict[str, object] | None = None) -> logging.LogRecord:
    record = logging.LogRecord("modelserve.access", logging.INFO, __file__, 1, message, None, None)
    if fields is not None:
        setattr(record, FIELDS, fields)
    return record


def test_json_lines_hold_the_fields() -> None:
    line = JsonFormatter().format(_record("request", {"model": "iris", "status": 200, "latency_ms": 1.5}))
    doc = json.loads(line)
    assert doc["message"] == "request" and doc["level"] == "info" and doc["logger"] == "modelserve.access"
    assert (doc["model"], doc["status"], doc["latency_ms"]) == ("iris", 200, 1.5)
    assert doc["time"].endswith("Z") and "T" in doc["time"]


def test_console_lines_are_for_people() -> None:
    line = ConsoleFormatter().format(_record("request", {"model": "iris", "version": "", "status": 200}))
    assert line.endswith("modelserve.access: request model=iris status=200")
    assert ConsoleFormatter().format(_record("plain")).endswith("modelserve.access: plain")
