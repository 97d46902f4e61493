"""Whole-file writes into folders other processes and hosts read and write at the same time.

The content goes to a private temporary name in the same folder (``.<name>.<token>.part``: unique per call, so
two writers never share one), then moves in with one atomic step: a rename (``overwrite=True``), or a hard link
that fails when the name exists (``overwrite=False``: the first writer wins and nothing is replaced). A reader
never sees a half-written file; a writer killed midway leaves only its hidden ``.part``, which
``engine.files.output_names.reap`` removes once it is ``lease`` seconds old.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from engine.files.output_names import PART_SUFFIX, publish_file

def private_temp(path: Path) -> Path:
    """A hidden temporary name beside ``path``, unique to this call."""
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}{PART_SUFFIX}")


def write_with(path: Path, fill: Callable[[BinaryIO], None], overwrite: bool = True) -> bool:
    """Write ``path`` through ``fill(file)`` into a private temporary file, then move it in atomically.

    Returns False (and leaves ``path`` as it was) when ``overwrite`` is off and ``path`` already exists.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = private_temp(path)
    try:
        with open(tmp, "wb") as f:
            fill(f)
            f.flush()
            os.fsync(f.fileno())
        return publish_file(tmp, path, overwrite)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def write_bytes(path: Path, data: bytes, overwrite: bool = True) -> bool:
    """``path.write_bytes(data)``, safe against concurrent writers and readers (see the module docstring)."""
    return write_with(path, lambda f: f.write(data), overwrite)


def copy_file(source: Path, path: Path, overwrite: bool = True) -> bool:
    """Copy ``source`` to ``path`` the same way."""
    def fill(f: BinaryIO) -> None:
        with open(source, "rb") as src:
            shutil.copyfileobj(src, f)
    return write_with(path, fill, overwrite)
