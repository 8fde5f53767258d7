"""config.yaml's monitoring: section: defaults, on/off, every key checked with its name and value."""

from __future__ import annotations

import pytest

from modelserve.config.model import parse_model_config
from modelserve.config.monitoring import MonitoringConfig, parse_monitoring
from modelserve.errors import ConfigError


def test_absent_on_and_off() -> None:
    assert parse_model_config({}, "c.yaml").monitoring == MonitoringConfig()
    assert parse_monitoring("on", "c.yaml") == MonitoringConfig()
    assert parse_monitoring(False, "c.yaml").enabled is False


def test_every_key_is_read() -> None:
    doc = {
        "window": 300, "min_rows": 100, "check_every": 50, "p_value": 0.05, "psi_threshold": 0.1,
        "multivariate": "off", "outlier_quantile": 0.99, "min_interval_s": 0,
    }  # fmt: skip
    assert parse_monitoring(doc, "c.yaml") == MonitoringConfig(True, 300, 100, 50, 0.05, 0.1, False, 0.99, 0.0)


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"windw": 3}, "unknown key(s) ['windw']"),
        ({"window": 5}, "monitoring.window must be an integer >= 10, got 5"),
        ({"window": True}, "monitoring.window must be an integer"),
        ({"p_value": 1.5}, "monitoring.p_value must be between 0 and 1"),
        ({"psi_threshold": -1}, "monitoring.psi_threshold must be a number > 0, got -1"),
        ({"multivariate": "maybe"}, "monitoring.multivariate must be on or off, got 'maybe'"),
        ({"min_interval_s": -2}, "monitoring.min_interval_s must be a number of seconds >= 0"),
        ({"window": 100, "min_rows": 200}, "min_rows (200) must be <= window (100)"),
        ("sometimes", "monitoring must be on, off, or a mapping"),
    ],
)
def test_bad_values_name_the_key_and_value(doc: object, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_monitoring(doc, "models/m/config.yaml")
    assert message in raised.value.message and "models/m/config.yaml" in raised.value.message
