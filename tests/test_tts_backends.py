"""Speech backends and the TTS node: intelligibility (Whisper read-back), timings, streaming, bad input."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest

from engine.graph.context import NodeContext
from engine.graph.node import NodeInputError
from nodes.io.media import Audio, AudioChunk, TextChunk
from nodes.speak.backends import BACKENDS
from nodes.speak.nodes import TTS
from nodes.common.audio import resample

EN = "Hello! My name is Alice. The weather is nice today, and we are going for a walk in the park."
RU = "Привет! Меня зовут Алиса. Сегодня хорошая погода, и мы идём гулять в парк."


def make_ctx(node_id: str = "1", class_type: str = "TTS") -> NodeContext:
    return NodeContext(node_id, class_type, "test", asyncio.get_running_loop(), lambda e: None, threading.Event())


@pytest.fixture(scope="module")
def asr() -> Any:
    from nodes.listen.backends import FasterWhisperBackend
    from nodes.listen.weights import WhisperWeightsMissing, locate

    try:
        return FasterWhisperBackend(locate("whisper-base").path)
    except WhisperWeightsMissing as exc:
        pytest.skip(f"whisper-base is not installed: {exc}")


def words(text: str) -> list[str]:
    return re.findall(r"[\w']+", text.lower().replace("ё", "е"))


def wer(ref: str, hyp: str) -> float:
    r, h = words(ref), words(hyp)
    d = np.arange(len(h) + 1)
    for i, rw in enumerate(r, 1):
        prev, d[0] = d.copy(), i
        for j, hw in enumerate(h, 1):
            d[j] = min(prev[j] + 1, d[j - 1] + 1, prev[j - 1] + (rw != hw))
    return float(d[len(h)]) / max(len(r), 1)


async def speak(backend: str, text: str, language: str = "auto", **kw: Any) -> tuple[Audio, list[AudioChunk]]:
    node = TTS("1")
    kw.setdefault("persona", "none")  # the backend's own voice (the persona's voice: tests/test_voice_default.py)
    result = await node.execute(make_ctx(), {"text": text, "backend": backend, "language": language, **kw})
    audio, stream = result.outputs
    return audio, [c async for c in stream]


@pytest.mark.parametrize(("backend", "text", "language", "max_wer"), [
    ("piper", EN, "en", 0.10),
    ("festival", RU, "ru", 0.30),
    ("festival", EN, "en", 0.15),
    ("espeak", EN, "en", 0.30),
    ("espeak", RU, "ru", 0.70),  # formant synthesis: whisper-base reads about half of it (notes: WER 0.50)
])
async def test_backend_is_intelligible(asr: Any, backend: str, text: str, language: str, max_wer: float) -> None:
    audio, chunks = await speak(backend, text, language)
    assert len(chunks) == 3  # one per sentence
    assert audio.duration > 3.0 and 0.02 < float(np.sqrt(np.mean(audio.samples**2))) < 0.5
    heard = asr.transcribe(resample(audio.samples, audio.sample_rate, 16000), [language]).text
    assert wer(text, heard) <= max_wer, f"{backend}/{language} heard {heard!r}"


async def test_auto_picks_piper_for_english_and_festival_for_russian() -> None:
    from nodes.speak.backends import pick_backend

    assert pick_backend("en").name == "piper"
    assert pick_backend("ru").name == "festival"


async def test_piper_and_festival_give_phoneme_timings() -> None:
    for backend, text in (("piper", "Hello, my name is Alice."), ("festival", "Меня зовут Алиса.")):
        _, chunks = await speak(backend, text)
        (chunk,) = chunks
        assert len(chunk.timings) > 10
        starts = [t.start for t in chunk.timings]
        assert starts == sorted(starts) and all(t.end >= t.start for t in chunk.timings)
        assert abs(chunk.timings[-1].end - chunk.duration) < 0.3
        assert chunk.final and chunk.text == text


async def test_text_stream_yields_first_sentence_before_the_rest_is_synthesised() -> None:
    emitted: list[float] = []

    async def sentences() -> AsyncIterator[TextChunk]:
        for i, s in enumerate(["Hello there.", "This is the second sentence of the reply, a little longer.",
                               "And this is the third and last sentence."]):
            emitted.append(time.perf_counter())
            yield TextChunk(text=s, emotion="happy", final=i == 2, turn_id=7)

    result = await TTS("1").execute(make_ctx(), {"text_stream": sentences(), "backend": "piper", "persona": "none"})
    whole, stream = result.outputs
    assert not whole.done()  # the whole AUDIO is deferred until the stream has ended
    arrivals, chunks = [], []
    async for chunk in stream:
        arrivals.append(time.perf_counter())
        chunks.append(chunk)
    assert len(chunks) == 3
    assert arrivals[0] < emitted[1]  # the first sentence was spoken before the second was even asked for
    assert all(c.emotion == "happy" and c.turn_id == 7 for c in chunks)
    assert chunks[1].start == pytest.approx(chunks[0].duration)
    assert (await whole).duration == pytest.approx(sum(c.duration for c in chunks))


async def test_empty_text_is_rejected() -> None:
    for text in ("", "   ", "..."):
        with pytest.raises(NodeInputError) as err:
            await speak("auto", text)
        assert err.value.input_name == "text" and "empty" in str(err.value)


async def test_unsupported_language_is_rejected() -> None:
    with pytest.raises(NodeInputError, match="script other than Latin or Cyrillic"):
        await speak("auto", "你好，世界。今天天气很好。")
    with pytest.raises(NodeInputError, match="piper") as err:
        await speak("piper", RU, "ru")
    assert err.value.input_name == "backend"


async def test_long_text_is_chunked_and_streamed_lazily() -> None:
    text = ("This is a rather long sentence that keeps going, with many clauses, commas and words, so that "
            "the speech engine must cut it into pieces it can handle without running out of memory. ") * 30
    assert len(text) > 5000
    calls: list[str] = []

    async def one() -> AsyncIterator[TextChunk]:
        yield TextChunk(text=text, final=True)

    result = await TTS("1").execute(make_ctx(), {"text_stream": one(), "backend": "espeak", "persona": "none"})
    stream = result.outputs[1]
    async for chunk in stream:
        calls.append(chunk.text)
        assert len(chunk.text) <= 400 and chunk.duration < 40
        if len(calls) == 3:
            break
    await stream.aclose()
    assert len(calls) == 3  # three sentences spoken, the other 27 never synthesised


def test_backends_report_what_is_missing() -> None:
    assert BACKENDS["piper"].missing("ru") is not None
    assert BACKENDS["festival"].missing("de") is not None
    assert BACKENDS["espeak"].missing("en") is None
