"""Broker URLs and configuration errors, and the Kafka adapter's construction (no Kafka runs here)."""

from __future__ import annotations

import asyncio
import re
import socket
import sys
from pathlib import Path

import pytest

from modelserve.errors import ConfigError
from modelserve.stream import StreamConfig, open_broker
from modelserve.stream._broker import BrokerError, redacted
from modelserve.stream._kafka import bootstrap_servers
from modelserve.stream._redis import RedisStreams


def test_a_redis_url_makes_redis_streams_without_connecting() -> None:
    assert isinstance(open_broker("redis://nowhere.invalid:6379/0", "in", "g", "c"), RedisStreams)
    assert isinstance(open_broker("unix:///tmp/none.sock", "in", "g", "c"), RedisStreams)


@pytest.mark.parametrize("url", ["http://x:1", "nats://x:4222", "localhost:6379"])
def test_an_unknown_scheme_is_refused(url: str) -> None:
    with pytest.raises(ConfigError, match="expected a URL with a scheme of"):
        open_broker(url, "in", "g", "c")


def test_empty_names_are_refused() -> None:
    with pytest.raises(ConfigError, match="must not be empty"):
        open_broker("redis://x:1/0", "in", "", "c")


def test_an_unreachable_redis_is_a_broker_error_naming_it() -> None:
    with pytest.raises(BrokerError, match=re.escape("Redis redis://u:***@127.0.0.1")) as caught:
        asyncio.run(open_broker(f"redis://u:secret@127.0.0.1:{_closed_port()}/0", "in", "g", "c").open())
    assert "secret" not in caught.value.message


def test_a_password_is_redacted() -> None:
    assert redacted("redis://user:secret@host:6379/0") == "redis://user:***@host:6379/0"
    assert redacted("redis://host:6379/0") == "redis://host:6379/0"


def test_kafka_bootstrap_servers() -> None:
    assert bootstrap_servers("kafka://a:9092,b:9093") == ["a:9092", "b:9093"]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("kafka://", "no bootstrap server"),
        ("kafka://a", "'a' is not host:port"),
        ("kafka://a:port", "is not host:port"),
        ("kafka://a:70000", "is not host:port"),
        ("kafka://a:9092/topic", "has no path or query"),
    ],
)
def test_a_bad_kafka_url_is_a_config_error(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        open_broker(url, "in", "g", "c")


def test_kafka_without_aiokafka_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "aiokafka", None)  # as if it were not installed
    with pytest.raises(ConfigError, match=r"pip install 'modelserve\[kafka\]'"):
        open_broker("kafka://a:9092", "in", "g", "c")


def test_kafka_unreachable_is_a_broker_error() -> None:
    pytest.importorskip("aiokafka", reason="the kafka extra is not installed")
    broker = open_broker(f"kafka://127.0.0.1:{_closed_port()}", "in", "g", "c")
    with pytest.raises(BrokerError, match=r"Kafka 127\.0\.0\.1:\d+ topic 'in' group 'g'"):
        asyncio.run(asyncio.wait_for(broker.open(), 30))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"batch_size": 0}, "batch_size must be >= 1"),
        ({"block_ms": 0}, "block_ms must be >= 1"),
        ({"claim_idle_ms": 0}, "claim_idle_ms must be >= 1"),
        ({"max_deliveries": 0}, "max_deliveries must be >= 1"),
        ({"watch_interval": -1}, "watch_interval must be >= 0"),
        ({"stage": "none"}, "expected production or staging"),
        ({"output": "in"}, "cannot also be the output"),
    ],
)
def test_stream_config_refuses(change: dict[str, object], message: str) -> None:
    options: dict[str, object] = {"broker": "redis://x:1/0", "input": "in", "output": "out", "model": "m"}
    with pytest.raises(ConfigError, match=message):
        StreamConfig(repository=Path("."), **{**options, **change})  # type: ignore[arg-type]


def _closed_port() -> int:
    """A port nothing listens on: bound, never listened, so connections to it are refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
