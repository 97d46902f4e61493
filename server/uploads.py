"""Uploaded media: checked by content (not by name or client-declared type) and stored content-addressed.

An upload is accepted when Pillow can read it as an image, libsndfile as audio, or FFmpeg (PyAV) finds an
audio or video stream in one of the container formats we play. It is stored as
``<cleaned stem>-<sha256 prefix><extension of the detected format>``, so the same bytes always get the
same name, different bytes never overwrite each other, and the extension matches the content.
"""

from __future__ import annotations

import hashlib
import io
import re
from dataclasses import dataclass
from pathlib import Path

from engine.files import atomic
from engine.files.folders import folders

IMAGE_FORMATS = {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp", "GIF": ".gif", "BMP": ".bmp"}
SOUNDFILE_FORMATS = {"WAV": ".wav", "FLAC": ".flac", "OGG": ".ogg", "MP3": ".mp3"}
# FFmpeg demuxer names (as PyAV reports them) we accept, and the extension for each.
AV_FORMATS = {"mp3": ".mp3", "ogg": ".ogg", "wav": ".wav", "flac": ".flac", "aac": ".aac",
              "matroska,webm": ".webm", "mov,mp4,m4a,3gp,3g2,mj2": ".mp4", "avi": ".avi"}
UPLOAD_KINDS = ("input", "temp", "output")
MAX_IMAGE_PIXELS = 64_000_000  # 8000 x 8000: any phone photo; a larger image is refused before it is decoded


class UploadRejected(ValueError):
    """The upload is not media we accept; the message says why."""


@dataclass(frozen=True)
class Detected:
    kind: str  # "image" | "audio" | "video"
    extension: str


def detect(data: bytes) -> Detected:
    """What the bytes are, judged by decoding them."""
    if not data:
        raise UploadRejected("the uploaded file is empty")
    image = _as_image(data)
    if image is not None:
        return image
    audio = _as_soundfile(data)
    if audio is not None:
        return audio
    media = _as_av(data)
    if media is not None:
        return media
    raise UploadRejected("the upload is not an image (PNG, JPEG, WebP, GIF, BMP), audio (WAV, FLAC, OGG, MP3, "
                         "M4A/AAC) or video (MP4, WebM, MOV, AVI) file that can be decoded")


def _as_image(data: bytes) -> Detected | None:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            fmt = img.format
            width, height = img.size
    except Image.DecompressionBombError as exc:
        raise UploadRejected(f"the image is too large to decode safely ({exc})") from None
    except Exception:
        return None
    ext = IMAGE_FORMATS.get(fmt or "")
    if not ext:
        return None
    if width * height > MAX_IMAGE_PIXELS:
        raise UploadRejected(f"the image is {width}x{height} ({width * height / 1e6:.0f} megapixels); images are "
                             f"limited to {MAX_IMAGE_PIXELS / 1e6:.0f} megapixels: scale it down first")
    try:  # decode it all: a truncated or corrupt file is refused now, not when a workflow reads it
        with Image.open(io.BytesIO(data)) as img:
            img.load()
    except Exception as exc:
        raise UploadRejected(f"the {fmt} image cannot be decoded ({exc}); the file may be truncated or "
                             "damaged") from None
    return Detected("image", ext)


def _as_soundfile(data: bytes) -> Detected | None:
    import soundfile

    try:
        info = soundfile.info(io.BytesIO(data))
    except Exception:
        return None
    ext = SOUNDFILE_FORMATS.get(info.format)
    if ext is None or info.frames <= 0 or info.samplerate <= 0:
        return None
    if info.format == "WAV":
        _check_wav_length(data)
    decoded = 0
    try:  # the header's length must match the data: a file cut short is refused now, not when it is played
        for block in soundfile.blocks(io.BytesIO(data), blocksize=1 << 16, dtype="int16", always_2d=True):
            decoded += len(block)
    except Exception as exc:
        raise UploadRejected(f"the {info.format} audio cannot be decoded ({exc})") from None
    if decoded < info.frames * 0.99 - 1:
        raise UploadRejected(f"the {info.format} header claims {info.frames / info.samplerate:.1f} s of audio but "
                             f"only {decoded / info.samplerate:.2f} s is present: the file is truncated")
    return Detected("audio", ext)


def _check_wav_length(data: bytes) -> None:
    """Refuse a WAV whose ``data`` chunk claims more bytes than the file holds (libsndfile quietly reads what is
    there, so a file cut short, or a header made to lie, would otherwise pass)."""
    import struct

    at = 12
    while at + 8 <= len(data):
        chunk, size = data[at:at + 4], struct.unpack_from("<I", data, at + 4)[0]
        if chunk == b"data":
            present = len(data) - at - 8
            if size > present + 1:
                raise UploadRejected(f"the WAV header claims {size} bytes of audio but only {present} are present: "
                                     "the file is truncated")
            return
        at += 8 + size + (size & 1)


def _as_av(data: bytes) -> Detected | None:
    import av

    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            ext = AV_FORMATS.get(container.format.name)
            if ext is None:
                return None
            has_video = any(s.type == "video" for s in container.streams)
            has_audio = any(s.type == "audio" for s in container.streams)
            if not (has_video or has_audio):
                return None
            stream = container.streams.video[0] if has_video else container.streams.audio[0]
            frame = next(iter(container.decode(stream)), None)  # it must actually decode
            if frame is None:
                return None
    except Exception:
        return None
    if has_video:
        return Detected("video", ".mp4" if ext in (".mp4", ".aac") else ext)
    return Detected("audio", ".m4a" if ext == ".mp4" else ext)


def clean_stem(filename: str | None) -> str:
    stem = Path(filename or "").stem
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._-")[:64]
    return stem or "upload"


def content_name(data: bytes, filename: str | None, detected: Detected) -> str:
    digest = hashlib.sha256(data).hexdigest()[:16]
    return f"{clean_stem(filename)}-{digest}{detected.extension}"


@dataclass(frozen=True)
class StoredUpload:
    name: str
    subfolder: str
    type: str
    kind: str
    path: Path


def store_upload(data: bytes, filename: str | None, kind: str = "input", subfolder: str = "") -> StoredUpload:
    """Check and store one upload (blocking: call off the event loop)."""
    if kind not in UPLOAD_KINDS:
        raise UploadRejected(f"type must be one of {', '.join(UPLOAD_KINDS)}, not {kind!r}")
    detected = detect(data)
    name = content_name(data, filename, detected)
    path = folders.resolve(kind, name, subfolder)  # raises UnsafePath for a subfolder leaving the folder
    if not path.exists():  # same name means same bytes: nothing to overwrite
        # a private temporary name, then an atomic no-overwrite move: safe with other servers writing the same
        # shared input folder at the same time (engine.files.atomic)
        atomic.write_bytes(path, data, overwrite=False)
    return StoredUpload(name, subfolder, kind, detected.kind, path)
