"""The QC thumbnail of one tiled slide: what was found as tissue and ink, which tiles were kept, and the verdict.

Layout, top to bottom: an opaque status banner (slide, PASS or FAIL, tiles kept, the fail reason), the slide
thumbnail with its H&E colours untouched and three outlines drawn on it (tissue found, pen ink found, the region
of kept tiles), and a legend band naming the outlines and the share of tissue tiles dropped as out of focus.
Colours are Okabe-Ito (common/figures.py), so the outlines stay apart under colour-vision deficiency.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy.ndimage import binary_closing, binary_erosion, binary_fill_holes

from workflow_scripts.common.figures import OKABE_ITO
from workflow_scripts.inputs.barcodes import short_slide_name
from workflow_scripts.slides.tiling import SlideQC


def _rgb(code: str) -> tuple[int, int, int]:
    """'#RRGGBB' as 0-255 integers, PIL's colour form."""
    return int(code[1:3], 16), int(code[3:5], 16), int(code[5:7], 16)


TISSUE_OUTLINE = _rgb(OKABE_ITO["bluish_green"])
PEN_OUTLINE = _rgb(OKABE_ITO["vermillion"])
KEPT_OUTLINE = _rgb(OKABE_ITO["blue"])
STATUS_BANNER = {"pass": _rgb(OKABE_ITO["bluish_green"]), "fail": _rgb(OKABE_ITO["vermillion"])}
MIN_WIDTH_PX = 480  # narrower thumbnails are enlarged so the banner and legend text fit
FONT_PX = 14
PAD_PX = 6


def _font(size: int = FONT_PX) -> ImageFont.FreeTypeFont:
    """Pillow's bundled scalable font, so the text has the same size on every machine."""
    return ImageFont.load_default(size=size)


def thumbnail_scale(width: int, height: int, max_px: int) -> float:
    """Factor from mask to drawn pixels: long side at most max_px, unless that makes the width under MIN_WIDTH_PX."""
    return max(min(1.0, max_px / max(width, height)), MIN_WIDTH_PX / width)


def mask_outline(mask: np.ndarray, size: tuple[int, int], width: int = 1) -> np.ndarray:
    """Pixels of a mask's border (inside the mask, `width` thick) after resizing the mask to size (w, h)."""
    resized = np.asarray(Image.fromarray(np.asarray(mask, dtype=np.uint8) * 255).resize(size, Image.Resampling.NEAREST))
    inside = resized > 127
    return inside & ~binary_erosion(inside, iterations=width, border_value=0)


def tissue_region(tissue: np.ndarray) -> np.ndarray:
    """The tissue mask with its gaps closed and holes filled, so its outline follows the tissue, not every lumen."""
    return binary_fill_holes(binary_closing(np.asarray(tissue, dtype=bool), iterations=2, border_value=0))


def kept_mask(cells: list[tuple[int, int]], cell_px: float, size: tuple[int, int]) -> np.ndarray:
    """Drawn pixels (h, w) covered by the kept tiles' cells (col, row) of cell_px drawn pixels from the top-left."""
    width, height = size
    cols = np.floor(np.arange(width) / cell_px).astype(int)
    rows = np.floor(np.arange(height) / cell_px).astype(int)
    if not cells:
        return np.zeros((height, width), dtype=bool)
    cells_array = np.asarray(cells, dtype=int).reshape(-1, 2)
    grid = np.zeros((rows.max() + 1, cols.max() + 1), dtype=bool)
    inside = (cells_array[:, 0] <= cols.max()) & (cells_array[:, 1] <= rows.max())
    grid[cells_array[inside, 1], cells_array[inside, 0]] = True
    return grid[np.ix_(rows, cols)]


def marked_thumbnail(qc: SlideQC, max_px: int = 1024) -> Image.Image:
    """The thumbnail at drawing size with tissue, ink and kept-tile outlines; other pixels keep the H&E colours."""
    thumb = Image.fromarray(np.asarray(qc.thumbnail, dtype=np.uint8))
    scale = thumbnail_scale(thumb.width, thumb.height, max_px)
    size = (max(1, round(thumb.width * scale)), max(1, round(thumb.height * scale)))
    method = Image.Resampling.BOX if scale < 1 else Image.Resampling.NEAREST
    pixels = np.array(thumb.resize(size, method))
    if qc.tissue is not None:
        pixels[mask_outline(tissue_region(qc.tissue), size)] = TISSUE_OUTLINE
    if qc.grid is not None and qc.kept_cells:
        kept = kept_mask(qc.kept_cells, qc.grid.span / qc.mask_downsample * scale, size)
        pixels[kept & ~binary_erosion(kept, iterations=2, border_value=0)] = KEPT_OUTLINE
    if qc.pen is not None:
        pixels[mask_outline(qc.pen, size, width=2)] = PEN_OUTLINE
    return Image.fromarray(pixels)


def banner_text(qc: SlideQC) -> str:
    """The banner's words: short slide name, verdict and tiles kept, then the reason of a failure."""
    text = f"{short_slide_name(qc.slide_id)}   {qc.status.upper()}   {qc.n_tiles} tiles kept"
    return text + (f"\n{qc.reason}" if qc.reason else "")


def legend_items(qc: SlideQC) -> list[tuple[tuple[int, int, int] | None, str]]:
    """(outline colour or None for text only, label) of each legend entry."""
    blur = "not measured" if qc.blur_fraction is None else f"{qc.blur_fraction:.0%} of tissue tiles"
    return [(TISSUE_OUTLINE, "tissue"), (PEN_OUTLINE, "pen ink"), (KEPT_OUTLINE, "kept tiles"),
            (None, f"out of focus, dropped: {blur}")]


def _wrap(text: str, font: ImageFont.FreeTypeFont, width: int) -> str:
    """Text wrapped on spaces to fit `width` pixels, so a long fail reason stays inside the banner."""
    lines = []
    for paragraph in text.split("\n"):
        line = ""
        for word in paragraph.split(" "):
            candidate = f"{line} {word}" if line else word
            if line and font.getlength(candidate) > width:
                lines.append(line)
                line = word
            else:
                line = candidate
        lines.append(line)
    return "\n".join(lines)


def _banner(qc: SlideQC, width: int) -> Image.Image:
    """Opaque band in the status colour with black text (contrast >= 5:1 on both colours)."""
    font = _font()
    text = _wrap(banner_text(qc), font, width - 2 * PAD_PX)
    box = ImageDraw.Draw(Image.new("RGB", (1, 1))).multiline_textbbox((0, 0), text, font=font)
    band = Image.new("RGB", (width, box[3] + 2 * PAD_PX), STATUS_BANNER.get(qc.status, (200, 200, 200)))
    ImageDraw.Draw(band).multiline_text((PAD_PX, PAD_PX), text, fill=(0, 0, 0), font=font)
    return band


def _legend(qc: SlideQC, width: int) -> Image.Image:
    """White band with a swatch and a label per outline, items flowing onto new lines as the width needs."""
    font, line_px, swatch = _font(12), 20, 14
    places, x, y = [], PAD_PX, PAD_PX
    for colour, label in legend_items(qc):
        item = (swatch + 4 if colour else 0) + int(font.getlength(label)) + 14
        if x > PAD_PX and x + item > width:
            x, y = PAD_PX, y + line_px
        places.append((x, y, colour, label))
        x += item
    band = Image.new("RGB", (width, y + line_px + PAD_PX), "white")
    draw = ImageDraw.Draw(band)
    for x, y, colour, label in places:
        if colour:
            draw.rectangle([x, y + 2, x + swatch, y + 2 + swatch], outline=colour, width=2)
            x += swatch + 4
        draw.text((x, y + 1), label, fill=(0, 0, 0), font=font)
    return band


def qc_image(qc: SlideQC, max_px: int = 1024) -> Image.Image:
    """QC thumbnail: status banner, H&E with tissue / ink / kept-tile outlines, and the legend band."""
    if qc.thumbnail is None:
        body = Image.new("RGB", (MIN_WIDTH_PX, 120), "white")
        ImageDraw.Draw(body).text((PAD_PX, PAD_PX), "no thumbnail: the slide could not be read", fill=(0, 0, 0),
                                  font=_font())
    else:
        body = marked_thumbnail(qc, max_px)
    banner, legend = _banner(qc, body.width), _legend(qc, body.width)
    image = Image.new("RGB", (body.width, banner.height + body.height + legend.height), "white")
    image.paste(banner, (0, 0))
    image.paste(body, (0, banner.height))
    image.paste(legend, (0, banner.height + body.height))
    return image
