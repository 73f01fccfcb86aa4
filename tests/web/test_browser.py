"""The pages in a real browser: headless Debian Chromium driven by Playwright.

Every page loads without console errors, its charts draw with data, the requests
explorer's filters and paging work, and a finding opens from the overview. Without the
browser these tests FAIL (never skip): install it with `apt-get install -y chromium`
(`make test` and `.ci/run` do).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import LiveServer

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("INFERWATCH_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)):
        pytest.fail(
            f"Chromium is not installed at {CHROMIUM}: run `apt-get install -y chromium` "
            "(browser tests must not be skipped)"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


class Page:
    """A browser tab that records console errors and failed requests."""

    def __init__(self, browser: Any, base: str) -> None:
        self.context = browser.new_context(viewport={"width": 1400, "height": 900})
        self.page = self.context.new_page()
        self.base = base
        self.errors: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("requestfailed", self._failed)

    def _failed(self, request: Any) -> None:
        # A request the browser itself cancels when the page navigates on is no error.
        if "ERR_ABORTED" not in (request.failure or ""):
            self.errors.append(f"failed {request.url}: {request.failure}")

    def open(self, path: str) -> Any:
        response = self.page.goto(self.base + path, wait_until="load")
        assert response is not None and response.status == 200, f"{path}: {response and response.status}"
        return self.page

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def tab(browser: Any, seeded_server: LiveServer) -> Iterator[Page]:
    """A fresh browser context on the module's seeded server."""
    page = Page(browser, seeded_server.url)
    yield page
    page.close()


CHARTS = {
    "/?window=24h": ["chart-trend", "chart-waste"],
    "/fleet?window=24h": ["chart-util", "chart-gpus", "chart-idle"],
    "/gpus/GPU-a0?window=24h": ["chart-gpu-util", "chart-gpu-power", "chart-idle"],
    "/deployments?window=24h": ["chart-latency", "chart-split"],
    "/deployments/prod/chat?window=24h": [
        "chart-ttft",
        "chart-itl",
        "chart-e2e",
        "chart-phases",
        "chart-load",
    ],
    "/findings?window=24h": [],
    "/requests?window=24h": [],
    **{
        f"/settings/{slug}": []
        for slug in ("prices", "deployments", "alerts", "webhooks", "report", "tokens")
    },
}


def test_every_page_loads_without_console_errors_and_draws_its_charts(tab: Page) -> None:
    for path, charts in CHARTS.items():
        page = tab.open(path)
        for chart in charts:
            page.wait_for_selector(f"#{chart}[data-rendered='1'] .main-svg", timeout=15_000)
            # A chart with data has plotted marks (lines, bars or heat-map image), not just axes.
            marks = page.locator(f"#{chart} .trace, #{chart} .hm, #{chart} image").count()
            assert marks > 0, f"{path}: chart {chart} drew no data"
        assert tab.errors == [], f"{path}: {tab.errors}"


def test_theme_toggle_switches_and_persists(tab: Page) -> None:
    page = tab.open("/fleet?window=24h")
    page.wait_for_selector("#chart-util[data-rendered='1']")
    before = page.evaluate("getComputedStyle(document.body).backgroundColor")
    page.click("#theme-toggle")
    after = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert before != after
    theme = page.evaluate("document.documentElement.dataset.theme")
    page.reload()
    assert page.evaluate("document.documentElement.dataset.theme") == theme
    assert tab.errors == []


def test_chart_hover_shows_values(tab: Page) -> None:
    page = tab.open("/fleet?window=24h")
    page.wait_for_selector("#chart-util[data-rendered='1'] .main-svg")
    box = page.locator("#chart-util .nsewdrag").first.bounding_box()
    assert box is not None
    for fraction in (0.9, 0.93, 0.96):  # the seeded hours are the last ones of the day
        page.mouse.move(box["x"] + box["width"] * fraction, box["y"] + box["height"] / 2, steps=4)
    page.wait_for_function("document.querySelectorAll('#chart-util .hoverlayer *').length > 0", timeout=5_000)


def test_requests_explorer_filters_and_pages(tab: Page) -> None:
    page = tab.open("/requests?window=24h&limit=25")
    page.select_option("select[name=deployment]", "batch")
    page.click("#request-filters button[type=submit]")
    page.wait_for_load_state("load")
    deployments = page.locator("#request-table tbody tr td:nth-child(2)").all_inner_texts()
    assert deployments and set(deployments) == {"batch"} and len(deployments) == 25
    first_page = page.locator("#request-table tbody tr").evaluate_all("rows => rows.map(r => r.dataset.span)")
    page.click("#next-page")
    page.wait_for_load_state("load")
    second_page = page.locator("#request-table tbody tr").evaluate_all(
        "rows => rows.map(r => r.dataset.span)"
    )
    assert len(second_page) == 5 and not set(first_page) & set(second_page)
    page.locator("#request-table tbody tr a").first.click()
    page.wait_for_selector("#chart-phases[data-rendered='1'] .main-svg")
    assert page.locator("#chart-phases .trace").count() >= 3  # queue, prefill, decode
    assert tab.errors == []


def test_settings_form_shows_a_problem_beside_its_field(tab: Page) -> None:
    page = tab.open("/settings/prices")
    form = page.locator("#form-price form.stack")
    form.locator("input[name=gpu_model]").fill("h100-sxm")
    form.locator("input[name=usd_per_hour]").fill("-3")
    form.locator("button[value=create]").click()
    page.wait_for_load_state("load")
    assert "greater than or equal to 0" in page.locator("[data-error-for=usd_per_hour]").inner_text()
    form = page.locator("#form-price form.stack")
    assert form.locator("input[name=gpu_model]").input_value() == "h100-sxm"  # kept for correcting
    form.locator("input[name=usd_per_hour]").fill("2.5")
    form.locator("button[value=create]").click()
    page.wait_for_load_state("load")
    assert "Saved" in page.locator("#notice").inner_text()
    assert tab.errors == [] or all("400" in e for e in tab.errors)


# Last in the module: it acknowledges a finding of the shared seeded server.
def test_a_finding_opens_from_the_overview_and_can_be_acknowledged(tab: Page) -> None:
    page = tab.open("/?window=24h")
    link = page.locator("a[data-finding]").first
    title = link.inner_text()
    link.click()
    page.wait_for_load_state("load")
    assert page.locator("h1").inner_text() == title
    assert "/findings/" in page.url
    charts = page.locator("div.chart").all()
    assert charts, "the finding's evidence and its scope are charted"
    for chart in charts:
        chart.locator(".main-svg").first.wait_for(timeout=15_000)
    page.click("#ack-form button[value=ack]")
    page.wait_for_load_state("load")
    assert "acknowledged" in page.locator(".notice").inner_text()
    assert tab.errors == []
