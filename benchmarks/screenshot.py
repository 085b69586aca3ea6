"""The README's screenshot: the steer page of a dataset user with a concept knob turned
up, rendered by the real app in Debian's Chromium. Writes reports/screenshot-steer.png.

    .venv/bin/python -m benchmarks.screenshot [--bundle bundles/ml-latest-small]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bundle", type=Path, default=REPO / "bundles" / "ml-latest-small")
    parser.add_argument("--url", default="/steer?user=1&add=c:horror")
    parser.add_argument("--out", type=Path, default=REPO / "reports" / "screenshot-steer.png")
    args = parser.parse_args()
    port = 8797
    env = {**os.environ, "KNOBS_BUNDLE": str(args.bundle), "KNOBS_DEVICE": "cpu"}
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "app.main:create_app",
                             "--factory", "--port", str(port), "--log-level", "warning"],
                            env=env, cwd=REPO)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{base}/readyz").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        from playwright.sync_api import sync_playwright

        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=os.environ.get("KNOBS_CHROMIUM", "/usr/bin/chromium"),
                args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1280, "height": 860})
            page.goto(base + args.url)
            knob = page.locator(".knob").last
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
    finally:
        proc.terminate()
        proc.wait(10)


if __name__ == "__main__":
    main()
