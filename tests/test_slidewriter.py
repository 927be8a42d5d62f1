"""The slide writer makes real Aperio SVS files that OpenSlide opens with the right metadata and pyramid."""

from __future__ import annotations

import numpy as np
import openslide
import pytest

from workflow_scripts.demo.slidewriter import write_aperio_slide


def gradient_region(x: int, y: int, w: int, h: int) -> np.ndarray:
    """A smooth image defined everywhere, so JPEG error stays small and levels can be checked numerically."""
    cols = (np.arange(x, x + w) // 4 % 256).astype(np.uint8)
    rows = (np.arange(y, y + h) // 4 % 256).astype(np.uint8)
    image = np.empty((h, w, 3), np.uint8)
    image[..., 0] = cols[None, :]
    image[..., 1] = rows[:, None]
    image[..., 2] = 128
    return image


def test_opens_as_aperio_with_resolution_and_pyramid(tmp_path):
    path = write_aperio_slide(tmp_path / "s.svs", (1100, 900), gradient_region, mpp=0.25, app_mag=40)
    with openslide.OpenSlide(path) as slide:
        assert slide.properties["openslide.vendor"] == "aperio"
        assert float(slide.properties["openslide.mpp-x"]) == pytest.approx(0.25)
        assert float(slide.properties["openslide.objective-power"]) == 40
        assert slide.level_count == 3
        assert slide.level_dimensions == ((1100, 900), (275, 225), (68, 56))
        assert slide.level_downsamples[1] == pytest.approx(4.0)
        assert slide.level_downsamples[2] == pytest.approx(16.0, rel=0.02)
        pixels = np.asarray(slide.read_region((300, 200), 0, (200, 100)).convert("RGB")).astype(int)
        assert np.abs(pixels - gradient_region(300, 200, 200, 100)).mean() < 2
        # level 1 pixel (10, 20) is the mean of the 4x4 level-0 block at (40, 80)
        level1 = np.asarray(slide.read_region((40, 80), 1, (1, 1)).convert("RGB"))[0, 0].astype(int)
        expected = gradient_region(40, 80, 4, 4).reshape(-1, 3).mean(axis=0)
        assert np.abs(level1 - expected).max() <= 3


def test_twenty_x_variant_and_array_input(tmp_path):
    image = np.full((512, 768, 3), 230, np.uint8)
    path = write_aperio_slide(tmp_path / "s20.svs", (768, 512), image, mpp=0.5, app_mag=20, downsamples=(1, 4))
    with openslide.OpenSlide(path) as slide:
        assert float(slide.properties["openslide.mpp-x"]) == pytest.approx(0.5)
        assert float(slide.properties["openslide.objective-power"]) == 20
        assert slide.level_count == 2


def test_without_resolution_metadata(tmp_path):
    path = write_aperio_slide(tmp_path / "bare.svs", (300, 300), gradient_region, mpp=None, app_mag=None)
    with openslide.OpenSlide(path) as slide:
        assert slide.properties["openslide.vendor"] == "aperio"
        assert "openslide.mpp-x" not in slide.properties
        assert "openslide.objective-power" not in slide.properties


def test_failed_write_leaves_nothing(tmp_path):
    def broken(x: int, y: int, w: int, h: int) -> np.ndarray:
        if y > 0:
            raise RuntimeError("scanner died")
        return gradient_region(x, y, w, h)

    with pytest.raises(RuntimeError, match="scanner died"):
        write_aperio_slide(tmp_path / "broken.svs", (300, 600), broken)
    assert list(tmp_path.iterdir()) == []


def test_rejects_bad_downsamples(tmp_path):
    with pytest.raises(ValueError, match="downsamples"):
        write_aperio_slide(tmp_path / "x.svs", (64, 64), gradient_region, downsamples=(2, 4))
