"""The web page at `/` in a real headless Chromium, over a real `descent up`.

Debian's `chromium` driven by Playwright for Python (`executable_path`: Playwright's own browser
downloads are not used). `make test` installs chromium where it can (root with apt-get); without
one these tests fail under CI (`CI=true`) and are skipped, loudly, elsewhere.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, Route, expect, sync_playwright

from tests.conftest import Service, fit_spec

pytestmark = pytest.mark.e2e

#: the binaries tried, in order, after $DESCENT_CHROMIUM
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
#: the colour the page draws `loss` in, and a sweep's first run (app.js: SERIES_COLORS, COLORS)
LOSS_COLOR = "#2563eb"
#: what a browser logs for an answer that is not 2xx: expected where a test provokes one
RESOURCE_ERROR = "Failed to load resource"

#: counts the chart canvas's pixels near `color` ("#rrggbb"): a drawn line, not grid or axes
COUNT_PIXELS_JS = """(color) => {
  const canvas = document.querySelector("#chart canvas");
  if (!canvas) return 0;
  const { data } = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height);
  const [r, g, b] = [1, 3, 5].map((i) => parseInt(color.slice(i, i + 2), 16));
  let n = 0;
  for (let i = 0; i < data.length; i += 4) {
    const near = Math.abs(data[i] - r) + Math.abs(data[i + 1] - g) + Math.abs(data[i + 2] - b);
    if (data[i + 3] > 200 && near < 60) n += 1;
  }
  return n;
}"""


def _chromium() -> str:
    """The chromium binary; fails under CI, else skips, where there is none."""
    candidates = [os.environ.get("DESCENT_CHROMIUM", "")] + [
        shutil.which(name) or "" for name in CHROMIUM_NAMES
    ]
    found = next((path for path in candidates if path and Path(path).exists()), None)
    if found is not None:
        return found
    reason = (
        "BROWSER TESTS NOT RUN: no chromium binary ($DESCENT_CHROMIUM, or one of "
        f"{', '.join(CHROMIUM_NAMES)} on PATH); `apt-get install chromium`, or `make test` as root"
    )
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true, where they must run)")
    warnings.warn(reason, stacklevel=1)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = _chromium()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True)
        yield browser
        browser.close()


@dataclass
class Tab:
    """A page and what its console said that was an error."""

    page: Page
    errors: list[str] = field(default_factory=list)

    def points(self) -> int:
        return int(self.page.get_attribute("#chart", "data-points") or 0)

    def drawn_pixels(self, color: str = LOSS_COLOR) -> int:
        return int(self.page.evaluate(COUNT_PIXELS_JS, color))

    def stats(self) -> dict[str, int]:
        return self.page.evaluate("() => window.descent.stats")  # type: ignore[no-any-return]

    def wait(self, check: Callable[[], Any], what: str, timeout: float = 30) -> Any:
        """Polls `check` until it is true; says what the page showed and logged if never."""
        deadline = time.monotonic() + timeout
        while not (result := check()):
            if time.monotonic() > deadline:
                notice = self.page.locator("#notice").text_content()
                raise AssertionError(
                    f"{what}: not within {timeout} s; notice {notice!r}, errors {self.errors}"
                )
            self.page.wait_for_timeout(100)  # not time.sleep: this lets Playwright's handlers run
        return result


@pytest.fixture
def open_tab(browser: Browser) -> Iterator[Callable[[str], Tab]]:
    """Call with a URL: a fresh browser context on it, its console errors collected."""
    contexts = []

    def open_(url: str) -> Tab:
        context = browser.new_context(viewport={"width": 1360, "height": 900})
        contexts.append(context)
        tab = Tab(context.new_page())
        tab.page.on(
            "console",
            lambda msg: tab.errors.append(f"console: {msg.text}") if msg.type == "error" else None,
        )
        tab.page.on("pageerror", lambda exc: tab.errors.append(f"page error: {exc}"))
        tab.page.goto(url)
        return tab

    yield open_
    for context in contexts:
        context.close()


def test_page_lists_a_job_and_charts_it_live(
    start_service: Any, open_tab: Callable[[str], Tab], tmp_path: Path
) -> None:
    service: Service = start_service(workers=1)
    done = service.submit(fit_spec(name="quick fit"))
    service.wait(done["id"])
    tab = open_tab(service.url)
    page = tab.page
    expect(page).to_have_title("Descent")

    # a finished job: listed with its final loss; its chart is its whole history
    row = page.locator(f'tr[data-job-id="{done["id"]}"]')
    expect(row).to_contain_text("quick fit")
    expect(row).to_contain_text("succeeded")
    expect(row.locator(".steps")).to_have_text("12 / 12")
    expect(row.locator(".loss")).not_to_have_text("—")
    row.click()
    tab.wait(lambda: tab.points() == 12, "the finished job's 12 steps on the chart")
    expect(page.locator("#details")).to_contain_text("final loss")
    assert tab.drawn_pixels() > 30, "the loss line is not on the canvas"

    # a long job, selected while it runs: its points arrive over the event stream
    long = service.submit(fit_spec(name="long fit", batch_size=1, epochs=5000))
    page.locator(f'tr[data-job-id="{long["id"]}"]').click()
    tab.wait(lambda: tab.stats()["pointsFromEvents"] > 0, "points from the event stream")
    first = tab.points()
    tab.wait(lambda: tab.points() > first, "the chart growing as points arrive")
    assert tab.drawn_pixels() > 30, "the live loss line is not on the canvas"
    expect(page.locator("#chart-sub .badge")).to_have_text("running")
    page.locator("#log-scale").check()
    tab.wait(lambda: tab.drawn_pixels() > 30, "the loss line on a log scale")
    page.screenshot(path=tmp_path / "dashboard.png")

    page.locator("#cancel-button").click()
    expect(page.locator("#chart-sub .badge")).to_have_text("cancelled", timeout=15_000)
    expect(page.locator("#cancel-button")).to_be_hidden()
    assert service.wait(long["id"])["status"] == "cancelled"
    assert tab.errors == [], tab.errors

    # the submit box: a refused spec shows FastAPI's detail; the example spec is accepted
    spec = page.locator("#spec")
    example = spec.input_value()
    spec.fill('{"model": {"type": "linear"}, "data": {"type": "linear"}, "epochs": 0}')
    page.locator("#submit-button").click()
    expect(page.locator("#submit-error")).to_contain_text("The spec was refused")
    expect(page.locator("#submit-error")).to_contain_text("epochs")
    page.screenshot(path=tmp_path / "refused.png")
    assert all(RESOURCE_ERROR in e and "422" in e for e in tab.errors), tab.errors
    tab.errors.clear()
    spec.fill(example)
    page.locator("#submit-button").click()
    expect(page.locator("#submit-error")).to_be_hidden()
    expect(page.locator("#chart-title")).to_have_text("y=2x")
    created = service.http.get("/jobs").json()["items"][0]
    assert created["name"] == "y=2x"
    expect(page.locator(f'tr[data-job-id="{created["id"]}"]')).to_be_visible()
    tab.wait(lambda: tab.points() == 100, "the example job's 100 steps on the chart")
    assert tab.errors == [], tab.errors


def test_sweep_runs_share_one_chart(
    start_service: Any, open_tab: Callable[[str], Tab], tmp_path: Path
) -> None:
    service: Service = start_service(workers=1)
    body = {
        "name": "browser sweep",
        "base": fit_spec(),
        "grid": {"batch_size": [8, 16], "optimizer.lr": [0.01, 0.02]},
    }
    response = service.http.post("/sweeps", json=body)
    if response.status_code == 404:
        pytest.skip("the sweeps API (POST /sweeps) is not served by this build: nothing to chart")
    assert response.status_code == 201, response.text
    sweep = response.json()
    for job in sweep["jobs"]:
        service.wait(job["id"])

    tab = open_tab(service.url)
    item = tab.page.locator(f'li[data-sweep-id="{sweep["id"]}"]')
    expect(item).to_contain_text("browser sweep")
    item.click()
    tab.wait(lambda: tab.page.get_attribute("#chart", "data-series") == "4", "4 runs charted")
    assert tab.points() > 0
    legend = tab.page.locator("#chart .u-legend")
    expect(legend).to_contain_text("batch_size=8")
    expect(legend).to_contain_text("optimizer.lr=0.02")
    assert tab.drawn_pixels() > 30, "the first run's line is not on the canvas"
    tab.page.screenshot(path=tmp_path / "sweep.png")
    assert tab.errors == [], tab.errors

    # a sweep still running: its cancel button stops every run
    base = fit_spec(batch_size=1, epochs=5000)
    long = {"name": "long sweep", "base": base, "grid": {"optimizer.lr": [0.01, 0.001]}}
    created = service.http.post("/sweeps", json=long)
    assert created.status_code == 201, created.text
    long_id = created.json()["id"]
    tab.page.locator(f'li[data-sweep-id="{long_id}"]').click()
    cancel = tab.page.locator("#cancel-button")
    expect(cancel).to_have_text("Cancel sweep")
    cancel.click()
    expect(tab.page.locator("#chart-sub")).to_contain_text("2 cancelled", timeout=15_000)
    expect(cancel).to_be_hidden()
    for job in created.json()["jobs"]:
        assert service.wait(job["id"])["status"] == "cancelled"
    assert tab.errors == [], tab.errors


def test_page_asks_for_the_token(
    start_service: Any, open_tab: Callable[[str], Tab], tmp_path: Path
) -> None:
    service: Service = start_service(workers=1, env={"DESCENT_API_TOKENS": "alpha,beta"})
    # the page and its files hold no data: open without a token
    assert service.http.get("/").status_code == 200
    assert service.http.get("/static/app.js").status_code == 200
    assert service.http.get("/static/vendor/uplot/uPlot.iife.min.js").status_code == 200
    assert service.http.get("/jobs").status_code == 401
    alpha = httpx.Client(base_url=service.url, headers={"Authorization": "Bearer alpha"})
    with alpha:
        job = alpha.post("/jobs", json=fit_spec(name="alpha's job"))
        assert job.status_code == 201, job.text
        job_id = job.json()["id"]

    tab = open_tab(service.url)
    page = tab.page
    expect(page.locator("#notice")).to_contain_text("needs an API token")
    expect(page.locator("#jobs-body tr")).to_have_count(0)
    page.locator("#token").fill("alpha")
    page.locator("#token-form button").click()
    row = page.locator(f'tr[data-job-id="{job_id}"]')
    expect(row).to_contain_text("alpha's job")
    expect(page.locator("#notice")).to_be_hidden()
    page.screenshot(path=tmp_path / "token.png")
    row.click()
    tab.wait(lambda: tab.points() == 12, "alpha's 12 steps on the chart")
    assert tab.errors == [], tab.errors

    # the token is kept: a reload lists the job without asking again
    page.reload()
    expect(page.locator(f'tr[data-job-id="{job_id}"]')).to_be_visible()
    expect(page.locator("#notice")).to_be_hidden()
    assert tab.errors == [], tab.errors


#: an SSE body as sse-starlette writes it (CRLF line ends, a keep-alive comment), with a
#: two-line `data` and a character of two bytes
SSE_TEXT = (
    'id: 1\r\nevent: points\r\ndata: {"series": {}}\r\n\r\n'
    ": ping - 2026-01-01 00:00:00\r\n\r\n"
    "data: first\r\ndata: second é\r\n\r\n"
    'id: 7\nevent: end\ndata: {"status": "succeeded"}\n\n'
)


def test_the_page_parses_a_stream_byte_by_byte_and_thins_a_long_curve(
    start_service: Any, open_tab: Callable[[str], Tab]
) -> None:
    """The page's SSE parser, fed one byte a chunk (a line end or a character cut in two), and
    the thinning of a chart past MAX_POINTS, which keeps the ends, a spike and a gap."""
    tab = open_tab(start_service(workers=0).url)
    events = tab.page.evaluate(
        """async (text) => {
          const bytes = new TextEncoder().encode(text);
          const body = new ReadableStream({
            start(controller) {
              for (const byte of bytes) controller.enqueue(new Uint8Array([byte]));
              controller.close();
            },
          });
          const events = [];
          for await (const event of sseEvents(body)) events.push(event);
          return events;
        }""",
        SSE_TEXT,
    )
    assert events == [
        {"type": "points", "data": '{"series": {}}', "id": "1"},
        {"type": "message", "data": "first\nsecond é", "id": None},
        {"type": "end", "data": '{"status": "succeeded"}', "id": "7"},
    ]

    thinned = tab.page.evaluate(
        """() => {
          const curve = new Curve();
          const steps = Array.from({ length: 100000 }, (_, i) => i + 1);
          const values = steps.map((step) => (step === 54321 ? 1e6 : 1 / step));
          values[99998] = null;
          curve.add({ loss: { steps, values }, val_loss: { steps: [50000], values: [0.5] } });
          curve.thin(10000);
          const loss = curve.columns.get("loss");
          return {
            n: curve.steps.length,
            ends: [curve.steps[0], curve.steps.at(-1), curve.lastStep],
            spike: curve.steps[loss.indexOf(1e6)],
            gap: curve.steps[loss.indexOf(null)],
            val: curve.columns.get("val_loss").filter((v) => v !== undefined),
          };
        }"""
    )
    assert 1000 < thinned["n"] <= 10000
    assert thinned["ends"] == [1, 100000, 100000]
    assert thinned["spike"] == 54321 and thinned["gap"] == 99999
    assert thinned["val"] == [0.5]
    assert tab.errors == [], tab.errors


def test_a_dropped_stream_resumes_from_its_last_event(
    start_service: Any, open_tab: Callable[[str], Tab]
) -> None:
    """The first stream drops after three steps; the page reconnects with Last-Event-ID: 3."""
    service: Service = start_service(workers=0)  # the job stays queued: no real points
    job = service.submit(fit_spec(name="waits"))
    tab = open_tab(service.url)
    asked: list[str | None] = []
    points = {"series": {"loss": {"steps": [1, 2, 3], "values": [3.0, None, 1.0]}}}
    dropped = f"id: 3\r\nevent: points\r\ndata: {json.dumps(points)}\r\n\r\n"

    def events(route: Route) -> None:
        asked.append(route.request.headers.get("last-event-id"))
        if len(asked) == 1:  # a body that ends before the job does: a dropped connection
            route.fulfill(status=200, content_type="text/event-stream", body=dropped)
        else:
            route.continue_()

    tab.page.route("**/events", events)
    tab.page.locator(f'tr[data-job-id="{job["id"]}"]').click()
    tab.wait(lambda: len(asked) >= 2, "a second request for the events")
    assert asked[:2] == ["-1", "3"]
    assert tab.points() == 3  # the null at step 2 is a gap, still a step on the chart
    values = tab.page.evaluate("() => window.descent.curve.columns.get('loss')")
    assert values == [3.0, None, 1.0]
    expect(tab.page.locator("#chart-sub .badge")).to_have_text("queued")
    assert tab.errors == [], tab.errors
