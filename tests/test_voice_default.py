"""The default persona's voice: a young woman's pitch in both languages, still intelligible, first audio early;
and the recordings -> default-voice target path (``main.py voice prepare`` without XTTS weights)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest

from nodes.common.audio import resample
from nodes.io.media import TextChunk
from nodes.speak.nodes import TTS
from nodes.speak.persona_voice import load_voice_shape
from nodes.speak.shape import VoiceShape, median_f0
from tests.test_tts_backends import EN, RU, asr, make_ctx, speak, wer  # noqa: F401 - asr is a fixture


def test_default_persona_declares_a_young_womans_voice():
    shape = load_voice_shape("alisa")
    assert shape is not None and shape.gender == "female"
    assert 180 <= shape.pitch_hz[0] < shape.median_hz < shape.pitch_hz[1] <= 260
    assert load_voice_shape("none") is None
    with pytest.raises(ValueError, match="outside its range"):
        VoiceShape(median_hz=120)
    with pytest.raises(ValueError, match="unknown voice keys"):
        VoiceShape.from_mapping({"gender": "female", "pich_hz": [1, 2]})


@pytest.mark.parametrize(("text", "language", "max_wer"), [(RU, "ru", 0.20), (EN, "en", 0.10)])
async def test_default_voice_pitch_is_in_range_and_intelligible(asr: Any, text: str, language: str,
                                                                max_wer: float) -> None:
    audio, chunks = await speak("auto", text, language, persona="alisa")
    f0 = median_f0(audio.samples, audio.sample_rate)
    assert f0 is not None and 180 <= f0 <= 260, f"{language}: median F0 {f0:.0f} Hz"
    heard = asr.transcribe(resample(audio.samples, audio.sample_rate, 16000), [language]).text
    assert wer(text, heard) <= max_wer, f"{language} heard {heard!r}"
    assert sum(len(c.samples) for c in chunks) == len(audio.samples)
    own, _ = await speak("auto", text, language, persona="none")  # the backend's own voice
    if language == "ru":  # Festival msu_ru_nsh is a man: the persona's voice is what lifts it
        assert median_f0(own.samples, own.sample_rate) < 160


async def test_default_voice_first_chunk_is_early() -> None:
    async def one() -> AsyncIterator[TextChunk]:
        yield TextChunk(text="Привет! Как у тебя дела сегодня? Расскажи мне что-нибудь.", final=True)

    ctx = make_ctx()  # one context: the synthesizer loaded by the first run is reused (as the model manager does)
    for _ in range(2):  # the first run loads Festival
        began = time.perf_counter()
        result = await TTS("1").execute(ctx, {"text_stream": one(), "persona": "alisa"})
        stream = result.outputs[1]
        first = None
        async for chunk in stream:
            first = first or time.perf_counter() - began
            assert chunk.duration < 2.5  # long sentences leave in sub-pieces
        assert first is not None
    assert first < 0.6, first  # the benchmark measures the 150 ms target on an idle core; CI shares its CPU


def test_first_sub_piece_leaves_before_the_next_is_shaped(monkeypatch):
    """The first audio of a reply is handed on as soon as its short sub-piece is shaped, not after the sentence's
    next (2 s) sub-piece: that wait was most of the first-chunk latency."""
    from nodes.speak.backends import SpeechPiece
    from nodes.speak.nodes import _Speaker
    from nodes.speak.shape import FIRST_PIECE_S, VoiceShaper

    rate = 16000
    t = np.arange(int(3.0 * rate)) / rate
    speech = (0.3 * np.sin(2 * np.pi * 200 * t) * (1 + 0.2 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    shaper = VoiceShaper(VoiceShape(), "female")
    shaped: list[int] = []
    real = VoiceShaper.process
    monkeypatch.setattr(VoiceShaper, "process", lambda self, x, r: shaped.append(len(x)) or real(self, x, r))
    speaker = _Speaker(None, "1", "auto", "auto", None, "default", 1.0, VoiceShape())
    pieces = speaker._shaped(shaper, SpeechPiece(speech, rate, (), final=True))
    first = next(pieces)
    assert len(shaped) == 1 and len(first.samples) < (FIRST_PIECE_S + 0.05) * rate and not first.final
    rest = list(pieces)
    assert rest[-1].final and not any(p.final for p in rest[:-1])
    assert sum(len(p.samples) for p in [first, *rest]) == len(speech)  # the sub-pieces join to the whole


def test_voice_target_from_recordings_moves_the_default_voice(tmp_path, monkeypatch):
    """Prepared clips -> target.npz -> adaptation brings the shaped default voice's pitch towards the speaker."""
    import soundfile as sf

    from engine.files.folders import folders
    from nodes.speak.adapt import VoiceAdapter
    from nodes.speak.shape import VoiceShaper
    from nodes.speak.voice_target import load_target, target_from_dataset, voice_dir

    monkeypatch.setattr(folders, "data_dir", tmp_path)
    rate = 16000
    t = np.arange(int(2.0 * rate)) / rate
    wavs = voice_dir("low").joinpath("wavs")
    wavs.mkdir(parents=True)
    for i, hz in enumerate((150.0, 160.0, 170.0)):  # a low "speaker": harmonic tones with a vowel-like envelope
        f = hz * (1 + 0.03 * np.sin(2 * np.pi * 3 * t))
        phase = 2 * np.pi * np.cumsum(f) / rate
        x = sum(np.sin(k * phase) / k for k in range(1, 20)) * 0.1
        sf.write(wavs / f"low_{i}.wav", x.astype(np.float32), rate)
    path = target_from_dataset("low")
    target = load_target("low")
    assert path.is_file() and 150 < np.exp(target.f0_log_mean) < 175 and target.voiced_seconds > 5
    speech = np.concatenate([np.sin(2 * np.pi * np.cumsum(np.full(rate, 125.0)) / rate) * 0.2] * 3).astype(np.float32)
    shaped = VoiceShaper(VoiceShape(), "male").process(speech, rate)
    adapted = VoiceAdapter(target).process(shaped, rate)
    assert median_f0(shaped, rate) > 200 and median_f0(adapted, rate) < 180
