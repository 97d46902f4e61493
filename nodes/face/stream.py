"""Audio in, frames out at a fixed frame rate, for every face backend.

``FrameClock`` cuts incoming audio chunks into per-frame slices (any sample rate; the remainder carries over to
the next chunk). A backend is fed ``FrameAudio`` items one by one and may hold some back (Wav2Lip needs 0.2 s of
audio after a frame; SadTalker renders a whole utterance); ``FramePump`` pairs the images it returns, in order,
with the audio slices, so every ``Frame`` carries exactly the samples that play with it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from nodes.io.media import Frame, PhonemeTiming

FPS = 25.0
# Live idle (``idle`` called one frame at a time while a live avatar listens): after LIVE_IDLE_FULL_RATE frames
# at the full rate (the transition out of speech stays smooth), only every 3rd frame is rendered (8 fps is plenty
# for breathing and blinks, and rendering is most of what an open, silent session costs); the animation clock
# still steps every frame, so the motion keeps its speed.
LIVE_IDLE_RENDER_EVERY = 3
LIVE_IDLE_FULL_RATE = 50  # 2 s


@dataclass(frozen=True)
class FrameAudio:
    samples: np.ndarray  # float32 mono: the audio of this frame
    sample_rate: int
    t_utt: float | None = None  # utterance time of the frame's first sample (for phoneme timings)
    timings: tuple[PhonemeTiming, ...] = ()
    emotion: str | None = None
    turn_id: int = 0


class FaceBackend(Protocol):
    name: str

    def push(self, item: FrameAudio) -> list[np.ndarray]:
        """Take one frame's audio; return the images that are ready (in order, possibly none)."""

    def flush(self) -> list[np.ndarray]:
        """The end of the audio: return every image still held back."""


class FrameClock:
    """Cuts audio into frame slices: frame k covers samples [round(k*sr/fps), round((k+1)*sr/fps))."""

    def __init__(self, fps: float = FPS) -> None:
        self.fps = fps
        self.sample_rate: int | None = None
        self._buf = np.zeros(0, np.float32)
        self._k = 0  # frames cut at the current sample rate
        self._consumed = 0  # samples consumed at the current sample rate

    def _frame_len(self) -> int:
        sr = self.sample_rate or 16000
        return round((self._k + 1) * sr / self.fps) - self._consumed

    @property
    def pending_seconds(self) -> float:
        return len(self._buf) / self.sample_rate if self.sample_rate else 0.0

    def push(self, samples: np.ndarray, sample_rate: int) -> tuple[list[np.ndarray], np.ndarray | None]:
        """Add audio; returns (complete frame slices, the leftover of the previous rate flushed as one padded
        frame when the sample rate changed, else None)."""
        flushed = None
        if self.sample_rate is not None and sample_rate != self.sample_rate:
            flushed = self.flush()
        if self.sample_rate != sample_rate:
            self.sample_rate, self._k, self._consumed = sample_rate, 0, 0
        self._buf = np.concatenate([self._buf, np.asarray(samples, np.float32).ravel()])
        out = []
        n = self._frame_len()
        while len(self._buf) >= n > 0:
            out.append(self._buf[:n])
            self._buf = self._buf[n:]
            self._k += 1
            self._consumed += n
            n = self._frame_len()
        return out, flushed

    def flush(self) -> np.ndarray | None:
        """The partial last frame, padded with silence (None when nothing is left)."""
        if len(self._buf) == 0:
            return None
        n = self._frame_len()
        out = np.concatenate([self._buf, np.zeros(max(0, n - len(self._buf)), np.float32)])
        self._buf = np.zeros(0, np.float32)
        self._k += 1
        self._consumed += n
        return out


class FramePump:
    """Feeds a backend and pairs its images with the audio slices, numbering frames from 0 at ``fps``."""

    def __init__(self, backend: FaceBackend, fps: float = FPS) -> None:
        self.backend = backend
        self.fps = fps
        self.clock = FrameClock(fps)
        self._waiting: deque[FrameAudio] = deque()
        self.index = 0
        self._turn = 0
        self._emotion: str | None = None
        self._live_ticks = 0

    def _emit(self, images: list[np.ndarray]) -> Iterator[Frame]:
        for image in images:
            item = self._waiting.popleft()
            yield Frame(image=image, index=self.index, pts=self.index / self.fps,
                        audio=item.samples, sample_rate=item.sample_rate,
                        turn_id=item.turn_id)
            self.index += 1

    def _feed(self, item: FrameAudio) -> list[Frame]:
        self._waiting.append(item)
        return list(self._emit(self.backend.push(item)))

    def audio(self, samples: np.ndarray, sample_rate: int, t_start: float | None = 0.0,
              timings: tuple[PhonemeTiming, ...] = (), emotion: str | None = None,
              turn_id: int = 0) -> list[Frame]:
        """Add one chunk of audio (``t_start``: utterance time of its first sample); returns the frames ready."""
        if emotion:
            self._emotion = emotion
        self._turn = turn_id
        self._live_ticks = 0  # speech: the next idle starts at the full rate
        carried = self.clock.pending_seconds
        slices, flushed = self.clock.push(samples, sample_rate)
        frames: list[Frame] = []
        if flushed is not None:
            frames += self._feed(FrameAudio(flushed, self.clock.sample_rate or sample_rate, None, (),
                                            self._emotion, turn_id))
        t = None if t_start is None else t_start - carried
        for s in slices:
            frames += self._feed(FrameAudio(s, sample_rate, t, timings, self._emotion, turn_id))
            if t is not None:
                t += len(s) / sample_rate
        return frames

    def idle(self, seconds: float, sample_rate: int | None = None) -> list[Frame]:
        """Silent frames (blinks, breathing, head sway), e.g. while the avatar listens; their audio is silence at
        the stream's sample rate."""
        sample_rate = sample_rate or self.clock.sample_rate or 16000
        frames: list[Frame] = []
        last = self.clock.flush()  # the audio's partial last frame plays before the idling
        if last is not None:
            frames += self._feed(FrameAudio(last, self.clock.sample_rate or sample_rate, None, (), self._emotion,
                                            self._turn))
        n = int(round(seconds * self.fps))
        driver = _animation_driver(self.backend) if n == 1 and not frames else None
        if driver is not None:  # a live idle tick
            self._live_ticks += 1
            if self._live_ticks > LIVE_IDLE_FULL_RATE and self._live_ticks % LIVE_IDLE_RENDER_EVERY:
                driver.step(np.zeros(int(round(sample_rate / self.fps)), np.float32), timings=(), t_utt=None,
                            emotion=self._emotion)  # the animation moves on; no image this tick
                return []
        for _ in range(n):
            silence = np.zeros(int(round(sample_rate / self.fps)), np.float32)
            frames += self._feed(FrameAudio(silence, sample_rate, None, (), self._emotion, 0))  # idle: no turn
        return frames

    def finish(self) -> list[Frame]:
        """End of the audio: the padded last partial frame and whatever the backend held back."""
        frames: list[Frame] = []
        last = self.clock.flush()
        if last is not None:
            frames += self._feed(FrameAudio(last, self.clock.sample_rate or 16000, None, (), self._emotion,
                                            self._turn))
        frames += list(self._emit(self.backend.flush()))
        return frames


def _animation_driver(backend: object) -> object | None:
    """The per-frame animation state (``Driver``) of the default animator, possibly wrapped (``PasteBack``), when
    it can be stepped without rendering; None for the other backends."""
    inner = getattr(backend, "backend", backend)
    driver = getattr(inner, "driver", None)
    return driver if callable(getattr(driver, "step", None)) else None
