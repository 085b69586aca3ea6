"""The steer page in a real browser: Debian's Chromium driven by Playwright against uvicorn
on loopback. Add a knob through search, drag its slider, wait for htmx's swap, check the
list moved toward the knob's concept, reset. Screenshots go to test-artifacts/."""

from __future__ import annotations

import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from app.main import create_app
from app.settings import Settings

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("KNOBS_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = REPO / "test-artifacts"
KNOBS = re.compile(r"/sessions/[\w-]+/knobs$")


@pytest.fixture(scope="module")
def base_url(settings: Settings) -> Iterator[str]:
    if not (REPO / "static" / "vendor" / "htmx.min.js").exists():
        pytest.fail("static/vendor/htmx.min.js is missing: run `make frontend` (npm ci)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    server = uvicorn.Server(uvicorn.Config(create_app(settings),
                                           host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 60
    while not server.started:
        assert time.time() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def share(titles: list[str], concept: str) -> float:
    """Synthetic titles name their concepts: 'Item 12 (concept-3/concept-5)'."""
    return sum(concept in t for t in titles) / max(len(titles), 1)


def test_steer_page_in_chromium(base_url: str) -> None:
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
        page.goto(f"{base_url}/steer?user=1")
        page.wait_for_function("window.htmx !== undefined")
        steered = page.locator("#steered li a")
        before = steered.all_inner_texts()
        assert before == page.locator("#unsteered li").all_inner_texts()
        concept = "concept-3"
        start = share(before, concept)

        # add a knob through the typeahead
        page.fill("#add-q", "concept-3")
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
            "document.querySelector('#steered').innerText !== "
            "document.querySelector('#unsteered').innerText")
        page.wait_for_load_state("networkidle")
        assert float(number.input_value()) > 0.9
        after = steered.all_inner_texts()
        assert share(after, concept) >= start + 0.3, (start, after)
        assert page.locator("#steered .moved").count() > 0
        page.screenshot(path=str(ARTIFACTS / "steer-after-drag.png"), full_page=True)

        # autosaved: a refresh resumes the same knobs and list
        steered_now = steered.all_inner_texts()
        page.reload()
        page.wait_for_function("window.htmx !== undefined")
        assert float(number.input_value()) > 0.9
        assert steered.all_inner_texts() == steered_now

        # keyboard: the slider is operable without a mouse
        slider.focus()
        with page.expect_response(KNOBS):     # after htmx's debounce
            page.keyboard.press("Home")
        page.wait_for_load_state("networkidle")
        assert number.input_value() == "0.00"
        assert page.locator("#steered li a").all_inner_texts() == before

        # the number box clamps to the range and moves the slider
        with page.expect_response(KNOBS):
            number.fill("1.7")
            number.press("Enter")
            number.blur()
        page.wait_for_load_state("networkidle")
        assert number.input_value() == "1.00" and slider.input_value() == "1"
        assert share(page.locator("#steered li a").all_inner_texts(), concept) >= start + 0.3

        # reset all
        with page.expect_response(KNOBS):
            page.click("#reset")
        page.wait_for_load_state("networkidle")
        assert page.locator(f'.knob[data-key="c:{concept}"]').count() == 0
        assert page.locator("#steered li a").all_inner_texts() == before
        page.screenshot(path=str(ARTIFACTS / "steer-after-reset.png"), full_page=True)
        assert console == []             # nothing refused by the Content-Security-Policy
        browser.close()
