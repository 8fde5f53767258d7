"""Server settings: defaults, then ``MODELSERVE_*`` environment variables, then CLI options."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from modelserve.errors import ConfigError


@dataclass(frozen=True, slots=True)
class ServerConfig:
    repository: Path
    host: str = "127.0.0.1"
    http_port: int = 8080  # 0 binds an ephemeral port; the bound port is logged
    grpc_port: int = 8081  # 0 binds an ephemeral port; the bound port is logged
    max_request_bytes: int = 64 * 1024 * 1024  # larger REST bodies get 413, larger gRPC messages RESOURCE_EXHAUSTED
    # request limits (server/limits.py): elements over all input tensors of one request (413 /
    # RESOURCE_EXHAUSTED), nesting of a JSON body (400), and request headers (431; gRPC metadata)
    max_tensor_elements: int = 1 << 24
    max_json_depth: int = 32
    max_header_bytes: int = 16 * 1024
    max_headers: int = 100
    # on SIGTERM: readiness false and new requests 503 at once, in-flight ones finish for up to this
    # many seconds, then the process exits 0; a second signal exits at once
    shutdown_grace_s: float = 30.0
    control_api: bool = False  # the repository load/unload endpoints (admin operations)
    trust_code: bool = False  # load models given as Python code (model.py), which run with the server's rights
    # seconds between polls of the repository for changed, new and removed models (hot reload); 0: off
    watch_interval: float = 2.0
    # serve what the model registry's stage says (and verify registered checksums) instead of
    # each config.yaml's version policy; the database defaults to REPOSITORY/.modelserve/registry.db
    registry: bool = False
    registry_url: str = ""  # an SQLAlchemy URL (sqlite:///..., postgresql+psycopg://...); implies registry
    stage: str = "production"  # the stage a registry server serves: production or staging
    manifest: str = ""  # a manifest file (registry export): serve exactly the versions it lists
    # an fsspec URL (file://, s3://, gs://) the registered versions are fetched from, verified by
    # checksum: with the registry, the repository directory is then a local cache (replicas)
    artifact_store: str = ""
    # many models, bounded memory (core/residency.py)
    lazy_load: bool = False  # load each model on its first request instead of at start-up
    idle_unload_s: float = 0.0  # unload a model version unused for this long; 0: never
    memory_budget_mb: int = 0  # evict least recently used models to stay under it; 0: no budget
    load_wait_s: float = 60.0  # how long a request for a model that is not loaded waits for its load
    workers: int = 1  # server processes sharing the ports (SO_REUSEPORT), each with every model loaded
    reuse_port: bool = False  # set by the supervisor for its worker processes
    metrics: bool = True  # per-request figures for /metrics and the stats endpoints
    stats_dir: str = ""  # set by the supervisor: where workers share their figures for /metrics
    inference_threads: int = 0  # threads running runtimes; 0 = CPUs this process may use
    log_level: str = "info"
    log_format: str = "auto"  # auto (console on a terminal, else json), json, console
    access_log: bool = False  # one structured record per inference request
    payload_log_dir: str = ""  # payload log files; default REPOSITORY/.modelserve/payloads
    payload_log_max_file_mb: int = 64  # start a new file past this size
    payload_log_keep_files: int = 10  # delete the oldest files beyond this many
    # files (payload_log_dir), or registry: the payloads table of the registry database (registry_url
    # if given, else the repository's own), which keeps the newest payload_log_max_rows rows
    payload_log_sink: str = "files"
    payload_log_max_rows: int = 1_000_000
    tracing: bool = False  # OpenTelemetry spans per inference request, exported as OTEL_* says
    # TLS for both REST and gRPC: a PEM certificate (chain) and its key, both or neither; with a client
    # CA (PEM), clients must present a certificate it signed (mutual TLS)
    tls_cert: str = ""
    tls_key: str = ""
    tls_client_ca: str = ""
    # API keys (issue #12, server/auth.py): every request but the health probes needs a key, read from
    # the registry database (registry_url, else the repository's own); auth_metrics: /metrics needs
    # one too. Off by default. On a non-loopback host, the control API without auth is refused
    # unless allow_unauthenticated_admin is set.
    auth: bool = False
    auth_keys_file: str = ""  # also accept the (hashed) keys listed in this YAML file
    auth_metrics: bool = True
    allow_unauthenticated_admin: bool = False

    def __post_init__(self) -> None:
        for name in ("http_port", "grpc_port"):
            port = getattr(self, name)
            if not 0 <= port <= 65535:
                raise ConfigError(f"{name} must be between 0 and 65535, got {port}")
        if self.max_request_bytes < 1:
            raise ConfigError(f"max_request_bytes must be >= 1, got {self.max_request_bytes}")
        for name in ("max_tensor_elements", "max_json_depth", "max_header_bytes", "max_headers"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.shutdown_grace_s < 0:
            raise ConfigError(f"shutdown_grace_s must be >= 0 seconds, got {self.shutdown_grace_s}")
        if self.watch_interval < 0:
            raise ConfigError(f"watch_interval must be >= 0 seconds, got {self.watch_interval}")
        if self.stage not in ("production", "staging"):
            raise ConfigError(f"stage must be production or staging, got {self.stage!r}")
        if self.manifest and (self.registry or self.registry_url):
            raise ConfigError("serve either from a manifest or from the registry, not both")
        if self.artifact_store and not (self.registry or self.registry_url):
            raise ConfigError(
                "artifact_store needs the registry (registry or registry_url): the registry says which versions "
                "to fetch and their checksums"
            )
        if self.idle_unload_s < 0 or self.memory_budget_mb < 0 or self.load_wait_s <= 0:
            raise ConfigError(
                "idle_unload_s and memory_budget_mb must be >= 0 and load_wait_s > 0, got "
                f"{self.idle_unload_s}, {self.memory_budget_mb}, {self.load_wait_s}"
            )
        if self.log_format not in ("auto", "json", "console"):
            raise ConfigError(f"log_format must be auto, json or console, got {self.log_format!r}")
        if self.payload_log_max_file_mb < 1 or self.payload_log_keep_files < 1:
            raise ConfigError("payload_log_max_file_mb and payload_log_keep_files must be >= 1")
        if self.payload_log_sink not in ("files", "registry"):
            raise ConfigError(f"payload_log_sink must be files or registry, got {self.payload_log_sink!r}")
        if self.payload_log_max_rows < 1:
            raise ConfigError(f"payload_log_max_rows must be >= 1, got {self.payload_log_max_rows}")
        if self.workers < 1:
            raise ConfigError(f"workers must be >= 1, got {self.workers}")
        if self.workers > 1 and self.control_api:
            raise ConfigError(
                "the control API loads and unloads models in one process, so it cannot be used with several "
                "workers; change the repository (hot reload) or the registry instead"
            )
        if self.inference_threads < 0:
            raise ConfigError(f"inference_threads must be >= 0, got {self.inference_threads}")
        self._check_tls()
        self._check_admin_exposure()

    @property
    def tls(self) -> bool:
        """Whether REST and gRPC are served over TLS."""
        return bool(self.tls_cert)

    def _check_admin_exposure(self) -> None:
        if self.control_api and not self.auth and not self.allow_unauthenticated_admin and not _loopback(self.host):
            raise ConfigError(
                f"host {self.host!r} is reachable from other machines, and the control API (admin endpoints) is on "
                "without authentication: turn auth on (--auth on, keys from modelserve auth create-key), or say "
                "--allow-unauthenticated-admin to run it open"
            )

    def _check_tls(self) -> None:
        if bool(self.tls_cert) != bool(self.tls_key):
            given, missing = ("tls_cert", "tls_key") if self.tls_cert else ("tls_key", "tls_cert")
            raise ConfigError(f"{given} is set but {missing} is not: TLS needs both a certificate and its key")
        if self.tls_client_ca and not self.tls_cert:
            raise ConfigError("tls_client_ca needs tls_cert and tls_key: client certificates are checked only over TLS")
        for name in ("tls_cert", "tls_key", "tls_client_ca"):
            path = getattr(self, name)
            if not path:
                continue
            try:
                with open(path, "rb") as f:
                    f.read(1)
            except OSError as exc:
                raise ConfigError(f"{name} {path!r} cannot be read: {exc.strerror or exc}") from None

    @classmethod
    def load(
        cls, repository: Path, overrides: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None
    ) -> ServerConfig:
        """Defaults < environment (``MODELSERVE_HTTP_PORT`` ...) < ``overrides`` that are not None."""
        env = os.environ if env is None else env
        config = cls(repository=repository)
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(f"MODELSERVE_{f.name.upper()}")
            if raw is not None and f.name != "repository":
                values[f.name] = _convert(f.name, raw, type(getattr(config, f.name)))
        values.update({k: v for k, v in (overrides or {}).items() if v is not None})
        return replace(config, **values)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name other than localhost: it may resolve anywhere


_BOOLS = {"on": True, "true": True, "1": True, "yes": True, "off": False, "false": False, "0": False, "no": False}


def _convert(name: str, raw: str, kind: type) -> Any:
    if kind is bool:
        if raw.strip().lower() not in _BOOLS:
            raise ConfigError(f"MODELSERVE_{name.upper()} must be on or off, got {raw!r}")
        return _BOOLS[raw.strip().lower()]
    if kind is float:
        try:
            return float(raw)
        except ValueError:
            raise ConfigError(f"MODELSERVE_{name.upper()} must be a number, got {raw!r}") from None
    if kind is int:
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"MODELSERVE_{name.upper()} must be an integer, got {raw!r}") from None
    return raw
