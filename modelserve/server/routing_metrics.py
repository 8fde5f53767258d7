"""Prometheus families for traffic policies and inference graphs (read at scrape time).

- ``modelserve_route_requests_total{model, variant, outcome}``: requests a policy routed, by the
  variant that answered and ``success`` / ``server_error`` (client errors are not the variant's);
- ``modelserve_canary_share{model}``: the candidate's current share (0 after a rollback);
  ``modelserve_canary_rollbacks_total{model}``: automatic rollbacks;
- ``modelserve_shadow_requests_total{model, result}``: mirrored requests by ``agreed``,
  ``disagreed``, ``error`` (the shadow failed) and ``dropped`` (too many in flight);
- ``modelserve_bandit_pulls_total{model, variant}``, ``modelserve_bandit_reward_mean{model, variant}``;
- ``modelserve_graph_node_duration_seconds{model, node}``: each graph node's time per request.

Like the other gauges, these are the answering worker's own under ``serve --workers N``.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from modelserve.core.manager import ModelManager
from modelserve.core.stats import Histogram
from modelserve.routing.router import Router


def routing_families(router: Router | None, manager: ModelManager) -> Iterator[Metric]:
    if router is not None:
        yield from _routes(router)
    nodes = HistogramMetricFamily(
        "modelserve_graph_node_duration_seconds",
        "Time spent in each node of an inference graph",
        labels=["model", "node"],
    )
    for name, mv in manager.versions():
        composite = mv.composite
        if composite is None:
            continue
        for node, histogram in sorted(composite.node_seconds.items()):
            if histogram.count:
                _add(nodes, [name, node], histogram)
    yield nodes


def _routes(router: Router) -> Iterator[Metric]:
    routed = CounterMetricFamily(
        "modelserve_route_requests", "Requests routed by a traffic policy", labels=["model", "variant", "outcome"]
    )
    share = GaugeMetricFamily("modelserve_canary_share", "Share of traffic the canary candidate gets", labels=["model"])
    rollbacks = CounterMetricFamily("modelserve_canary_rollbacks", "Automatic canary rollbacks", labels=["model"])
    shadow = CounterMetricFamily(
        "modelserve_shadow_requests", "Mirrored requests by result", labels=["model", "result"]
    )
    pulls = CounterMetricFamily(
        "modelserve_bandit_pulls", "Requests a bandit sent to each arm", labels=["model", "variant"]
    )
    reward = GaugeMetricFamily(
        "modelserve_bandit_reward_mean", "Mean reward of each bandit arm", labels=["model", "variant"]
    )
    for route in sorted(router.snapshot(), key=lambda r: r.name):
        for variant, n, errors in zip(route.variants, route.requests, route.errors, strict=True):
            routed.add_metric([route.name, variant.name, "success"], n - errors)
            routed.add_metric([route.name, variant.name, "server_error"], errors)
        if route.judge is not None:
            share.add_metric([route.name], route.judge.share)
            rollbacks.add_metric([route.name], route.rollbacks)
        if route.shadow is not None:
            counts = route.shadow.to_dict()
            for result, key in (
                ("agreed", "agreed"),
                ("disagreed", "disagreed"),
                ("error", "errors"),
                ("dropped", "dropped"),
            ):
                shadow.add_metric([route.name, result], counts[key])
        if route.bandit is not None:
            for variant, arm in zip(route.variants, route.bandit.summary(), strict=True):
                pulls.add_metric([route.name, variant.name], arm["pulls"])
                reward.add_metric([route.name, variant.name], arm["mean_reward"])
    yield from (routed, share, rollbacks, shadow, pulls, reward)


def _add(family: HistogramMetricFamily, labels: list[str], histogram: Histogram) -> None:
    bounds = [*(repr(float(b)) for b in histogram.buckets), "+Inf"]
    family.add_metric(labels, list(zip(bounds, histogram.cumulative(), strict=True)), sum_value=histogram.sum)
