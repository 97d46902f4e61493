"""espeak-ng (formant synthesis): always-available fallback for Russian and English."""

from __future__ import annotations

import io
import shutil
import subprocess
from collections.abc import Iterator

import numpy as np

from nodes.speak.backends.base import BackendUnavailable, SpeechPiece, Synthesizer, TTSBackend
from nodes.speak.voice import Voice

VOICES = {"ru": "ru", "en": "en-us"}


class EspeakSynthesizer(Synthesizer):
    max_chars = 400

    def __init__(self, language: str, executable: str):
        self.language = language
        self.executable = executable
        self.sample_rate = 22050

    def speak(self, sentence: str, language: str, voice: Voice | None = None) -> Iterator[SpeechPiece]:
        import soundfile as sf

        proc = subprocess.run([self.executable, "-v", VOICES[self.language], "--stdout", "--stdin"],
                              input=sentence.encode("utf-8"), capture_output=True, timeout=60, check=False)
        if proc.returncode != 0 or not proc.stdout:
            raise RuntimeError(f"espeak-ng failed ({proc.returncode}): {proc.stderr.decode(errors='replace')}")
        # espeak-ng writes a streaming WAV header with unknown length; soundfile reads it from memory.
        samples, rate = sf.read(io.BytesIO(proc.stdout), dtype="float32")
        self.sample_rate = rate
        yield SpeechPiece(samples=np.asarray(samples, dtype=np.float32).reshape(-1), sample_rate=rate)


class EspeakBackend(TTSBackend):
    name = "espeak"
    languages = ("ru", "en")
    quality = {"ru": 10, "en": 10}

    @staticmethod
    def executable() -> str | None:
        return shutil.which("espeak-ng")

    def missing(self, language: str, voice_name: str = "default") -> str | None:
        if language not in self.languages:
            return f"espeak backend speaks {', '.join(self.languages)}, not {language!r}"
        if self.executable() is None:
            return "espeak-ng is not installed (apt-get install espeak-ng)"
        return None

    def load(self, language: str, voice_name: str = "default") -> EspeakSynthesizer:
        self.check(language, voice_name)
        exe = self.executable()
        if exe is None:
            raise BackendUnavailable("espeak-ng is not installed")
        return EspeakSynthesizer(language, exe)

    def size_bytes(self, language: str, voice_name: str = "default") -> int:
        return 10 * 2**20
