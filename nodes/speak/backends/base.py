"""The one TTS interface every backend implements.

A ``TTSBackend`` says which languages it speaks and whether it is installed, and loads a ``Synthesizer`` for
one language and voice. A ``Synthesizer`` turns one sentence into ``SpeechPiece``s: one per sentence for
sentence-level engines, several for engines that stream within a sentence (XTTS).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from nodes.io.media import PhonemeTiming
from nodes.speak.voice import Voice


class BackendUnavailable(RuntimeError):
    """The backend is not installed, lacks files, or does not speak the language; the message says why."""


@dataclass(frozen=True)
class SpeechPiece:
    samples: np.ndarray  # float32 mono in [-1, 1]
    sample_rate: int
    timings: tuple[PhonemeTiming, ...] = ()  # seconds from the start of this piece
    final: bool = True  # the last piece of its sentence


class Synthesizer(ABC):
    """A loaded voice: one backend, one language."""

    sample_rate: int
    max_chars: int = 240  # longest text handed to ``speak`` at once

    @abstractmethod
    def speak(self, sentence: str, language: str, voice: Voice | None = None) -> Iterator[SpeechPiece]:
        """Synthesize one sentence (blocking); yields pieces as soon as each is ready."""

    def close(self) -> None:
        """Release processes or memory held by the synthesizer."""


class TTSBackend(ABC):
    name: str
    languages: tuple[str, ...]
    streams_within_sentence: bool = False
    quality: dict[str, int] = {}  # language -> rank for ``auto`` (higher is better)

    @abstractmethod
    def missing(self, language: str, voice_name: str = "default") -> str | None:
        """Why this backend cannot speak ``language`` here (None when it can)."""

    @abstractmethod
    def load(self, language: str, voice_name: str = "default") -> Synthesizer:
        """Load the synthesizer (blocking); raises ``BackendUnavailable``."""

    def size_bytes(self, language: str, voice_name: str = "default") -> int:
        """Estimate of the memory the loaded synthesizer takes (for the model manager)."""
        return 100 * 2**20

    def check(self, language: str, voice_name: str = "default") -> None:
        reason = self.missing(language, voice_name)
        if reason is not None:
            raise BackendUnavailable(reason)
