"""The HTML recommendation report, rendered by a real browser (headless Debian chromium)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from recplug._report import render_report
from recplug.api import FeatureKind

KINDS: dict[str, FeatureKind] = {"title": "text", "year": "numeric", "genres": "multi"}
HISTORY_BLUE, RECOMMENDED_GREEN = (0x3B, 0x5B, 0x92), (0x2E, 0x7D, 0x4F)


def screenshot(chromium: str, page: Path, out: Path) -> None:
    subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={out.parent / 'profile'}", "--window-size=1200,800", f"--screenshot={out}", page.as_uri()],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip


def test_report_lists_history_and_recommendations(tmp_path: Path) -> None:
    posters = tmp_path / "posters"
    posters.mkdir()
    (posters / "7.png").write_bytes(b"\x89PNG\r\n\x1a\n")  # any bytes: embedded as a data URI
    page = render_report(
        "m:1 for user 3",
        [{"item_id": 7, "title": "Heat (1995)", "year": 1995, "genres": ["Action", "Crime"]}],
        [{"item_id": 9, "title": "Up <2009>", "year": 2009, "genres": ["Animation"], "score": 1.5}],
        KINDS,
        posters,
    )
    assert "Recent history (1)" in page and "Recommended (1)" in page
    assert "Up &lt;2009&gt;" in page and "Action, Crime" in page and "2009 · score 1.500" in page
    assert "1995.0" not in page
    assert "data:image/png;base64," in page


def test_report_renders_in_headless_chromium(tmp_path: Path, chromium: str) -> None:
    from PIL import Image

    history = [{"item_id": i, "title": f"Old movie {i}", "year": 1990, "genres": ["Drama"]} for i in range(3)]
    recs = [{"item_id": 10 + i, "title": f"New movie {i}", "year": 2000, "genres": ["Comedy"], "score": 1.0} for i in range(5)]
    page = tmp_path / "report.html"
    page.write_text(render_report("screenshot test", history, recs, KINDS), encoding="utf-8")
    shot = tmp_path / "shot.png"
    screenshot(chromium, page, shot)
    image = Image.open(shot).convert("RGB")
    assert image.size == (1200, 800)
    colors = {color for _, color in image.getcolors(maxcolors=1_000_000)}
    assert HISTORY_BLUE in colors and RECOMMENDED_GREEN in colors  # both columns of cards were drawn
    width = image.size[0]
    blue_x = [x for x in range(0, width, 4) for y in range(0, 400, 4) if image.getpixel((x, y)) == HISTORY_BLUE]
    green_x = [x for x in range(0, width, 4) for y in range(0, 400, 4) if image.getpixel((x, y)) == RECOMMENDED_GREEN]
    assert max(blue_x) < min(green_x)  # history on the left, recommendations on the right
