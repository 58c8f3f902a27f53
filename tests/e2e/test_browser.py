"""The web page at `/` in a real headless Chromium, over a real `descent up`.

Debian's `chromium` driven by Playwright for Python (`executable_path`: Playwright's own browser
downloads are not used). `make test` installs chromium where it can (root with apt-get); without
one these tests fail under CI (`CI=true`) and are skipped, loudly, elsewhere.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, Page, Request, Route, expect, sync_playwright
from sqlalchemy import Engine

from service.db.engine import make_engine
from service.schemas.jobs import JobStatus
from service.store import curves, job_queue
from tests.conftest import Service, fit_spec
from worker.training.recorder import Chunk

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


#: what the chart shows: its step axis, and the steps and values of its first series
CHART_VIEW_JS = """() => {
  const chart = window.descent.chart;
  return {
    min: chart.scales.x.min, max: chart.scales.x.max,
    steps: Array.from(chart.data[0]), values: Array.from(chart.data[1], (v) => v ?? null),
  };
}"""
#: where a step lies on the chart, in CSS pixels from the plot's left edge
STEP_POSITION_JS = "(step) => window.descent.chart.valToPos(step, 'x')"


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

    def view(self) -> dict[str, Any]:
        """The chart's step axis (`min`, `max`), its steps and its first series' values."""
        return self.page.evaluate(CHART_VIEW_JS)  # type: ignore[no-any-return]

    def drag(self, first: float, last: float) -> None:
        """Drags the mouse across the chart from step `first` to step `last`."""
        box = self.page.locator("#chart .u-over").bounding_box()
        assert box is not None, "no chart to drag on"
        at = [box["x"] + self.page.evaluate(STEP_POSITION_JS, step) for step in (first, last)]
        middle = box["y"] + box["height"] / 2
        self.page.mouse.move(at[0], middle)
        self.page.mouse.down()
        self.page.mouse.move(at[1], middle, steps=5)
        self.page.mouse.up()

    def double_click_chart(self) -> None:
        self.page.locator("#chart .u-over").dblclick()

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


def record_curve_reads(page: Page) -> list[dict[str, str]]:
    """The query of each curve read (`.../curves?...`) the page makes from now on, in order."""
    reads: list[dict[str, str]] = []

    def seen(request: Request) -> None:
        url = urlsplit(request.url)
        if url.path.endswith("/curves"):
            reads.append({key: values[0] for key, values in parse_qs(url.query).items()})

    page.on("request", seen)
    return reads


def next_frame(page: Page) -> None:
    """Returns once the page has drawn what it scheduled for its next animation frame."""
    page.evaluate("() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)))")


class HeldJob:
    """A queued job claimed by the test, as a worker would: it writes the job's curve through
    the store, the points the page then reads and is streamed."""

    WORKER = "browser-test"

    def __init__(self, db_url: str, job_id: str) -> None:
        self.engine: Engine = make_engine(db_url)
        claimed = job_queue.claim_next(
            self.engine, worker_id=self.WORKER, lease_seconds=600, has_gpu=False
        )
        assert claimed is not None and claimed.id == job_id, claimed
        self.pk = claimed.pk
        self.tails: dict[str, curves.SeriesTail] = {}  # the store's state of the job's series

    def record(self, steps: list[int], values: list[float | None]) -> None:
        chunk = Chunk(step=steps[-1], epoch=0, series={"loss": (steps, values)})
        assert curves.record(
            self.engine, job_pk=self.pk, worker_id=self.WORKER, chunk=chunk, tails=self.tails
        )

    def finish(self) -> None:
        job_queue.finish(
            self.engine, job_pk=self.pk, worker_id=self.WORKER, status=JobStatus.succeeded
        )
        self.engine.dispose()


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

    # a drag reads every run's window; a double-click, their whole curves
    reads = record_curve_reads(tab.page)
    whole = tab.view()
    span = whole["max"] - whole["min"]
    tab.drag(whole["min"] + span / 4, whole["max"] - span / 4)
    tab.wait(lambda: reads, "a read of the sweep's window")
    start, end = int(reads[0]["start"]), int(reads[0]["end"])
    assert reads[0]["name"] == "loss" and whole["min"] < start < end < whole["max"]
    tab.wait(lambda: (tab.view()["min"], tab.view()["max"]) == (start, end), "the window")
    assert all(start <= step <= end for step in tab.view()["steps"])
    tab.double_click_chart()
    tab.wait(lambda: len(reads) > 1, "a read of the whole curves")
    assert "start" not in reads[1]
    tab.wait(lambda: tab.view()["steps"] == whole["steps"], "the whole curves on the chart")
    assert (tab.view()["min"], tab.view()["max"]) == (whole["min"], whole["max"])
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


#: a curve of SPIKY_STEPS steps, 1 + 1/step, with pairs of spikes: a tall one and, four steps
#: on, a short one, which a thinned read of the whole curve drops (a stretch keeps only its
#: maximum) and a zoomed window read at the chart's resolution keeps
SPIKY_STEPS = 100_000
SPIKE_PAIRS = [(60_000 + 1000 * k, 50.0 + k, 20.0 + k) for k in range(5)]
#: steps of the zoomed window each side of the spikes
HALF_WINDOW = 600
#: points recorded while the chart is zoomed
LIVE_STEPS = 50


def _spiky_curve() -> tuple[list[int], list[float | None]]:
    steps = list(range(1, SPIKY_STEPS + 1))
    values: list[float | None] = [1 + 1 / step for step in steps]
    for at, tall, short in SPIKE_PAIRS:
        values[at - 1] = tall
        values[at + 3] = short
    return steps, values


def test_a_drag_reads_the_window_at_the_charts_resolution(
    start_service: Any, open_tab: Callable[[str], Tab], tmp_path: Path
) -> None:
    """Zooming into a 100,000-step curve reads the window and draws the spike the whole curve's
    read thinned away; live points, the log axis and a double-click behave around the zoom."""
    service: Service = start_service(workers=0)  # the test is the job's worker
    job = service.submit(fit_spec(name="spiky"))
    held = HeldJob(service.db_url, job["id"])
    held.record(*_spiky_curve())
    tab = open_tab(service.url)
    page = tab.page
    reads = record_curve_reads(page)
    page.locator(f'tr[data-job-id="{job["id"]}"]').click()
    tab.wait(lambda: tab.points() > 0 and tab.stats()["streamsOpened"] > 0, "the running job")

    # the whole curve, thinned: every tall spike, but not every short one
    whole = tab.view()
    assert (whole["min"], whole["max"]) == (1, SPIKY_STEPS)
    assert "start" not in reads[0] and tab.points() <= int(reads[0]["points"])
    assert all(tall in whole["values"] for _, tall, _ in SPIKE_PAIRS)
    hidden = [(at, short) for at, _, short in SPIKE_PAIRS if short not in whole["values"]]
    assert hidden, "the whole curve's read kept every short spike: no zoom can show more"
    at, short = hidden[0]

    # a drag around a hidden spike reads that window, at the chart's width
    read_before = len(reads)
    tab.drag(at - HALF_WINDOW, at + HALF_WINDOW)
    tab.wait(lambda: len(reads) > read_before, "a read of the window")
    window = reads[read_before]
    start, end, points = (int(window[key]) for key in ("start", "end", "points"))
    assert start <= at < at + 3 < end
    plot_width = page.evaluate("() => window.descent.chart.over.clientWidth")
    assert plot_width <= points <= 4 * plot_width, (points, plot_width)
    assert end - start + 1 <= points, "the window is wider than the chart can show whole"
    tab.wait(lambda: tab.points() == end - start + 1, "the window's points on the chart")
    zoomed = tab.view()
    assert (zoomed["min"], zoomed["max"]) == (start, end)
    assert zoomed["steps"] == list(range(start, end + 1))
    assert short in zoomed["values"], "the short spike is not drawn in the zoomed window"
    expect(page.locator("#zoom-hint")).to_contain_text(f"steps {start}–{end}")
    page.screenshot(path=tmp_path / "zoomed.png")

    # points recorded meanwhile join the whole curve and leave the zoomed chart where it is
    live = list(range(SPIKY_STEPS + 1, SPIKY_STEPS + LIVE_STEPS + 1))
    held.record(live, [1.0] * LIVE_STEPS)
    tab.wait(lambda: tab.stats()["pointsFromEvents"] >= LIVE_STEPS, "the live points")
    next_frame(page)
    assert page.evaluate("() => window.descent.curve.lastStep") == live[-1]
    assert tab.view() == zoomed

    # the log axis redraws the window's values as they are
    page.locator("#log-scale").check()
    tab.wait(lambda: max(v or 0 for v in tab.view()["values"]) < 2, "log10 values")
    logged = tab.view()
    assert (logged["min"], logged["max"]) == (start, end)
    assert any(v is not None and abs(v - math.log10(short)) < 1e-9 for v in logged["values"])
    page.locator("#log-scale").uncheck()

    # a double-click reads the whole curve again, with the live points
    read_before = len(reads)
    tab.double_click_chart()
    tab.wait(lambda: len(reads) > read_before, "a read of the whole curve")
    assert "start" not in reads[read_before] and "end" not in reads[read_before]
    tab.wait(lambda: tab.view()["max"] == live[-1], "the whole curve on the chart")
    assert tab.view()["min"] == 1
    assert tab.points() <= int(reads[read_before]["points"])
    assert page.evaluate("() => window.descent.zoom") is None
    expect(page.locator("#zoom-hint")).to_be_hidden()

    held.finish()
    expect(page.locator("#chart-sub .badge")).to_have_text("succeeded")
    assert tab.errors == [], tab.errors
