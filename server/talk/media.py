"""Media for the Talk page: frames to JPEG, audio to PCM16 at 24 kHz, the chosen photo as a still picture."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nodes.common.audio import StreamResampler
from server.talk.protocol import AUDIO_RATE

JPEG_QUALITY = 80


class MediaEncoder:
    """Frames to JPEG and their audio to PCM16 at 24 kHz, resampled continuously within a turn."""

    def __init__(self) -> None:
        self._turn = -1
        self._resample = StreamResampler(AUDIO_RATE)

    def audio(self, turn: int, samples: np.ndarray, rate: int) -> bytes:
        if turn != self._turn:  # a new turn starts a new stream
            self._turn, self._resample = turn, StreamResampler(AUDIO_RATE)
        samples = self._resample(samples, rate)
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
