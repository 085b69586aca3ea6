"""The README's screenshot: the steer page of a dataset user with a concept knob turned
up, rendered by the real app in Debian's Chromium. Writes reports/screenshot-steer.png.

    .venv/bin/python -m benchmarks.screenshot [--bundle bundles/ml-latest-small]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from benchmarks.common import REPO, serve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bundle", type=Path, default=REPO / "bundles" / "ml-latest-small")
    parser.add_argument("--user", type=int, default=1)
    parser.add_argument("--concept", default="horror")
    parser.add_argument("--out", type=Path, default=REPO / "reports" / "screenshot-steer.png")
    args = parser.parse_args()
    with serve(args.bundle, 8797) as base:
        from playwright.sync_api import sync_playwright

        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=os.environ.get("KNOBS_CHROMIUM", "/usr/bin/chromium"),
                args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1280, "height": 860})
            page.goto(f"{base}/steer?user={args.user}")
            page.wait_for_function("window.htmx !== undefined")
            page.fill("#add-q", args.concept)        # add a knob through the typeahead
            page.locator("#concept-results li button", has_text=args.concept).first.click()
            page.wait_for_selector(f'.knob[data-key="c:{args.concept}"]')
            knob = page.locator(f'.knob[data-key="c:{args.concept}"]')
            knob.locator("input.num").fill("0.35")
            knob.locator("input.num").press("Enter")
            page.wait_for_load_state("networkidle")
            page.locator("h1").click()                  # blur the box, back to the top
            page.evaluate("window.scrollTo(0, 0)")
            page.wait_for_timeout(300)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(args.out))
            browser.close()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
