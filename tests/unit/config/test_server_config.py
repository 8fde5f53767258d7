"""ServerConfig: the payload log's sink settings, from the environment and validated."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelserve.config.server import ServerConfig
from modelserve.errors import ConfigError


def test_the_payload_log_sink_defaults_to_files_and_reads_the_environment() -> None:
    assert ServerConfig.load(Path("m"), env={}).payload_log_sink == "files"
    env = {"MODELSERVE_PAYLOAD_LOG_SINK": "registry", "MODELSERVE_PAYLOAD_LOG_MAX_ROWS": "500"}
    config = ServerConfig.load(Path("m"), env=env)
    assert (config.payload_log_sink, config.payload_log_max_rows) == ("registry", 500)
    assert ServerConfig.load(Path("m"), {"payload_log_sink": "files"}, env=env).payload_log_sink == "files"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"payload_log_sink": "table"}, "payload_log_sink must be files or registry, got 'table'"),
        ({"payload_log_max_rows": 0}, "payload_log_max_rows must be >= 1, got 0"),
    ],
)
def test_bad_payload_log_settings_are_refused(settings: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ServerConfig.load(Path("m"), settings, env={})
