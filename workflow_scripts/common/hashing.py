"""The one MD5 helper: GDC publishes md5sums for every file, and downloads and the demo's slide table use them."""

from __future__ import annotations

import hashlib
import os

CHUNK_BYTES = 1 << 20


def md5_file(path: str | os.PathLike, chunk_bytes: int = CHUNK_BYTES) -> str:
    """Hex MD5 of a file, read in chunks so multi-GB slides never sit in memory."""
    return file_digest(path, chunk_bytes).hexdigest()


def file_digest(path: str | os.PathLike, chunk_bytes: int = CHUNK_BYTES) -> hashlib._Hash:
    """A running MD5 holding a file's bytes, to continue with the rest of a resumed download."""
    digest = new_md5()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk_bytes), b""):
            digest.update(block)
    return digest


def new_md5() -> hashlib._Hash:
    """A running MD5 for data hashed as it streams in (resumable downloads)."""
    return hashlib.md5()
