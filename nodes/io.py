"""Workflow inputs: loaders for the input folder, with ComfyUI's input names (LoadImage.image, LoadAudio.audio),
and typed text (ComfyUI's PrimitiveStringMultiline, for workflows that start from text such as say_text).

The loaders fingerprint their file by its sha256 (memoised per path, size and modification time), so the cache
notices a file replaced under the same name.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from pathlib import Path
from typing import Any

import numpy as np

from engine import types as T
from engine.folders import AUDIO_EXTENSIONS, IMAGE_EXTENSIONS, UnsafePath, folders
from engine.node import Input, Node, NodeInputError, Output

log = logging.getLogger(__name__)

AUDIO_RATE = 16000  # speech models downstream (ASR, face animation) take 16 kHz mono


def _input_images() -> list[str]:
    return folders.files("input", IMAGE_EXTENSIONS)


def _input_audio() -> list[str]:
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


def _input_file(input_name: str, name: Any) -> Path:
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


def _fingerprint(input_name: str, inputs: dict[str, Any]) -> str | None:
    try:
        return file_sha256(_input_file(input_name, inputs.get(input_name)))
    except (NodeInputError, OSError):
        return None  # validation reports the missing file


def load_image_file(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB, via the avatar preprocessing's loader (EXIF orientation, grayscale/CMYK/alpha)."""
    from nodes.face.prepare import load_photo

    return load_photo(path)


class LoadImage(Node):
    CATEGORY = "avatar/io"
    DESCRIPTION = "Load a photo (PNG/JPG/WebP...) from the input folder as RGB, upright as its EXIF says."
    INPUTS = (Input.file("image", "image", _input_images, tooltip="a file in the input folder; upload to add one"),)
    OUTPUTS = (Output("image", T.IMAGE),)

    @classmethod
    def fingerprint(cls, inputs: dict[str, Any]) -> Any:
        return _fingerprint("image", inputs)

    def run(self, ctx: Any, image: str) -> tuple[np.ndarray]:
        path = _input_file("image", image)
        try:
            return (load_image_file(path),)
        except ValueError as exc:  # PhotoError and PIL's decoding errors say what is wrong with the file
            raise NodeInputError("image", f"{image}: {exc}") from None


class LoadAudio(Node):
    CATEGORY = "avatar/io"
    DESCRIPTION = "Load speech (WAV/MP3/FLAC/OGG, any rate or layout) from the input folder as 16 kHz mono."
    INPUTS = (Input.file("audio", "audio", _input_audio, tooltip="a file in the input folder; upload to add one"),)
    OUTPUTS = (Output("audio", T.AUDIO),)

    @classmethod
    def fingerprint(cls, inputs: dict[str, Any]) -> Any:
        return _fingerprint("audio", inputs)

    def run(self, ctx: Any, audio: str) -> tuple[Any]:
        from nodes.audio_io import load_audio

        path = _input_file("audio", audio)
        try:
            loaded = load_audio(path, AUDIO_RATE)
        except ValueError as exc:
            raise NodeInputError("audio", f"{audio}: {exc}") from None
        if loaded.duration <= 0:
            raise NodeInputError("audio", f"{audio} holds no audio (0 seconds): record or pick a file with speech")
        return (loaded,)


class PrimitiveStringMultiline(Node):
    """ComfyUI's core multiline string node (same class_type and input name), here the source of TEXT."""

    CATEGORY = "avatar/io"
    DISPLAY_NAME = "Text"
    DESCRIPTION = "Typed text, e.g. what the avatar should say (feeds TTS.text)."
    INPUTS = (Input.string("value", default="", multiline=True),)
    OUTPUTS = (Output("STRING", T.STRING),)

    def run(self, ctx: Any, value: str = "") -> tuple[str]:
        return (value,)
