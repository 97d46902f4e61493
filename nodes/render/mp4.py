"""An MP4 writer (H.264 + AAC, faststart) that encodes frames as they arrive, with audio kept in step.

Video frames are resized to the output size when needed and encoded as yuv420p H.264; audio (float32 mono at
any rate) is resampled to ``AUDIO_RATE`` and encoded as AAC. ``finish`` evens out the two tracks: the video is
extended with its last frame until it covers the audio, and the audio is padded with silence to the video's
length, so both last ``frames / fps`` seconds (within one frame of the audio given).

The file is written as ``<name>.part`` and renamed when complete, so the output folder never lists a broken MP4;
with ``in_place`` it is written at ``path`` itself and left there (``VideoOut`` writes a claimed private temporary
file and publishes it through ``engine.files.output_names``).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

AUDIO_RATE = 48000  # AAC at 48 kHz: 1024-sample packets are 21 ms, so padding stays well under a frame
AUDIO_BITRATE = 128_000
DEFAULT_CRF = 20


@dataclass(frozen=True)
class Mp4Summary:
    path: Path
    frames: int
    fps: int
    width: int
    height: int
    audio_seconds: float  # audio given (before the final padding)
    duration: float  # frames / fps: both tracks last this long
    padded_frames: int  # copies of the last frame appended to cover the audio
    has_audio: bool  # whether any real audio was given (otherwise the AAC track is silence)


class Mp4Writer:
    """Streaming MP4 writer; call ``write`` per frame, ``add_audio`` for sound, then ``finish`` (or ``abort``)."""

    def __init__(self, path: Path, width: int = 512, height: int = 512, fps: int = 25, crf: int = DEFAULT_CRF,
                 in_place: bool = False):
        import av

        if width % 2 or height % 2:
            raise ValueError(f"H.264 (yuv420p) needs an even width and height, got {width}x{height}")
        self.path = Path(path)
        self.part = self.path if in_place else self.path.with_name(self.path.name + ".part")
        self.width, self.height, self.fps = width, height, int(fps)
        self._container = av.open(str(self.part), mode="w", format="mp4", options={"movflags": "+faststart"})
        try:
            self._video = self._container.add_stream("libx264", rate=self.fps)
            self._video.width, self._video.height = width, height
            self._video.pix_fmt = "yuv420p"
            self._video.time_base = Fraction(1, self.fps)
            self._video.options = {"crf": str(crf), "preset": "veryfast"}
            self._audio = self._container.add_stream("aac", rate=AUDIO_RATE)
            self._audio.layout = "mono"
            self._audio.bit_rate = AUDIO_BITRATE
            self._audio.time_base = Fraction(1, AUDIO_RATE)
        except BaseException:
            self._container.close()
            self.part.unlink(missing_ok=True)
            raise
        self._resamplers: dict[int, object] = {}
        self.frames = 0
        self.audio_samples_in = 0.0  # seconds of audio given, counted at their own rate
        self._audio_out = 0  # samples at AUDIO_RATE sent to the encoder
        self._has_audio = False
        self._last: np.ndarray | None = None

    # video ----------------------------------------------------------------------------------------------------
    def _fit(self, image: np.ndarray) -> np.ndarray:
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"frames must be (H, W, 3) uint8 RGB, got {image.shape} {image.dtype}")
        if image.shape[0] == self.height and image.shape[1] == self.width:
            return np.ascontiguousarray(image)
        import cv2

        shrink = image.shape[1] > self.width or image.shape[0] > self.height
        return cv2.resize(image, (self.width, self.height),
                          interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)

    def write(self, image: np.ndarray) -> None:
        """Encode one video frame (resized to the output size when it differs)."""
        import av

        image = self._fit(image)
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts = self.frames
        frame.time_base = Fraction(1, self.fps)
        self._container.mux(self._video.encode(frame))
        self.frames += 1
        self._last = image

    # audio ----------------------------------------------------------------------------------------------------
    def add_audio(self, samples: np.ndarray, sample_rate: int, silent: bool = False) -> None:
        """Encode float32 mono samples at ``sample_rate`` (any rate; resampled to 48 kHz)."""
        import av

        samples = np.asarray(samples, np.float32).reshape(-1)
        if samples.size == 0:
            return
        if not silent:
            self._has_audio = True
        self.audio_samples_in += samples.size / sample_rate
        resampler = self._resamplers.get(sample_rate)
        if resampler is None:
            resampler = av.AudioResampler(format="fltp", layout="mono", rate=AUDIO_RATE)
            self._resamplers[sample_rate] = resampler
        frame = av.AudioFrame.from_ndarray(np.clip(samples, -1.0, 1.0)[None, :], format="flt", layout="mono")
        frame.sample_rate = sample_rate
        for out in resampler.resample(frame):
            self._encode_audio(out)

    def _encode_audio(self, frame) -> None:
        frame.pts = self._audio_out
        frame.time_base = Fraction(1, AUDIO_RATE)
        self._audio_out += frame.samples
        self._container.mux(self._audio.encode(frame))

    def _flush_resamplers(self) -> None:
        for resampler in self._resamplers.values():
            for out in resampler.resample(None):
                self._encode_audio(out)
        self._resamplers.clear()

    # end --------------------------------------------------------------------------------------------------------
    def finish(self) -> Mp4Summary:
        """Even out the tracks, flush the encoders, write the index at the front and move the file in place."""
        import av

        if self.frames == 0:
            self.abort()
            raise ValueError("no frames were written")
        self._flush_resamplers()
        audio_seconds = self.audio_samples_in
        padded = 0
        needed = math.ceil(round(self._audio_out / AUDIO_RATE * self.fps, 6))
        while self.frames < needed:  # the audio runs past the video: hold the last frame
            self.write(self._last)
            padded += 1
        target = round(self.frames * AUDIO_RATE / self.fps)
        if target > self._audio_out:
            silence = np.zeros((1, target - self._audio_out), np.float32)
            frame = av.AudioFrame.from_ndarray(silence, format="fltp", layout="mono")
            frame.sample_rate = AUDIO_RATE
            self._encode_audio(frame)
        self._container.mux(self._video.encode(None))
        self._container.mux(self._audio.encode(None))
        self._container.close()
        if self.part != self.path:
            self.part.replace(self.path)
        return Mp4Summary(self.path, self.frames, self.fps, self.width, self.height, audio_seconds,
                          self.frames / self.fps, padded, self._has_audio)

    def abort(self) -> None:
        """Close without finishing and remove the partial file."""
        try:
            self._container.close()
        except Exception:  # noqa: BLE001 - the container may already be broken; the file goes either way
            log.debug("closing an aborted MP4 failed", exc_info=True)
        self.part.unlink(missing_ok=True)
