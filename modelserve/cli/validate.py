"""The child process of ``registry register``: load one version directory, answer, exit.

Reads a JSON request on stdin (``path``, ``name``, ``config`` text or null, ``trust_code``, ``sample`` path
or null), loads the version exactly as the server would (core.loading.load_version: warmup files
and the sample input included), and prints one JSON line: the inspection, or ``{"error": ...}``
with exit status 1. Run as ``python -m modelserve.cli.validate``; a separate process, so that a
model whose library crashes or hangs cannot take the registering process down.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

from modelserve.config.model import DEFAULT, parse_model_config
from modelserve.core.loading import load_version
from modelserve.errors import ModelServeError
from modelserve.protocol.v2 import rest
from modelserve.runtimes.provenance import produced_versions, serving_versions
from modelserve.types import Signature


def inspect(request: dict[str, Any]) -> dict[str, Any]:
    path = Path(request["path"])
    text = request.get("config")
    config = DEFAULT if not text else parse_model_config(yaml.safe_load(text) or {}, "config.yaml")
    extra = []
    if request.get("sample"):
        sample = Path(request["sample"])
        try:
            extra.append((f"sample input {sample.name}", rest.decode_infer_request(sample.read_bytes(), None)))
        except ModelServeError as exc:
            raise ModelServeError(f"sample input {sample} is not a valid v2 inference request: {exc.message}") from None
    loaded = load_version(
        path,
        f"{request.get('name', 'the model')!r} (being registered)",
        config,
        trust_code=bool(request.get("trust_code")),
        decode_sample=lambda body: rest.decode_infer_request(body, None),
        extra_samples=extra,
    )
    try:
        name = loaded.resolved.entry.name
        return {
            "runtime": name,
            "platform": loaded.runtime.platform,
            "artifact": loaded.resolved.artifact.name,
            "signature": _signature(loaded.signature),
            "produced": produced_versions(name, loaded.resolved.artifact),
            "serving": serving_versions(name),
            "warmed": loaded.warmed,
        }
    finally:
        loaded.runtime.unload()


def _signature(signature: Signature) -> dict[str, Any]:
    def tensors(specs: Any) -> list[dict[str, Any]]:
        return [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape)} for t in specs]

    return {"inputs": tensors(signature.inputs), "outputs": tensors(signature.outputs)}


def main() -> None:
    try:
        result = inspect(json.loads(sys.stdin.read()))
    except (ModelServeError, yaml.YAMLError) as exc:
        print(json.dumps({"error": exc.message if isinstance(exc, ModelServeError) else str(exc)}))
        sys.exit(1)
    except Exception as exc:
        print(json.dumps({"error": f"unexpected {type(exc).__name__}: {exc}"}))
        sys.exit(1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
