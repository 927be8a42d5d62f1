"""The `tiling` block of the workflow config, validated once so a bad value is not mistaken for bad slides."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any


@dataclass(frozen=True)
class TilingConfig:
    """The `tiling` block of the workflow config; pen/blur_max_fraction are slide-level QC limits."""

    tile_px: int = 512
    target_mpp: float = 0.5
    max_background: float = 0.5
    encoding: str = "jpeg"
    jpeg_quality: int = 90
    default_mpp: float | None = None
    pen_max_fraction: float = 0.3
    blur_max_fraction: float = 0.5
    blur_threshold: float = 100.0
    min_tiles: int = 1
    fast_path: bool = True
    scaled_decode: bool = True

    def __post_init__(self) -> None:
        """Reject a bad config before any slide is touched, so it is not mistaken for bad slides."""
        if self.encoding not in ("jpeg", "raw"):
            raise ValueError(f"tiling.encoding must be 'jpeg' or 'raw', got {self.encoding!r}")
        if self.tile_px < 8 or self.target_mpp <= 0:
            raise ValueError(f"tiling.tile_px must be >= 8 and target_mpp > 0, got {self.tile_px}, {self.target_mpp}")
        if not 0.0 <= self.max_background < 1.0:
            raise ValueError(f"tiling.max_background must be in [0, 1), got {self.max_background}")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"tiling.jpeg_quality must be in 1..100, got {self.jpeg_quality}")

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> TilingConfig:
        """Build from the config dict, ignoring keys meant for other steps (e.g. `exclude`) and nulls."""
        known = {f.name for f in fields(cls)}
        values = {key: value for key, value in dict(params).items() if key in known and value is not None}
        if params.get("default_mpp") is None:
            values["default_mpp"] = None
        return cls(**values)
