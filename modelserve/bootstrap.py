"""The one place that picks concrete classes and wires a server together."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from modelserve.config.keysfile import KeysFile
from modelserve.config.server import ServerConfig
from modelserve.core.catalog import Catalog, ManifestCatalog, PolicyCatalog, RegistryCatalog
from modelserve.core.manager import ModelManager
from modelserve.core.pool import Pool
from modelserve.core.residency import Residency
from modelserve.monitoring.explain import Explainer
from modelserve.monitoring.service import Monitoring
from modelserve.protocol.v2 import rest
from modelserve.repository.artifacts import ArtifactStore
from modelserve.repository.registry import REGISTRY_DIR, RegistryStore, Stage, default_url
from modelserve.repository.registry.payloads import PayloadTable
from modelserve.routing.graph import GraphComposer
from modelserve.routing.router import Router
from modelserve.server.auth import Authenticator, StoredKey, merged
from modelserve.server.dashboard import Audit, Dashboard, Roles, Sampler, Views
from modelserve.server.gate import Gate
from modelserve.server.grpc.service import GrpcService
from modelserve.server.http.app import HttpApp, HttpLimits
from modelserve.server.http.explain import ExplainEndpoints
from modelserve.server.http.monitoring import MonitoringEndpoints
from modelserve.server.http.openapi import OpenApiEndpoints
from modelserve.server.http.precomputed import PrecomputedEndpoints
from modelserve.server.http.repository import RepositoryEndpoints
from modelserve.server.http.tfserving import TfServingEndpoints
from modelserve.server.http.traffic import TrafficEndpoints
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
    registry = open_registry(config)
    manager = ModelManager(
        pool,
        config.repository,
        config.trust_code,
        decode_sample=decode_sample,
        catalog=build_catalog(config, registry),
        residency=residency,
        record_stats=config.metrics,
    )
    manager.composer = GraphComposer(manager, trust_code=config.trust_code)
    manager.max_request_elements = config.max_tensor_elements
    # mirrored requests may use half the inference threads at most: the callers keep the rest
    router = Router(manager, routing_store(config, registry), max_shadows=max(1, pool.threads // 2))
    metrics = Metrics(manager, Path(config.stats_dir) if config.stats_dir else None)
    tracing = Tracing() if config.tracing else None
    sink = payload_sink(config)
    monitoring = Monitoring(manager, routing_store(config, registry))
    observer = Observer(manager, config.access_log, tracing, sink, monitoring)
    auth = authenticator(config, registry)
    dashboard = build_dashboard(config, manager, router, monitoring, registry, auth)
    routes = (
        metrics.routes("infer" if config.auth_metrics else "public")
        + V2Endpoints(manager, observer, router).routes()
        + OpenApiEndpoints().routes()
        + TrafficEndpoints(router, config.control_api).routes()
        + MonitoringEndpoints(monitoring).routes()
        + RepositoryEndpoints(manager, config.control_api).routes()
        + ExplainEndpoints(
            Explainer(manager, background=monitoring.background)
        ).routes()  # :explain, ahead of the TF Serving routes
        + PrecomputedEndpoints(observer, router).routes()
        + TfServingEndpoints(manager, observer, router).routes()
        + dashboard.routes()
    )
    gate = Gate()  # closed on shutdown: new requests 503, those in flight finish
    grpc_handler = GrpcService(manager, config.control_api, observer, metrics, router, auth, gate).handler()
    limits = HttpLimits(config.max_request_bytes, config.max_json_depth, config.max_headers, config.max_header_bytes)
    server = Server(config, manager, pool, HttpApp(routes, limits, auth, gate), grpc_handler, metrics)
    server.gate = gate
    server.tracing = tracing
    server.router = router
    metrics.router = router
    server.monitoring = monitoring
    metrics.monitoring = monitoring
    server.payloads = sink
    metrics.payloads = sink
    server.dashboard = dashboard
    return server


def build_dashboard(
    config: ServerConfig,
    manager: ModelManager,
    router: Router,
    monitoring: Monitoring,
    registry: RegistryStore | None,
    auth: Authenticator | None = None,
) -> Dashboard:
    """The web dashboard at /ui: reads the registry the server serves from (when it does) and
    audits its actions where traffic overrides are kept; with ``auth``, its own login (a key
    header or a session cookie)."""
    sampler = Sampler(lambda: ((model, stats) for (model, _), stats in manager.stats.versions.items()))
    views = Views(manager, router, monitoring, sampler, registry)
    audit = Audit(routing_store(config, registry), owned=registry is None)
    return Dashboard(manager, router, views, sampler, Roles(config.control_api, config.auth), audit, auth=auth)


def authenticator(config: ServerConfig, registry: RegistryStore | None) -> Authenticator | None:
    """With ``auth`` on, the API key checker over the keys file ``auth_keys_file`` and the registry
    the server serves from, else the database of ``registry_url`` or the repository's own (created
    if need be: no keys, no entry). A keys file without ``registry``/``registry_url`` is used
    alone: no database. Raises ConfigError for a keys file that is missing or invalid."""
    if not config.auth:
        return None
    sources: list[Callable[[], Sequence[StoredKey]]] = []
    if registry is not None or config.registry_url or not config.auth_keys_file:
        store = (
            registry if registry is not None else RegistryStore(config.registry_url or default_url(config.repository))
        )
        sources.append(store.keys)
    if config.auth_keys_file:
        keys_file = KeysFile(config.auth_keys_file)
        keys_file.keys()  # a missing or invalid file stops the start, naming the file and the entry
        sources.append(keys_file.keys)
    return Authenticator(merged(*sources), background=True)  # rereads off the event loop


def payload_directory(repository: Path, configured: str | Path | None = None) -> Path:
    """Where the payload log's files go: the configured directory, or the repository's own."""
    if configured:
        return Path(configured)
    return repository / REGISTRY_DIR / "payloads"


def payload_sink(config: ServerConfig) -> PayloadSink:
    """The payload log: JSON Lines files (``payload_directory``), or with ``payload_log_sink:
    registry`` the payloads table of the registry database (``registry_url``, else the
    repository's own). Raises ConfigError for a database URL that cannot be used."""
    if config.payload_log_sink == "registry":
        url = config.registry_url or default_url(config.repository)
        return PayloadSink(writer=PayloadTable(url, max_rows=config.payload_log_max_rows))
    return PayloadSink(
        payload_directory(config.repository, config.payload_log_dir),
        max_file_bytes=config.payload_log_max_file_mb << 20,
        keep_files=config.payload_log_keep_files,
    )


def open_registry(config: ServerConfig) -> RegistryStore | None:
    """The registry the server serves from (``--registry``), None when it serves a directory."""
    if config.manifest or not (config.registry or config.registry_url):
        return None
    return RegistryStore(config.registry_url or default_url(config.repository))


def build_catalog(config: ServerConfig, registry: RegistryStore | None = None) -> Catalog:
    """What decides the served versions: a manifest, the registry (with an artifact store: fetching
    its versions into the repository directory), or each config.yaml's policy."""
    if config.manifest:
        return ManifestCatalog(Path(config.manifest))
    registry = registry if registry is not None else open_registry(config)
    if registry is not None:
        artifacts = ArtifactStore(config.artifact_store) if config.artifact_store else None
        return RegistryCatalog(registry, Stage(config.stage), artifacts)
    return PolicyCatalog()


def routing_store(config: ServerConfig, registry: RegistryStore | None) -> Callable[[bool], RegistryStore | None]:
    """Where traffic overrides and learnt routing state live: the registry the server serves
    from, else the repository's own registry database, created only when there is state to keep."""

    def open_store(create: bool) -> RegistryStore | None:
        if registry is not None:
            return registry
        url = config.registry_url or default_url(config.repository)
        if not create and url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
            return None  # nothing was ever kept: do not create a database to read nothing
        return RegistryStore(url)

    return open_store


def decode_sample(body: bytes) -> InferRequest:
    """Warmup files are v2 REST inference request bodies (JSON, no binary tensors)."""
    return rest.decode_infer_request(body, None)
