"""``GET /v2/models/{m}[/versions/{v}]/monitoring``: drift and outliers of a model's live traffic.

The answer lists each watched version (one with a reference profile): rows seen, outliers counted,
checks run, whether it is drifting, and the last check's report (per feature: test, statistic,
p-value before and after the multiple-testing correction, PSI, drifted; the multivariate test;
prediction drift). A model with no profiled version answers an empty ``versions`` list.
"""

from __future__ import annotations

from modelserve.monitoring.service import Monitoring
from modelserve.protocol.v2 import rest
from modelserve.server.http.app import JSON, Reply, Request, Route, parse_version

_MODEL = r"/v2/models/(?P<model>[^/]+)(?:/versions/(?P<version>[^/]+))?"


class MonitoringEndpoints:
    def __init__(self, monitoring: Monitoring) -> None:
        self._monitoring = monitoring

    def routes(self) -> list[Route]:
        return [Route(_MODEL + r"/monitoring", {"GET": self.status})]

    async def status(self, request: Request) -> Reply:
        status = self._monitoring.status(request.params["model"], parse_version(request.params))
        return 200, rest.dumps(status), JSON
