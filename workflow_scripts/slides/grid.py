"""The tile grid: square cells of a fixed physical size laid over a slide's level-0 pixels from its top-left corner."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Grid:
    """Tile grid in level-0 pixels: cell (col,row) starts at round(col*span), round(row*span), size round(span)."""

    span: float
    n_cols: int
    n_rows: int

    @property
    def size(self) -> int:
        """Level-0 pixels read per tile."""
        return int(round(self.span))

    def origin(self, col: int, row: int) -> tuple[int, int]:
        """Level-0 top-left corner of a cell."""
        return int(round(col * self.span)), int(round(row * self.span))


def plan_grid(width: int, height: int, source_mpp: float, tile_px: int, target_mpp: float) -> Grid:
    """Whole cells of tile_px * target_mpp microns covering the slide from its top-left corner."""
    span = tile_px * target_mpp / source_mpp
    return Grid(span, int(width // span), int(height // span))
