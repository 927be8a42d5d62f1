"""Paint an H&E-like level-0 image from a slide layout, each planted trait leaving its own visible mark.

Tissue is eosin-pink stroma with haematoxylin-purple nuclei on a white background. A trait changes the
tissue it occupies through its signature, scaled by `signal` (0 = invisible, 1 = obvious even after the
tile is shrunk 2.56x to a 75-px network input):

- `nuclear_density`: `DENSITY_GAIN` times more nuclei (hypercellular tumour);
- `stroma_hue`: stroma shifted from pink-lilac towards salmon-orange (a different eosin tone);
- `nuclear_size`: nuclei `SIZE_GAIN` larger in radius (pleomorphic nuclei).

Per-slide stain jitter and per-pixel noise vary independently of the traits, so a model must learn the
signature rather than a slide's colour.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from workflow_scripts.demo.layout import SlideLayout

SIGNATURES = ("nuclear_density", "stroma_hue", "nuclear_size")

BACKGROUND_RGB = np.array([244.0, 243.0, 245.0])
STROMA_RGB = np.array([233.0, 162.0, 206.0])
SHIFTED_STROMA_RGB = np.array([228.0, 122.0, 112.0])
NUCLEUS_RGB = np.array([84.0, 52.0, 140.0])
STAIN_JITTER_SD = 5.0
PIXEL_NOISE_MASK = 15  # uniform pixel noise of 0..15 grey levels, centred: sd 4.6
STROMA_TEXTURE_SD = 0.05  # relative brightness variation of the stroma fibres

NUCLEUS_SPACING_PX = 48.0  # one nucleus per 48 x 48 level-0 px of trait-free tissue
NUCLEUS_RADIUS_PX = 6.0
NUCLEUS_RADIUS_SD_PX = 0.9
DENSITY_GAIN = 4.0
SIZE_GAIN = 0.7


def _upsample(field: np.ndarray, scale: int) -> np.ndarray:
    """Repeat each field pixel into a scale x scale block of level-0 pixels."""
    return np.repeat(np.repeat(field, scale, axis=0), scale, axis=1)


def _signature_weight(pixel_traits: np.ndarray, signatures: Sequence[str], signature: str) -> np.ndarray:
    """1 where any trait with this signature is present, else 0, on the field grid."""
    chosen = [i for i, name in enumerate(signatures) if name == signature]
    if not chosen:
        return np.zeros(pixel_traits.shape[:2], dtype=np.float32)
    return pixel_traits[..., chosen].any(axis=-1).astype(np.float32)


def _disc_offsets(radius: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column offsets of the pixels of a filled disc of `radius`."""
    span = np.arange(-radius, radius + 1)
    dy, dx = np.meshgrid(span, span, indexing="ij")
    inside = dy**2 + dx**2 <= radius**2 + radius * 0.5
    return dy[inside], dx[inside]


def _place_nuclei(
    rng: np.random.Generator, layout: SlideLayout, density_weight: np.ndarray, size_weight: np.ndarray, signal: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nucleus centres (level-0 row, col) and integer radii, Poisson-distributed over the tissue."""
    scale = layout.field_scale
    per_field_px = (scale / NUCLEUS_SPACING_PX) ** 2
    expected = per_field_px * (1.0 + (DENSITY_GAIN - 1.0) * signal * density_weight) * layout.tissue
    counts = rng.poisson(expected)
    rows, cols = np.nonzero(counts)
    repeats = counts[rows, cols]
    field_rows, field_cols = np.repeat(rows, repeats), np.repeat(cols, repeats)
    centre_rows = (field_rows * scale + rng.uniform(0, scale, len(field_rows))).astype(np.int64)
    centre_cols = (field_cols * scale + rng.uniform(0, scale, len(field_cols))).astype(np.int64)
    growth = 1.0 + SIZE_GAIN * signal * size_weight[field_rows, field_cols]
    radii = NUCLEUS_RADIUS_PX + NUCLEUS_RADIUS_SD_PX * rng.standard_normal(len(field_rows))
    radii = np.clip(np.rint(radii * growth), 3, 16).astype(np.int64)
    return centre_rows, centre_cols, radii


def render_slide(layout: SlideLayout, signatures: Sequence[str], signal: float, rng: np.random.Generator) -> np.ndarray:
    """Level-0 RGB image (height, width, 3) uint8 of the layout, with trait signatures at strength `signal`."""
    unknown = sorted(set(signatures) - set(SIGNATURES))
    if unknown:
        raise ValueError(f"unknown trait signature(s) {unknown}; known: {list(SIGNATURES)}")
    if len(signatures) != layout.region_traits.shape[1]:
        raise ValueError(f"{len(signatures)} signatures for a layout with {layout.region_traits.shape[1]} traits")
    if not 0.0 <= signal <= 1.0:
        raise ValueError(f"signal must be in [0, 1], got {signal}")
    scale = layout.field_scale
    width, height = layout.level0_size
    pixel_traits = layout.pixel_traits()

    stroma_rgb = STROMA_RGB + rng.normal(0.0, STAIN_JITTER_SD, 3)
    shifted_rgb = SHIFTED_STROMA_RGB + rng.normal(0.0, STAIN_JITTER_SD, 3)
    nucleus_rgb = NUCLEUS_RGB + rng.normal(0.0, STAIN_JITTER_SD, 3)

    hue = ndimage.uniform_filter(_signature_weight(pixel_traits, signatures, "stroma_hue"), size=3)
    texture = 1.0 + STROMA_TEXTURE_SD * rng.standard_normal(layout.tissue.shape)
    texture = ndimage.uniform_filter(texture, size=2).astype(np.float32)
    stroma = (stroma_rgb + (signal * hue)[..., None] * (shifted_rgb - stroma_rgb)) * texture[..., None]
    field_rgb = np.where(layout.tissue[..., None], stroma, BACKGROUND_RGB)
    image = _upsample(_to_noise_headroom(field_rgb), scale)

    centre_rows, centre_cols, radii = _place_nuclei(
        rng,
        layout,
        _signature_weight(pixel_traits, signatures, "nuclear_density"),
        _signature_weight(pixel_traits, signatures, "nuclear_size"),
        signal,
    )
    shades = _to_noise_headroom(rng.uniform(0.85, 1.12, len(radii))[:, None] * nucleus_rgb)
    for radius in np.unique(radii):
        chosen = radii == radius
        dy, dx = _disc_offsets(int(radius))
        rows = np.clip(centre_rows[chosen, None] + dy, 0, height - 1)
        cols = np.clip(centre_cols[chosen, None] + dx, 0, width - 1)
        image[rows, cols] = shades[chosen, None, :]

    noise = np.frombuffer(rng.bytes(image.size), dtype=np.uint8).reshape(image.shape) & PIXEL_NOISE_MASK
    image += noise
    image -= PIXEL_NOISE_MASK // 2
    return image


def _to_noise_headroom(rgb: np.ndarray) -> np.ndarray:
    """Round colours to uint8 leaving room for the +-8 pixel noise added in place without overflow."""
    half = PIXEL_NOISE_MASK // 2
    return np.clip(np.rint(rgb), half, 255 - PIXEL_NOISE_MASK).astype(np.uint8)
