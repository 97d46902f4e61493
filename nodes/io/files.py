"""Files of the input folder for the loaders: choices, safe resolution, and a sha256 fingerprint memoised per
path, size and modification time, so the cache notices a file replaced under the same name."""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from engine.files.folders import AUDIO_EXTENSIONS, IMAGE_EXTENSIONS, UnsafePath, folders
from engine.graph.node import NodeInputError



def input_images() -> list[str]:
    return folders.files("input", IMAGE_EXTENSIONS)


def input_audio() -> list[str]:
    return folders.files("input", AUDIO_EXTENSIONS)


@functools.lru_cache(maxsize=256)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    """sha256 of a file, memoised by (path, size, mtime) so unchanged files are hashed once."""
    st = path.stat()
    return _sha256(str(path), st.st_size, st.st_mtime_ns)


def input_file(input_name: str, name: Any) -> Path:
    if not isinstance(name, str) or not name:
        raise NodeInputError(input_name, "choose a file from the input folder (or upload one)")
    try:
        path = folders.resolve("input", name)
    except UnsafePath as exc:
        raise NodeInputError(input_name, str(exc)) from None
    if not path.is_file():
        raise NodeInputError(input_name, f"{name!r} is not in the input folder {folders.get('input')}; "
                                         "upload it or pick another file")
    return path


def file_fingerprint(input_name: str, inputs: dict[str, Any]) -> str | None:
    try:
        return file_sha256(input_file(input_name, inputs.get(input_name)))
    except (NodeInputError, OSError):
        return None  # validation reports the missing file


def load_image_file(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB, via the avatar preprocessing's loader (EXIF orientation, grayscale/CMYK/alpha)."""
    from nodes.face.prepare import load_photo

    return load_photo(path)
