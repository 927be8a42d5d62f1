"""Seeds derived from the one config seed and names, so every slide, trait and set draws its own stream reproducibly."""

from __future__ import annotations

import zlib


def stable_seed(seed: int, *names: str) -> list[int]:
    """Seed sequence from the config seed and names, identical across runs and machines (unlike hash())."""
    return [int(seed)] + [zlib.crc32(name.encode()) for name in names]
