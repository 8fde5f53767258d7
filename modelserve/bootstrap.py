"""The one place that picks concrete classes and wires a server together."""

from __future__ import annotations

from pathlib import Path

from modelserve.config.server import ServerConfig
from modelserve.core.catalog import Catalog, ManifestCatalog, PolicyCatalog, RegistryCatalog
from modelserve.core.manager import ModelManager
from modelserve.core.pool import Pool
from modelserve.core.residency import Residency
from modelserve.protocol.v2 import rest
from modelserve.repository.registry import REGISTRY_DIR, RegistryStore, Stage, default_url
from modelserve.server.grpc.service import GrpcService
from modelserve.server.http.app import HttpApp
from modelserve.server.http.repository import RepositoryEndpoints
from modelserve.server.http.tfserving import TfServingEndpoints
from modelserve.server.http.v2 import V2Endpoints
from modelserve.server.lifecycle import Server
from modelserve.server.metrics import Metrics
from modelserve.server.observe import Observer
from modelserve.telemetry.payloads import PayloadSink
from modelserve.telemetry.tracing import Tracing
from modelserve.types import InferRequest


def build_server(config: ServerConfig) -> Server:
    pool = Pool(config.inference_threads)
    residency = Residency(
        lazy=config.lazy_load,
        idle_unload_s=config.idle_unload_s,
        memory_budget_bytes=config.memory_budget_mb << 20,
        load_wait_s=config.load_wait_s,
    )
    manager = ModelManager(
        pool,
        config.repository,
        config.trust_code,
        decode_sample=_decode_sample,
        catalog=build_catalog(config),
        residency=residency,
        record_stats=config.metrics,
    )
    metrics = Metrics(manager, Path(config.stats_dir) if config.stats_dir else None)
    tracing = Tracing() if config.tracing else None
    sink = PayloadSink(
        payload_directory(config.repository, config.payload_log_dir),
        max_file_bytes=config.payload_log_max_file_mb << 20,
        keep_files=config.payload_log_keep_files,
    )
    observer = Observer(manager, config.access_log, tracing, sink)
    routes = (
        metrics.routes()
        + V2Endpoints(manager, observer).routes()
        + RepositoryEndpoints(manager, config.control_api).routes()
        + TfServingEndpoints(manager, observer).routes()
    )
    grpc_handler = GrpcService(manager, config.control_api, observer, metrics).handler()
    server = Server(config, manager, pool, HttpApp(routes, config.max_request_bytes), grpc_handler, metrics)
    server.tracing = tracing
    server.payloads = sink
    metrics.payloads = sink
    return server


def payload_directory(repository: Path, configured: str | Path | None = None) -> Path:
    """Where the payload log's files go: the configured directory, or the repository's own."""
    if configured:
        return Path(configured)
    return repository / REGISTRY_DIR / "payloads"


def build_catalog(config: ServerConfig) -> Catalog:
    """What decides the served versions: a manifest, the registry, or each config.yaml's policy."""
    if config.manifest:
        return ManifestCatalog(Path(config.manifest))
    if config.registry or config.registry_url:
        store = RegistryStore(config.registry_url or default_url(config.repository))
        return RegistryCatalog(store, Stage(config.stage))
    return PolicyCatalog()


def _decode_sample(body: bytes) -> InferRequest:
    """Warmup files are v2 REST inference request bodies (JSON, no binary tensors)."""
    return rest.decode_infer_request(body, None)
