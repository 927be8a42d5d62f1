"""The slide viewer: its tile table and slide images by hand, the page's contract, and the page in real Chromium.

The cohort: S1 has a real Aperio slide file (uniform colour SLIDE_RGB) and S2 only its tile store (the slide file
is gone: the viewer falls back to the store's thumbnail, uniform THUMB_RGB). Both have a 3 x 2 tile grid of 256
level-0 px tiles at the origin, traits A and B, and two split models whose mean score and majority vote are known.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_hex

from qc_rows import qc_frame
from workflow_scripts.analysis.cartography import read_cartography, read_store_layout, write_cartographies
from workflow_scripts.analysis.ensemble import choose_members, write_members
from workflow_scripts.analysis.maps import DEFAULT_ALPHA, NONE_COLOUR, combination_palette
from workflow_scripts.analysis.viewer import (
    SLIDE_SOURCE,
    STORE_SOURCE,
    SlideView,
    ViewerSettings,
    capped,
    read_slide_image,
    tile_table,
)
from workflow_scripts.analysis.viewer_page import FRAME_PX, slide_caption, viewer_document, write_viewer
from workflow_scripts.common.tables import write_tsv
from workflow_scripts.demo.slidewriter import write_aperio_slide
from workflow_scripts.learning.predictions import SlidePredictions, write_predictions
from workflow_scripts.slides.qc_table import write_qc_table
from workflow_scripts.slides.tilestore import write_tile_store

SIDE = 256
SLIDE_SIZE = (768, 512)  # level-0 width, height: exactly the 3 x 2 grid
SLIDE_RGB = (200, 120, 160)
THUMB_RGB = (90, 150, 210)
GRID = [[0, 0], [1, 0], [2, 0], [0, 1], [1, 1]]  # cell (2, 1) has no tile
# per tile (in GRID order), the calls of A and B: A only, B only, A and B, none, A only
CALLS = {"S1": [(1, 0), (0, 1), (1, 1), (0, 0), (1, 0)], "S2": [(1, 1)] * 5}
HTI = {"S1": 0.8, "S2": 0.0}


def model_scores(calls: list[tuple[int, int]], trait: int) -> np.ndarray:
    """Two models' scores per tile: (0.9, 0.7) for a positive call (mean 0.8), (0.2, 0.4) for a negative (0.3)."""
    return np.array([[0.9, 0.7] if tile[trait] else [0.2, 0.4] for tile in calls], dtype=np.float32)


def make_cohort(root: Path) -> dict:
    """The viewer's inputs for S1 and S2, written by their format owners (cartographies by the cartography job)."""
    coords = np.array(GRID, dtype=np.int64) * SIDE
    slide = write_aperio_slide(root / "slides" / "S1.svs", SLIDE_SIZE, np.full((512, 768, 3), SLIDE_RGB, np.uint8),
                               downsamples=(1, 4))
    stores = []
    for slide_id, source in (("S1", slide), ("S2", root / "slides" / "gone.svs")):
        attrs = {"tile_px": 8, "mpp": 0.5, "level0_tile_px": SIDE, "source_mpp": 0.25, "grid_shape": [3, 2],
                 "source_path": str(source)}
        stores.append(write_tile_store(root / "tiles" / f"{slide_id}.h5", slide_id, coords, GRID, np.ones(5),
                                       np.zeros((5, 8, 8, 3), np.uint8), attrs, encoding="raw",
                                       thumbnail=np.full((16, 24, 3), THUMB_RGB, np.uint8), thumbnail_downsample=32))
        for k, trait in enumerate(("A", "B")):
            (root / "predictions" / trait).mkdir(parents=True, exist_ok=True)
            write_predictions(root / "predictions" / trait / f"{slide_id}.h5",
                              SlidePredictions(slide_id, trait, coords, model_scores(CALLS[slide_id], k), (0, 1)))
    metrics = pd.DataFrame({"trait": ["A", "A", "B", "B"], "split": [0, 1, 0, 1], "best_val_slide_auc": [0.9, 0.8] * 2})
    write_members(choose_members(metrics, top_k=2), root / "members.tsv")
    write_qc_table(qc_frame([{"slide_id": s, "patient_id": f"P{s}", "status": "pass"} for s in ("S1", "S2")]),
                   root / "qc.tsv")
    predictions = [root / "predictions" / "A", root / "predictions" / "B"]
    write_cartographies(predictions, root / "members.tsv", root / "qc.tsv", stores, ["A", "B"], 0.5,
                        root / "cartography")
    write_tsv(pd.DataFrame({"slide_id": ["S2", "S1"], "hti": [HTI["S2"], HTI["S1"]], "hta": [0.0, 0.5]}),
              root / "hti.tsv")
    write_tsv(pd.DataFrame({"trait": ["A", "B"]}), root / "traits.tsv")
    return {"stores": stores, "cartography": root / "cartography", "predictions": predictions,
            "members": root / "members.tsv"}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    """The two-slide cohort and its viewer folder."""
    root = tmp_path_factory.mktemp("viewer")
    inputs = make_cohort(root)
    settings = ViewerSettings(max_px=384, opacity=0.6)
    write_viewer(root / "hti.tsv", root / "traits.tsv", inputs, settings, root / "viewer", "test")
    return root


def page_blocks(index_html: Path) -> list[dict]:
    """The slides' JSON data blocks of the page, in slide-list order."""
    text = index_html.read_text()
    found = re.findall(r'<script type="application/json" id="viewer-slide-(\d+)">(.*?)</script>', text, re.S)
    return [json.loads(body) for _, body in sorted(found, key=lambda item: int(item[0]))]


class ResourceTags(HTMLParser):
    """Collects the src/href of the page's script, link and img tags (script bodies are not parsed as tags)."""

    def __init__(self) -> None:
        super().__init__()
        self.references: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        """Keep what a resource tag would load."""
        if tag in ("script", "link", "img", "iframe"):
            self.references += [value or "" for name, value in attrs if name in ("src", "href")]


def external_references(text: str) -> list[str]:
    """The files or URLs a page's tags would load."""
    parser = ResourceTags()
    parser.feed(text)
    return parser.references


def test_capped_keeps_aspect_and_small_images():
    image = np.zeros((100, 300, 3), np.uint8)
    assert capped(image, 150).shape == (50, 150, 3)
    assert capped(image, 300) is image


def test_settings_name_the_bad_key():
    assert ViewerSettings.from_config({}) == ViewerSettings(1024, 75, DEFAULT_ALPHA)
    assert ViewerSettings.from_config({"max_px": 64}, {"alpha": 1.0}) == ViewerSettings(64, 75, 1.0)
    with pytest.raises(ValueError, match="maps.alpha"):
        ViewerSettings.from_config({}, {"alpha": 1.5})
    for max_px in (63, 16385):
        with pytest.raises(ValueError, match="viewer.max_px"):
            ViewerSettings.from_config({"max_px": max_px})
    with pytest.raises(ValueError, match="viewer.jpeg_quality"):
        ViewerSettings.from_config({"jpeg_quality": 0})


def test_slide_image_from_the_slide_file_then_the_store(cohort):
    image = read_slide_image(cohort / "tiles" / "S1.h5", 384)
    assert image.source == SLIDE_SOURCE and image.level0_size == SLIDE_SIZE
    assert image.pixels.shape == (256, 384, 3)  # 768 x 512 capped at 384 on the long side
    assert np.abs(image.pixels[100:150, 100:250].astype(int) - SLIDE_RGB).max() <= 3
    fallback = read_slide_image(cohort / "tiles" / "S2.h5", 384)
    assert fallback.source == STORE_SOURCE and fallback.level0_size == (24 * 32, 16 * 32)
    assert fallback.pixels.shape == (16, 24, 3) and (fallback.pixels == THUMB_RGB).all()


def test_tile_table_by_hand(cohort):
    layout = read_store_layout(cohort / "tiles" / "S1.h5")
    tensor, traits, _ = read_cartography(cohort / "cartography" / "S1.h5")
    scores = np.array([[0.8 if a else 0.3, 0.8 if b else 0.3] for a, b in CALLS["S1"]])
    table = tile_table(layout, tensor, traits, ["A", "B"], scores)
    assert table["left"] == [0, 256, 512, 0, 256] and table["right"] == [256, 512, 768, 256, 512]
    assert table["top"] == [0, 0, 0, -256, -256] and table["bottom"] == [-256, -256, -256, -512, -512]
    assert table["combination"] == ["A+ B-", "A- B+", "A+ B+", "none positive", "A+ B-"]
    palette = combination_palette(2)
    assert table["het_colour"] == [to_hex(palette[i]) for i in (1, 2, 3, 0, 1)]
    assert table["call_0"] == ["+", "-", "+", "-", "+"] and table["call_1"] == ["-", "+", "+", "-", "-"]
    assert table["colour_1"] == [to_hex(c) for c in (NONE_COLOUR, palette[2], palette[2], NONE_COLOUR, NONE_COLOUR)]
    assert table["score_0"] == [0.8, 0.3, 0.8, 0.3, 0.8]


def test_slides_listed_by_decreasing_hti_undefined_last():
    views = [SlideView(name, {"hti": value, "hta": value}, "", (1, 1), (1.0, 1.0), STORE_SOURCE, {"left": []})
             for name, value in (("a", math.nan), ("b", 0.2), ("c", 0.9), ("d", 0.2))]
    document, ordered = viewer_document(views, ["A", "B"], ["A", "B"], "t", 0.5)
    assert [view.slide_id for view in ordered] == ["c", "b", "d", "a"]
    slides = document.get_model_by_name("slides").data
    assert slides["slide_id"] == ["c", "b", "d", "a"] and slides["key"] == [0, 1, 2, 3]
    assert slides["hti"][:3] == [0.9, 0.2, 0.2] and math.isnan(slides["hti"][3])
    assert slide_caption(ordered[3]).startswith("HTI n/a  HTA n/a  0 tiles")


def test_page_is_one_self_contained_file(cohort):
    index = cohort / "viewer" / "index.html"
    assert sorted(path.name for path in (cohort / "viewer").iterdir()) == ["index.html"]
    assert external_references(index.read_text()) == []  # Bokeh's JavaScript is inline, images are data: URIs
    blocks = page_blocks(index)
    assert [block["slide_id"] for block in blocks] == ["S1", "S2"]  # highest HTI first
    assert blocks[0]["level0_size"] == list(SLIDE_SIZE) and blocks[1]["level0_size"] == [768, 512]
    assert blocks[0]["image_uri"].startswith("data:image/jpeg;base64,")
    # the hover's scores: the mean of both chosen models
    assert blocks[0]["tiles"]["score_1"] == pytest.approx([0.3, 0.8, 0.8, 0.3, 0.3])
    assert blocks[1]["tiles"]["combination"] == ["A+ B+"] * 5


# ---- the page in a real headless Chromium (Debian's chromium and chromium-driver) ----

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
TO_SCREEN = """
const view = Bokeh.documents[0].get_model_by_name('view');
const plot = Bokeh.index.get_one(view);
const rect = plot.canvas_view.el.getBoundingClientRect();
return [rect.left + plot.frame.x_scale.compute(arguments[0]), rect.top + plot.frame.y_scale.compute(arguments[1])];
"""
TOOLTIPS = """
function tips(root) {
  let out = [];
  for (const el of root.querySelectorAll('*')) { if (el.shadowRoot) { out = out.concat(tips(el.shadowRoot)); } }
  for (const tip of root.querySelectorAll('.bk-tooltip-content')) { out.push(tip.textContent); }
  return out;
}
return tips(document);
"""
SET = "Bokeh.documents[0].get_model_by_name(arguments[0])[arguments[1]] = arguments[2];"


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium at a fixed size and 1 device px per CSS px, so screenshot pixels are page pixels."""
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("Debian's chromium and chromium-driver are absent (apt-get install chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium (the test extra) is not installed")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1000",
                     "--force-device-scale-factor=1", "--hide-scrollbars"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    yield driver
    driver.quit()


def wait_for(condition, what: str, seconds: float = 15.0):
    """Poll until condition() is truthy (the page renders asynchronously); fail naming what never happened."""
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"the page never showed {what} within {seconds} s")


def screen_point(driver, x: float, y: float) -> tuple[int, int]:
    """Page pixel of a plot-space point (level-0 x, negated y), through Bokeh's own scales."""
    sx, sy = driver.execute_script(TO_SCREEN, x, y)
    return int(round(sx)), int(round(sy))


def tile_centre(col: int, row: int) -> tuple[float, float]:
    """Plot-space centre of a grid cell."""
    return (col + 0.5) * SIDE, -(row + 0.5) * SIDE


def pixels(driver, points: list[tuple[float, float]]) -> np.ndarray:
    """RGB of the screenshot at plot-space points."""
    from io import BytesIO

    from PIL import Image

    shot = np.asarray(Image.open(BytesIO(driver.get_screenshot_as_png())).convert("RGB")).astype(int)
    return np.array([shot[sy, sx] for sx, sy in (screen_point(driver, x, y) for x, y in points)])


def close(found: np.ndarray, expected, tolerance: int) -> bool:
    """Every pixel within tolerance of its expected RGB (per channel, 0-255)."""
    return bool(np.abs(np.asarray(found) - np.asarray(expected, dtype=float)).max() <= tolerance)


def rgb255(colour) -> np.ndarray:
    """A palette colour (RGB floats) as screen RGB."""
    return np.round(np.asarray(colour) * 255)


CENTRES = [tile_centre(col, row) for col, row in GRID]
EMPTY_CELL = tile_centre(2, 1)


def test_viewer_in_chromium(cohort, browser, tmp_path):
    palette = combination_palette(2)
    shown = np.array([rgb255(palette[a + 2 * b]) for a, b in CALLS["S1"]])
    browser.get((cohort / "viewer" / "index.html").as_uri())
    wait_for(lambda: browser.execute_script("return window.Bokeh && Bokeh.documents.length > 0 && "
                                            "Bokeh.documents[0].get_model_by_name('tiles').data.left.length == 5"),
             "the first slide's tiles")
    # the slide image under the overlay: the slide file's colour where no tile is
    wait_for(lambda: close(pixels(browser, [EMPTY_CELL]), [SLIDE_RGB], 4), "the slide image")
    assert "S1" in browser.execute_script("return Bokeh.documents[0].get_model_by_name('info').text")
    browser.execute_script(SET, "opacity", "value", 1.0)
    assert close(pixels(browser, CENTRES), shown, 2), "opaque overlay: the heterogeneity map's colours"
    browser.save_screenshot(str(tmp_path / "overlay.png"))
    browser.execute_script(SET, "opacity", "value", 0.6)
    assert close(pixels(browser, CENTRES), 0.6 * shown + 0.4 * np.array(SLIDE_RGB), 4), "blended at 0.6"
    browser.execute_script(SET, "layers", "active", [])
    assert close(pixels(browser, CENTRES), [SLIDE_RGB] * 5, 4), "overlay off: only the slide is left"
    browser.execute_script(SET, "layers", "active", [2])
    browser.execute_script(SET, "opacity", "value", 1.0)
    trait_b = [rgb255(palette[2] if b else NONE_COLOUR) for _, b in CALLS["S1"]]
    assert close(pixels(browser, CENTRES), trait_b, 2), "trait B's cartography"
    browser.execute_script(SET, "layers", "active", [0])

    # hover: the tile's combination and both traits' scores
    x, y = screen_point(browser, *tile_centre(1, 0))
    browser.execute_cdp_cmd("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": x, "y": y})
    tip = wait_for(lambda: browser.execute_script(TOOLTIPS), "a tooltip")[0]
    assert "col 1, row 0" in tip and "A- B+" in tip and "score 0.300" in tip and "score 0.800" in tip

    # zoom with the wheel on tile (1, 0): the tile grows on screen and still shows its colour edge to edge
    before = browser.execute_script("const r = Bokeh.documents[0].get_model_by_name('view').x_range;"
                                    "return r.end - r.start;")
    browser.execute_cdp_cmd("Input.dispatchMouseEvent", {"type": "mouseWheel", "x": x, "y": y, "deltaX": 0,
                                                          "deltaY": -400})
    after = wait_for(lambda: browser.execute_script(
        "const r = Bokeh.documents[0].get_model_by_name('view').x_range; const w = r.end - r.start;"
        "return w < arguments[0] ? w : 0;", before), "a zoom")
    left, _ = screen_point(browser, SIDE, 0)
    right, _ = screen_point(browser, 2 * SIDE, 0)
    assert right - left == pytest.approx(SIDE * FRAME_PX[0] / after, abs=2) and after < before / 2
    inside = [(SIDE + 4 * after / FRAME_PX[0], -SIDE / 2), (2 * SIDE - 4 * after / FRAME_PX[0], -SIDE / 2)]
    assert close(pixels(browser, inside), [shown[1]] * 2, 2), "zoomed in: tile (1, 0) edge to edge"
    browser.save_screenshot(str(tmp_path / "zoomed.png"))

    # switch to S2: its store thumbnail under the overlay, every tile A+ B+, the view reset to the whole slide
    browser.execute_script("Bokeh.documents[0].get_model_by_name('slides').selected.indices = [1];")
    wait_for(lambda: "S2" in browser.execute_script("return Bokeh.documents[0].get_model_by_name('info').text"),
             "slide S2's name")
    wait_for(lambda: close(pixels(browser, [EMPTY_CELL]), [THUMB_RGB], 4), "slide S2's thumbnail")
    assert close(pixels(browser, CENTRES), [rgb255(palette[3])] * 5, 2)
    assert browser.execute_script("const r = Bokeh.documents[0].get_model_by_name('view').x_range;"
                                  "return r.end - r.start;") == pytest.approx(before)
    browser.execute_script(SET, "layers", "active", [])
    assert close(pixels(browser, CENTRES), [THUMB_RGB] * 5, 4)
    assert math.isclose(browser.execute_script("return Bokeh.documents[0].get_model_by_name('slides').data.hti[0]"),
                        HTI["S1"])
