// modelserve dashboard: live charts (uPlot), the try-it panel, and action errors.
// No build step: plain ES2017, loaded after htmx and uPlot.
(function () {
  "use strict";

  var REFRESH_MS = 2000;

  function chartOptions(kind, width) {
    var base = { width: width, height: 180, scales: { x: { time: true } }, legend: { live: false } };
    if (kind === "traffic") {
      base.series = [{}, { label: "req/s", stroke: "#2563eb", width: 2 },
                     { label: "error %", stroke: "#dc2626", width: 2, scale: "pct" }];
      base.axes = [{}, { label: "req/s" }, { side: 1, scale: "pct", label: "%", grid: { show: false } }];
    } else if (kind === "latency") {
      base.series = [{}, { label: "p50", stroke: "#16a34a", width: 2 },
                     { label: "p95", stroke: "#ca8a04", width: 2 },
                     { label: "p99", stroke: "#dc2626", width: 2 }];
    } else {
      base.series = [{}, { label: "rows", stroke: "#7c3aed", width: 2 }];
    }
    return base;
  }

  function columns(kind, doc) {
    var ms = function (v) { return v === null ? null : v * 1000; };
    var pct = function (v) { return v === null ? null : v * 100; };
    if (kind === "traffic") return [doc.t, doc.rps, doc.error_rate.map(pct)];
    if (kind === "latency") return [doc.t, doc.p50.map(ms), doc.p95.map(ms), doc.p99.map(ms)];
    return [doc.t, doc.batch];
  }

  function startCharts(root) {
    var charts = {};
    root.querySelectorAll("[data-chart]").forEach(function (el) {
      var kind = el.dataset.chart;
      var width = Math.max(300, el.clientWidth || 400);
      charts[kind] = new uPlot(chartOptions(kind, width), columns(kind, emptyDoc()), el);
    });
    function refresh() {
      fetch(root.dataset.seriesUrl, { headers: { accept: "application/json" } })
        .then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); })
        .then(function (doc) {
          Object.keys(charts).forEach(function (kind) { charts[kind].setData(columns(kind, doc)); });
          root.dataset.points = String(doc.t.length);
          root.dataset.requests = String(doc.rps.reduce(function (a, b) { return a + (b || 0); }, 0));
        })
        .catch(function () { /* the next refresh tries again */ });
    }
    refresh();
    setInterval(refresh, REFRESH_MS);
  }

  function emptyDoc() {
    return { t: [], rps: [], error_rate: [], p50: [], p95: [], p99: [], batch: [] };
  }

  function startTryIt() {
    var body = document.getElementById("try-body");
    var send = document.getElementById("try-send");
    var out = document.getElementById("try-response");
    if (!body || !send || !out) return;
    send.addEventListener("click", function () {
      out.textContent = "…";
      fetch(body.dataset.url, { method: "POST", headers: { "content-type": "application/json" }, body: body.value })
        .then(function (r) {
          return r.text().then(function (text) {
            var shown = text;
            try { shown = JSON.stringify(JSON.parse(text), null, 2); } catch (e) { /* not JSON: as is */ }
            out.textContent = "HTTP " + r.status + "\n" + shown;
            out.dataset.status = String(r.status);
          });
        })
        .catch(function (e) { out.textContent = "request failed: " + e; });
    });
  }

  // an action refused (403) or failed: show the server's message where the result goes
  document.addEventListener("htmx:responseError", function (event) {
    var target = document.getElementById("result");
    if (!target) return;
    var text = event.detail.xhr.responseText;
    try { text = JSON.parse(text).error; } catch (e) { /* keep the raw text */ }
    target.innerHTML = "";
    var div = document.createElement("div");
    div.className = "result error";
    div.dataset.testid = "result";
    div.textContent = "HTTP " + event.detail.xhr.status + ": " + text;
    target.appendChild(div);
  });

  document.addEventListener("DOMContentLoaded", function () {
    var charts = document.getElementById("charts");
    if (charts) startCharts(charts);
    startTryIt();
  });
})();
