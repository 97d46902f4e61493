"""XTTS: a tiny randomly initialised checkpoint loaded by the nodes and streamed; voice prepare + train end to end;
LoadVoice's bad references."""

from __future__ import annotations

import asyncio
import json
import shutil
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from engine.graph.context import NodeContext
from engine.files.folders import folders
from engine.graph.node import NodeInputError
from nodes.io.media import TextChunk
from nodes.speak.backends import BACKENDS

pytest.importorskip("TTS", reason="coqui-tts is not installed (requirements/tts.txt)")

RU = ["Привет, меня зовут Алиса, и я очень люблю читать книги.", "Сегодня хорошая погода, мы пойдём гулять в парк.",
      "Завтра я поеду к бабушке в деревню на поезде.", "Мой брат работает инженером на большом заводе."]


def make_ctx(class_type: str) -> NodeContext:
    return NodeContext("7", class_type, "test", asyncio.get_running_loop(), lambda e: None, threading.Event())


def festival(text: str) -> tuple[np.ndarray, int]:
    synth = BACKENDS["festival"].load("ru")
    try:
        pieces = list(synth.speak(text, "ru"))
    finally:
        synth.close()
    return np.concatenate([p.samples for p in pieces]), pieces[0].sample_rate


@pytest.fixture(scope="module")
def place(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A data dir and a models dir with a tiny random XTTS in models/xtts/base."""
    from nodes.speak.backends.xtts import write_random_checkpoint

    root = tmp_path_factory.mktemp("voice")
    old = (folders.data_dir, folders.models_dir)
    folders.configure(data_dir=root / "data", models_dir=root / "models")
    write_random_checkpoint(root / "models" / "xtts" / "xtts-v2")  # the documented folder ("base" and "default" name it)
    samples, rate = festival(" ".join(RU[:2]))
    sf.write(folders.get("input") / "persona.wav", samples, rate)
    sf.write(folders.get("input") / "silence.wav", np.zeros(rate * 5, np.float32), rate)
    sf.write(folders.get("input") / "two_seconds.wav", samples[: rate * 2], rate)
    yield root
    folders.data_dir, folders.models_dir = old
    shutil.rmtree(root, ignore_errors=True)  # ~1.5 GB of checkpoints; pytest would keep three runs of them


async def test_missing_xtts_files_are_named(place: Path) -> None:
    from nodes.speak.nodes import XTTS

    (place / "models" / "xtts" / "broken").mkdir(parents=True)
    (place / "models" / "xtts" / "broken" / "config.json").write_text("{}")
    with pytest.raises(NodeInputError) as err:
        await XTTS("7").execute(make_ctx("XTTS"), {"text": "Hello there.", "voice": "broken", "language": "en"})
    message = str(err.value)
    lacking = message.split("lacks ")[1].split(";")[0]
    assert lacking == "model.pth, vocab.json"
    assert str(place / "models" / "xtts" / "broken") in message


async def test_load_voice_rejects_silence_and_two_seconds(place: Path) -> None:
    from nodes.speak.nodes import LoadVoice

    for clip, expected in (("silence.wav", "silent"), ("two_seconds.wav", "at least 3 s")):
        with pytest.raises(NodeInputError, match=expected):
            await LoadVoice("7").execute(make_ctx("LoadVoice"), {"reference": clip, "xtts_checkpoint": "none"})


async def test_xtts_node_loads_a_tiny_random_checkpoint_and_streams(place: Path) -> None:
    from nodes.speak.nodes import XTTS, LoadVoice

    inputs = {"reference": "persona.wav", "more_references": "", "xtts_checkpoint": "base", "name": "anna"}
    assert LoadVoice.fingerprint(inputs) == LoadVoice.fingerprint(dict(inputs))  # the cache key is the clips' hash
    (voice,) = (await LoadVoice("7").execute(make_ctx("LoadVoice"), inputs)).outputs
    assert voice.xtts is not None and voice.xtts.checkpoint == "base" and voice.target is not None
    assert voice.xtts.speaker_embedding.shape == (1, 512, 1)

    async def reply() -> AsyncIterator[TextChunk]:
        yield TextChunk(text="Привет.", emotion="happy", final=True, turn_id=3)

    node = XTTS("8")
    result = await node.execute(make_ctx("XTTS"), {"text_stream": reply(), "speaker": voice, "voice": "base"})
    arrivals, chunks = [], []
    began = time.perf_counter()
    async for chunk in result.outputs[1]:
        arrivals.append(time.perf_counter() - began)
        chunks.append(chunk)
    assert len(chunks) >= 2, "XTTS streams within a sentence"
    assert [c.final for c in chunks] == [False] * (len(chunks) - 1) + [True]
    assert arrivals[0] < 0.8 * arrivals[-1], "the first chunk left before the sentence was done"
    assert all(c.sample_rate == 24000 and c.emotion == "happy" and c.turn_id == 3 for c in chunks)
    assert all(np.isfinite(c.samples).all() and c.samples.size > 0 for c in chunks)


async def test_prepare_and_train_end_to_end(place: Path) -> None:
    from nodes.speak.nodes import XTTS
    from nodes.speak.voice_cli import prepare, train

    rec = place / "recordings"
    rec.mkdir()
    parts = []
    for sentence in RU:
        samples, rate = festival(sentence)
        parts += [samples, np.zeros(int(0.8 * rate), np.float32)]
    sf.write(rec / "good.wav", np.concatenate(parts), rate)
    sf.write(rec / "clipped.wav", np.clip(parts[0] * 20, -1, 1), rate)
    sf.write(rec / "noise.wav", np.random.default_rng(0).normal(0, 0.1, 16000 * 4).astype(np.float32), 16000)
    t = np.arange(16000 * 5) / 16000
    music = sum(0.1 * np.sin(2 * np.pi * f * t * (1 + 0.5 * (t // 1.25 % 2))) * np.exp(-(t % 1.25))
                for f in (220, 277, 330, 440))
    sf.write(rec / "music.wav", music.astype(np.float32), 16000)
    short, rate = festival("Да.")
    sf.write(rec / "short.wav", np.concatenate([np.zeros(8000, np.float32), short, np.zeros(8000, np.float32)]), rate)
    english = BACKENDS["piper"].load("en")
    pieces = list(english.speak("This recording is in English, which is not the language of this voice.", "en"))
    sf.write(rec / "english.wav", np.concatenate([p.samples for p in pieces]), pieces[0].sample_rate)

    report = prepare(rec, "anna", language="ru")
    assert report.clips == 4 and 0.2 < report.usable_minutes < 0.5
    reasons = dict(report.rejected_files)
    assert reasons["clipped.wav"].startswith("clipping") and reasons["noise.wav"].startswith("nois")
    assert reasons["music.wav"].startswith("music")
    assert any(k.startswith("short.wav") and v.startswith("too short") for k, v in reasons.items())
    assert any(k.startswith("english.wav") and v.startswith("wrong language") for k, v in reasons.items())
    rows = (report.dataset / "metadata.csv").read_text(encoding="utf-8").splitlines()
    assert len(rows) == 4 and "бабушке" in rows[2]
    info = sf.info(report.dataset / "wavs" / f"{rows[0].split('|')[0]}.wav")
    assert info.samplerate == 22050

    first = train("anna", base="base", epochs=2, batch_size=4, lr=1e-4, progress=False)
    assert first.losses[-1] < first.losses[0], first.losses  # it learns
    second = train("anna", base="base", epochs=3, batch_size=4, lr=1e-4, progress=False)
    assert second.resumed and second.steps > first.steps
    out = place / "models" / "xtts" / "anna"
    assert json.loads((out / "training_log.json").read_text())["losses"][:2] == first.losses
    result = await XTTS("9").execute(make_ctx("XTTS"), {"text": "Да.", "voice": "anna", "language": "ru"})
    assert result.outputs[0].duration > 0  # the trained checkpoint loads in the node and speaks (with its reference.wav as speaker)
