"""ServerConfig: the payload log's sink settings and the TLS files, from the environment and validated."""

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


def test_tls_needs_both_a_certificate_and_a_key(tmp_path: Path) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("x")
    with pytest.raises(ConfigError, match="tls_cert is set but tls_key is not"):
        ServerConfig.load(tmp_path, {"tls_cert": str(cert)}, env={})
    with pytest.raises(ConfigError, match="tls_key is set but tls_cert is not"):
        ServerConfig.load(tmp_path, {}, env={"MODELSERVE_TLS_KEY": str(cert)})
    with pytest.raises(ConfigError, match="tls_client_ca needs tls_cert and tls_key"):
        ServerConfig.load(tmp_path, {"tls_client_ca": str(cert)}, env={})
    config = ServerConfig.load(tmp_path, {"tls_cert": str(cert), "tls_key": str(cert)}, env={})
    assert config.tls and not ServerConfig(repository=tmp_path).tls


def test_tls_files_must_be_readable(tmp_path: Path) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("x")
    missing = tmp_path / "missing.pem"
    with pytest.raises(ConfigError, match=r"tls_key '.*missing\.pem' cannot be read: No such file"):
        ServerConfig.load(tmp_path, {"tls_cert": str(cert), "tls_key": str(missing)}, env={})
    with pytest.raises(ConfigError, match=r"tls_client_ca .* cannot be read: Is a directory"):
        ServerConfig.load(
            tmp_path, {"tls_cert": str(cert), "tls_key": str(cert), "tls_client_ca": str(tmp_path)}, env={}
        )
