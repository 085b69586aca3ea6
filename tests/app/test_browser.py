"""The steer page in a real browser: Debian's Chromium driven by Playwright against uvicorn
on loopback, for the synthetic bundle and the books one. Add a knob through search, drag
its slider, wait for htmx's swap, check the list moved toward the knob's concept, reset.
Screenshots go to test-artifacts/."""

from __future__ import annotations

import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import uvicorn

from app.main import create_app
from app.settings import Settings
from tests.app.conftest import migrated

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("KNOBS_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = REPO / "test-artifacts"
KNOBS = re.compile(r"/sessions/[\w-]+/knobs$")


class Served(NamedTuple):
    """An app serving one bundle: its URL, the concept the test turns up (the same
    planted concept in both bundles) and each item's genres (the concepts it carries)."""

    name: str
    url: str
    concept: str
    genres: dict[int, list[str]]


BUNDLES = {"synthetic": ("bundle_dir", "concept-3"),
           "goodbooks-10k": ("books_bundle_dir", "horror")}


@pytest.fixture(scope="module", params=list(BUNDLES))
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Served]:
    if not (REPO / "static" / "vendor" / "htmx.min.js").exists():
        pytest.fail("static/vendor/htmx.min.js is missing: run `make frontend` (npm ci)")
    fixture, concept = BUNDLES[request.param]
    db = migrated(f"sqlite:///{tmp_path_factory.mktemp('db') / 'knobs.db'}")
    settings = Settings(bundle=request.getfixturevalue(fixture), device="cpu",
                        database_url=db)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    app = create_app(settings)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 60
    while not server.started:
        assert time.time() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    catalog = app.state.engine.bundle.catalog
    yield Served(request.param, f"http://127.0.0.1:{port}", concept,
                 dict(zip(catalog["item"].tolist(), catalog["genres"].tolist(), strict=True)))
    server.should_exit = True
    thread.join(10)


def shown(page: Any, list_id: str) -> list[int]:
    """The item ids of a list on the page, in order."""
    return [int(i) for i in page.locator(f"#{list_id} li").evaluate_all(
        "items => items.map(li => li.dataset.item)")]


def share(items: list[int], served: Served) -> float:
    """The share of `items` that carry the served concept."""
    return sum(served.concept in served.genres[i] for i in items) / max(len(items), 1)


def test_steer_page_in_chromium(served: Served) -> None:
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (make test installs Debian's chromium)")
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM),
                                    args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        console: list[str] = []
        page.on("console", lambda m: console.append(m.text) if m.type == "error" else None)
        page.goto(f"{served.url}/steer?user=1")
        page.wait_for_function("window.htmx !== undefined")
        before = shown(page, "steered")
        assert before == shown(page, "unsteered")
        concept = served.concept
        start = share(before, served)
        books = served.name == "goodbooks-10k"         # authors beside the titles
        assert (page.locator("#steered li .by").count() == len(before)) == books

        # add a knob through the typeahead
        page.fill("#add-q", concept)
        page.wait_for_selector("#concept-results li button")
        page.locator("#concept-results li button", has_text=concept).first.click()
        page.wait_for_selector(f'.knob[data-key="c:{concept}"]')
        knob = page.locator(f'.knob[data-key="c:{concept}"]')
        number = knob.locator("input.num")
        assert number.input_value() == "0.10"

        # drag its slider to the right end and wait for the swap
        slider = knob.locator('input[type="range"]')
        slider.scroll_into_view_if_needed()
        box = slider.bounding_box()
        assert box is not None
        with page.expect_response(KNOBS) as response:
            page.mouse.move(box["x"] + box["width"] * 0.1, box["y"] + box["height"] / 2)
            page.mouse.down()
            page.mouse.move(box["x"] + box["width"] - 1, box["y"] + box["height"] / 2,
                            steps=8)
            page.mouse.up()
        assert response.value.status == 200
        page.wait_for_function(
            "['steered', 'unsteered'].map(id => [...document.querySelectorAll("
            "`#${id} li`)].map(li => li.dataset.item).join()).reduce((a, b) => a !== b)")
        page.wait_for_load_state("networkidle")
        assert float(number.input_value()) > 0.9
        after = shown(page, "steered")
        assert share(after, served) >= start + 0.3, (start, after)
        assert page.locator("#steered .moved").count() > 0
        page.screenshot(path=str(ARTIFACTS / f"steer-after-drag-{served.name}.png"),
                        full_page=True)

        # autosaved: a refresh resumes the same knobs and list
        page.reload()
        page.wait_for_function("window.htmx !== undefined")
        assert float(number.input_value()) > 0.9
        assert shown(page, "steered") == after

        # keyboard: the slider is operable without a mouse
        slider.focus()
        with page.expect_response(KNOBS):     # after htmx's debounce
            page.keyboard.press("Home")
        page.wait_for_load_state("networkidle")
        assert number.input_value() == "0.00"
        assert shown(page, "steered") == before

        # the number box clamps to the range and moves the slider
        with page.expect_response(KNOBS):
            number.fill("1.7")
            number.press("Enter")
            number.blur()
        page.wait_for_load_state("networkidle")
        assert number.input_value() == "1.00" and slider.input_value() == "1"
        assert share(shown(page, "steered"), served) >= start + 0.3

        # reset all
        with page.expect_response(KNOBS):
            page.click("#reset")
        page.wait_for_load_state("networkidle")
        assert page.locator(f'.knob[data-key="c:{concept}"]').count() == 0
        assert shown(page, "steered") == before
        page.screenshot(path=str(ARTIFACTS / f"steer-after-reset-{served.name}.png"),
                        full_page=True)
        assert console == []             # nothing refused by the Content-Security-Policy
        browser.close()
