"""The dashboard in a real browser (Chromium through Playwright): a real server with a broken
model and live traffic; the overview's states, the charts' data, an action that changes what the
server serves, and a user without the admin role who cannot act.

``MODELSERVE_SCREENSHOTS=DIR`` also saves the overview and a model page there (docs/ keeps them).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import httpx

from modelserve import testing
from tests.fixtures.dashboard import ADDER_BODY, directory_repo, registry_repo


class Traffic:
    """Requests to ``models`` from a thread until stopped: what the charts show."""

    def __init__(self, url: str, models: list[str]) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(url, models), daemon=True)

    def _run(self, url: str, models: list[str]) -> None:
        with httpx.Client(base_url=url, timeout=10) as client:
            while not self._stop.is_set():
                for model in models:
                    client.post(f"/v2/models/{model}/infer", json=ADDER_BODY)
                self._stop.wait(0.01)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def _screenshot(page: Any, name: str) -> None:
    folder = os.environ.get("MODELSERVE_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / name), full_page=False)


def test_overview_and_charts_without_the_admin_role(tmp_path: Path, page: Any) -> None:
    repo = directory_repo(tmp_path)
    with testing.run(repo) as srv, Traffic(srv.http_url, ["adder"]):
        page.goto(f"{srv.http_url}/ui")
        table = page.locator("table[data-testid=models]")
        page.wait_for_selector("tr[data-model=broken] [data-state=FAILED]")
        assert table.locator("tr[data-model=adder] [data-state=READY]").count() == 2
        assert table.locator("tr[data-model=markup] [data-state=FAILED]").count() == 1
        reason = table.locator("tr[data-model=markup] .reason")
        assert "<script>alert(1)</script>" in reason.get_attribute("title")  # shown as text, not run
        assert page.locator("[data-testid=role]").inner_text() == "read-only"
        # the table is polled: throughput appears once the sampler has two snapshots
        page.wait_for_function(
            "() => { const c = document.querySelector('tr[data-model=adder] td.num');"
            " return c && parseFloat(c.textContent.replace(/,/g, '')) > 0; }"
        )
        _screenshot(page, "dashboard-overview.png")

        page.click("tr[data-model=adder] a")
        page.wait_for_url("**/ui/models/adder")
        page.wait_for_function("() => Number(document.getElementById('charts').dataset.points) >= 3")
        assert float(page.locator("#charts").get_attribute("data-requests")) > 0
        for chart in ("traffic", "latency", "batch"):
            assert page.locator(f"[data-chart={chart}] canvas").count() == 1
        page.wait_for_function("() => Number(document.getElementById('charts').dataset.points) >= 6")
        _screenshot(page, "dashboard-model.png")
        page.click("#try-send")
        page.wait_for_selector("#try-response[data-status='200']")
        assert '"model_name": "adder"' in page.locator("#try-response").inner_text()

        # no controls for a non-admin, and the server refuses the action itself
        assert page.locator("[data-testid=actions]").count() == 0
        status = page.evaluate(
            "() => fetch('/ui/api/models/adder/unload', {method: 'POST', headers: {'HX-Request': 'true'}})"
            ".then(r => r.status)"
        )
        assert status == 403
        assert httpx.get(f"{srv.http_url}/v2/models/adder/ready").status_code == 200


def test_admin_rolls_back_production_from_the_model_page(tmp_path: Path, page: Any) -> None:
    repo = registry_repo(tmp_path)
    with testing.run(repo, control_api=True, registry=True) as srv, httpx.Client(base_url=srv.http_url) as client:
        assert client.post("/v2/models/adder/infer", json=ADDER_BODY).json()["model_version"] == "2"
        page.goto(f"{srv.http_url}/ui/models/adder")
        assert page.locator("[data-testid=role]").inner_text() == "admin"
        dialogs: list[str] = []

        def accept(dialog: Any) -> None:
            dialogs.append(dialog.message)
            dialog.accept()

        page.on("dialog", accept)
        page.fill("form[hx-post$='/rollback'] input[name=reason]", "bad release")
        page.click("button[data-action=rollback]")
        page.wait_for_selector("[data-testid=result].ok")
        assert "version 1 again" in page.locator("[data-testid=result]").inner_text()
        assert dialogs and "Roll back adder" in dialogs[0]  # asked before acting
        assert client.post("/v2/models/adder/infer", json=ADDER_BODY).json()["model_version"] == "1"
        # the polled state shows the new production version and the audit entry
        page.wait_for_function(
            "() => document.querySelector('[data-testid=history]').textContent.includes('bad release')"
        )
        production = page.locator("[data-testid=versions] tr", has=page.locator(".label", has_text="production"))
        assert production.locator("td").first.inner_text() == "1"
