"""TTS backends behind one interface (``base.TTSBackend``); ``BACKENDS`` is their registry."""

from __future__ import annotations

from nodes.speak.backends.base import BackendUnavailable, SpeechPiece, Synthesizer, TTSBackend
from nodes.speak.backends.espeak import EspeakBackend
from nodes.speak.backends.festival import FestivalBackend
from nodes.speak.backends.piper import PiperBackend
from nodes.speak.backends.xtts import XttsBackend

BACKENDS: dict[str, TTSBackend] = {b.name: b for b in (XttsBackend(), PiperBackend(), FestivalBackend(),
                                                       EspeakBackend())}
"""Registry of the backends by name (``auto`` picks among them)."""


def pick_backend(language: str, voice_name: str = "default") -> TTSBackend:
    """The best installed backend for ``language`` (XTTS only when its checkpoint for ``voice_name`` is present)."""
    ranked = sorted(BACKENDS.values(), key=lambda b: b.quality.get(language, -1), reverse=True)
    reasons = []
    for backend in ranked:
        if language not in backend.languages:
            continue
        reason = backend.missing(language, voice_name)
        if reason is None:
            return backend
        reasons.append(f"{backend.name}: {reason}")
    raise BackendUnavailable(f"no speech backend can speak {language!r} here: " + "; ".join(reasons))


__all__ = ["BACKENDS", "BackendUnavailable", "SpeechPiece", "Synthesizer", "TTSBackend", "pick_backend"]
