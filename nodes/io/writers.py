"""Writing what the output nodes show: PNG images and WAV audio, into the output folder under the next free
``<prefix>_NNNNN_`` name (claimed through ``engine.files.output_names``, so processes sharing the folder never
collide), or into the temp folder under a fresh name for previews. Entries are ComfyUI's UI form
``{"filename", "subfolder", "type"}``. Blocking: call from a worker thread."""

from __future__ import annotations

import io
import uuid
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from engine.files.atomic import write_with
from engine.files.folders import UnsafePath, folders
from engine.files.output_names import OutputNameError, claim_output
from engine.graph.node import NodeInputError
from nodes.io.convert import Clip


def png_bytes(image: np.ndarray, text: dict[str, str] | None = None, compress_level: int = 4) -> bytes:
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    for key, value in (text or {}).items():
        info.add_text(key, value)
    buffer = io.BytesIO()
    Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(
        buffer, format="PNG", pnginfo=info, compress_level=compress_level)
    return buffer.getvalue()


def wav_writer(clip: Clip) -> Callable[[BinaryIO], None]:
    pcm = (np.clip(clip.samples, -1.0, 1.0) * 32767.0).round().astype("<i2")

    def fill(f: BinaryIO) -> None:
        with wave.open(f, "wb") as out:
            out.setnchannels(pcm.shape[0])
            out.setsampwidth(2)
            out.setframerate(clip.sample_rate)
            out.writeframes(np.ascontiguousarray(pcm.T).tobytes())
    return fill


def _directory(kind: str, prefix: str) -> tuple[Path, str, str]:
    prefix = prefix.strip().replace("\\", "/") or "ComfyUI"
    subfolder, _, base = prefix.rpartition("/")
    if not base:
        raise NodeInputError("filename_prefix", f"{prefix!r} names a folder but no file name")
    try:
        directory = folders.resolve(kind, f"{base}_00001_.png", subfolder).parent
    except UnsafePath as exc:
        raise NodeInputError("filename_prefix", f"{exc}: use a plain name such as 'ComfyUI' or 'portraits/me'") \
            from None
    directory.mkdir(parents=True, exist_ok=True)
    return directory, base, subfolder


def save_output(prefix: str, extension: str, fill: Callable[[BinaryIO], None], key: str) -> dict[str, Any]:
    """Write into the output folder as the next ``<prefix>_NNNNN_.<extension>``; returns the UI entry."""
    directory, base, subfolder = _directory("output", prefix)
    try:
        with claim_output(directory, base, extension, key=key, keepalive=False) as claim:
            with open(claim.temp, "wb") as f:
                fill(f)
            path = claim.publish()
    except OutputNameError as exc:
        raise NodeInputError("filename_prefix", str(exc)) from None
    return {"filename": path.name, "subfolder": subfolder, "type": "output"}


def save_temp(extension: str, fill: Callable[[BinaryIO], None]) -> dict[str, Any]:
    """Write a preview into the temp folder under a fresh name; returns the UI entry."""
    directory = folders.get("temp")
    directory.mkdir(parents=True, exist_ok=True)
    name = f"preview_{uuid.uuid4().hex[:12]}.{extension}"
    write_with(directory / name, fill, overwrite=False)
    return {"filename": name, "subfolder": "", "type": "temp"}
