"""Prometheus families for drift and outlier monitoring (read at scrape time).

- ``modelserve_drift_pvalue{model, version, feature}``: the last check's p-value of each input
  feature (after the multiple-testing correction) and of each output (``feature="output:<name>"``);
- ``modelserve_drift_psi{model, version, feature}``: population stability index of numeric features;
- ``modelserve_drift_detected{model, version}``: 1 while the last check found drift;
- ``modelserve_drift_checks_total{model, version}``; ``modelserve_monitored_rows_total{model, version}``;
- ``modelserve_outliers_total{model, version}``: rows beyond the configured reference quantile;
- ``modelserve_monitoring_dropped_total``: requests not monitored because the monitor was behind.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from modelserve.monitoring.service import Monitoring


def monitoring_families(monitoring: Monitoring | None) -> Iterator[Metric]:
    if monitoring is None:
        return
    labels = ["model", "version"]
    pvalue = GaugeMetricFamily("modelserve_drift_pvalue", "Drift test p-value (corrected)", labels=[*labels, "feature"])
    psi = GaugeMetricFamily("modelserve_drift_psi", "Population stability index", labels=[*labels, "feature"])
    detected = GaugeMetricFamily("modelserve_drift_detected", "1 while drift is detected", labels=labels)
    checks = CounterMetricFamily("modelserve_drift_checks", "Drift checks run", labels=labels)
    rows = CounterMetricFamily("modelserve_monitored_rows", "Rows fed to drift detection", labels=labels)
    outliers = CounterMetricFamily("modelserve_outliers", "Rows beyond the reference quantile", labels=labels)
    for watch in sorted(monitoring.snapshot(), key=lambda w: (w.model, w.version)):
        key = [watch.model, str(watch.version)]
        detected.add_metric(key, 1.0 if watch.drifting else 0.0)
        checks.add_metric(key, watch.checks)
        rows.add_metric(key, int(watch.detector.rows))
        outliers.add_metric(key, int(watch.detector.outliers))
        report = watch.report
        if report is None:
            continue
        for prefix, section in (("", "features"), ("output:", "outputs")):
            for name, figures in sorted((report.get(section) or {}).items()):
                if figures.get("adjusted_p_value") is not None:
                    pvalue.add_metric([*key, prefix + name], float(figures["adjusted_p_value"]))
                if figures.get("psi") is not None:
                    psi.add_metric([*key, prefix + name], float(figures["psi"]))
    dropped = CounterMetricFamily("modelserve_monitoring_dropped", "Requests not monitored (monitor behind)")
    dropped.add_metric([], monitoring.dropped)
    yield from (pvalue, psi, detected, checks, rows, outliers, dropped)
