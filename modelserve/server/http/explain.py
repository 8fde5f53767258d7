"""Explanations over REST: ``POST /v2/models/{m}[/versions/{v}]/explain`` and, TF Serving style as
KServe has it, ``POST /v1/models/{m}[/versions/{v}|/labels/{l}]:explain``.

The v2 body is a v2 inference request (JSON; the binary extension is not offered here); the
parameter ``output`` names the output to explain, and a version label comes as on ``/infer``
(header ``Model-Version-Label`` or parameter ``version_label``). The v1 body is a ``:predict``
body (``instances`` or ``inputs``) with an optional top-level ``"output"``. Both answer
:meth:`Explanation.to_dict` as JSON:

``{"model_name", "model_version", "explainer", "output", "features": [k names],
"base_values": [one per output column], "attributions": [rows][columns][k] (or [rows][k] for an
output with one column), "seconds"}``

Unversioned requests go to the model's default version: explanations are not routed by traffic
policies, and they are not inference requests (not counted, logged or traced as such).
"""

from __future__ import annotations

from modelserve.core.manager import Handle
from modelserve.errors import InvalidInput
from modelserve.monitoring.explain import Explainer, Explanation
from modelserve.protocol import names
from modelserve.protocol.tfserving import rest as tf
from modelserve.protocol.v2 import rest
from modelserve.server.http.app import JSON, Reply, Request, Route, parse_version
from modelserve.types import InferRequest

_V2 = r"/v2/models/(?P<model>[^/]+)(?:/versions/(?P<version>[^/]+))?/explain"
_V1 = r"/v1/models/(?P<model>[^/:]+)(?:/versions/(?P<version>[^/:]+)|/labels/(?P<label>[^/:]+))?:explain"


class ExplainEndpoints:
    def __init__(self, explainer: Explainer) -> None:
        self._explainer = explainer

    def routes(self) -> list[Route]:
        return [Route(_V2, {"POST": self.explain_v2}), Route(_V1, {"POST": self.explain_v1})]

    async def explain_v2(self, request: Request) -> Reply:
        version = parse_version(request.params)
        infer_request = rest.decode_infer_request(request.body)
        label = names.pick_label(
            version,
            ("header Model-Version-Label", request.header(names.LABEL_HEADER)),
            (f"parameter {names.LABEL_PARAMETER}", infer_request.parameters.get(names.LABEL_PARAMETER)),
        )
        explanation = await self._explainer.explain(request.params["model"], version, label, infer_request)
        return _reply(explanation)

    async def explain_v1(self, request: Request) -> Reply:
        params = request.params
        doc = rest.loads(request.body)
        output = doc.get("output") if isinstance(doc, dict) else None
        if output is not None and not isinstance(output, str):
            raise InvalidInput(f"'output' must be the name of an output, got {output!r}")

        def decode(handle: Handle) -> InferRequest:
            infer_request, _ = tf.decode_predict_request(request.body, handle.signatures)
            if output is not None:
                infer_request.parameters["output"] = output
            return infer_request

        version, label = parse_version(params), names.parse_label(params.get("label"))
        return _reply(await self._explainer.explain(params["model"], version, label, decode))


def _reply(explanation: Explanation) -> Reply:
    return 200, rest.dumps(explanation.to_dict()), JSON
