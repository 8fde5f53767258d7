"""PMML models on pypmml (PMML4S on a JVM, driven through Py4J).

Signature: one input tensor ``[-1]`` per active MiningSchema field, named after the field: FP64
for ``double``/``float`` (FP32 accepted), INT64 for ``integer`` (narrower integers accepted),
BYTES for ``string``, BOOL for ``boolean``; other PMML types refuse to load, naming them. A PMML
model's fields are named and may mix types (a categorical string beside a continuous double), so
one ``[-1, n]`` FP64 tensor could not carry them and would hide the names clients must send. One
output ``[-1]`` per output field the model declares (or PMML4S derives: predicted value, one
probability per class...), typed by its ``dataType`` the same way. NaN inputs are sent as missing
values; a missing prediction comes back as NaN (FP64) or ``""`` (BYTES).

Scoring: a batch travels to the JVM as one JSON document in pandas' ``split`` layout (built and
read with orjson), a single Py4J call per request, which is several times faster than pypmml's
per-row dicts and needs no pandas.

JVM lifetime: every PMML model of the process shares one JVM, started on the first load and
left running when the last model unloads. modelserve launches it itself rather than through
pypmml's default gateway, for three reasons. (1) pypmml's gateway listens on localhost without
authentication, so any local process could run Java code as the server: ours requires a random
token (Py4J ``--enable-auth``). (2) The JVM exits when its stdin pipe breaks (Py4J
``--die-on-broken-pipe``), which happens whenever this process ends, even by SIGKILL; a
parent-death signal would not do, as Linux sends it when the *thread* that forked exits, and
models load on pool threads. (3) It runs in its own session, so a Ctrl-C in the terminal reaches
only the server, which drains requests (the JVM still serving them) before it exits. The JVM
options are pypmml's: ``JAVA_OPTS`` (e.g. ``-Xmx2g``). Java 8 or newer must be on the PATH.

XML safety: PMML4S's parser resolves external entities (it reads files and fetches URLs named in
a DOCTYPE). The document is therefore read once here, must be UTF-8, and is parsed first with
defusedxml (a dependency of the ``pmml`` extra: expat behind SAX, building no tree), which
refuses any DOCTYPE, entity declaration or external reference before anything is expanded or
fetched (``forbid_dtd``, ``forbid_entities``, ``forbid_external``); the very same text then goes
to PMML4S. PMML needs no DOCTYPE, so nothing legitimate is lost.

Threads: PMML4S has no thread knob, so ``threads`` in config.yaml is ignored. A request is scored
on the JVM thread that serves its Py4J connection; Py4J gives each calling thread its own
connection, and PMML4S models are immutable once loaded, so ``predict`` is thread-safe without a
lock and scales with the server's inference threads.
"""

from __future__ import annotations

import atexit
import collections
import logging
import os
import shutil
import subprocess
import threading
import xml.sax
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np
import orjson

from modelserve.config.model import ModelConfig
from modelserve.errors import InvalidInput, LoadError, RuntimeFailure
from modelserve.runtimes.base import missing_extra
from modelserve.types import Signature, TensorSpec

log = logging.getLogger(__name__)

_INTS = frozenset({"INT8", "INT16", "INT32", "UINT8", "UINT16", "UINT32"})
# PMML dataType -> (protocol datatype, datatypes a client may also send)
_TYPES: Mapping[str, tuple[str, frozenset[str]]] = {
    "double": ("FP64", frozenset({"FP32"})),
    "float": ("FP64", frozenset({"FP32"})),
    "integer": ("INT64", _INTS),
    "string": ("BYTES", frozenset()),
    "boolean": ("BOOL", frozenset()),
}
_JVM_START_TIMEOUT_S = 60.0
_jvm: subprocess.Popen[bytes] | None = None  # the JVM this module started, if any


class PmmlRuntime:
    platform = "pmml"

    def __init__(self) -> None:
        self.model: Any = None
        self._inputs: tuple[TensorSpec, ...] = ()
        self._outputs: tuple[TensorSpec, ...] = ()

    def load(self, artifact: Path, config: ModelConfig) -> Signature:
        try:
            from pypmml import Model
        except ImportError:
            raise missing_extra("pypmml", "pmml") from None
        text = checked_xml(artifact)
        ensure_jvm()
        try:
            self.model = Model.fromString(text)
            inputs = tuple(_spec(f.name, f.dataType, "input field") for f in self.model.inputFields)
            outputs = tuple(_spec(f.name, f.dataType, "output field") for f in self.model.outputFields)
        except LoadError:
            raise
        except Exception as exc:  # pypmml raises PMMLError, Py4J its own errors
            raise LoadError(f"{artifact.name}: pypmml cannot load it: {_reason(exc)}") from None
        if not inputs or not outputs:
            raise LoadError(f"{artifact.name}: the PMML model has no active input field or no output field")
        self._inputs, self._outputs = inputs, outputs
        return Signature(inputs=inputs, outputs=outputs)

    def predict(self, inputs: Mapping[str, np.ndarray], outputs: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        columns = [_column(spec.name, inputs[spec.name]) for spec in self._inputs]
        n = len(columns[0])
        if any(len(c) != n for c in columns):
            sizes = {spec.name: len(c) for spec, c in zip(self._inputs, columns, strict=True)}
            raise InvalidInput(f"the inputs of a PMML model must all have the same number of rows, got {sizes}")
        if n == 0:
            return {spec.name: _result(spec, []) for spec in self._outputs}
        request = orjson.dumps({"columns": [s.name for s in self._inputs], "data": list(zip(*columns, strict=True))})
        answer = orjson.loads(self.model.call("predict", request.decode()))
        index = {name: i for i, name in enumerate(answer["columns"])}
        rows = answer["data"]
        return {spec.name: _result(spec, [row[index[spec.name]] for row in rows]) for spec in self._outputs}

    def unload(self) -> None:
        self.model = None  # pypmml's finalizer releases the Java object; the JVM stays for other models


def checked_xml(artifact: Path) -> str:
    """The artifact's text, once defusedxml has parsed it and found no DOCTYPE, entity or external reference.

    Raises LoadError naming the file and what is wrong. Nothing the document names is read or fetched.
    """
    try:
        # no stubs, and pyproject's list of untyped modules is not this module's to edit
        import defusedxml.sax  # type: ignore[import-untyped]
        from defusedxml import DefusedXmlException
    except ImportError:
        raise missing_extra("defusedxml", "pmml") from None
    try:
        text = artifact.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise LoadError(
            f"{artifact.name}: a PMML file must be UTF-8 encoded XML ({exc.reason} at byte {exc.start})"
        ) from None
    try:
        defusedxml.sax.parseString(
            text.encode("utf-8"),
            xml.sax.handler.ContentHandler(),  # no handlers: the parse only checks
            forbid_dtd=True,
            forbid_entities=True,
            forbid_external=True,
        )
    except DefusedXmlException as exc:
        raise LoadError(
            f"{artifact.name}: the document has a DOCTYPE or entity declaration ({exc}); PMML needs none, "
            "and they can make an XML parser read local files or URLs (external entities), so it is refused"
        ) from None
    except xml.sax.SAXParseException as exc:
        raise LoadError(
            f"{artifact.name}: not well-formed XML: {exc.getMessage()} at line {exc.getLineNumber()}"
        ) from None
    return text


def ensure_jvm() -> None:
    """Start the shared JVM unless pypmml has a live one. Raises LoadError if Java cannot start. Blocks."""
    global _jvm
    from pypmml.base import PMMLContext

    with PMMLContext._lock:  # pypmml's own, so that its getOrCreate cannot start a second JVM meanwhile
        if _jvm is not None and _jvm.poll() is not None:  # it died (OOM killer...): start another
            log.error("the JVM for PMML models exited with status %s; starting a new one", _jvm.returncode)
            _forget_gateway()
        if PMMLContext._gateway is None:
            gateway, _jvm = _launch()
            PMMLContext(gateway_instance=gateway)


def _forget_gateway() -> None:
    from pypmml.base import PMMLContext
    from pypmml.jvm import Py4jGateway

    if Py4jGateway._gateway is not None:
        Py4jGateway._gateway.close()  # closes the sockets; shutdown() would talk to the dead JVM
        Py4jGateway._gateway = None
    PMMLContext._gateway = PMMLContext._active_pmml_context = None


def _launch() -> tuple[Any, subprocess.Popen[bytes]]:
    from py4j.java_gateway import GatewayParameters, JavaGateway, find_jar_path
    from pypmml.jvm import JVMGateway, Py4jGateway

    java = shutil.which("java")
    if java is None:
        raise LoadError("PMML models need Java 8 or newer on the PATH; no 'java' command was found")
    # pypmml's gateway object, for its classpath and JAVA_OPTS. Py4jGateway() would reset the
    # class-wide connection even on failure, so only the base initialiser runs here.
    gateway = Py4jGateway.__new__(Py4jGateway)
    JVMGateway.__init__(gateway)
    classpath = os.pathsep.join((find_jar_path(), gateway.classpath))
    command = [java, "-classpath", classpath, *gateway.java_opts, "py4j.GatewayServer"]
    command += ["--die-on-broken-pipe", "--enable-auth", "0"]
    # stdin stays open in this process only: its end breaking is the JVM's signal to exit
    try:
        proc = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
        )
    except OSError as exc:
        raise LoadError(f"PMML models need Java 8 or newer on the PATH; cannot run {java}: {exc}") from None
    assert proc.stdout is not None and proc.stderr is not None
    errors: collections.deque[str] = collections.deque(maxlen=20)
    stderr = _drain(proc.stderr, errors)
    port, token = proc.stdout.readline().strip(), proc.stdout.readline().strip()
    if not port.isdigit() or not token:
        _wait(proc)
        stderr.join(timeout=5)
        assert proc.stdin is not None
        proc.stdin.close()
        proc.stdout.close()
        tail = " | ".join(errors) or f"exit status {proc.returncode}"
        raise LoadError(f"PMML models need Java 8 or newer on the PATH; the JVM at {java} did not start: {tail}")
    _drain(proc.stdout, collections.deque(maxlen=1))
    params = GatewayParameters(port=int(port), auth_token=token.decode(), auto_convert=True)
    Py4jGateway._gateway = JavaGateway(gateway_parameters=params)
    Py4jGateway._jvm = Py4jGateway._gateway.jvm
    atexit.register(_stop, proc, Py4jGateway._gateway)
    log.info("started the JVM for PMML models (pid %d, %s)", proc.pid, java)
    return gateway, proc


def _stop(proc: subprocess.Popen[bytes], client: Any) -> None:
    """At a normal exit, end the JVM now rather than when the pipe closes after this process is gone."""
    client.close()  # the connections of every thread that called the JVM
    if proc.poll() is None:
        assert proc.stdin is not None
        proc.stdin.close()  # the JVM's signal to exit (--die-on-broken-pipe)
        _wait(proc, 5.0)


def _drain(stream: IO[bytes], keep: collections.deque[str]) -> threading.Thread:
    """Read the JVM's output on a daemon thread, until it exits, so that it never blocks on a full pipe."""

    def run() -> None:
        with stream:
            for line in iter(stream.readline, b""):
                keep.append(line.decode(errors="replace").rstrip())
                log.debug("jvm: %s", keep[-1])

    thread = threading.Thread(target=run, name="modelserve-pmml-jvm-output", daemon=True)
    thread.start()
    return thread


def _wait(proc: subprocess.Popen[bytes], timeout: float = _JVM_START_TIMEOUT_S) -> None:
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _spec(name: str, datatype: str | None, what: str) -> TensorSpec:
    known = _TYPES.get(datatype or "")
    if known is None:
        raise LoadError(f"{what} {name!r} has PMML dataType {datatype!r}; modelserve serves {sorted(_TYPES)}")
    return TensorSpec(name, known[0], (-1,), accepts=known[1])


def _column(name: str, array: np.ndarray) -> list[Any]:
    if array.ndim != 1:
        raise InvalidInput(f"input {name!r}: a PMML field takes one value per row, got shape {list(array.shape)}")
    if array.dtype.kind != "O":
        values: list[Any] = array.tolist()  # NaN becomes JSON null: a missing value
        return values
    try:
        return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in array.tolist()]
    except UnicodeDecodeError as exc:
        raise InvalidInput(
            f"input {name!r}: PMML strings are UTF-8 text, but an element is not ({exc.reason})"
        ) from None


def _result(spec: TensorSpec, values: list[Any]) -> np.ndarray:
    if spec.datatype == "FP64":
        return np.array(values, dtype=np.float64)  # None (missing) becomes NaN
    if spec.datatype == "BYTES":
        out = np.empty(len(values), dtype=object)
        out[:] = [b"" if v is None else str(v).encode("utf-8") for v in values]
        return out
    if None in values:
        raise RuntimeFailure(f"PMML output {spec.name!r} ({spec.datatype}) is missing for a row")
    return np.array(values, dtype=np.int64 if spec.datatype == "INT64" else np.bool_)


def _reason(exc: Exception) -> str:
    args = [str(a) for a in exc.args if a]
    return ": ".join(args) if args else type(exc).__name__
