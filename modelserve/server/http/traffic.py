"""Traffic policies over REST: ``/v2/models/{m}/traffic`` (show, set, clear) and ``/feedback``.

- ``GET`` shows the policy routing the model, where it comes from (``config``: config.yaml,
  ``override``: set here, ``none``) and its live figures (requests per variant, the bandit's
  arms, the canary's share, window and verdicts, the shadow's agreement).
- ``PUT`` with ``{"policy": {...}, "reason": "...", "actor": "..."}`` overrides config.yaml's
  ``traffic:`` (same document); ``DELETE`` (same body without ``policy``) goes back to it. Both are
  admin operations, refused with 403 unless the server runs with ``--control-api on``, and both
  are written to the registry's audit log.
- ``POST /v2/models/{m}/feedback`` with ``{"id": "<response id>", "reward": <number>}`` rewards
  the variant that answered that request (bandit policies).
"""

from __future__ import annotations

from typing import Any

from modelserve.config.traffic import parse_traffic
from modelserve.errors import ConfigError, Forbidden, InvalidInput
from modelserve.protocol.names import check_model_name
from modelserve.protocol.v2 import rest
from modelserve.routing.router import Router
from modelserve.server.http.app import JSON, Reply, Request, Route
from modelserve.server.info import CONTROL_DISABLED

_MODEL = r"/v2/models/(?P<model>[^/]+)"
_BODY_KEYS = {"policy", "reason", "actor"}
DEFAULT_ACTOR = "api"


class TrafficEndpoints:
    def __init__(self, router: Router, control_api: bool) -> None:
        self._router = router
        self._control_api = control_api

    def routes(self) -> list[Route]:
        return [
            Route(
                _MODEL + r"/traffic",
                {"GET": self.show, "PUT": self.set, "DELETE": self.clear},
                role={"PUT": "admin", "DELETE": "admin"},
            ),
            Route(_MODEL + r"/feedback", {"POST": self.feedback}),
        ]

    async def show(self, request: Request) -> Reply:
        return 200, rest.dumps(self._router.show(request.params["model"])), JSON

    async def set(self, request: Request) -> Reply:
        name = self._admin(request)
        doc = _body(request.body, required=True)
        if "policy" not in doc:
            raise InvalidInput('the body must have "policy": the traffic policy (config.yaml\'s traffic: section)')
        try:
            policy = parse_traffic(doc["policy"], "request body: policy")
        except ConfigError as exc:
            raise InvalidInput(exc.message) from None
        actor, reason = _who(doc)
        return 200, rest.dumps(await self._router.set_policy(name, policy, actor, reason)), JSON

    async def clear(self, request: Request) -> Reply:
        name = self._admin(request)
        doc = _body(request.body, required=False)
        if "policy" in doc:
            raise InvalidInput("DELETE clears the override; to set a policy use PUT")
        actor, reason = _who(doc)
        return 200, rest.dumps(await self._router.set_policy(name, None, actor, reason)), JSON

    async def feedback(self, request: Request) -> Reply:
        doc = rest.loads(request.body)
        if not isinstance(doc, dict):
            raise InvalidInput(f'feedback must be a JSON object {{"id": ..., "reward": ...}}, got {type(doc).__name__}')
        unknown = sorted(set(doc) - {"id", "reward"})
        if unknown or "id" not in doc or "reward" not in doc:
            raise InvalidInput(f'feedback must have exactly "id" and "reward"; got keys {sorted(doc)}')
        return 200, rest.dumps(self._router.feedback(request.params["model"], doc["id"], doc["reward"])), JSON

    def _admin(self, request: Request) -> str:
        if not self._control_api:
            raise Forbidden(CONTROL_DISABLED)
        name = request.params["model"]
        check_model_name(name)
        return name


def _body(body: bytes, required: bool) -> dict[str, Any]:
    if not body.strip():
        if required:
            raise InvalidInput('request body is empty; expected {"policy": {...}, "reason": "..."}')
        return {}
    doc = rest.loads(body)
    if not isinstance(doc, dict):
        raise InvalidInput(f"request body must be a JSON object, got {type(doc).__name__}")
    unknown = sorted(set(doc) - _BODY_KEYS)
    if unknown:
        raise InvalidInput(f"request body has unknown key(s) {unknown}; expected some of {sorted(_BODY_KEYS)}")
    return doc


def _who(doc: dict[str, Any]) -> tuple[str, str]:
    actor, reason = doc.get("actor", DEFAULT_ACTOR), doc.get("reason", "")
    if not isinstance(actor, str) or not actor.strip():
        raise InvalidInput(f'"actor" must be a non-empty string, got {actor!r}')
    if not isinstance(reason, str):
        raise InvalidInput(f'"reason" must be a string, got {reason!r}')
    return actor.strip(), reason
