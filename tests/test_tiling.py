"""The tiler: physical-size grid, tissue/pen/blur selection, fast path = OpenSlide path, failures as QC rows."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from workflow_scripts.demo.slidewriter import SyntheticHE, write_aperio_slide
from workflow_scripts.slides import tissue
from workflow_scripts.slides.qc_table import QC_COLUMNS, read_qc_table, summarise_qc, write_qc_row
from workflow_scripts.slides.qc_thumbnail import qc_image
from workflow_scripts.slides.tiffreader import TiffLevelReader, decode_scale
from workflow_scripts.slides.tilepixels import resize_tile
from workflow_scripts.slides.tilestore import TileStore
from workflow_scripts.slides.tiling import TilingConfig, plan_grid, tile_slide

CELL_UM = 32.0  # tile_px 64 at 0.5 um/px
TILE_PX = 64
GRID = (8, 6)
TISSUE = (
    (1 * CELL_UM, 1 * CELL_UM, 5 * CELL_UM, 4 * CELL_UM),  # cells cols 1-4, rows 1-3
    (6.25 * CELL_UM, 1 * CELL_UM, 7 * CELL_UM, 2 * CELL_UM),  # 75% of cell (6, 1): kept
    (6.75 * CELL_UM, 3 * CELL_UM, 7 * CELL_UM, 4 * CELL_UM),  # 25% of cell (6, 3): background
)
BLURRED = ((3 * CELL_UM, 1 * CELL_UM, 5 * CELL_UM, 2 * CELL_UM),)  # cells (3, 1), (4, 1)
PEN = (
    ((2 * CELL_UM + 4, 1 * CELL_UM, 2 * CELL_UM + 20, 2 * CELL_UM), (30, 150, 60)),  # green stroke in (2, 1)
    ((3 * CELL_UM, 2 * CELL_UM + 10, 4 * CELL_UM, 2 * CELL_UM + 22), (30, 50, 190)),  # blue stroke in (3, 2)
    ((1 * CELL_UM + 5, 3 * CELL_UM + 5, 1 * CELL_UM + 25, 3 * CELL_UM + 25), (25, 25, 30)),  # black dot in (1, 3)
)
TISSUE_CELLS = {(col, row) for col in range(1, 5) for row in range(1, 4)} | {(6, 1)}
CONFIG = TilingConfig(tile_px=TILE_PX, target_mpp=0.5, max_background=0.5, pen_max_fraction=1.0, blur_max_fraction=1.0)


def make_slide(folder, name, mpp, app_mag, blurred=(), pen=()):
    """A generated Aperio slide of the test tissue at the given scan resolution."""
    size = (int(GRID[0] * CELL_UM / mpp), int(GRID[1] * CELL_UM / mpp))
    pattern = SyntheticHE(mpp, TISSUE, tuple(blurred), tuple(pen))
    return write_aperio_slide(folder / f"{name}.svs", size, pattern, mpp=mpp, app_mag=app_mag, downsamples=(1, 4, 16))


@pytest.fixture(scope="module")
def slide_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("slides")
    make_slide(folder, "clean40", 0.25, 40)
    make_slide(folder, "clean20", 0.5, 20)
    make_slide(folder, "marked40", 0.25, 40, blurred=BLURRED, pen=PEN)
    return folder


def kept_cells(store_path):
    with TileStore(store_path) as store:
        return {tuple(cell) for cell in store.grid.tolist()}


def test_grid_geometry():
    grid = plan_grid(40000, 30000, 0.25, 512, 0.5)
    assert (grid.span, grid.n_cols, grid.n_rows, grid.size) == (1024.0, 39, 29, 1024)
    assert grid.origin(3, 2) == (3072, 2048)
    cmu = plan_grid(2220, 2967, 0.499, 512, 0.5)
    assert cmu.span == pytest.approx(513.026, abs=1e-3) and (cmu.n_cols, cmu.n_rows) == (4, 5)
    assert cmu.origin(3, 1) == (1539, 513)


def test_resize_tile_box_average_and_lanczos():
    region = np.zeros((4, 4, 3), np.uint8)
    region[:2, :2] = 100  # top-left 2x2 block averages to 100, the others to 0
    region[2:, 2:] = [[[10], [30]], [[50], [70]]]  # bottom-right block averages to 40
    assert resize_tile(region, 2)[..., 0].tolist() == [[100, 0], [0, 40]]
    smooth = np.tile(np.linspace(0, 255, 513, dtype=np.float32)[None, :, None], (513, 1, 3)).astype(np.uint8)
    resized = resize_tile(smooth, 512)
    assert resized.shape == (512, 512, 3)
    assert np.abs(resized[0, :, 0].astype(int) - np.linspace(0, 255, 512)).max() <= 2


def test_forty_and_twenty_x_give_the_same_tiles(slide_folder, tmp_path):
    qc40 = tile_slide(slide_folder / "clean40.svs", tmp_path / "a.h5", "clean40", "P1", CONFIG, threads=2)
    qc20 = tile_slide(slide_folder / "clean20.svs", tmp_path / "b.h5", "clean20", "P1", CONFIG, threads=2)
    assert qc40.status == qc20.status == "pass"
    assert kept_cells(tmp_path / "a.h5") == kept_cells(tmp_path / "b.h5") == TISSUE_CELLS
    with TileStore(tmp_path / "a.h5") as a, TileStore(tmp_path / "b.h5") as b:
        assert a.grid_shape == b.grid_shape == GRID
        assert a.attrs["level0_tile_px"] == 128.0 and b.attrs["level0_tile_px"] == 64.0
        np.testing.assert_array_equal(a.coords, 2 * b.coords)
        assert a.tile_px == b.tile_px == TILE_PX
        # the same tissue in microns: pixels agree up to JPEG and resampling error
        assert np.abs(a.read_tiles(range(a.n_tiles)).astype(int) - b.read_tiles(range(b.n_tiles))).mean() < 6
        assert np.all(a.tissue_fraction >= 0.5)
    assert qc40.tissue_fraction == pytest.approx(qc20.tissue_fraction, abs=0.01)


def test_pen_and_blur_tiles_are_dropped(slide_folder, tmp_path):
    qc = tile_slide(slide_folder / "marked40.svs", tmp_path / "m.h5", "marked40", "P1", CONFIG, threads=2)
    inked = {(2, 1), (3, 2), (1, 3)}
    blurred = {(3, 1), (4, 1)}
    assert qc.status == "pass"
    assert kept_cells(tmp_path / "m.h5") == TISSUE_CELLS - inked - blurred
    assert qc.pen_fraction == pytest.approx(3 / 13)
    assert qc.blur_fraction == pytest.approx(2 / 10)
    strict = TilingConfig(tile_px=TILE_PX, pen_max_fraction=0.1, blur_max_fraction=1.0)
    failed = tile_slide(slide_folder / "marked40.svs", tmp_path / "f.h5", "marked40", "P1", strict, threads=1)
    assert failed.status == "fail" and failed.reason.startswith("pen ink on 23% of tissue tiles")
    with TileStore(tmp_path / "f.h5") as store:
        assert store.n_tiles == 0 and store.grid_shape == GRID


def read_all(path):
    with TileStore(path) as store:
        return store.coords, store.encoding, store.read_tiles(range(store.n_tiles)).astype(int)


@pytest.mark.parametrize("encoding", ["jpeg", "raw"])
def test_fast_path_matches_openslide(slide_folder, tmp_path, encoding):
    configs = {
        "slow": TilingConfig(tile_px=TILE_PX, encoding=encoding, fast_path=False),
        "full": TilingConfig(tile_px=TILE_PX, encoding=encoding, scaled_decode=False),
        "scaled": TilingConfig(tile_px=TILE_PX, encoding=encoding),  # 128 level-0 px per 64 px tile: 1/2-size decode
    }
    for name, config in configs.items():
        tile_slide(slide_folder / "clean40.svs", tmp_path / f"{name}.h5", "clean40", "P1", config, threads=2)
    slow_coords, _, slow = read_all(tmp_path / "slow.h5")
    full_coords, full_encoding, full = read_all(tmp_path / "full.h5")
    scaled_coords, _, scaled = read_all(tmp_path / "scaled.h5")
    np.testing.assert_array_equal(full_coords, slow_coords)
    np.testing.assert_array_equal(scaled_coords, slow_coords)
    assert full_encoding == encoding
    # the same pixels and the same box filter: equal up to JPEG re-encoding
    difference = np.abs(full - slow)
    assert difference.mean() < 0.5 and difference.max() <= 8
    # scaled IDCT (lowest 4x4 of each 8x8 block's DCT coefficients) vs a 2x2 box average: two proper 2x low-pass
    # filters of the same source, differing only near the output's Nyquist frequency (nucleus edges), so small
    # and unbiased on average, larger on a few edge pixels (measured, raw: mean 0.65, 99th percentile 6, max 21;
    # stored as JPEG the two re-encodings add their own error: mean 1.03)
    signed = scaled - slow
    assert np.abs(signed).mean() < 1.5 and abs(signed.mean()) < 0.25
    assert np.percentile(np.abs(signed), 99) <= 8 and np.abs(signed).max() <= 32


def test_decode_scale_only_for_exact_powers_of_two(slide_folder):
    assert [decode_scale(cell, 64) for cell in (128.0, 256.0, 512.0, 64.0, 96.0, 128.5, 1024.0)] == [
        2,
        4,
        8,
        1,
        1,
        1,
        1,
    ]
    with (
        TiffLevelReader(slide_folder / "clean40.svs", (1024, 768), scale=2) as half,
        TiffLevelReader(slide_folder / "clean40.svs", (1024, 768)) as full,
    ):
        assert (half.width, half.height, half.tile_w, half.tile_h) == (512, 384, 128, 128)
        small, large = half.decode((1, 0)).astype(int), full.decode((1, 0))
        boxed = large.reshape(128, 2, 128, 2, 3).mean(axis=(1, 3))
        assert small.shape == (128, 128, 3) and np.abs(small - boxed).mean() < 1.5


def test_real_cmu_slide(shared_data, tmp_path):
    config = TilingConfig(tile_px=512, target_mpp=0.5)
    qc = tile_slide(
        shared_data / "slides" / "CMU-1-Small-Region.svs",
        tmp_path / "cmu.h5",
        "CMU-1-Small-Region",
        "P",
        config,
        threads=2,
    )
    assert qc.status == "pass" and (qc.mpp, qc.objective_power, qc.width, qc.height) == (0.499, 20.0, 2220, 2967)
    with TileStore(tmp_path / "cmu.h5") as store:
        assert store.grid_shape == (4, 5)
        assert store.n_tiles >= 4
        assert (0, 0) not in {tuple(cell) for cell in store.grid.tolist()}  # the top-left corner is glass
        tiles = store.read_tiles(range(store.n_tiles))
    for tile in tiles:
        assert tissue.tissue_mask(np.asarray(tile[::8, ::8])).mean() >= 0.4


@pytest.mark.parametrize("tile_px", [96, 128, 256, 512])
def test_clean_he_slide_has_no_ink_at_any_tile_size(shared_data, tmp_path, tile_px):
    # CMU-1 has no marker ink; at 96 px tiles the mask is ~1.5 um/px, where clumps of dark nuclei are as dark
    # as black ink: ink is judged at a fixed physical scale, so the pen QC must not depend on tile_px
    config = TilingConfig(tile_px=tile_px, target_mpp=0.5)
    qc = tile_slide(
        shared_data / "slides" / "CMU-1-Small-Region.svs", tmp_path / "cmu.h5", "CMU-1-Small-Region", "P", config
    )
    assert qc.status == "pass", qc.reason
    assert qc.pen_fraction <= 0.02
    assert qc.pen.mean() <= 0.002


def test_unreadable_slide_is_a_fail_row(shared_data, tmp_path):
    qc = tile_slide(shared_data / "slides" / "unreadable.svs", tmp_path / "u.h5", "unreadable", "P", CONFIG)
    assert qc.status == "fail" and "OpenSlideError" in qc.reason
    with TileStore(tmp_path / "u.h5") as store:
        assert store.n_tiles == 0
    qc_image(qc).save(tmp_path / "u.png")
    assert (tmp_path / "u.png").stat().st_size > 0


def test_no_resolution_needs_default_mpp(shared_data, tmp_path):
    boxes = shared_data / "slides" / "boxes.tiff"
    qc = tile_slide(boxes, tmp_path / "b.h5", "boxes", "P", TilingConfig(tile_px=32))
    assert qc.status == "fail" and "no resolution metadata" in qc.reason
    # the blue and green boxes are pen-ink colours, so allow ink to keep the red box's tiles
    config = TilingConfig(tile_px=32, default_mpp=0.25, pen_max_fraction=1.0)
    qc = tile_slide(boxes, tmp_path / "b.h5", "boxes", "P", config)
    assert qc.status == "pass" and qc.mpp == 0.25 and qc.n_tiles >= 1
    with TileStore(tmp_path / "b.h5") as store:
        assert store.grid_shape == (4, 3)
        red = store.read_tiles(range(store.n_tiles)).reshape(-1, 3)
        assert np.median(red[:, 0]) > 200 and np.median(red[:, 2]) < 60


def test_corrupt_tile_data_gives_fail_row_and_empty_store(tmp_path):
    path = make_slide(tmp_path, "corrupt", 0.25, 40)
    import tifffile

    with tifffile.TiffFile(path) as tiff:
        page = tiff.pages[0]
        tiles_across = -(-page.imagewidth // page.tilewidth)
        index = 1 * tiles_across + 2  # level-0 x 512-768, y 256-512: tissue cells (4, 2) and (4, 3)
        offset, count = page.dataoffsets[index], page.databytecounts[index]
    with open(path, "r+b") as handle:
        handle.seek(offset)
        handle.write(b"\xff\xd8\xff\xdb\x00\x02" + b"\x00" * (count - 6))
    qc = tile_slide(path, tmp_path / "c.h5", "corrupt", "P", CONFIG, threads=2)
    assert qc.status == "fail" and qc.n_tiles == 0
    with TileStore(tmp_path / "c.h5") as store:
        assert store.n_tiles == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.h5", "corrupt.svs"]


class KillOnProgress(logging.Handler):
    """Raises KeyboardInterrupt (what a SIGINT to the job does) when the first progress line is logged."""

    def emit(self, record: logging.LogRecord) -> None:
        if "tiles/s" in record.getMessage():
            raise KeyboardInterrupt("job killed")


def test_killed_job_leaves_no_store(slide_folder, tmp_path):
    log = logging.getLogger("test_tiling.killed")
    log.addHandler(KillOnProgress())
    log.propagate = False
    log.setLevel(logging.INFO)
    config = TilingConfig(tile_px=TILE_PX)
    with pytest.raises(KeyboardInterrupt):
        tile_slide(slide_folder / "clean40.svs", tmp_path / "k.h5", "clean40", "P", config, threads=1, log=log)
    assert list(tmp_path.iterdir()) == []


def test_qc_rows_and_summary(slide_folder, tmp_path):
    rows = []
    for slide_id in ("clean40", "clean20"):
        qc = tile_slide(slide_folder / f"{slide_id}.svs", tmp_path / f"{slide_id}.h5", slide_id, "P1", CONFIG)
        rows.append(write_qc_row(tmp_path / f"{slide_id}.tsv", qc.row()))
    single = read_qc_table(rows[0])
    assert list(single.columns) == list(QC_COLUMNS) and len(single) == 1
    assert single.loc[0, "n_tiles"] == len(TISSUE_CELLS) and single.loc[0, "objective_power"] == 40
    table = summarise_qc(rows, ["clean40.svs"], tmp_path / "slides.tsv")
    assert table["slide_id"].tolist() == ["clean20", "clean40"]
    assert table["status"].tolist() == ["pass", "fail"]
    assert table["reason"].tolist()[1] == "excluded by config"
    written = read_qc_table(tmp_path / "slides.tsv")
    assert list(written.columns) == list(QC_COLUMNS) and written["slide_id"].tolist() == ["clean20", "clean40"]
    with pytest.raises(ValueError, match="more than one QC row"):
        summarise_qc([rows[0], rows[0]], [], tmp_path / "dup.tsv")


def test_config_from_params_ignores_other_keys_and_rejects_bad_values():
    params = {
        "tile_px": 256,
        "target_mpp": 0.5,
        "default_mpp": None,
        "blur_threshold": None,
        "exclude": ["x.svs"],
        "encoding": "raw",
    }
    config = TilingConfig.from_params(params)
    assert (config.tile_px, config.encoding, config.default_mpp, config.blur_threshold) == (256, "raw", None, 100.0)
    with pytest.raises(ValueError, match="tiling.encoding"):
        TilingConfig.from_params({"encoding": "png"})
    with pytest.raises(ValueError, match="max_background"):
        TilingConfig(max_background=1.5)
