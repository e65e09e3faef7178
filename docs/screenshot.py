"""Make docs/report.png, the README's screenshot of a run-all report, with headless chromium (Playwright).

    jembench run-all checkpoints/jem-digits.pt checkpoints/baseline-digits.pt --out-dir reports/run-all
    python docs/screenshot.py reports/run-all/index.html docs/report.png
"""

import io
import sys
from pathlib import Path

from PIL import Image
from playwright.sync_api import sync_playwright

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]


def screenshot(html: Path, png: Path, width: int = 1280, height: int = 1500,
               chromium: str = "/usr/bin/chromium") -> int:
    """The top ``height`` pixels of the page at a laptop width, as an optimised palette PNG; returns its size."""
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=ARGS)
        page = browser.new_page(viewport={"width": width, "height": height})
        page.goto(html.resolve().as_uri(), wait_until="load")
        raw = page.screenshot(full_page=False)
        browser.close()
    image = Image.open(io.BytesIO(raw)).convert("RGB").quantize(colors=128, method=Image.Quantize.MEDIANCUT)
    png.parent.mkdir(parents=True, exist_ok=True)
    image.save(png, optimize=True)
    return png.stat().st_size


if __name__ == "__main__":
    size = screenshot(Path(sys.argv[1]), Path(sys.argv[2]))
    print(f"{sys.argv[2]}: {size / 1024:.0f} KB")
