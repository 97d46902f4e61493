"""The folder registry: where inputs, outputs, temporary files and model weights live.

One process-wide instance, ``folders``, configured by ``main.py`` from ``--data-dir`` (and by tests);
nodes and the ComfyUI ``folder_paths`` shim read it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif"})
AUDIO_EXTENSIONS = frozenset({".wav", ".mp3", ".ogg", ".flac", ".m4a", ".opus"})
VIDEO_EXTENSIONS = frozenset({".mp4", ".webm", ".mov", ".mkv"})


class UnsafePath(ValueError):
    """A requested path escapes its folder (``..``, absolute, or a symlink leading out)."""


@dataclass
class FolderRegistry:
    data_dir: Path = field(default_factory=lambda: Path(os.environ.get("AVATARGRAPH_DATA_DIR",
                                                                       PROJECT_ROOT / "data")))
    models_dir: Path = field(default_factory=lambda: Path(os.environ.get("AVATARGRAPH_MODELS_DIR",
                                                                         PROJECT_ROOT / "models")))

    # Folders moved out of the data dir (``--output-dir``/``--input-dir``: a folder every cluster member can read).
    # Where an object store would plug in: outputs are written below get("output") and served from there by /view.
    moved: dict[str, Path] = field(default_factory=dict)

    def configure(self, data_dir: Path | str | None = None, models_dir: Path | str | None = None,
                  output_dir: Path | str | None = None, input_dir: Path | str | None = None) -> None:
        if data_dir is not None:
            self.data_dir = Path(data_dir).resolve()
            self.moved = {}  # a new data dir: its own folders unless moved again here
        if models_dir is not None:
            self.models_dir = Path(models_dir).resolve()
        for kind, path in (("output", output_dir), ("input", input_dir)):
            if path is not None:
                self.moved[kind] = Path(path).resolve()

    def get(self, kind: str) -> Path:
        """``input``, ``output``, ``temp`` or ``user`` below the data dir; created on first use."""
        if kind not in {"input", "output", "temp", "user"}:
            raise KeyError(f"unknown folder kind {kind!r}")
        path = self.moved.get(kind) or self.data_dir / kind
        path.mkdir(parents=True, exist_ok=True)
        return path

    def models(self, kind: str) -> Path:
        """``models/<kind>/`` (for example ``models/whisper``); not created, so absence is visible."""
        return self.models_dir / kind

    def files(self, kind: str, extensions: frozenset[str]) -> list[str]:
        """Relative paths of the files in folder ``kind`` with one of ``extensions`` (for file pickers)."""
        root = self.get(kind)
        found = [p.relative_to(root).as_posix() for p in root.rglob("*")
                 if p.is_file() and p.suffix.lower() in extensions]
        return sorted(found)

    def resolve(self, kind: str, filename: str, subfolder: str = "") -> Path:
        """Resolve a user-supplied name inside folder ``kind``, refusing anything that leaves it."""
        root = self.get(kind).resolve()
        for part in (subfolder, filename):
            if part.startswith(("/", "\\")) or os.path.isabs(part) or ".." in Path(part).parts or "\x00" in part:
                raise UnsafePath(f"{part!r} is not a plain name inside the {kind} folder")
        candidate = root / subfolder / filename
        real = candidate.resolve()
        if real != root and root not in real.parents:
            raise UnsafePath(f"{subfolder}/{filename} leaves the {kind} folder")
        return candidate


folders = FolderRegistry()
"""The process-wide folder registry."""
