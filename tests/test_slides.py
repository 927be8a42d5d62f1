"""Slide opening and resolution: recorded MPP, else objective power, else configured default, else a named error."""

from __future__ import annotations

import numpy as np
import pytest

from workflow_scripts.demo.slidewriter import write_aperio_slide
from workflow_scripts.slides import reading as slides

FLAT = np.full((64, 64, 3), 200, np.uint8)


def test_mpp_from_metadata(tmp_path):
    path = write_aperio_slide(tmp_path / "a.svs", (64, 64), FLAT, mpp=0.2521, app_mag=40, downsamples=(1,))
    with slides.open_slide(path) as slide:
        resolution = slides.slide_resolution(slide)
    assert resolution == slides.Resolution(0.2521, 40.0, "mpp")


@pytest.mark.parametrize(("power", "expected"), [(40, 0.25), (20, 0.5), (10, 1.0)])
def test_mpp_from_objective_power(tmp_path, power, expected):
    path = write_aperio_slide(tmp_path / "p.svs", (64, 64), FLAT, mpp=None, app_mag=power, downsamples=(1,))
    with slides.open_slide(path) as slide:
        resolution = slides.slide_resolution(slide)
    assert resolution.mpp == pytest.approx(expected) and resolution.source == "objective-power"


def test_default_then_named_error(tmp_path):
    path = write_aperio_slide(tmp_path / "bare.svs", (64, 64), FLAT, mpp=None, app_mag=None, downsamples=(1,))
    with slides.open_slide(path) as slide:
        assert slides.slide_resolution(slide, default_mpp=0.5).source == "default"
        with pytest.raises(slides.SlideError, match="bare: no resolution metadata"):
            slides.slide_resolution(slide, None, "bare")


def test_placeholder_72_dpi_counts_as_missing(shared_data):
    with slides.open_slide(shared_data / "slides" / "boxes.tiff") as slide:
        assert float(slide.properties["openslide.mpp-x"]) == pytest.approx(352.78, abs=0.01)
        with pytest.raises(slides.SlideError, match="no resolution metadata"):
            slides.slide_resolution(slide, None, "boxes")


def test_real_slide_resolution(shared_data):
    with slides.open_slide(shared_data / "slides" / "CMU-1-Small-Region.svs") as slide:
        assert slides.slide_resolution(slide) == slides.Resolution(0.499, 20.0, "mpp")


def test_open_errors_name_the_file(tmp_path):
    with pytest.raises(slides.SlideError, match="missing.svs does not exist"):
        slides.open_slide(tmp_path / "missing.svs")
    (tmp_path / "text.svs").write_text("not a slide")
    with pytest.raises(slides.SlideError, match="text.svs"):
        slides.open_slide(tmp_path / "text.svs")


def test_level_for_downsample():
    downsamples = (1.0, 4.0, 16.0, 32.0)
    assert slides.level_for_downsample(downsamples, 2.0) == 0
    assert slides.level_for_downsample(downsamples, 4.0) == 1
    assert slides.level_for_downsample(downsamples, 31.9) == 2
    assert slides.level_for_downsample(downsamples, 100.0) == 3
    assert slides.level_for_downsample(downsamples, 0.5) == 0
    assert slides.level_for_downsample((1.0, 4.0003), 4.0) == 1  # rounding of level sizes tolerated
