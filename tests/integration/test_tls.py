"""TLS on REST and gRPC, and mutual TLS, against a throwaway CA made with ``cryptography``."""

from __future__ import annotations

import datetime
import ipaddress
import re
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as tg
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from tritonclient.utils import InferenceServerException

from modelserve import testing
from modelserve.errors import ConfigError

DOUBLE = """\
import numpy as np

class Model:
    signature = {
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1]}],
        "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1]}],
    }

    def load(self, path):
        pass

    def predict(self, inputs):
        return {"y": inputs["x"] * 2}
"""
BODY = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [2], "data": [1, 2]}]}


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    rogue_cert: Path  # a client certificate from another CA
    rogue_key: Path


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _issue(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
    *,
    ca: bool = False,
    server: bool = False,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    issuer_name, issuer_key = issuer or (_name(subject), key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        usage = x509.KeyUsage(False, False, False, False, False, True, True, False, False)
        builder = builder.add_extension(usage, critical=True)
    else:
        purpose = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([purpose]), critical=False)
    if server:
        names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write(path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey | None = None) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    if key is not None:
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        path.with_suffix(".key").write_bytes(pem)
    return path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    out = tmp_path_factory.mktemp("pki")
    ca_key, rogue_ca_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = _issue("modelserve test CA", ca_key, None, ca=True)
    rogue_ca = _issue("some other CA", rogue_ca_key, None, ca=True)
    keys = {n: ec.generate_private_key(ec.SECP256R1()) for n in ("server", "client", "rogue")}
    _write(out / "server.pem", _issue("localhost", keys["server"], (ca.subject, ca_key), server=True), keys["server"])
    _write(out / "client.pem", _issue("client", keys["client"], (ca.subject, ca_key)), keys["client"])
    _write(out / "rogue.pem", _issue("rogue", keys["rogue"], (rogue_ca.subject, rogue_ca_key)), keys["rogue"])
    return Pki(
        ca=_write(out / "ca.pem", ca),
        server_cert=out / "server.pem",
        server_key=out / "server.key",
        client_cert=out / "client.pem",
        client_key=out / "client.key",
        rogue_cert=out / "rogue.pem",
        rogue_key=out / "rogue.key",
    )


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("models")
    (out / "double" / "1").mkdir(parents=True)
    (out / "double" / "1" / "model.py").write_text(DOUBLE)
    return out


@pytest.fixture(scope="module")
def tls_server(repo: Path, pki: Pki) -> Iterator[testing.run]:
    with testing.run(repo, trust_code=True, tls_cert=str(pki.server_cert), tls_key=str(pki.server_key)) as srv:
        yield srv


@pytest.fixture(scope="module")
def mtls_server(repo: Path, pki: Pki) -> Iterator[testing.run]:
    files = {"tls_cert": str(pki.server_cert), "tls_key": str(pki.server_key), "tls_client_ca": str(pki.ca)}
    with testing.run(repo, trust_code=True, **files) as srv:
        yield srv


def _grpc_infer(target: str, credentials: grpc.ChannelCredentials) -> np.ndarray:
    client = tg.InferenceServerClient(target, ssl=True, creds=credentials)
    try:
        x = tg.InferInput("x", [2], "FP32")
        x.set_data_from_numpy(np.array([1, 2], dtype=np.float32))
        return client.infer("double", [x]).as_numpy("y")
    finally:
        client.close()


def test_rest_over_https(tls_server: testing.run, pki: Pki) -> None:
    assert tls_server.http_url.startswith("https://127.0.0.1:")
    with httpx.Client(base_url=tls_server.http_url, verify=ssl.create_default_context(cafile=pki.ca)) as client:
        response = client.post("/v2/models/double/infer", json=BODY)
    assert response.status_code == 200, response.text
    assert response.json()["outputs"][0]["data"] == [2, 4]


def test_plain_http_and_untrusted_clients_fail(tls_server: testing.run) -> None:
    plain = tls_server.http_url.replace("https://", "http://")
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{plain}/v2/health/live", timeout=5)
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{tls_server.http_url}/v2/health/live", timeout=5)  # the system CAs do not know ours
    with pytest.raises(InferenceServerException):  # nor does gRPC's default trust store
        _grpc_infer(tls_server.grpc_target, grpc.ssl_channel_credentials())


def test_grpc_over_tls(tls_server: testing.run, pki: Pki) -> None:
    credentials = grpc.ssl_channel_credentials(root_certificates=pki.ca.read_bytes())
    assert _grpc_infer(tls_server.grpc_target, credentials).tolist() == [2, 4]
    plaintext = tg.InferenceServerClient(tls_server.grpc_target)
    with pytest.raises(InferenceServerException, match="UNAVAILABLE"):  # the handshake fails
        plaintext.is_server_live(client_timeout=5)
    plaintext.close()


def test_mutual_tls_on_rest(mtls_server: testing.run, pki: Pki) -> None:
    def context(cert: Path | None, key: Path | None) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=pki.ca)
        if cert is not None:
            ctx.load_cert_chain(cert, key)
        return ctx

    url = f"{mtls_server.http_url}/v2/models/double/infer"
    response = httpx.post(url, json=BODY, verify=context(pki.client_cert, pki.client_key))
    assert response.status_code == 200, response.text
    # TLS 1.3 reports a missing or foreign client certificate after the handshake, on the first read
    for cert, key in ((None, None), (pki.rogue_cert, pki.rogue_key)):
        with pytest.raises(httpx.TransportError):
            httpx.post(url, json=BODY, verify=context(cert, key), timeout=5)


def test_mutual_tls_on_grpc(mtls_server: testing.run, pki: Pki) -> None:
    ca = pki.ca.read_bytes()
    with_cert = grpc.ssl_channel_credentials(ca, pki.client_key.read_bytes(), pki.client_cert.read_bytes())
    assert _grpc_infer(mtls_server.grpc_target, with_cert).tolist() == [2, 4]
    rogue = grpc.ssl_channel_credentials(ca, pki.rogue_key.read_bytes(), pki.rogue_cert.read_bytes())
    for credentials in (grpc.ssl_channel_credentials(ca), rogue):
        with pytest.raises(InferenceServerException):
            _grpc_infer(mtls_server.grpc_target, credentials)


def test_bad_tls_files_are_clear(repo: Path, pki: Pki, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="tls_cert is set but tls_key is not"):
        testing.run(repo, tls_cert=str(pki.server_cert))
    with pytest.raises(ConfigError, match=r"tls_key .*nope\.key' cannot be read"):
        testing.run(repo, tls_cert=str(pki.server_cert), tls_key=str(tmp_path / "nope.key"))
    mismatched = testing.run(repo, trust_code=True, tls_cert=str(pki.server_cert), tls_key=str(pki.client_key))
    with pytest.raises(ConfigError, match="must be a PEM certificate and its unencrypted private key"), mismatched:
        pass


def test_serve_command_reports_a_missing_key(repo: Path, pki: Pki) -> None:
    command = [sys.executable, "-m", "modelserve.cli", "serve", str(repo), "--tls-cert", str(pki.server_cert)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert result.returncode == 2
    assert "tls_cert is set but tls_key is not" in result.stderr


def test_worker_processes_serve_tls(repo: Path, pki: Pki) -> None:
    """``serve --workers 2`` hands the TLS options to its workers: https and gRPC over TLS answer."""
    command = [sys.executable, "-m", "modelserve.cli", "serve", str(repo), "--trust-code", "--workers", "2"]
    command += ["--http-port", "0", "--grpc-port", "0", "--watch-interval", "0"]
    command += ["--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key)]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    try:
        assert process.stderr is not None
        ports = None
        while ports is None:
            line = process.stderr.readline()
            assert line, "the supervisor exited before binding"
            ports = re.search(r"supervising 2 workers on HTTP port (\d+) and gRPC port (\d+)", line)
        http_port, grpc_port = ports.groups()
        verify = ssl.create_default_context(cafile=pki.ca)
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"https://127.0.0.1:{http_port}/v2/health/ready", verify=verify).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "no worker became ready over https"
            time.sleep(0.2)
        response = httpx.post(f"https://127.0.0.1:{http_port}/v2/models/double/infer", json=BODY, verify=verify)
        assert response.status_code == 200, response.text
        credentials = grpc.ssl_channel_credentials(root_certificates=pki.ca.read_bytes())
        assert _grpc_infer(f"127.0.0.1:{grpc_port}", credentials).tolist() == [2, 4]
    finally:
        process.terminate()
        process.communicate(timeout=60)
