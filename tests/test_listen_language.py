"""Language on short turns: the choice logic (no model), then real Whisper base on speech generated here
(Festival Russian, espeak-ng English and Russian), and the final-transcript guarantee of the Whisper node."""

from __future__ import annotations

import asyncio
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from engine.graph.executor import Executor
from nodes.common.audio import float_to_pcm16, load_audio
from nodes.listen.language import (ConversationLanguage, Decoded, choose_transcript, plausibility,
                                   repeated_ngrams, script_share)
from tests.test_listen import FakeSession, espeak, festival_ru, registry  # noqa: F401 - fixtures

CYRILLIC = re.compile(r"[\u0400-\u04FF]")


def _decoder(texts: dict[str, tuple[str, float]]):
    calls: list[str] = []

    def decode(language: str) -> Decoded:
        calls.append(language)
        text, logprob = texts[language]
        return Decoded(text, language, logprob, 0.01, len(text.split()))
    return decode, calls


# ------------------------------------------------------------------------------------------------ choice logic
def test_plausibility_flags_wrong_script_repeats_and_low_logprob():
    assert plausibility(Decoded("Добрый вечер!", "ru", -0.3, 0.0)).plausible
    assert script_share("Добрый вечер", "en") == 0.0 and script_share("Hello там", "en") == pytest.approx(5 / 8)
    assert "wrong script" in plausibility(Decoded("Dobryi vecher", "ru", -0.3, 0.0)).problems[0]
    assert repeated_ngrams("The winner is the winner of the team's team.") >= 0.25
    assert not plausibility(Decoded("The winner is the winner of the winner.", "en", -0.3, 0.0)).plausible
    assert not plausibility(Decoded("WNF, RSC WNF, Tundibout Interest.", "en", -1.4, 0.0)).plausible


def test_clear_margin_decides_alone_and_close_call_compares_both():
    decode, calls = _decoder({"en": ("Hello there, how are you?", -0.2), "ru": ("Хэллоу зэа", -1.2)})
    choice = choose_transcript(("ru", "en"), {"en": 0.95, "ru": 0.03}, decode)
    assert choice.decoded.language == "en" and choice.reason == "clear" and calls == ["en"]

    decode, calls = _decoder({"en": ("The winner is the winner of the team's team.", -0.7),
                              "ru": ("Добрый вечер! Расскажи мне что-нибудь интересное.", -0.5)})
    choice = choose_transcript(("ru", "en"), {"en": 0.55, "ru": 0.45}, decode)  # no clear margin
    assert choice.decoded.language == "ru" and choice.reason == "compared" and sorted(calls) == ["en", "ru"]


def test_improbable_transcript_is_redecoded_in_the_other_language():
    decode, calls = _decoder({"en": ("WNF, RSC WNF, Tundibout Interest.", -1.3),
                              "ru": ("Расскажи мне что-нибудь интересное.", -0.6)})
    choice = choose_transcript(("ru", "en"), {"en": 0.92, "ru": 0.02}, decode)  # detector sure, and wrong
    assert choice.decoded.language == "ru" and choice.reason == "fallback" and calls == ["en", "ru"]


def test_conversation_language_is_the_prior_of_later_turns():
    decode, calls = _decoder({"en": ("Ok.", -0.4), "ru": ("Окей.", -0.4)})
    choice = choose_transcript(("ru", "en"), {"en": 0.8, "ru": 0.2}, decode, prior="ru")
    assert choice.decoded.language == "ru" and choice.reason == "prior" and calls == ["ru"]
    decode, calls = _decoder({"en": ("I would like to switch to English now.", -0.2), "ru": ("Ай вуд лайк", -1.5)})
    choice = choose_transcript(("ru", "en"), {"en": 0.99, "ru": 0.01}, decode, prior="ru")
    assert choice.decoded.language == "en"  # a clear other language still wins
    fixed, calls = _decoder({"ru": ("Тест.", -2.0), "en": ("Test.", -0.1)})
    assert choose_transcript(("ru",), None, fixed).decoded.language == "ru" and calls == ["ru"]
    conversation = ConversationLanguage()
    conversation.heard("ru")
    assert conversation.language == "ru" and conversation.turns == 1


def test_when_nothing_reads_well_the_conversation_language_or_the_detectors_favourite_stays():
    decode, _ = _decoder({"en": ("Tobi Wling", -2.06), "ru": ("Тодивлин", -1.23)})  # espeak "Good evening!"
    assert choose_transcript(("ru", "en"), {"en": 0.29, "ru": 0.0}, decode).decoded.language == "en"
    assert choose_transcript(("ru", "en"), {"en": 0.29, "ru": 0.0}, decode, prior="en").decoded.language == "en"
    assert choose_transcript(("ru", "en"), {"en": 0.95, "ru": 0.05}, decode, prior="ru").decoded.language == "ru"


# ------------------------------------------------------------------------------------------------ real Whisper
RU_SHORT = "Добрый вечер!"
RU_LONG = "Расскажи мне что-нибудь интересное."
EN_SHORT = "Good evening, tell me a story."


@pytest.fixture(scope="module")
def faster():
    from nodes.listen import weights
    from nodes.listen.backends import FasterWhisperBackend

    return FasterWhisperBackend(weights.locate("whisper-base").path, cpu_threads=2)


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, np.ndarray]:
    d = tmp_path_factory.mktemp("lang")
    import subprocess

    subprocess.run(["espeak-ng", "-v", "ru", "-w", str(d / "es_ru.wav"), RU_SHORT + " " + RU_LONG], check=True)
    return {"fest_ru_short": load_audio(festival_ru(RU_SHORT, d / "f1.wav")).samples,
            "fest_ru_long": load_audio(festival_ru(RU_LONG, d / "f2.wav")).samples,
            "en": load_audio(espeak(EN_SHORT, d / "en.wav")).samples,
            "espeak_ru": load_audio(d / "es_ru.wav").samples}


def test_whisper_short_russian_turns_in_auto_and_fixed(faster, clips):
    short = faster.transcribe(clips["fest_ru_short"], ("ru", "en"))
    assert short.language == "ru" and CYRILLIC.search(short.text), short
    en = faster.transcribe(clips["en"], ("ru", "en"), prior="ru")  # a clearly English turn still switches
    assert en.language == "en" and "evening" in en.text.lower(), en
    # espeak-ng Russian is unintelligible to Whisper base; with the session's language set it is still Cyrillic
    fixed = faster.transcribe(clips["espeak_ru"], ("ru",))
    assert fixed.language == "ru" and CYRILLIC.search(fixed.text) and not re.search("[A-Za-z]", fixed.text), fixed
    heard = faster.transcribe(clips["espeak_ru"], ("ru", "en"), prior="ru")
    assert heard.language == "ru", heard


# ------------------------------------------------------------------------------------------------ final guarantee
class PacedSession(FakeSession):
    """Mic frames at the pace of a real microphone (20 ms each); events stamped on arrival."""

    async def input_stream(self, name: str):
        began = time.monotonic()
        for n, i in enumerate(range(0, len(self._pcm), self._frame)):
            yield self._pcm[i:i + self._frame]
            delay = began + (n + 1) * 0.02 - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)

    def emit_event(self, type_: str, data: dict | None = None) -> None:
        super().emit_event(type_, {**(data or {}), "_at": time.monotonic()})


async def test_every_closed_turn_gets_a_final_transcript_within_2s_even_with_a_busy_thread_pool(registry, clips):
    """Three turns (Festival Russian, espeak-ng Russian, espeak-ng English) through MicInput -> VAD -> Whisper with
    the session language 'auto', while every thread of the event loop's default pool is held by other work (what a
    long LLM or TTS call does in a live session): each turn the VAD closes has its transcript within 2 s."""
    gap = np.zeros(16000, dtype=np.float32)
    audio = np.concatenate([gap, clips["fest_ru_long"], gap, clips["espeak_ru"], gap, clips["en"], gap])
    session = PacedSession(float_to_pcm16(audio), frame_bytes=640)
    loop = asyncio.get_running_loop()
    hog = ThreadPoolExecutor(max_workers=2)
    loop.set_default_executor(hog)
    prompt = {
        "1": {"class_type": "MicInput", "inputs": {"source": "session"}},
        "2": {"class_type": "VAD", "inputs": {"audio_stream": ["1", 1]}},
        "3": {"class_type": "Whisper", "inputs": {"audio_stream": ["2", 0], "language": "auto"}},
        "4": {"class_type": "_Collect", "inputs": {"text_stream": ["3", 1]}},
    }
    run = asyncio.ensure_future(Executor(registry).execute(prompt, session=session))
    while not any(kind == "transcript_partial" for kind, _ in session.events) and not run.done():
        await asyncio.sleep(0.05)  # the models load (a live session keeps them loaded); once Whisper hears,
    blockers = [loop.run_in_executor(hog, time.sleep, len(audio) / 16000) for _ in range(2)]  # occupy the pool
    result = await run
    assert result.ok, result.error
    # 2 s is the target on this 2-core CPU; when other jobs oversubscribe it (load above twice the cores) every
    # thread runs that much slower, so the limit scales with it (starved by the pool, it was the whole 10+ s)
    limit = 2.0 * max(1.0, os.getloadavg()[0] / (2 * (os.cpu_count() or 1)))
    ends = [d for kind, d in session.events if kind == "speech_end"]
    finals = {d["turn_id"]: d for kind, d in session.events if kind == "transcript"}
    assert len(ends) == 3, [k for k, _ in session.events]
    for end in ends:
        final = finals.get(end["turn_id"])
        assert final is not None, f"turn {end['turn_id']} has no final transcript"
        late = final["_at"] - end["_at"]
        assert late <= limit, (late, limit, final.get("wait_s"), final.get("passes"), final["text"])
    assert CYRILLIC.search(finals[ends[0]["turn_id"]]["text"]) and finals[ends[0]["turn_id"]]["language"] == "ru"
    assert finals[ends[2]["turn_id"]]["language"] == "en"
    await asyncio.gather(*blockers)
