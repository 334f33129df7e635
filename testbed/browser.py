"""Headless Chromium (Debian's `chromium`) looking at a page as a person would: what it
draws (a screenshot) and what it holds once rendered (the DOM)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from PIL import Image

#: Flags for a machine without a display or a network: no GPU, no sandbox (root), and none of
#: Chromium's own background connections, which a closed network refuses.
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars")  # fmt: skip


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        raise RuntimeError("the browser tests need Chromium: apt-get install chromium")
    return found


def _run(page: Path, *args: str) -> str:
    with tempfile.TemporaryDirectory() as profile:
        done = subprocess.run(
            [chromium(), *FLAGS, f"--user-data-dir={profile}", *args, page.resolve().as_uri()],
            capture_output=True, text=True, timeout=180, check=True,
        )  # fmt: skip
    return done.stdout


def rendered_dom(page: Path) -> str:
    """The page's DOM after Chromium rendered it."""
    return _run(page, "--dump-dom")


def screenshot(page: Path, size: tuple[int, int] = (1280, 1600)) -> Image.Image:
    """What a person sees of *page* in a window of *size*."""
    with tempfile.TemporaryDirectory() as where:
        png = Path(where) / "shot.png"
        _run(page, f"--screenshot={png}", f"--window-size={size[0]},{size[1]}")
        with Image.open(png) as image:
            return image.convert("RGB")


def share_of(image: Image.Image, colour: str, tolerance: int = 12) -> float:
    """The share of the picture's pixels within *tolerance* of *colour* (`#rrggbb`)."""
    want = tuple(int(colour[i : i + 2], 16) for i in (1, 3, 5))
    counted = image.getcolors(image.width * image.height) or []
    close = sum(
        count
        for count, pixel in counted
        if max(abs(a - b) for a, b in zip(pixel, want, strict=True)) <= tolerance
    )
    return close / (image.width * image.height)
