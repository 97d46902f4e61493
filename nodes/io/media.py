"""The values that travel between built-in nodes (numpy inside; no torch needed to pass them around).

IMAGE  -> ``np.ndarray`` of shape (H, W, 3), uint8, RGB.
AUDIO  -> ``Audio`` (mono float32 in [-1, 1] at ``sample_rate``).
AUDIO_STREAM -> ``AudioChunk`` items; TEXT_STREAM -> ``TextChunk`` items; FRAME_STREAM -> ``Frame`` items.
VIDEO  -> ``Video`` (a file written by VideoOut).
FACE and VOICE values are defined by the face and speech packages.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

EMOTIONS = ("neutral", "happy", "sad", "surprised", "angry")


@dataclass(frozen=True)
class Audio:
    samples: np.ndarray  # float32, mono, shape (n,)
    sample_rate: int

    def __post_init__(self) -> None:
        if self.samples.ndim != 1:
            raise ValueError(f"Audio holds mono samples of shape (n,), got {self.samples.shape}")
        if self.sample_rate <= 0:
            raise ValueError(f"sample rate must be positive, got {self.sample_rate}")

    @property
    def duration(self) -> float:
        return len(self.samples) / self.sample_rate


@dataclass(frozen=True)
class PhonemeTiming:
    phoneme: str  # IPA or the backend's phoneme symbol
    start: float  # seconds from the start of the chunk's utterance
    end: float


@dataclass(frozen=True)
class AudioChunk:
    samples: np.ndarray  # float32 mono
    sample_rate: int
    start: float = 0.0  # seconds from the start of the utterance (or turn)
    text: str | None = None  # the sentence this audio speaks, when known
    timings: tuple[PhonemeTiming, ...] = ()
    emotion: str | None = None
    final: bool = False  # last chunk of a sentence / utterance
    turn_id: int = 0

    @property
    def duration(self) -> float:
        return len(self.samples) / self.sample_rate


@dataclass(frozen=True)
class TextChunk:
    text: str
    emotion: str = "neutral"
    final: bool = False  # the last sentence of the reply
    turn_id: int = 0


@dataclass(frozen=True)
class Frame:
    image: np.ndarray  # (H, W, 3) uint8 RGB
    index: int  # frame number from the start of the stream
    pts: float  # presentation time in seconds
    audio: np.ndarray | None = None  # float32 mono samples that play with this frame (keeps A/V in sync)
    sample_rate: int = 16000
    turn_id: int = 0


@dataclass(frozen=True)
class Video:
    path: Path
    width: int
    height: int
    fps: float
    duration: float
    has_audio: bool
    meta: dict = field(default_factory=dict)
