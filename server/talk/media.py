"""Media for the Talk page: frames to JPEG, audio to PCM16 at 24 kHz, the chosen photo as a still picture."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from server.talk.protocol import AUDIO_RATE

JPEG_QUALITY = 80


class MediaEncoder:
    """Frames to JPEG and their audio to PCM16 at 24 kHz, resampled continuously within a turn."""

    def __init__(self) -> None:
        self._turn = -1
        self._rate = 0
        self._resampler: Any = None

    def audio(self, turn: int, samples: np.ndarray, rate: int) -> bytes:
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        if rate != AUDIO_RATE:
            import soxr

            if turn != self._turn or rate != self._rate or self._resampler is None:
                self._resampler = soxr.ResampleStream(rate, AUDIO_RATE, 1, dtype="float32", quality="HQ")
                self._turn, self._rate = turn, rate
            samples = self._resampler.resample_chunk(samples)
        pcm = np.clip(samples, -1.0, 1.0)
        return (pcm * 32767.0).astype("<i2").tobytes()

    @staticmethod
    def jpeg(image: np.ndarray) -> bytes:
        import io

        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8)).save(buf, format="JPEG", quality=JPEG_QUALITY)
        return buf.getvalue()


def still_frame(path: Path, size: int = 512) -> bytes:
    """The chosen photo, centre-cropped to a square, as the page's picture before the first reply."""
    import io

    from PIL import Image, ImageOps

    with Image.open(path) as img:
        img = ImageOps.exif_transpose(img).convert("RGB")
        img = ImageOps.fit(img, (size, size))
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=JPEG_QUALITY)
        return buf.getvalue()
