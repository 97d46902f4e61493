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

from engine.folders import folders

IMAGE_FORMATS = {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp", "GIF": ".gif", "BMP": ".bmp"}
SOUNDFILE_FORMATS = {"WAV": ".wav", "FLAC": ".flac", "OGG": ".ogg", "MP3": ".mp3"}
# FFmpeg demuxer names (as PyAV reports them) we accept, and the extension for each.
AV_FORMATS = {"mp3": ".mp3", "ogg": ".ogg", "wav": ".wav", "flac": ".flac", "aac": ".aac",
              "matroska,webm": ".webm", "mov,mp4,m4a,3gp,3g2,mj2": ".mp4", "avi": ".avi"}
UPLOAD_KINDS = ("input", "temp", "output")


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
            img.verify()
    except Image.DecompressionBombError as exc:
        raise UploadRejected(f"the image is too large to decode safely ({exc})") from None
    except Exception:
        return None
    ext = IMAGE_FORMATS.get(fmt or "")
    return Detected("image", ext) if ext else None


def _as_soundfile(data: bytes) -> Detected | None:
    import soundfile

    try:
        info = soundfile.info(io.BytesIO(data))
    except Exception:
        return None
    ext = SOUNDFILE_FORMATS.get(info.format)
    if ext is None or info.frames <= 0 or info.samplerate <= 0:
        return None
    return Detected("audio", ext)


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
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():  # same name means same bytes: nothing to overwrite
        tmp = path.with_name(f".{path.name}.part")
        tmp.write_bytes(data)
        tmp.replace(path)
    return StoredUpload(name, subfolder, kind, detected.kind, path)
