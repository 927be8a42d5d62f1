"""The one writer of the slide viewer page, viewer/index.html: one static Bokeh document for a whole cohort.

Contract of the page: a single HTML file that needs no server, no network and no other file (Bokeh's JavaScript
is inline, bokeh.resources.INLINE, and every slide image is a JPEG data: URI), so it opens from the file system
and in a Snakemake report (in place in a .zip report; a .html report embeds it as a data: URL, which Chromium opens
only up to 2 MB, less than Bokeh's JavaScript alone).  Each slide's data (analysis.viewer: image, level-0 size, tile
table) is one `<script type="application/json" id="viewer-slide-{i}">` block in the page's head, parsed only when
the slide is picked, i = the slide's row in the slide list (the `key` column of the list's data).  Named Bokeh
models, for readers and tests driving the page through Bokeh's JavaScript API (Bokeh.documents[0]
.get_model_by_name): `slides` (the list's ColumnDataSource: pick a slide by setting its selected.indices),
`slide_table` (the DataTable, sortable by HTI), `image` and `tiles` (the shown slide's sources), `layers`
(CheckboxGroup: 0 = heterogeneity map, k + 1 = trait k's cartography), `opacity` (Slider of the overlays' alpha),
`view` (the figure; its x_range and y_range are the zoom), `heterogeneity` and `trait_{k}` (the overlay
renderers), `info` (Div naming the shown slide).
"""

from __future__ import annotations

import html
import json
import logging
import os

import numpy as np
from bokeh.core.templates import FILE
from bokeh.document import Document
from bokeh.embed import file_html
from bokeh.layouts import column, row
from bokeh.models import (
    CheckboxGroup,
    ColumnDataSource,
    CustomJS,
    DataTable,
    Div,
    HoverTool,
    NumberFormatter,
    Range1d,
    Slider,
    TableColumn,
)
from bokeh.plotting import figure
from bokeh.resources import INLINE
from jinja2 import Template
from markupsafe import Markup

from workflow_scripts.analysis.maps import NONE_COLOUR, combination_palette, legend_entries
from workflow_scripts.analysis.viewer import SlideView, ViewerSettings, slide_views
from workflow_scripts.common.atomic import atomic_path
from workflow_scripts.common.tables import read_table

FRAME_PX = (760, 570)  # the view's frame (width, height) in CSS px: fits beside the list in the report's pane
PAGE = Template('{% extends base %}{% block postamble %}{{ slide_blocks }}{% endblock %}')

LOAD_SLIDE = """
const i = slides.selected.indices[0];
if (i === undefined) { return; }
const slide = JSON.parse(document.getElementById("viewer-slide-" + slides.data.key[i]).textContent);
const [width, height] = slide.level0_size;
image.data = {url: [slide.image_uri], x: [0], y: [0], w: [width], h: [height]};
tiles.data = slide.tiles;
const scale = Math.max(width / frame[0], height / frame[1]);
const [cx, cy, hx, hy] = [width / 2, -height / 2, frame[0] * scale / 2, frame[1] * scale / 2];
x_range.setv({start: cx - hx, end: cx + hx, reset_start: cx - hx, reset_end: cx + hx});
y_range.setv({start: cy - hy, end: cy + hy, reset_start: cy - hy, reset_end: cy + hy});
info.text = "<b>" + slide.slide_id + "</b> &nbsp; " + slide.caption;
"""
SHOW_LAYERS = "renderers.forEach((renderer, index) => { renderer.visible = cb_obj.active.includes(index); });"
SET_OPACITY = "for (const glyph of glyphs) { glyph.fill_alpha = cb_obj.value; }"


def slide_caption(view: SlideView) -> str:
    """The line under the slide's name: its heterogeneity numbers and where its image came from."""
    summary = view.summary
    numbers = "  ".join(f"{name.upper()} {float(summary[name]):.3f}" if np.isfinite(float(summary[name]))
                        else f"{name.upper()} n/a" for name in ("hti", "hta") if name in summary)
    return html.escape(f"{numbers}  {len(view.tiles['left'])} tiles, image {view.image_px[0]}x{view.image_px[1]} px"
                       f" ({view.image_source})")


def slide_block(index: int, view: SlideView) -> str:
    """One slide's JSON data block; '</' is escaped so the JSON cannot end its script element early."""
    payload = {"slide_id": view.slide_id, "image_uri": view.image_uri, "level0_size": list(view.level0_size),
               "tiles": view.tiles, "caption": slide_caption(view)}
    text = json.dumps(payload, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")
    return f'<script type="application/json" id="viewer-slide-{index}">{text}</script>'


def slide_list(views: list[SlideView]) -> dict[str, list]:
    """The slide list's columns (NaN HTI stays NaN, which the table shows blank and sorts last)."""
    def number(view: SlideView, name: str) -> float:
        value = view.summary.get(name, np.nan)
        return float(value) if value is not None else float("nan")

    return {"key": list(range(len(views))), "slide_id": [view.slide_id for view in views],
            "hti": [number(view, "hti") for view in views], "hta": [number(view, "hta") for view in views],
            "n_tiles": [len(view.tiles["left"]) for view in views]}


def legend_html(traits: list[str], chosen: list[str]) -> str:
    """The colour key of the heterogeneity map and of the trait layers, the maps' colours."""
    def swatch(colour: tuple[float, float, float], label: str) -> str:
        rgb = ",".join(str(round(255 * value)) for value in colour)
        return (f'<span style="display:inline-block;width:12px;height:12px;background:rgb({rgb});'
                f'border:1px solid #444;margin-right:4px"></span>{html.escape(label)}<br>')

    entries = [swatch(colour, name) for name, colour in legend_entries(chosen)[:-1]]
    single = combination_palette(max(2, len(traits)))
    layers = [swatch(single[1 << k], f"{trait} positive") for k, trait in enumerate(traits)]
    layers.append(swatch(NONE_COLOUR, "negative"))
    return "<b>Heterogeneity map</b><br>" + "".join(entries) + "<b>Trait layers</b><br>" + "".join(layers)


def slide_figure(traits: list[str], opacity: float) -> tuple:
    """The zoomable view: the slide image under the heterogeneity and trait overlays, with a tile hover."""
    view = figure(name="view", frame_width=FRAME_PX[0], frame_height=FRAME_PX[1], x_range=Range1d(0, 1),
                  y_range=Range1d(-1, 0), tools="pan,wheel_zoom,box_zoom,reset,save", active_scroll="wheel_zoom",
                  match_aspect=True, toolbar_location="above")
    view.axis.visible = False
    view.grid.visible = False
    image = ColumnDataSource({"url": [], "x": [], "y": [], "w": [], "h": []}, name="image")
    view.image_url(url="url", x="x", y="y", w="w", h="h", anchor="top_left", source=image)
    columns = ["left", "right", "top", "bottom", "col", "row", "combination", "het_colour"]
    for k in range(len(traits)):
        columns += [f"call_{k}", f"score_{k}", f"colour_{k}"]
    tiles = ColumnDataSource({name: [] for name in columns}, name="tiles")
    quad = {"left": "left", "right": "right", "top": "top", "bottom": "bottom", "source": tiles,
            "fill_alpha": opacity, "line_color": None}
    renderers = [view.quad(fill_color="het_colour", name="heterogeneity", **quad)]
    renderers += [view.quad(fill_color=f"colour_{k}", name=f"trait_{k}", visible=False, **quad)
                  for k in range(len(traits))]
    tooltips = [("tile", "col @col, row @row"), ("combination", "@combination")]
    tooltips += [(trait, f"@call_{k} (score @score_{k}{{0.000}})") for k, trait in enumerate(traits)]
    view.add_tools(HoverTool(renderers=renderers, tooltips=tooltips))
    return view, image, tiles, renderers


def slide_table(slides: ColumnDataSource) -> DataTable:
    """The slide list, sortable by any column (click a header; HTI first, highest first)."""
    three = NumberFormatter(format="0.000", nan_format="")
    columns = [TableColumn(field="slide_id", title="slide", width=250),
               TableColumn(field="hti", title="HTI", formatter=three, width=55),
               TableColumn(field="hta", title="HTA", formatter=three, width=55),
               TableColumn(field="n_tiles", title="tiles", width=45)]
    return DataTable(source=slides, columns=columns, name="slide_table", width=420, height=320,
                     index_position=None, sortable=True, reorderable=False, selectable=True)


def viewer_document(views: list[SlideView], traits: list[str], chosen: list[str], title: str,
                    opacity: float) -> tuple[Document, list[SlideView]]:
    """The Bokeh document of the page: slide list, layer switches, opacity, legend and the view."""
    order = sorted(range(len(views)), key=lambda i: (np.isnan(float(views[i].summary.get("hti", np.nan))),
                                                     -float(views[i].summary.get("hti", 0) or 0), views[i].slide_id))
    views = [views[i] for i in order]
    view, image, tiles, renderers = slide_figure(traits, opacity)
    slides = ColumnDataSource(slide_list(views), name="slides")
    info = Div(name="info", text="", width=FRAME_PX[0])
    layers = CheckboxGroup(name="layers", labels=[f"heterogeneity map ({' / '.join(chosen)})", *traits], active=[0])
    layers.js_on_change("active", CustomJS(args={"renderers": renderers}, code=SHOW_LAYERS))
    opacity = Slider(name="opacity", title="overlay opacity", start=0.0, end=1.0, step=0.05, value=opacity)
    opacity.js_on_change("value", CustomJS(args={"glyphs": [r.glyph for r in renderers]}, code=SET_OPACITY))
    load = CustomJS(args={"slides": slides, "image": image, "tiles": tiles, "x_range": view.x_range,
                          "y_range": view.y_range, "info": info, "frame": list(FRAME_PX)}, code=LOAD_SLIDE)
    slides.selected.js_on_change("indices", load)
    header = Div(text=f"<h2>{html.escape(title)}</h2>Pick a slide; scroll to zoom, drag to pan, hover a tile for its "
                      "combination and per-trait scores (mean probability of the ensemble's models).")
    controls = column(slide_table(slides), layers, opacity, Div(text=legend_html(traits, chosen)))
    document = Document()
    document.add_root(column(header, row(controls, column(info, view))))
    document.js_on_event("document_ready", CustomJS(args={"slides": slides}, code="slides.selected.indices = [0];"))
    document.title = title
    return document, views


def viewer_html(views: list[SlideView], traits: list[str], chosen: list[str], title: str, opacity: float) -> str:
    """The whole page as text: Bokeh's inline resources, the document and the slides' data blocks."""
    document, ordered = viewer_document(views, traits, chosen, title, opacity)
    blocks = Markup("\n".join(slide_block(index, view) for index, view in enumerate(ordered)))
    return file_html(document, INLINE, title, template=PAGE, template_variables={"base": FILE,
                                                                                 "slide_blocks": blocks})


def write_viewer_page(path: str | os.PathLike, views: list[SlideView], traits: list[str], chosen: list[str],
                      title: str, opacity: float) -> int:
    """Write viewer/index.html atomically; returns its size in bytes."""
    text = viewer_html(views, traits, chosen, title, opacity)
    with atomic_path(path) as temporary:
        temporary.write_text(text, encoding="utf-8")
    return len(text.encode("utf-8"))


def write_viewer(
    hti_path: str | os.PathLike,
    traits_path: str | os.PathLike,
    inputs: dict,
    settings: ViewerSettings,
    directory: str | os.PathLike,
    title: str,
    log: logging.Logger | None = None,
) -> list[SlideView]:
    """Write the viewer folder (index.html) of every slide of hti.tsv, made atomically; returns the slide views.

    `inputs` holds the job's other inputs: `stores`, `cartography` (folder), `predictions` (one folder per trait)
    and `members` (ensemble_members.tsv)."""
    log = log or logging.getLogger(__name__)
    table = read_table(hti_path, ["slide_id", "hti", "hta"])
    chosen = read_table(traits_path, ["trait"])["trait"].astype(str).tolist()
    views, traits = slide_views(table, inputs["stores"], inputs["cartography"], chosen, inputs["predictions"],
                                inputs["members"], settings, log)
    with atomic_path(directory) as folder:
        folder.mkdir()
        size = write_viewer_page(folder / "index.html", views, traits, chosen, title, settings.opacity)
    log.info("viewer of %d slides: index.html %.1f MB", len(views), size / 2**20)
    return views
